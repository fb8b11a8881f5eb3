// AGW vs nginx as HTTPS reverse proxies in front of one plain-HTTP nginx origin, with the same
// certificate (made for the run) and the same protocol version and cipher:
//   full     new connections per second, each a full handshake + one HTTP/1.0 request (openssl s_time -new)
//   resumed  the same with the session resumed from a ticket (openssl s_time -reuse)
//   https    HTTPS keep-alive throughput (wrk -c64)
// Pinned like bench/run.ts: origin and clients on CPU0, the contender alone on CPU1; contenders
// alternate in an order rotated every round; "× nginx" is the median of per-round ratios.
// Benchmarks report; they never assert on timings. Usage: node bench/tls.ts --help

import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { makeCa, makeLeaf } from "../test/tls-certs.ts";
import {
  CLK_TCK,
  descendants,
  type Env,
  fmt,
  fmtRps,
  fmtUs,
  freePort,
  GEN_CPU,
  listenerOwner,
  loadavg,
  median,
  nginxArgs,
  nginxProxyConf,
  originConf,
  otherTicks,
  PROXY_CPU,
  type Proc,
  procs,
  REPO,
  readProcs,
  signalTree,
  snapshot,
  start,
  stopAll,
  treeTicks,
  version,
  waitCalm,
  waitProxying,
  which,
  wrk,
} from "./lib.ts";

const run = promisify(execFile);
const CONTENDERS = ["nginx", "agw"] as const;
type ContenderName = (typeof CONTENDERS)[number];
const KINDS = ["full", "resumed", "https"] as const;
type Kind = (typeof KINDS)[number];

const USAGE = `usage: node bench/tls.ts [options]
  --rounds N        rounds, order rotated each round (default 3)
  --duration S      seconds per run (default 5)
  --clients K       parallel s_time clients for the handshake runs (default 4)
  --connections C   wrk connections of the keep-alive run (default 64)
  --key rsa|ec      certificate key: RSA 2048 or ECDSA P-256 (default rsa)
  --tls 1.3|1.2     protocol version (default 1.3)
  --calm-wait S     before each run, wait up to S seconds for a calm second (default 30)
  --json FILE       write the raw results as JSON
  --keep            keep the temp dir (configs, certificates, logs)`;

// One cipher for both contenders and both versions; the TLS 1.3 suite goes to nginx through
// ssl_conf_command (ssl_ciphers only sets TLS 1.2 ciphers there), to AGW in the same cipher string.
const TLS13_SUITE = "TLS_AES_128_GCM_SHA256";
const tls12Cipher = (key: string) =>
  key === "rsa" ? "ECDHE-RSA-AES128-GCM-SHA256" : "ECDHE-ECDSA-AES128-GCM-SHA256";

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        rounds: { type: "string", default: "3" },
        duration: { type: "string", default: "5" },
        clients: { type: "string", default: "4" },
        connections: { type: "string", default: "64" },
        key: { type: "string", default: "rsa" },
        tls: { type: "string", default: "1.3" },
        "calm-wait": { type: "string", default: "30" },
        json: { type: "string" },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    return fail(`${(err as Error).message}\n${USAGE}`);
  }
})();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(1);
}
const int = (name: string, text: string): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive integer, got "${text}"`);
  return n;
};
function oneOf<T extends string>(name: string, text: string, allowed: readonly T[]): T {
  const found = allowed.find((a) => a === text);
  return found ?? fail(`--${name} must be one of ${allowed.join(", ")}, got "${text}"`);
}
const opts = {
  rounds: int("rounds", values.rounds),
  duration: int("duration", values.duration),
  clients: int("clients", values.clients),
  connections: int("connections", values.connections),
  key: oneOf("key", values.key, ["rsa", "ec"] as const),
  tls: oneOf("tls", values.tls, ["1.3", "1.2"] as const),
  calmWait: int("calm-wait", values["calm-wait"]),
};
const sessionFlag = opts.tls === "1.3" ? "-tls1_3" : "-tls1_2";
const expectedCipher = opts.tls === "1.3" ? TLS13_SUITE : tls12Cipher(opts.key);

// ---------------------------------------------------------------- contenders

interface Contender {
  name: ContenderName;
  proc: Proc;
  port: number;
  /** The process whose CPU is counted: nginx's master + worker, AGW's whole tree. */
  pids(): number[];
}

interface Certificate {
  certFile: string;
  keyFile: string;
}

function nginxTls(cert: Certificate): string {
  return `    ssl_certificate ${cert.certFile};
    ssl_certificate_key ${cert.keyFile};
    ssl_protocols TLSv${opts.tls};
    ssl_ciphers ${tls12Cipher(opts.key)};
    ssl_conf_command Ciphersuites ${TLS13_SUITE};
    ssl_prefer_server_ciphers on;
    ssl_session_tickets on;
