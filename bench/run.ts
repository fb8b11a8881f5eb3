// AGW vs nginx and haproxy as HTTP/1.1 reverse proxies in front of one nginx origin.
// Method and how to read the output: bench/README.md. Usage: node bench/run.ts --help
//
// Origin and wrk share CPU0; each contender runs alone on CPU1 (idle ones just sit there).
// Contenders alternate, their order rotated every round, and figures are medians over rounds;
// "× nginx" (or × --baseline) is the median of per-round ratios, the figure that survives a shared, drifting machine.
// Benchmarks report; they never assert on timings.

import { execFileSync } from "node:child_process";
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
  statusKiB,
  stopAll,
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
const CONTENDERS = ["nginx", "haproxy", "agw", "agw-bare", "agw-log"] as const;
type ContenderName = (typeof CONTENDERS)[number];
const AGW_FLAGS: Partial<Record<ContenderName, (tmp: string) => string[]>> = {
  agw: () => [],
  "agw-bare": () => ["--no-request-metrics"],
  "agw-log": (tmp) => ["--access-log", path.join(tmp, "access.log")],
};

const USAGE = `usage: node bench/run.ts [options]
  --rounds N               rounds, order rotated each round (default 3; use 5 for headline figures)
  --duration S             seconds per throughput run (default 10)
  --connections C          connections of the throughput run (default 64)
  --latency-connections L  comma list of extra low-concurrency runs (default 1,8; "" for none)
  --latency-duration S     seconds per latency run (default 5)
  --warmup S               unrecorded warm-up per contender before round 1 (default 3)
  --only LIST              contenders, comma list of ${CONTENDERS.join(",")}
                           (default nginx,haproxy,agw)
  --baseline NAME          the contender the "×" column divides by (default nginx)
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
  warmup: number;
  only: ContenderName[];
  baseline: ContenderName;
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
  warmup: { type: "string", default: "3" },
  only: { type: "string", default: "nginx,haproxy,agw" },
  baseline: { type: "string", default: "nginx" },
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
  if (!only.includes(values.baseline)) fail(`--baseline: "${values.baseline}" is not among --only`);
  return {
    rounds: int("rounds", values.rounds, 1),
    duration: int("duration", values.duration, 1),
    connections: int("connections", values.connections, 1),
    latencyConnections: values["latency-connections"]
      .split(",")
      .filter(Boolean)
      .map((c) => int("latency-connections", c, 1)),
    latencyDuration: int("latency-duration", values["latency-duration"], 1),
    warmup: int("warmup", values.warmup, 0),
    only: only as ContenderName[],
    baseline: values.baseline as ContenderName,
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

type Tools = Record<"nginx" | "haproxy" | "wrk" | "taskset", string>;
type Env = BenchEnv<Tools>;

function requireTools(names: ContenderName[]): Tools {
  const wanted = [
    ["nginx", "nginx-light"], // always: it is the origin
    ["wrk", "wrk"],
    ["taskset", "util-linux"],
    ...(names.includes("haproxy") ? [["haproxy", "haproxy"]] : []),
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
    process.exit(1);
  }
  return found as Tools;
}

function haproxyConf(port: number, origin: number): string {
  return `global
  nbthread 1
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

interface Contender {
  name: ContenderName;
  proc: Proc;
  port: number;
  /** AGW: the data-plane process (owner of the listening socket). */
  dataPlanePid: number | undefined;
}

interface Run {
  contender: string;
  connections: number;
  round: number;
  attempt: number;
  wrk: WrkResult;
  cpuUsPerReq: number;
  dataPlaneCpuUsPerReq: number | undefined;
  rssMiB: number;
  pssMiB: number;
  /** Busy % of CPU0 (wrk + origin) and CPU1 (contender) over the run. */
  cpuBusyPct: number[];
  /** Busy CPU (all cores) not used by this bench's processes, % of one core. */
  otherCpuPct: number;
}

