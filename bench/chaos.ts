// Chaos run (issue 4): under load, one of three endpoints is killed (SIGKILL) and restarted; the
// error rate the client sees, per scenario: no policies; retries + outlier detection; retries +
// outlier detection + active health checks. Each endpoint is its own process; the gateway is `agw run`.
//
//   node bench/chaos.ts [--seconds 14] [--kill-at 4] [--down 5] [--concurrency 16] [--rounds 1]
//
// Reports, never asserts. Results: bench/RESULTS.md.

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  type Env,
  freePort,
  GEN_CPU,
  loadavg,
  median,
  PROXY_CPU,
  type Proc,
  REPO,
  signalTree,
  sleep,
  start,
  stopAll,
  tail,
  which,
} from "./lib.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "14" },
    "kill-at": { type: "string", default: "4" },
    down: { type: "string", default: "5" },
    concurrency: { type: "string", default: "16" },
    rounds: { type: "string", default: "1" },
  },
});
const SECONDS = Number(args.seconds);
const KILL_AT = Number(args["kill-at"]);
const DOWN = Number(args.down);
const CONCURRENCY = Number(args.concurrency);
const ROUNDS = Number(args.rounds);

const ENDPOINT_SERVER = `
const http = require("node:http");
const name = process.argv[1], port = Number(process.argv[2]);
http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  req.resume();
  res.setHeader("x-endpoint", name);
  res.end(name);
}).listen(port, "127.0.0.1");
`;

interface Scenario {
  name: string;
  route: string;
  cluster: string;
}

const RETRY = `
        retry: { retries: 2, retryOn: [connect-failure, reset, gateway-error], backoffBase: 10ms, backoffMax: 50ms }`;
const OUTLIER = `
    outlierDetection: { consecutive5xx: 5, consecutiveGatewayErrors: 3, baseEjectionTime: 3s, maxEjectionPercent: 34 }`;
const HEALTH = `
    healthCheck: { path: /, interval: 500ms, timeout: 250ms, unhealthyThreshold: 2, healthyThreshold: 1 }`;

const SCENARIOS: Scenario[] = [
  { name: "no retries, no outlier detection", route: "", cluster: "" },
  { name: "retries + outlier detection", route: RETRY, cluster: OUTLIER },
  { name: "retries + outlier detection + health checks", route: RETRY, cluster: OUTLIER + HEALTH },
  // The default circuit breaker allows 3 retries in flight (Envoy's default too): at the moment of the
  // kill more than 3 requests may need one at once. This row shows what that limit costs.
  {
    name: "retries + outlier detection + health checks, maxRetries 64",
    route: RETRY,
    cluster: `${OUTLIER + HEALTH}
    circuitBreakers: { maxRetries: 64 }`,
  },
];

interface Window {
  ok: number;
  errors: number;
}

interface Outcome {
  scenario: string;
  total: Window;
  outage: Window;
  after: Window;
  /** Requests the restarted endpoint served after it came back. */
  restartedServed: number;
  errorKinds: Map<string, number>;
}

function config(s: Scenario, port: number, endpoints: number[]): string {
  return `listeners:
  - name: chaos
    port: ${port}
    routes:
      - name: r
        cluster: app
        timeout: 5s${s.route}
clusters:
  - name: app${s.cluster}
    endpoints: [${endpoints.map((p) => `"127.0.0.1:${p}"`).join(", ")}]
`;
}

function startEndpoint(env: Env, name: string, port: number): Proc {
  return start(env, `${name}-${Date.now()}`, GEN_CPU, [
    process.execPath,
    "-e",
    ENDPOINT_SERVER,
    name,
    String(port),
  ]);
}

async function waitUp(url: string, proc: Proc, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exited) throw new Error(`${proc.name} exited:\n${tail(proc.log)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(url, { agent: false, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on("error", () => resolve(false));
      req.on("timeout", () => req.destroy());
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${url} not up within ${timeoutMs} ms; ${proc.name}:\n${tail(proc.log)}`);
}