`;
}

function agwConf(port: number, origin: number, cert: Certificate): string {
  return `secrets:
  - name: site
    certificate: { file: ${cert.certFile} }
    key: { file: ${cert.keyFile} }
listeners:
  - name: bench
    address: 127.0.0.1
    port: ${port}
    protocol: https
    tls:
      certificates: [site]
      minVersion: TLSv${opts.tls}
      ciphers: ${TLS13_SUITE}:${tls12Cipher(opts.key)}
      alpn: [http/1.1]
    routes:
      - name: all
        cluster: origin
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${origin}"]
`;
}

async function startContender(
  env: Env,
  name: ContenderName,
  originPort: number,
  cert: Certificate,
): Promise<Contender> {
  const port = await freePort();
  let proc: Proc;
  if (name === "nginx") {
    const dir = path.join(env.tmp, "nginx");
    const conf = path.join(env.tmp, "nginx.conf");
    fs.writeFileSync(conf, nginxProxyConf(dir, port, originPort, { tls: nginxTls(cert) }));
    proc = start(env, name, PROXY_CPU, nginxArgs(env, dir, conf));
  } else {
    const conf = path.join(env.tmp, "agw.yaml");
    fs.writeFileSync(conf, agwConf(port, originPort, cert));
    const argv = [process.execPath, path.join(REPO, "cli/src/main.ts"), "run", "-c", conf];
    for (const flag of ["--admin", "--xds-listen", "--cp-admin"])
      argv.push(flag, `127.0.0.1:${await freePort()}`);
    proc = start(env, name, PROXY_CPU, argv);
  }
  await waitProxying(proc, `https://127.0.0.1:${port}/`, name === "agw" ? 60_000 : 15_000);
  const tree = () => [proc.pid, ...descendants(readProcs(), proc.pid)];
  const owner = listenerOwner(port, tree());
  console.log(`${name} on 127.0.0.1:${port}, pids ${tree().join(", ")} (listener in ${owner ?? "?"})`);
  return { name, proc, port, pids: tree };
}

/** The version and cipher a client negotiates with `port`, as s_client prints them. */
async function negotiated(port: number): Promise<string> {
  const { stdout } = await run(
    "sh",
    ["-c", `openssl s_client ${sessionFlag} -connect 127.0.0.1:${port} </dev/null 2>/dev/null; true`],
    { timeout: 10_000 },
  );
  return /^(New|Reused), (TLSv[\d.]+), Cipher is (\S+)/m.exec(stdout)?.slice(2).join(" ") ?? "nothing";
}

// ---------------------------------------------------------------- measuring

interface Run {
  contender: ContenderName;
  kind: Kind;
  round: number;
  /** Handshakes (connections) or requests per second. */
  rate: number;
  count: number;
  /** Resumed handshakes / all handshakes (s_time marks each connection "r" when resumed). */
  resumedShare: number | undefined;
  p50Us: number | undefined;
  p99Us: number | undefined;
  cpuUsPerOp: number;
  otherCpuPct: number;
  errors: number;
}

/** `clients` parallel s_time processes on CPU0 for `seconds`; each connection sends GET / and reads it. */
async function sTime(
  env: Env,
  port: number,
  resumed: boolean,
): Promise<{ count: number; seconds: number; resumed: number; errors: number }> {
  const args = [
    "s_time",
    "-connect",
    `127.0.0.1:${port}`,
    sessionFlag,
    resumed ? "-reuse" : "-new",
    // A TLS 1.3 ticket arrives after the handshake: without a request read to the end, s_time never
    // gets one and -reuse would measure full handshakes.
    "-www",
    "/",
    "-time",
    String(opts.duration),
  ];
  const t0 = performance.now();
  const clients = Array.from({ length: opts.clients }, (_, i) =>
    start(env, `s_time-${i}`, GEN_CPU, [which("openssl") ?? "openssl", ...args]),
  );
  const timer = setTimeout(
    () => {
      for (const c of clients) signalTree(c, "SIGKILL");
    },
    (opts.duration + 30) * 1000,
  );
  const codes = await Promise.all(clients.map((c) => c.exit));
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  let count = 0;
  let reused = 0;
  let errors = 0;
  for (const [i, c] of clients.entries()) {
    const out = fs.readFileSync(c.log, "utf8");
    const m = /^(\d+) connections in [\d.]+s;/m.exec(out);
    if (codes[i] !== 0 || !m) errors++;
    count += Number(m?.[1] ?? 0);
    // Progress lines: one character per connection, "r" when it resumed a session ("*", "t": full).
    for (const line of out.match(/^[rt3*]+$/gm) ?? []) reused += line.replaceAll(/[^r]/g, "").length;
  }
  return { count, seconds, resumed: reused, errors };
}