async function measure(
  env: Env,
  c: Contender,
  connections: number,
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
    result = await wrk(env, `http://127.0.0.1:${c.port}/`, connections, seconds);
  } finally {
    clearInterval(timer);
  }
  const after = snapshot();
  if (peakRss === 0) sampleMemory();
  const usPerReq = (pids: number[]) =>
    ((treeTicks(after.table, pids) - treeTicks(before.table, pids)) / CLK_TCK / result.requests) * 1e6;
  const wallS = (after.at - before.at) / 1000;
  return {
    contender: c.name,
    connections,
    wrk: result,
    cpuUsPerReq: usPerReq([c.proc.pid, ...descendants(after.table, c.proc.pid)]),
    dataPlaneCpuUsPerReq: c.dataPlanePid === undefined ? undefined : usPerReq([c.dataPlanePid]),
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
  connections: number;
  rounds: number;
  rps: number;
  ratioToBaseline: number;
  /** Median of per-round ratios of CPU-µs/req to the baseline's. */
  cpuRatioToBaseline: number;
  p50Us: number;
  p99Us: number;
  cpuUsPerReq: number;
  dataPlaneCpuUsPerReq: number | undefined;
  rssMiB: number;
  pssMiB: number;
  proxyCpuBusyPct: number;
  genCpuBusyPct: number;
  maxOtherCpuPct: number;
  /** Runs kept although disturbed: every attempt was. */
  disturbedRuns: number;
  non2xx: number;
  socketErrors: number;
}

function summarize(
  runs: Run[],
  names: ContenderName[],
  baseline: ContenderName,
  levels: number[],
  disturbedPct: number,
): Summary[] {
  const out: Summary[] = [];
  for (const connections of levels) {
    for (const name of names) {
      const mine = runs.filter((r) => r.contender === name && r.connections === connections);
      const baseOf = (r: Run) =>
        runs.find((n) => n.contender === baseline && n.connections === connections && n.round === r.round);
      const ratios = mine.flatMap((r) => {
        const base = baseOf(r);
        return base ? [r.wrk.rps / base.wrk.rps] : [];
      });
      const cpuRatios = mine.flatMap((r) => {
        const base = baseOf(r);
        return base ? [r.cpuUsPerReq / base.cpuUsPerReq] : [];
      });
      const dp = mine.flatMap((r) => (r.dataPlaneCpuUsPerReq === undefined ? [] : [r.dataPlaneCpuUsPerReq]));
      out.push({
        contender: name,
        connections,
        rounds: mine.length,
        rps: median(mine.map((r) => r.wrk.rps)),
        ratioToBaseline: median(ratios),
        cpuRatioToBaseline: median(cpuRatios),
        p50Us: median(mine.map((r) => r.wrk.p50Us)),
        p99Us: median(mine.map((r) => r.wrk.p99Us)),
        cpuUsPerReq: median(mine.map((r) => r.cpuUsPerReq)),
        dataPlaneCpuUsPerReq: dp.length > 0 ? median(dp) : undefined,
        rssMiB: median(mine.map((r) => r.rssMiB)),
        pssMiB: median(mine.map((r) => r.pssMiB)),
        genCpuBusyPct: median(mine.map((r) => r.cpuBusyPct[0] ?? 0)),
        proxyCpuBusyPct: median(mine.map((r) => r.cpuBusyPct[1] ?? 0)),
        maxOtherCpuPct: Math.max(...mine.map((r) => r.otherCpuPct)),
        disturbedRuns: mine.filter((r) => r.otherCpuPct > disturbedPct).length,
        non2xx: mine.reduce((s, r) => s + r.wrk.non2xx, 0),
        socketErrors: mine.reduce((s, r) => s + r.wrk.socketErrors, 0),
      });
    }
  }
  return out;
}

