// AGW vs nginx, haproxy and Pingora as reverse proxies in front of one nginx origin: HTTP/1.1 with wrk,
// HTTP/2 (h2c) downstream with h2load, with 1 and with 2 workers each, and wrk straight at the origin
// ("direct") for the latency a proxy adds. Method and how to read the output: bench/README.md.
// Usage: node bench/run.ts --help
//
// 1 worker: origin and load generator share CPU0; each contender runs alone on CPU1 (idle ones just sit
// there). 2 workers: the contender, the origin and the load generator all share both CPUs.
// Contenders alternate, their order rotated every round, and figures are medians over rounds;
// "× nginx" (or × --baseline) is the median of per-round ratios, the figure that survives a shared, drifting machine.
// Benchmarks report; they never assert on timings.

import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  type Env as BenchEnv,
  CLK_TCK,
  descendants,
  fmt,
  fmtRps,
  fmtUs,
  freePort,
  GEN_CPU,
  h2load,
  listenerOwner,
  loadavg,
  median,
  nginxArgs,
  nginxProxyConf,
  originConf,
  otherTicks,
  PROXY_CPU,
  type Proc,
  pinTree,
  procs,
  REPO,
  readProcs,
  signalTree,
  snapshot,
  start,
  statusKiB,
  stopAll,
  tail,
  treeTicks,
  version,
  waitCalm,
  waitProxying,
  which,
  wrk,
} from "./lib.ts";
import type { WrkResult } from "./wrk.ts";

// agw-bare and agw-log measure what observing requests costs: agw keeps per-request metrics (its
// default), agw-bare keeps none (--no-request-metrics), agw-log adds a JSON access log to a file.
// agw-nostats sends no fleet stats; agw-stats1s reports them every second instead of every 5 s (the
// stats stream's cost: --only agw-nostats,agw-stats1s --baseline agw-nostats).
// direct is no proxy: the load generator goes straight to the origin. agw-before is AGW from another
// checkout (--agw-before DIR, e.g. a git worktree at the commit before a change): the A/B of a change
// on the hot path, side by side in one run.
const CONTENDERS = [
  "direct",
  "nginx",
  "haproxy",
  "agw",
  "agw-bare",
  "agw-log",
  "agw-before",
  "agw-nostats",
  "agw-stats1s",
  "pingora",
] as const;
type ContenderName = (typeof CONTENDERS)[number];
const ALL_CPUS = `${GEN_CPU},${PROXY_CPU}`;
const AGW_FLAGS: Partial<Record<ContenderName, (tmp: string) => string[]>> = {
  agw: () => [],
  "agw-bare": () => ["--no-request-metrics"],
  "agw-log": (tmp) => ["--access-log", path.join(tmp, "access.log")],
  "agw-nostats": () => ["--no-stats-report"],
  "agw-stats1s": () => ["--stats-interval", "1000"],
};

const USAGE = `usage: node bench/run.ts [options]
  --rounds N               rounds, order rotated each round (default 3; use 5 for headline figures)
  --duration S             seconds per throughput run (default 10)
  --connections C          connections of the throughput run (default 64)
  --latency-connections L  comma list of extra low-concurrency runs (default 1,8; "" for none)
  --latency-duration S     seconds per latency run (default 5)
  --workers LIST           comma list of worker counts, each contender run with each (default 1,2)
  --h2-clients N           HTTP/2 runs: h2load connections (default 8; 0 for no HTTP/2 runs)
  --h2-streams M           HTTP/2 runs: concurrent streams per connection (default 8)
  --h2-only                only the HTTP/2 runs, no wrk runs
  --warmup S               unrecorded warm-up per contender before round 1 (default 3)
  --only LIST              contenders, comma list of ${CONTENDERS.join(",")}
                           (default direct,nginx,haproxy,agw,pingora; pingora only once
                           bench/pingora/build.sh has built it)
  --baseline NAME          the contender the "×" column divides by (default nginx)
  --agw-before DIR         the agw-before contender runs AGW from this checkout (npm ci done there)
  --retries N              re-runs of a run disturbed by CPU use not ours (default 2)
  --disturbed PCT          a run is disturbed when busy CPU not ours exceeds PCT% of a core (default 25)
  --calm-wait S            before each run, wait up to S seconds for a calm second (default 60)
  --json FILE              write the raw results as JSON
  --keep                   keep the temp dir (configs and logs); it is always kept on failure`;