async function measure(env: Env, c: Contender, kind: Kind, round: number): Promise<Run> {
  await waitCalm(25, opts.calmWait);
  const pids = c.pids();
  const before = snapshot();
  let rate: number;
  let count: number;
  let resumedShare: number | undefined;
  let p50Us: number | undefined;
  let p99Us: number | undefined;
  let errors: number;
  if (kind === "https") {
    const r = await wrk(env, `https://127.0.0.1:${c.port}/`, opts.connections, opts.duration);
    rate = r.rps;
    count = r.requests;
    p50Us = r.p50Us;
    p99Us = r.p99Us;
    errors = r.non2xx + r.socketErrors;
  } else {
    const r = await sTime(env, c.port, kind === "resumed");
    rate = r.count / r.seconds;
    count = r.count;
    resumedShare = r.count === 0 ? 0 : r.resumed / r.count;
    errors = r.errors;
  }
  const after = snapshot();
  const ticks = treeTicks(after.table, pids) - treeTicks(before.table, pids);
  const run: Run = {
    contender: c.name,
    kind,
    round,
    rate,
    count,
    resumedShare,
    p50Us,
    p99Us,
    cpuUsPerOp: ((ticks / CLK_TCK) * 1e6) / Math.max(count, 1),
    otherCpuPct: (100 * otherTicks(before, after)) / CLK_TCK / ((after.at - before.at) / 1000),
    errors,
  };
  console.log(
    [
      `round ${round} ${kind.padEnd(7)} ${c.name.padEnd(5)} ${fmtRps(rate).padStart(6)}/s`,
      `${fmt(run.cpuUsPerOp)} CPU-µs/op`,
      resumedShare === undefined ? "" : `resumed ${fmt(100 * resumedShare)}%`,
      p50Us === undefined ? "" : `p50 ${fmtUs(p50Us)} p99 ${fmtUs(p99Us ?? 0)}`,
      `other CPU ${fmt(run.otherCpuPct)}%`,
      errors > 0 ? `!!! ${errors} errors` : "",
    ]
      .filter(Boolean)
      .join("  "),
  );
  return run;
}