function table(rows: Summary[], baseline: ContenderName): string {
  const head = [
    "contender",
    "req/s",
    `× ${baseline}`,
    "p50",
    "p99",
    "CPU-µs/req",
    `CPU × ${baseline}`,
    "RSS MiB",
    "PSS MiB",
    "CPU1 busy",
    "CPU0 busy",
    "other CPU (max)",
    "errors",
  ];
  const lines = rows.map((s) => [
    s.contender,
    fmtRps(s.rps),
    fmt(s.ratioToBaseline, 2),
    fmtUs(s.p50Us),
    fmtUs(s.p99Us),
    s.dataPlaneCpuUsPerReq === undefined
      ? fmt(s.cpuUsPerReq)
      : `${fmt(s.cpuUsPerReq)} (data plane ${fmt(s.dataPlaneCpuUsPerReq)})`,
    fmt(s.cpuRatioToBaseline, 3),
    fmt(s.rssMiB),
    fmt(s.pssMiB),
    `${fmt(s.proxyCpuBusyPct)}%`,
    `${fmt(s.genCpuBusyPct)}%`,
    `${fmt(s.maxOtherCpuPct)}%${s.disturbedRuns > 0 ? ` (${s.disturbedRuns} disturbed)` : ""}`,
    s.non2xx + s.socketErrors === 0 ? "0" : `${s.non2xx} non-2xx, ${s.socketErrors} socket`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [row(head), row(widths.map((w) => "-".repeat(w))), ...lines.map(row)].join("\n");
}

// ---------------------------------------------------------------- main

async function startContender(env: Env, name: ContenderName, originPort: number): Promise<Contender> {
  const port = await freePort();
  const file = (base: string, text: string) => {
    fs.writeFileSync(path.join(env.tmp, base), text);
    return path.join(env.tmp, base);
  };
  let proc: Proc;
  if (name === "nginx") {
    const dir = path.join(env.tmp, "nginx");
    proc = start(
      env,
      name,
      PROXY_CPU,
      nginxArgs(env, dir, file("nginx.conf", nginxProxyConf(dir, port, originPort))),
    );
  } else if (name === "haproxy") {
    const conf = file("haproxy.cfg", haproxyConf(port, originPort));
    proc = start(env, name, PROXY_CPU, [env.tools.haproxy, "-db", "-f", conf]);
  } else {
    // Every listener on a free port, so nothing collides with a running AGW or another bench. Each
    // variant reads its own config file: the control plane watches it and applies edits live.
    const flags = ["--admin", "--xds-listen", "--cp-admin"];
    const argv = [process.execPath, path.join(REPO, "cli/src/main.ts"), "run"];
    argv.push("-c", file(`${name}.yaml`, agwConf(port, originPort)), ...(AGW_FLAGS[name]?.(env.tmp) ?? []));
    for (const flag of flags) argv.push(flag, `127.0.0.1:${await freePort()}`);
    proc = start(env, name, PROXY_CPU, argv);
  }
  await waitProxying(proc, `http://127.0.0.1:${port}/`, name.startsWith("agw") ? 60_000 : 15_000);
  const tree = [proc.pid, ...descendants(readProcs(), proc.pid)];
  // AGW may run its control plane and data plane as separate processes: the data plane is the one
  // holding the listening socket. Its CPU is reported apart when it is not the whole tree.
  const dataPlanePid = name.startsWith("agw") && tree.length > 1 ? listenerOwner(port, tree) : undefined;
  const note = dataPlanePid === undefined ? "" : ` (data plane ${dataPlanePid})`;
  console.log(`${name} on 127.0.0.1:${port}, pids ${tree.join(", ")}${note}`);
  return { name, proc, port, dataPlanePid };
}

/** One measured run, started in a calm moment; re-run if it was disturbed, keeping the calmest attempt. */
async function measureCalm(
  env: Env,
  opts: Options,
  c: Contender,
  connections: number,
  round: number,
  attempts: Run[],
): Promise<Run> {
  const seconds = connections === opts.connections ? opts.duration : opts.latencyDuration;
  let best: Run | undefined;
  for (let attempt = 1; ; attempt++) {
    await waitCalm(opts.disturbedPct, opts.calmWait);
    const run: Run = { ...(await measure(env, c, connections, seconds)), round, attempt };
    attempts.push(run);
    if (!best || run.otherCpuPct < best.otherCpuPct) best = run;
    const disturbed = run.otherCpuPct > opts.disturbedPct;
    const again = disturbed && attempt <= opts.retries;
    const errors = run.wrk.non2xx + run.wrk.socketErrors;
    console.log(
      [
        `round ${round} -c${connections} ${c.name.padEnd(7)} ${fmtRps(run.wrk.rps).padStart(6)} req/s`,
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

async function main(opts: Options, env: Env, command: string): Promise<number> {
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
    ],
  };
  console.log(`# ${command}`);
  console.log(`${machine.date}; ${machine.nproc} CPUs (${machine.cpu}); ${machine.kernel}`);
  console.log(machine.versions.join("; "));
  console.log(`load average before: ${machine.loadavgBefore}`);
  console.log(`configs and logs in ${env.tmp}`);

  const originPort = await freePort();
  const originDir = path.join(env.tmp, "origin");
  fs.writeFileSync(path.join(env.tmp, "origin.conf"), originConf(originDir, originPort));
  const origin = start(env, "origin", GEN_CPU, nginxArgs(env, originDir, path.join(env.tmp, "origin.conf")));
  const originUrl = `http://127.0.0.1:${originPort}/`;
  await waitProxying(origin, originUrl, 15_000);

  const contenders: Contender[] = [];
  for (const name of opts.only) contenders.push(await startContender(env, name, originPort));

  // Reference: the origin alone, wrk on the same core as in the proxied runs. A contender close to this
  // figure measures the load generator and origin as much as itself.
  const originAlone = await wrk(env, originUrl, opts.connections, opts.duration);
  console.log(`origin alone: ${fmtRps(originAlone.rps)} req/s at -c${opts.connections}`);
  if (opts.warmup > 0) {
    for (const c of contenders) await measure(env, c, opts.connections, opts.warmup);
    console.log(`warmed up ${opts.warmup}s each`);
  }

  const levels = [opts.connections, ...opts.latencyConnections];
  const runs: Run[] = [];
  const attempts: Run[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const shift = (round - 1) % contenders.length;
    const order = [...contenders.slice(shift), ...contenders.slice(0, shift)];
    for (const connections of levels) {
      for (const c of order) runs.push(await measureCalm(env, opts, c, connections, round, attempts));
    }
  }
  machine.loadavgAfter = loadavg();

  const summary = summarize(runs, opts.only, opts.baseline, levels, opts.disturbedPct);
  console.log(`\n# ${command}`);
  console.log(`${machine.date}; ${machine.nproc} CPUs (${machine.cpu}); ${machine.kernel}`);
  console.log(`load average before: ${machine.loadavgBefore}; after: ${machine.loadavgAfter}`);
  console.log(`origin alone: ${fmtRps(originAlone.rps)} req/s at -c${opts.connections}`);
  for (const connections of levels) {
    const seconds = connections === opts.connections ? opts.duration : opts.latencyDuration;
    console.log(`\nwrk -t1 -c${connections} -d${seconds}s --latency; medians of ${opts.rounds} rounds\n`);
    console.log(
      table(
        summary.filter((s) => s.connections === connections),
        opts.baseline,
      ),
    );
  }
  console.log(
    "\nCPU-µs/req: CPU time (utime+stime) of all the contender's processes / completed requests." +
      "\nCPU1 busy: the contender's core. CPU0 busy: wrk + origin (near 100%: the load side limits)." +
      "\nother CPU: busy CPU time not used by processes this bench started, % of one core, worst run;" +
      "\n(N disturbed): runs kept although every attempt was disturbed.",
  );
  if (opts.json) {
    const raw = { command, machine, options: opts, originAlone, summary, runs, attempts };
    fs.writeFileSync(opts.json, `${JSON.stringify(raw, null, 2)}\n`);
    console.log(`raw results: ${opts.json}`);
  }

  const errors = summary.filter((s) => s.non2xx + s.socketErrors > 0);
  for (const s of errors) {
    console.error(
      `\n!!! ERRORS: ${s.contender} at -c${s.connections}: ${s.non2xx} non-2xx responses, ` +
        `${s.socketErrors} socket errors. Its figures are not comparable.`,
    );
  }
  return errors.length > 0 ? 2 : 0;
}

// Every started process is killed on the way out, whatever the way out is.
process.on("exit", () => {
  for (const p of procs) signalTree(p, "SIGKILL");
});

const opts = parseOptions(process.argv.slice(2));
const tools = requireTools(opts.only);
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
main(opts, env, `node bench/run.ts ${process.argv.slice(2).join(" ")}`.trim()).then(
  finish,
  (err: unknown) => {
    if (!finishing) console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    void finish(1);
  },
);