// ---------------------------------------------------------------- options

interface Options {
  rounds: number;
  duration: number;
  connections: number;
  latencyConnections: number[];
  latencyDuration: number;
  workers: number[];
  h2Clients: number;
  h2Streams: number;
  h2Only: boolean;
  warmup: number;
  only: ContenderName[];
  baseline: ContenderName;
  agwBefore: string | undefined;
  retries: number;
  disturbedPct: number;
  calmWait: number;
  json: string | undefined;
  keep: boolean;
}

const FLAGS = {
  rounds: { type: "string", default: "3" },
  duration: { type: "string", default: "10" },
  connections: { type: "string", default: "64" },
  "latency-connections": { type: "string", default: "1,8" },
  "latency-duration": { type: "string", default: "5" },
  workers: { type: "string", default: "1,2" },
  "h2-clients": { type: "string", default: "8" },
  "h2-streams": { type: "string", default: "8" },
  "h2-only": { type: "boolean", default: false },
  warmup: { type: "string", default: "3" },
  only: { type: "string", default: "direct,nginx,haproxy,agw,pingora" },
  baseline: { type: "string", default: "nginx" },
  "agw-before": { type: "string" },
  retries: { type: "string", default: "2" },
  disturbed: { type: "string", default: "25" },
  "calm-wait": { type: "string", default: "60" },
  json: { type: "string" },
  keep: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

function parseOptions(argv: string[]): Options {
  const { values } = (() => {
    try {
      return parseArgs({ args: argv, options: FLAGS, strict: true });
    } catch (err) {
      return fail(`${(err as Error).message}\n${USAGE}`);
    }
  })();
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min}, got "${text}"`);
    return n;
  };
  const only = values.only.split(",").filter(Boolean);
  for (const name of only) {
    if (!(CONTENDERS as readonly string[]).includes(name)) {
      fail(`--only: unknown contender "${name}" (known: ${CONTENDERS.join(", ")})`);
    }
  }
  if (only.length === 0) fail("--only: no contender given");
  const agwBefore = values["agw-before"] && path.resolve(values["agw-before"]);
  if (only.includes("agw-before") !== (agwBefore !== undefined))
    fail("--agw-before DIR and the agw-before contender in --only go together");
  if (agwBefore && !fs.existsSync(path.join(agwBefore, "cli/src/main.ts")))
    fail(`--agw-before: ${agwBefore} is not an AGW checkout (no cli/src/main.ts)`);
  if (!only.includes(values.baseline)) fail(`--baseline: "${values.baseline}" is not among --only`);
  if (values.baseline === "direct") fail("--baseline: direct is no proxy; pick a proxy");
  const workers = values.workers.split(",").map((w) => int("workers", w, 1));
  if (workers.some((w) => w > 2)) fail("--workers: at most 2 (the bench pins to two CPUs)");
  if (values["h2-only"] && values["h2-clients"] === "0")
    fail("--h2-only with --h2-clients 0 leaves nothing to run");
  return {
    rounds: int("rounds", values.rounds, 1),
    duration: int("duration", values.duration, 1),
    connections: int("connections", values.connections, 1),
    latencyConnections: values["latency-connections"]
      .split(",")
      .filter(Boolean)
      .map((c) => int("latency-connections", c, 1)),
    latencyDuration: int("latency-duration", values["latency-duration"], 1),
    workers,
    h2Clients: int("h2-clients", values["h2-clients"], 0),
    h2Streams: int("h2-streams", values["h2-streams"], 1),
    h2Only: values["h2-only"],
    warmup: int("warmup", values.warmup, 0),
    only: only as ContenderName[],
    baseline: values.baseline as ContenderName,
    agwBefore,
    retries: int("retries", values.retries, 0),
    disturbedPct: int("disturbed", values.disturbed, 0),
    calmWait: int("calm-wait", values["calm-wait"], 0),
    json: values.json,
    keep: values.keep,
  };
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(1);
}

type Tools = Record<"nginx" | "haproxy" | "wrk" | "taskset" | "h2load", string> & { pingora?: string };
type Env = BenchEnv<Tools>;

function requireTools(names: ContenderName[], h2: boolean): Tools {
  const wanted = [
    ["nginx", "nginx-light"], // always: it is the origin
    ["wrk", "wrk"],
    ["taskset", "util-linux"],
    ...(names.includes("haproxy") ? [["haproxy", "haproxy"]] : []),
    ...(h2 ? [["h2load", "nghttp2-client"]] : []),
  ];
  const found: Record<string, string> = {};
  const missing: string[] = [];
  for (const [cmd, pkg] of wanted as [string, string][]) {
    const file = which(cmd);
    if (file) found[cmd] = file;
    else missing.push(pkg);
  }
  if (missing.length > 0) {
    console.error(`bench: missing ${missing.join(", ")}. On Debian/Ubuntu install with:`);
    console.error(`  sudo apt-get install -y ${missing.join(" ")}`);
    console.error("(the bench starts its own instances on free loopback ports; no system service is needed)");
    if (h2) console.error("(h2load is for the HTTP/2 runs: --h2-clients 0 goes without them)");
    process.exit(1);
  }
  return found as Tools;
}

/** The Pingora contender's binary if bench/pingora/build.sh has built it for the current sources. */
function pingoraBinary(): { bin: string } | { reason: string } {
  const script = path.join(REPO, "bench/pingora/build.sh");
  const r = spawnSync("bash", [script, "--if-built"], { encoding: "utf8", timeout: 10_000 });
  const bin = r.stdout.trim();
  if (r.status === 0 && bin) return { bin };
  return { reason: r.stderr.trim() || `${script} --if-built exited ${r.status ?? r.signal}` };
}

// haproxy spots the HTTP/2 preface on a plain bind by itself: the same port serves h2c.
function haproxyConf(port: number, origin: number, workers: number): string {
  return `global
  nbthread ${workers}
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always

frontend bench
  bind 127.0.0.1:${port}
  default_backend origin

backend origin
  server origin 127.0.0.1:${origin} maxconn 1024
`;
}

function agwConf(port: number, origin: number): string {
  return `listeners:
  - name: bench
    address: 127.0.0.1
    port: ${port}
    routes:
      - name: all
        cluster: origin
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${origin}"]
`;
}

// ---------------------------------------------------------------- measuring

/** One kind of load: wrk at some connection count, or h2load with clients × streams. */
interface Level {
  key: string;
  label: string;
  h2: boolean;
  connections: number;
  streams: number;
  seconds: number;
}

interface Contender {
  name: ContenderName;
  workers: number;
  proc: Proc;
  port: number;
  /** Where it takes HTTP/2 with prior knowledge; undefined: no HTTP/2 runs for it. */
  h2Port: number | undefined;
  /** AGW: the data-plane process (owner of the listening socket). */
  dataPlanePid: number | undefined;
}

interface Run {
  contender: string;
  workers: number;
  level: string;
  round: number;
  attempt: number;
  /** The load generator's result: wrk's, or h2load's in the same shape. */
  wrk: WrkResult;
  cpuUsPerReq: number;
  dataPlaneCpuUsPerReq: number | undefined;
  /** CPU time of the contender's processes over the run, % of one core. */
  contenderCpuPct: number;
  rssMiB: number;
  pssMiB: number;
  /** Busy % of CPU0 and CPU1 over the run. */
  cpuBusyPct: number[];
  /** Busy CPU (all cores) not used by this bench's processes, % of one core. */
  otherCpuPct: number;
}

/** Where the load generator (and the origin) run: alone on CPU0 next to a 1-worker contender, else anywhere. */
const genCpus = (workers: number) => (workers === 1 ? GEN_CPU : ALL_CPUS);

async function measure(
  env: Env,
  c: Contender,
  level: Level,
  seconds: number,
): Promise<Omit<Run, "round" | "attempt">> {
  let peakRss = 0;
  let peakPss = 0;
  const sampleMemory = () => {
    const pids = [c.proc.pid, ...descendants(readProcs(), c.proc.pid)];
    const sum = (file: "status" | "smaps_rollup", key: "VmRSS" | "Pss") =>
      pids.reduce((kib, pid) => kib + statusKiB(pid, file, key), 0);
    peakRss = Math.max(peakRss, sum("status", "VmRSS"));
    peakPss = Math.max(peakPss, sum("smaps_rollup", "Pss"));
  };
  const before = snapshot();
  const timer = setInterval(sampleMemory, 1000);
  let result: WrkResult;
  try {
    const cpus = genCpus(c.workers);
    result = level.h2
      ? await h2load(env, `http://127.0.0.1:${c.h2Port}/`, level.connections, level.streams, seconds, cpus)
      : await wrk(env, `http://127.0.0.1:${c.port}/`, level.connections, seconds, cpus);
  } finally {
    clearInterval(timer);
  }
  const after = snapshot();
  if (peakRss === 0) sampleMemory();
  const ticks = (pids: number[]) => treeTicks(after.table, pids) - treeTicks(before.table, pids);
  const usPerReq = (pids: number[]) => (ticks(pids) / CLK_TCK / result.requests) * 1e6;
  const tree = [c.proc.pid, ...descendants(after.table, c.proc.pid)];
  const wallS = (after.at - before.at) / 1000;
  return {
    contender: c.name,
    workers: c.workers,
    level: level.key,
    wrk: result,
    cpuUsPerReq: usPerReq(tree),
    dataPlaneCpuUsPerReq: c.dataPlanePid === undefined ? undefined : usPerReq([c.dataPlanePid]),
    contenderCpuPct: (100 * ticks(tree)) / CLK_TCK / wallS,
    rssMiB: peakRss / 1024,
    pssMiB: peakPss / 1024,
    cpuBusyPct: after.cpus.map((cpu, i) => {
      const b = before.cpus[i] ?? { busy: 0, total: 0 };
      return cpu.total === b.total ? 0 : (100 * (cpu.busy - b.busy)) / (cpu.total - b.total);
    }),
    otherCpuPct: (100 * otherTicks(before, after)) / CLK_TCK / wallS,
  };
}