async function runScenario(env: Env, s: Scenario): Promise<Outcome> {
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const endpoints = ports.map((p, i) => startEndpoint(env, `ep${i}`, p));
  for (const [i, p] of ports.entries()) await waitUp(`http://127.0.0.1:${p}/`, endpoints[i] as Proc, 10_000);
  const [listen, xds, admin, cpAdmin] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const file = path.join(env.tmp, `chaos-${Date.now()}.yaml`);
  fs.writeFileSync(file, config(s, listen, ports));
  const gw = start(env, `agw-${Date.now()}`, PROXY_CPU, [
    process.execPath,
    path.join(REPO, "cli/src/main.ts"),
    "run",
    "-c",
    file,
    "--xds-listen",
    `127.0.0.1:${xds}`,
    "--admin",
    `127.0.0.1:${admin}`,
    "--cp-admin",
    `127.0.0.1:${cpAdmin}`,
  ]);
  await waitUp(`http://127.0.0.1:${listen}/`, gw, 20_000);

  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const out: Outcome = {
    scenario: s.name,
    total: { ok: 0, errors: 0 },
    outage: { ok: 0, errors: 0 },
    after: { ok: 0, errors: 0 },
    restartedServed: 0,
    errorKinds: new Map(),
  };
  const t0 = performance.now();
  const killAt = KILL_AT * 1000;
  const restartAt = (KILL_AT + DOWN) * 1000;
  const endAt = SECONDS * 1000;
  const record = (startedMs: number, ok: boolean, kind: string, endpoint: string) => {
    const w: Window[] = [out.total];
    if (startedMs >= killAt && startedMs < restartAt) w.push(out.outage);
    if (startedMs >= restartAt) w.push(out.after);
    for (const x of w) ok ? x.ok++ : x.errors++;
    if (!ok) out.errorKinds.set(kind, (out.errorKinds.get(kind) ?? 0) + 1);
    if (ok && startedMs >= restartAt && endpoint === "ep1") out.restartedServed++;
  };
  const one = () =>
    new Promise<void>((resolve) => {
      const started = performance.now() - t0;
      const req = http.get(`http://127.0.0.1:${listen}/`, { agent, timeout: 10_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => {
          const ok = res.statusCode === 200;
          record(started, ok, ok ? "" : `${res.statusCode} ${res.headers["x-agw-error"] ?? ""}`.trim(), body);
          resolve();
        });
        res.on("error", () => {
          record(started, false, "response aborted", "");
          resolve();
        });
      });
      req.on("timeout", () => req.destroy(new Error("client timeout")));
      req.on("error", (e) => {
        record(started, false, (e as NodeJS.ErrnoException).code ?? e.message, "");
        resolve();
      });
    });
  const worker = async () => {
    while (performance.now() - t0 < endAt) await one();
  };
  const chaos = (async () => {
    await sleep(killAt);
    signalTree(endpoints[1] as Proc, "SIGKILL");
    await sleep(restartAt - killAt);
    endpoints[1] = startEndpoint(env, "ep1", ports[1] as number);
  })();
  await Promise.all([...Array.from({ length: CONCURRENCY }, worker), chaos]);
  agent.destroy();
  signalTree(gw, "SIGTERM");
  await Promise.race([gw.exit, sleep(5000)]);
  for (const e of endpoints) signalTree(e, "SIGKILL");
  await stopAll();
  return out;
}

const rate = (w: Window) => (w.ok + w.errors === 0 ? 0 : (100 * w.errors) / (w.ok + w.errors));
const pct = (n: number) => `${n.toFixed(n < 1 ? 2 : 1)}%`;

async function main(): Promise<void> {
  const taskset = which("taskset");
  if (taskset === undefined) throw new Error("taskset (util-linux) is needed to pin processes");
  const env: Env = {
    tmp: fs.mkdtempSync(path.join(os.tmpdir(), "agw-chaos-")),
    tools: { taskset, nginx: "", wrk: "" },
  };
  console.log(`# chaos: ${new Date().toUTCString()}; load average before: ${loadavg()}`);
  console.log(
    `# ${SECONDS}s of load, ${CONCURRENCY} keep-alive clients; endpoint 2 of 3 killed at ${KILL_AT}s, restarted at ${KILL_AT + DOWN}s`,
  );
  const results = new Map<string, Outcome[]>();
  for (let round = 0; round < ROUNDS; round++)
    for (const s of SCENARIOS) {
      const o = await runScenario(env, s);
      results.set(s.name, [...(results.get(s.name) ?? []), o]);
      console.log(
        `round ${round + 1} ${s.name}: ${o.total.ok + o.total.errors} requests, errors ${o.total.errors} ` +
          `(${pct(rate(o.total))}); outage ${pct(rate(o.outage))}; after restart ${pct(rate(o.after))}; ` +
          `restarted endpoint served ${o.restartedServed}; kinds ${JSON.stringify([...o.errorKinds])}`,
      );
    }
  console.log(
    "\n| scenario | requests | client errors | error rate | during outage | after restart | restarted endpoint served |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const [name, list] of results) {
    const m = (f: (o: Outcome) => number) => median(list.map(f));
    console.log(
      `| ${name} | ${m((o) => o.total.ok + o.total.errors)} | ${m((o) => o.total.errors)} | ${pct(m((o) => rate(o.total)))} | ` +
        `${pct(m((o) => rate(o.outage)))} | ${pct(m((o) => rate(o.after)))} | ${m((o) => o.restartedServed)} |`,
    );
  }
  console.log(`\n# load average after: ${loadavg()}`);
}

main().catch(async (e) => {
  console.error(e);
  await stopAll();
  process.exit(1);
});
