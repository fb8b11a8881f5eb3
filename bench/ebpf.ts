/**
 * The eBPF agent on vs off, alternating in one run (root only):
 *  - client (wrk, outside the cgroup) → gateway (`agw run`) → app, gateway and app in a cgroup the
 *    agent is attached to: latency at -c1, throughput at -c64;
 *  - raw sockets in the cgroup: 64-byte ping-pong round trips, and bulk transfer with 64 KiB and 4 KiB writes.
 * Usage: node bench/ebpf.ts [--rounds 3] [--seconds 5]
 */
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { cgroup2Root, startAgent } from "@agw/ebpf-agent";
import { parseWrk, type WrkResult } from "./wrk.ts";

const run = promisify(execFile);
const { values } = parseArgs({
  options: { rounds: { type: "string", default: "3" }, seconds: { type: "string", default: "5" } },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const ROOT = new URL("..", import.meta.url).pathname;
const CLI = join(ROOT, "cli/src/main.ts");

const cgroup = join(cgroup2Root() ?? "/sys/fs/cgroup", `agw-bench-${process.pid}`);
mkdirSync(cgroup);

function spawnIn(command: string, args: string[]) {
  const child = spawn("sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, command, ...args], {
    env: { ...process.env, AGW_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return {
    child,
    output: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill();
      }),
  };
}

async function until(what: string, probe: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** A keep-alive HTTP/1.1 app answering every request with a fixed ~100-byte body. */
const APP = `
import net from "node:net";
const body = "x".repeat(100);
const res = Buffer.from("HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\ncontent-length: " + body.length + "\\r\\n\\r\\n" + body);
net.createServer((s) => {
  let buf = "";
  s.on("data", (d) => {
    buf += d.toString("latin1");
    let end;
    while ((end = buf.indexOf("\\r\\n\\r\\n")) >= 0) { buf = buf.slice(end + 4); s.write(res); }
  });
}).listen(Number(process.argv[1]), "127.0.0.1", () => console.log("listening"));
`;

async function gatewayRound(): Promise<{ c1: WrkResult; c64: WrkResult }> {
  const [appPort, listenerPort, xdsPort, adminPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const app = spawnIn(process.execPath, ["--input-type=module", "-e", APP, String(appPort)]);
  const dir = mkdtempSync(join(tmpdir(), "agw-bench-ebpf-"));
  writeFileSync(
    join(dir, "config.yaml"),
    `listeners:\n  - name: web\n    address: 127.0.0.1\n    port: ${listenerPort}\n    routes:\n      - name: all\n        cluster: app\nclusters:\n  - name: app\n    endpoints:\n      - 127.0.0.1:${appPort}\n`,
  );
  const gateway = spawnIn(process.execPath, [
    CLI,
    "run",
    "-c",
    join(dir, "config.yaml"),
    "--xds-listen",
    `127.0.0.1:${xdsPort}`,
    "--admin",
    `127.0.0.1:${adminPort}`,
    "--cp-admin",
    "127.0.0.1:0",
  ]);
  try {
    await until("the app", () => app.output().includes("listening"));
    await until("the gateway", () => gateway.output().includes("AGW is running"));
    const wrk = async (connections: number) =>
      parseWrk(
        (
          await run("wrk", [
            `-t1`,
            `-c${connections}`,
            `-d${seconds}s`,
            "--latency",
            `http://127.0.0.1:${listenerPort}/`,
          ])
        ).stdout,
      );
    await wrk(8); // warm-up: JIT and the gateway's upstream pool
    return { c1: await wrk(1), c64: await wrk(64) };
  } finally {
    await gateway.stop();
    await app.stop();
  }
}

/** Raw sockets: ping-pong round trips (µs percentiles) and bulk MiB/s with two write sizes. */
const RAW = `
import net from "node:net";
const server = net.createServer();
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const accepted = new Promise((r) => server.once("connection", r));
const client = net.connect(server.address().port, "127.0.0.1");
await new Promise((r) => client.once("connect", r));
const peer = await accepted;
client.setNoDelay(true); peer.setNoDelay(true);
peer.on("data", (d) => peer.write(d));
const ping = Buffer.alloc(64, 1);
const times = [];
await new Promise((done) => {
  let t = 0, n = 0;
  client.on("data", () => { times.push(performance.now() - t); if (++n === 20000) done(); else { t = performance.now(); client.write(ping); } });
  t = performance.now(); client.write(ping);
});
client.removeAllListeners("data"); peer.removeAllListeners("data");
times.sort((a, b) => a - b);
const pct = (p) => times[Math.floor(times.length * p)] * 1000;
const bulk = async (size) => {
  const total = 256 * 1024 * 1024, chunk = Buffer.alloc(size, 2);
  let got = 0; const t0 = performance.now();
  const finished = new Promise((r) => peer.on("data", (d) => { got += d.length; if (got >= total) r(); }));
  for (let sent = 0; sent < total; sent += size) if (!client.write(chunk)) await new Promise((r) => client.once("drain", r));
  await finished; peer.removeAllListeners("data");
  return total / 1048576 / ((performance.now() - t0) / 1000);
};
const out = { p50: pct(0.5), p99: pct(0.99), bulk64k: await bulk(65536), bulk4k: await bulk(4096) };
console.log(JSON.stringify(out));
process.exit(0);
`;

async function rawRound(): Promise<{ p50: number; p99: number; bulk64k: number; bulk4k: number }> {
  const proc = spawnIn(process.execPath, ["--input-type=module", "-e", RAW]);
  await until("the raw socket run", () => proc.output().includes("}"), 120_000);
  return JSON.parse(proc.output());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
type Sample = { c1: WrkResult; c64: WrkResult; raw: Awaited<ReturnType<typeof rawRound>> };
const samples: Record<"off" | "on", Sample[]> = { off: [], on: [] };

try {
  for (let round = 0; round < rounds; round++) {
    for (const mode of round % 2 ? (["on", "off"] as const) : (["off", "on"] as const)) {
      const agent = mode === "on" ? await startAgent({ cgroupPath: cgroup }) : undefined;
      try {
        const { c1, c64 } = await gatewayRound();
        const raw = await rawRound();
        samples[mode].push({ c1, c64, raw });
        const counters = agent?.counters();
        console.error(
          `round ${round + 1} ${mode}: c1 p50 ${c1.p50Us}µs, c64 ${Math.round(c64.rps)} req/s, ping-pong p50 ${raw.p50.toFixed(1)}µs` +
            (counters ? `, redirects ${counters.redirects}, passed ${counters.passed_bytes} B` : ""),
        );
      } finally {
        agent?.close();
      }
    }
  }
} finally {
  await new Promise((r) => setTimeout(r, 500));
  try {
    rmdirSync(cgroup);
  } catch {}
}

const rows: Array<[string, (s: Sample) => number, string, boolean]> = [
  ["gateway -c1 p50", (s) => s.c1.p50Us, "µs", false],
  ["gateway -c1 p99", (s) => s.c1.p99Us, "µs", false],
  ["gateway -c1 req/s", (s) => s.c1.rps, "", true],
  ["gateway -c64 req/s", (s) => s.c64.rps, "", true],
  ["gateway -c64 p50", (s) => s.c64.p50Us, "µs", false],
  ["gateway -c64 p99", (s) => s.c64.p99Us, "µs", false],
  ["raw ping-pong p50", (s) => s.raw.p50, "µs", false],
  ["raw ping-pong p99", (s) => s.raw.p99, "µs", false],
  ["raw bulk, 64 KiB writes", (s) => s.raw.bulk64k, "MiB/s", true],
  ["raw bulk, 4 KiB writes", (s) => s.raw.bulk4k, "MiB/s", true],
];
console.log(`| measure (median of ${rounds} rounds) | agent off | agent on | on vs off |`);
console.log("| --- | --- | --- | --- |");
for (const [name, pick, unit, higherIsBetter] of rows) {
  const off = median(samples.off.map(pick));
  const on = median(samples.on.map(pick));
  const ratios = samples.on.map((s, i) => {
    const o = samples.off[i];
    return o ? (higherIsBetter ? pick(s) / pick(o) : pick(o) / pick(s)) : Number.NaN;
  });
  console.log(
    `| ${name} | ${off.toFixed(1)} ${unit} | ${on.toFixed(1)} ${unit} | ${median(ratios).toFixed(2)}× ${higherIsBetter ? "(higher is better)" : "faster"} |`,
  );
}