interface Summary {
  contender: string;
  workers: number;
  level: string;
  rounds: number;
  rps: number;
  ratioToBaseline: number;
  /** Median of per-round ratios of CPU-µs/req to the baseline's. */
  cpuRatioToBaseline: number;
  p50Us: number;
  p99Us: number;
  /** Median over rounds of (this p50/p99 − direct's in the same round): the latency the proxy adds. */
  addedP50Us: number;
  addedP99Us: number;
  cpuUsPerReq: number;
  dataPlaneCpuUsPerReq: number | undefined;
  contenderCpuPct: number;
  rssMiB: number;
  pssMiB: number;
  cpu0BusyPct: number;
  cpu1BusyPct: number;
  maxOtherCpuPct: number;
  /** Runs kept although disturbed: every attempt was. */
  disturbedRuns: number;
  non2xx: number;
  socketErrors: number;
}

function summarize(runs: Run[], names: ContenderName[], opts: Options, levels: Level[]): Summary[] {
  const out: Summary[] = [];
  for (const workers of opts.workers) {
    for (const level of levels) {
      const here = runs.filter((r) => r.workers === workers && r.level === level.key);
      for (const name of names) {
        const mine = here.filter((r) => r.contender === name);
        if (mine.length === 0) continue;
        const sameRound = (peer: ContenderName, r: Run) =>
          here.find((n) => n.contender === peer && n.round === r.round);
        const perRound = (peer: ContenderName, f: (mine: Run, peer: Run) => number) =>
          median(
            mine.flatMap((r) => {
              const other = sameRound(peer, r);
              return other && name !== "direct" ? [f(r, other)] : [];
            }),
          );
        const dp = mine.flatMap((r) =>
          r.dataPlaneCpuUsPerReq === undefined ? [] : [r.dataPlaneCpuUsPerReq],
        );
        out.push({
          contender: name,
          workers,
          level: level.key,
          rounds: mine.length,
          rps: median(mine.map((r) => r.wrk.rps)),
          ratioToBaseline: perRound(opts.baseline, (r, b) => r.wrk.rps / b.wrk.rps),
          cpuRatioToBaseline: perRound(opts.baseline, (r, b) => r.cpuUsPerReq / b.cpuUsPerReq),
          p50Us: median(mine.map((r) => r.wrk.p50Us)),
          p99Us: median(mine.map((r) => r.wrk.p99Us)),
          addedP50Us: perRound("direct", (r, d) => r.wrk.p50Us - d.wrk.p50Us),
          addedP99Us: perRound("direct", (r, d) => r.wrk.p99Us - d.wrk.p99Us),
          cpuUsPerReq: median(mine.map((r) => r.cpuUsPerReq)),
          dataPlaneCpuUsPerReq: dp.length > 0 ? median(dp) : undefined,
          contenderCpuPct: median(mine.map((r) => r.contenderCpuPct)),
          rssMiB: median(mine.map((r) => r.rssMiB)),
          pssMiB: median(mine.map((r) => r.pssMiB)),
          cpu0BusyPct: median(mine.map((r) => r.cpuBusyPct[0] ?? 0)),
          cpu1BusyPct: median(mine.map((r) => r.cpuBusyPct[1] ?? 0)),
          maxOtherCpuPct: Math.max(...mine.map((r) => r.otherCpuPct)),
          disturbedRuns: mine.filter((r) => r.otherCpuPct > opts.disturbedPct).length,
          non2xx: mine.reduce((s, r) => s + r.wrk.non2xx, 0),
          socketErrors: mine.reduce((s, r) => s + r.wrk.socketErrors, 0),
        });
      }
    }
  }
  return out;
}