function table(runs: Run[], kind: Kind): string {
  const head = ["contender", kind === "https" ? "req/s" : "conn/s", "× nginx", "CPU-µs/op"];
  if (kind === "https") head.push("p50", "p99");
  if (kind === "resumed") head.push("resumed");
  head.push("other CPU (max)", "errors");
  const lines = CONTENDERS.flatMap((name) => {
    const mine = runs.filter((r) => r.contender === name && r.kind === kind);
    if (mine.length === 0) return [];
    const ratios = mine.flatMap((r) => {
      const base = runs.find((n) => n.contender === "nginx" && n.kind === kind && n.round === r.round);
      return base ? [r.rate / base.rate] : [];
    });
    const row = [name, fmtRps(median(mine.map((r) => r.rate))), fmt(median(ratios), 2)];
    row.push(fmt(median(mine.map((r) => r.cpuUsPerOp))));
    if (kind === "https")
      row.push(fmtUs(median(mine.map((r) => r.p50Us ?? 0))), fmtUs(median(mine.map((r) => r.p99Us ?? 0))));
    if (kind === "resumed") row.push(`${fmt(100 * median(mine.map((r) => r.resumedShare ?? 0)))}%`);
    row.push(`${fmt(Math.max(...mine.map((r) => r.otherCpuPct)))}%`);
    row.push(String(mine.reduce((s, r) => s + r.errors, 0)));
    return [row];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [row(head), row(widths.map((w) => "-".repeat(w))), ...lines.map(row)].join("\n");
}

// ---------------------------------------------------------------- main

async function main(env: Env, command: string): Promise<number> {
  const date = new Date().toISOString();
  const loadBefore = loadavg();
  const versions = [
    `node ${process.version}`,
    version(env.tools.nginx, ["-v"]),
    version("openssl", ["version"]),
    version(env.tools.wrk, ["-v"]),
  ];
  console.log(`# ${command}\n${date}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"})`);
  console.log(`${versions.join("; ")}\nload average before: ${loadBefore}\nfiles in ${env.tmp}`);

  const ca = makeCa(env.tmp, "bench-ca", opts.key);
  const cert = makeLeaf(env.tmp, ca, {
    cn: "bench.test",
    sans: ["DNS:bench.test"],
    type: opts.key,
    file: "site",
  });

  const originPort = await freePort();
  fs.writeFileSync(path.join(env.tmp, "origin.conf"), originConf(path.join(env.tmp, "origin"), originPort));
  const origin = start(
    env,
    "origin",
    GEN_CPU,
    nginxArgs(env, path.join(env.tmp, "origin"), path.join(env.tmp, "origin.conf")),
  );
  await waitProxying(origin, `http://127.0.0.1:${originPort}/`, 15_000);
  const contenders: Contender[] = [];
  for (const name of CONTENDERS) contenders.push(await startContender(env, name, originPort, cert));
  for (const c of contenders) {
    const got = await negotiated(c.port);
    console.log(`${c.name} negotiates ${got}`);
    if (got !== `TLSv${opts.tls} ${expectedCipher}`)
      throw new Error(`${c.name} negotiated ${got}, not TLSv${opts.tls} ${expectedCipher}`);
  }
  // Unrecorded warm-up (JIT, pools).
  for (const c of contenders) await wrk(env, `https://127.0.0.1:${c.port}/`, opts.connections, 2);

  const runs: Run[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const shift = (round - 1) % contenders.length;
    const order = [...contenders.slice(shift), ...contenders.slice(0, shift)];
    for (const kind of KINDS) for (const c of order) runs.push(await measure(env, c, kind, round));
  }
  const loadAfter = loadavg();

  console.log(`\n# ${command}\n${date}; load average before: ${loadBefore}; after: ${loadAfter}`);
  console.log(
    `${opts.key === "rsa" ? "RSA 2048" : "ECDSA P-256"} certificate, TLSv${opts.tls} ${expectedCipher}`,
  );
  const what: Record<Kind, string> = {
    full: `full handshakes: ${opts.clients} × openssl s_time -new -www / (one HTTP/1.0 request per connection)`,
    resumed: `resumed handshakes: ${opts.clients} × openssl s_time -reuse -www /`,
    https: `HTTPS keep-alive: wrk -t1 -c${opts.connections} -d${opts.duration}s`,
  };
  for (const kind of KINDS) {
    console.log(`\n${what[kind]}; medians of ${opts.rounds} rounds\n`);
    console.log(table(runs, kind));
  }
  console.log(
    "\nCPU-µs/op: CPU time of the contender's processes / connections (full, resumed) or requests (https)." +
      "\nother CPU: busy CPU time not used by processes this bench started, % of one core, worst run.",
  );
  if (values.json) {
    const raw = { command, date, loadBefore, loadAfter, versions, options: opts, runs };
    fs.writeFileSync(values.json, `${JSON.stringify(raw, null, 2)}\n`);
  }
  return runs.some((r) => r.errors > 0) ? 2 : 0;
}

process.on("exit", () => {
  for (const p of procs) signalTree(p, "SIGKILL");
});

const found = {
  nginx: which("nginx"),
  wrk: which("wrk"),
  taskset: which("taskset"),
  openssl: which("openssl"),
};
const missing = Object.entries(found).flatMap(([cmd, file]) => (file ? [] : [cmd]));
if (missing.length > 0)
  fail(`missing ${missing.join(", ")} (Debian: apt-get install nginx-light wrk openssl)`);
if (os.availableParallelism() < 2) fail("needs 2 CPUs: clients and the origin on CPU0, the proxy on CPU1");
execFileSync(found.taskset as string, ["-a", "-p", "-c", GEN_CPU, String(process.pid)], { stdio: "ignore" });
const env: Env = {
  tmp: fs.mkdtempSync(path.join(os.tmpdir(), "agw-bench-tls-")),
  tools: { nginx: found.nginx as string, wrk: found.wrk as string, taskset: found.taskset as string },
};
let finishing = false;
const finish = async (code: number) => {
  if (finishing) return;
  finishing = true;
  await stopAll();
  if (code === 0 && !values.keep) fs.rmSync(env.tmp, { recursive: true, force: true });
  else console.error(`files kept in ${env.tmp}`);
  process.exit(code);
};
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => void finish(130));
}
main(env, `node bench/tls.ts ${process.argv.slice(2).join(" ")}`.trim()).then(finish, (err: unknown) => {
  if (!finishing) console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  void finish(1);
});