function table(rows: Summary[], baseline: ContenderName, added: boolean): string {
  const head = [
    "contender",
    "req/s",
    `× ${baseline}`,
    "p50",
    "p99",
    ...(added ? ["added p50", "added p99"] : []),
    "CPU-µs/req",
    `CPU × ${baseline}`,
    "its CPU",
    "RSS MiB",
    "PSS MiB",
    "CPU0 busy",
    "CPU1 busy",
    "other CPU (max)",
    "errors",
  ];
  const direct = (s: Summary) => s.contender === "direct";
  const lines = rows.map((s) => [
    direct(s) ? "direct (no proxy)" : s.contender,
    fmtRps(s.rps),
    fmt(s.ratioToBaseline, 2),
    fmtUs(s.p50Us),
    fmtUs(s.p99Us),
    ...(added ? [direct(s) ? "-" : fmtUs(s.addedP50Us), direct(s) ? "-" : fmtUs(s.addedP99Us)] : []),
    s.dataPlaneCpuUsPerReq === undefined
      ? fmt(s.cpuUsPerReq)
      : `${fmt(s.cpuUsPerReq)} (data plane ${fmt(s.dataPlaneCpuUsPerReq)})`,
    fmt(s.cpuRatioToBaseline, 2),
    `${fmt(s.contenderCpuPct)}%`,
    fmt(s.rssMiB),
    fmt(s.pssMiB),
    `${fmt(s.cpu0BusyPct)}%`,
    `${fmt(s.cpu1BusyPct)}%`,
    `${fmt(s.maxOtherCpuPct)}%${s.disturbedRuns > 0 ? ` (${s.disturbedRuns} disturbed)` : ""}`,
    s.non2xx + s.socketErrors === 0 ? "0" : `${s.non2xx} non-2xx, ${s.socketErrors} socket`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [row(head), row(widths.map((w) => "-".repeat(w))), ...lines.map(row)].join("\n");
}

// ---------------------------------------------------------------- main

async function startContender(
  env: Env,
  name: Exclude<ContenderName, "direct">,
  workers: number,
  originPort: number,
  agwBefore: string | undefined,
): Promise<Contender> {
  const id = `${name}-w${workers}`; // names its log, config and temp files
  const cpus = workers === 1 ? PROXY_CPU : ALL_CPUS;
  const port = await freePort();
  let h2Port: number | undefined = port;
  const file = (base: string, text: string) => {
    fs.writeFileSync(path.join(env.tmp, base), text);
    return path.join(env.tmp, base);
  };
  let proc: Proc;
  if (name === "nginx") {
    const dir = path.join(env.tmp, id);
    h2Port = await freePort();
    const conf = file(`${id}.conf`, nginxProxyConf(dir, port, originPort, { workers, h2cPort: h2Port }));
    proc = start(env, id, cpus, nginxArgs(env, dir, conf));
  } else if (name === "haproxy") {
    const conf = file(`${id}.cfg`, haproxyConf(port, originPort, workers));
    proc = start(env, id, cpus, [env.tools.haproxy, "-db", "-f", conf]);
  } else if (name === "pingora") {
    const bin = env.tools.pingora ?? fail("pingora: not built");
    const flags = ["--listen", `127.0.0.1:${port}`, "--upstream", `127.0.0.1:${originPort}`];
    proc = start(env, id, cpus, [bin, ...flags, "--threads", String(workers), "--h2c"]);
  } else {
    // Every listener on a free port, so nothing collides with a running AGW or another bench. Each
    // variant reads its own config file: the control plane watches it and applies edits live.
    const flags = ["--admin", "--xds-listen", "--cp-admin"];
    const repo = name === "agw-before" ? (agwBefore ?? fail("agw-before: no --agw-before DIR")) : REPO;
    const argv = [process.execPath, path.join(repo, "cli/src/main.ts"), "run", "--workers", String(workers)];
    argv.push("-c", file(`${id}.yaml`, agwConf(port, originPort)), ...(AGW_FLAGS[name]?.(env.tmp) ?? []));
    for (const flag of flags) argv.push(flag, `127.0.0.1:${await freePort()}`);
    proc = start(env, id, cpus, argv);
  }
  await waitProxying(proc, `http://127.0.0.1:${port}/`, name.startsWith("agw") ? 60_000 : 15_000);
  const tree = [proc.pid, ...descendants(readProcs(), proc.pid)];
  // AGW may run its control plane and data plane as separate processes: the data plane is the one
  // holding the listening socket. Its CPU is reported apart when it is not the whole tree.
  const dataPlanePid = name.startsWith("agw") && tree.length > 1 ? listenerOwner(port, tree) : undefined;
  const note = dataPlanePid === undefined ? "" : ` (data plane ${dataPlanePid})`;
  console.log(`${id} on 127.0.0.1:${port} (h2c :${h2Port}), CPUs ${cpus}, pids ${tree.join(", ")}${note}`);
  return { name, workers, proc, port, h2Port, dataPlanePid };
}

/** One measured run, started in a calm moment; re-run if it was disturbed, keeping the calmest attempt. */
async function measureCalm(
  env: Env,
  opts: Options,
  c: Contender,
  level: Level,
  round: number,
  attempts: Run[],
): Promise<Run> {
  let best: Run | undefined;
  for (let attempt = 1; ; attempt++) {
    await waitCalm(opts.disturbedPct, opts.calmWait);
    const run: Run = { ...(await measure(env, c, level, level.seconds)), round, attempt };
    attempts.push(run);
    if (!best || run.otherCpuPct < best.otherCpuPct) best = run;
    const disturbed = run.otherCpuPct > opts.disturbedPct;
    const again = disturbed && attempt <= opts.retries;
    const errors = run.wrk.non2xx + run.wrk.socketErrors;
    console.log(
      [
        `round ${round} w${c.workers} ${level.key.padEnd(4)} ${c.name.padEnd(7)} ${fmtRps(run.wrk.rps).padStart(6)} req/s`,
        `p50 ${fmtUs(run.wrk.p50Us)}  p99 ${fmtUs(run.wrk.p99Us)}  ${fmt(run.cpuUsPerReq)} CPU-µs/req`,
        `RSS ${fmt(run.rssMiB)} MiB  other CPU ${fmt(run.otherCpuPct)}%`,
        errors > 0 ? `!!! ${run.wrk.non2xx} non-2xx, ${run.wrk.socketErrors} socket errors` : "",
        disturbed ? (again ? "(disturbed: again)" : "(disturbed: keeping the calmest attempt)") : "",
      ]
        .filter(Boolean)
        .join("  "),
    );
    if (!again) return best;
  }
}

async function main(opts: Options, env: Env, command: string, skipped: string[]): Promise<number> {
  const machine = {
    date: new Date().toISOString(),
    nproc: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? "?",
    kernel: `${os.type()} ${os.release()}`,
    loadavgBefore: loadavg(),
    loadavgAfter: "",
    versions: [
      `node ${process.version}`,
      version(env.tools.nginx, ["-v"]),
      ...(opts.only.includes("haproxy") ? [version(env.tools.haproxy, ["-v"])] : []),
      version(env.tools.wrk, ["-v"]),
      ...(opts.h2Clients > 0 ? [version(env.tools.h2load, ["--version"])] : []),
      ...(env.tools.pingora ? [`pingora ${path.basename(env.tools.pingora)}`] : []),
    ],
    skipped,
  };
  const header = () => {
    console.log(`# ${command}`);
    console.log(`${machine.date}; ${machine.nproc} CPUs (${machine.cpu}); ${machine.kernel}`);
    console.log(machine.versions.join("; "));
    for (const reason of skipped) console.log(`skipped: ${reason}`);
  };
  header();
  console.log(`load average before: ${machine.loadavgBefore}`);
  console.log(`configs and logs in ${env.tmp}`);

  const originPort = await freePort();
  const originDir = path.join(env.tmp, "origin");
  fs.writeFileSync(path.join(env.tmp, "origin.conf"), originConf(originDir, originPort));
  const origin = start(env, "origin", GEN_CPU, nginxArgs(env, originDir, path.join(env.tmp, "origin.conf")));
  await waitProxying(origin, `http://127.0.0.1:${originPort}/`, 15_000);

  const contenders: Contender[] = [];
  for (const workers of opts.workers) {
    for (const name of opts.only) {
      if (name === "direct") {
        contenders.push({
          name,
          workers,
          proc: origin,
          port: originPort,
          h2Port: undefined,
          dataPlanePid: undefined,
        });
      } else contenders.push(await startContender(env, name, workers, originPort, opts.agwBefore));
    }
  }

  const levels: Level[] = [
    ...(opts.h2Only ? [] : [opts.connections, ...opts.latencyConnections]).map((connections, i) => ({
      key: `c${connections}`,
      label: `wrk -t1 -c${connections} -d${i === 0 ? opts.duration : opts.latencyDuration}s --latency`,
      h2: false,
      connections,
      streams: 1,
      seconds: i === 0 ? opts.duration : opts.latencyDuration,
    })),
    ...(opts.h2Clients > 0
      ? [
          {
            key: "h2",
            label: `HTTP/2 (h2c, prior knowledge): h2load -t1 -c${opts.h2Clients} -m${opts.h2Streams} -D${opts.duration}`,
            h2: true,
            connections: opts.h2Clients,
            streams: opts.h2Streams,
            seconds: opts.duration,
          },
        ]
      : []),
  ];
  const takes = (c: Contender, level: Level) => !c.proc.exited && (!level.h2 || c.h2Port !== undefined);
  // A proxy that dies is a finding, not the end of the bench: it is reported and left out from then on.
  const crashes: string[] = [];
  const orCrash = async (c: Contender, level: Level, run: () => Promise<unknown>) => {
    try {
      await run();
    } catch (err) {
      if (c.name === "direct" || !c.proc.exited) throw err;
      const code = await c.proc.exit;
      const what = `${c.name} (${c.workers} workers) exited (${code}) during ${level.label}; last lines of its log:\n${tail(c.proc.log, 12)}`;
      console.error(`\n!!! ${what}\n`);
      crashes.push(what);
    }
  };

  // The origin moves to both CPUs for the 2-worker runs, like the load generator, and back after.
  const phase = (workers: number) => pinTree(env, origin, genCpus(workers));
  if (opts.warmup > 0) {
    for (const level of levels) {
      for (const c of contenders) {
        phase(c.workers);
        if (takes(c, level)) await orCrash(c, level, () => measure(env, c, level, opts.warmup));
      }
    }
    console.log(`warmed up ${opts.warmup}s per contender and kind of load`);
  }

  const runs: Run[] = [];
  const attempts: Run[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const workerOrder = round % 2 === 1 ? opts.workers : [...opts.workers].reverse();
    for (const workers of workerOrder) {
      phase(workers);
      const mine = contenders.filter((c) => c.workers === workers);
      const shift = (round - 1) % mine.length;
      const order = [...mine.slice(shift), ...mine.slice(0, shift)];
      for (const level of levels) {
        for (const c of order) {
          if (!takes(c, level)) continue;
          await orCrash(c, level, async () =>
            runs.push(await measureCalm(env, opts, c, level, round, attempts)),
          );
        }
      }
    }
  }
  phase(1);
  machine.loadavgAfter = loadavg();

  const summary = summarize(runs, opts.only, opts, levels);
  console.log("");
  header();
  console.log(`load average before: ${machine.loadavgBefore}; after: ${machine.loadavgAfter}`);
  for (const workers of opts.workers) {
    for (const level of levels) {
      const where =
        workers === 1
          ? `1 worker: the contender alone on CPU${PROXY_CPU}, origin and load generator on CPU${GEN_CPU}`
          : `${workers} workers: contender, origin and load generator all on CPUs ${ALL_CPUS}`;
      console.log(`\n${level.label}; ${where}; medians of ${opts.rounds} rounds\n`);
      const rows = summary.filter((s) => s.workers === workers && s.level === level.key);
      console.log(table(rows, opts.baseline, !level.h2 && rows.some((s) => s.contender === "direct")));
    }
  }
  console.log(
    "\nCPU-µs/req: CPU time (utime+stime) of all the contender's processes / completed requests." +
      "\nadded p50/p99: the contender's percentile minus direct's in the same round (median over rounds)." +
      "\nits CPU: the contender's CPU time over the run, % of one core; the rest of CPU0+CPU1 busy went to" +
      "\nthe load generator and the origin (both near 100%: the machine, not the proxy, set the req/s)." +
      "\nother CPU: busy CPU time not used by processes this bench started, % of one core, worst run;" +
      "\n(N disturbed): runs kept although every attempt was disturbed.",
  );
  if (opts.json) {
    const raw = { command, machine, options: opts, levels, summary, runs, attempts, crashes };
    fs.writeFileSync(opts.json, `${JSON.stringify(raw, null, 2)}\n`);
    console.log(`raw results: ${opts.json}`);
  }

  const errors = summary.filter((s) => s.non2xx + s.socketErrors > 0);
  for (const s of errors) {
    console.error(
      `\n!!! ERRORS: ${s.contender} (${s.workers} workers) at ${s.level}: ${s.non2xx} non-2xx responses, ` +
        `${s.socketErrors} socket errors. Its figures are not comparable.`,
    );
  }
  for (const what of crashes) console.error(`\n!!! CRASHED: ${what}`);
  return errors.length + crashes.length > 0 ? 2 : 0;
}

// Every started process is killed on the way out, whatever the way out is.
process.on("exit", () => {
  for (const p of procs) signalTree(p, "SIGKILL");
});

const opts = parseOptions(process.argv.slice(2));
const tools = requireTools(opts.only, opts.h2Clients > 0);
const skipped: string[] = [];
if (opts.only.includes("pingora")) {
  const built = pingoraBinary();
  if ("bin" in built) tools.pingora = built.bin;
  else {
    skipped.push(`pingora: ${built.reason}`);
    opts.only = opts.only.filter((name) => name !== "pingora");
    if (opts.baseline === "pingora") fail(`--baseline pingora, but ${skipped[0]}`);
  }
}
if (os.availableParallelism() < 2) fail("needs 2 CPUs: wrk and the origin on CPU0, the proxy alone on CPU1");
// Our own /proc sampling stays off the proxy's core.
execFileSync(tools.taskset, ["-a", "-p", "-c", GEN_CPU, String(process.pid)], { stdio: "ignore" });
const env: Env = { tmp: fs.mkdtempSync(path.join(os.tmpdir(), "agw-bench-")), tools };
let finishing = false; // the first way out wins: an interrupt also makes the running wrk fail
const finish = async (code: number) => {
  if (finishing) return;
  finishing = true;
  await stopAll();
  if (code === 0 && !opts.keep) fs.rmSync(env.tmp, { recursive: true, force: true });
  else console.error(`configs and logs kept in ${env.tmp}`);
  process.exit(code);
};
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    console.error(`\nbench: ${signal}, stopping everything it started`);
    void finish(130);
  });
}
main(opts, env, `node bench/run.ts ${process.argv.slice(2).join(" ")}`.trim(), skipped).then(
  finish,
  (err: unknown) => {
    if (!finishing) console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    void finish(1);
  },
);
