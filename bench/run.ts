// AGW vs nginx and haproxy as HTTP/1.1 reverse proxies in front of one nginx origin.
// Method and how to read the output: bench/README.md. Usage: node bench/run.ts --help
//
// Origin and wrk share CPU0; each contender runs alone on CPU1 (idle ones just sit there).
// Contenders alternate, their order rotated every round, and figures are medians over rounds;
// "× nginx" is the median of per-round ratios, the figure that survives a shared, drifting machine.
// Benchmarks report; they never assert on timings.

import { execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { parseWrk, type WrkResult } from "./wrk.ts";

const REPO = path.resolve(import.meta.dirname, "..");
const CONTENDERS = ["nginx", "haproxy", "agw"] as const;
type ContenderName = (typeof CONTENDERS)[number];
const GEN_CPU = "0"; // origin + wrk
const PROXY_CPU = "1"; // the contender under test
// ~100 bytes, the same for everyone.
const BODY = `agw bench origin: a fixed body of about one hundred bytes, served by nginx return 200 ${"-".repeat(12)}\n`;

const USAGE = `usage: node bench/run.ts [options]
  --rounds N               rounds, order rotated each round (default 3; use 5 for headline figures)
  --duration S             seconds per throughput run (default 10)
  --connections C          connections of the throughput run (default 64)
  --latency-connections L  comma list of extra low-concurrency runs (default 1,8; "" for none)
  --latency-duration S     seconds per latency run (default 5)
  --warmup S               unrecorded warm-up per contender before round 1 (default 3)
  --only LIST              contenders, comma list of ${CONTENDERS.join(",")} (default all)
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
  only: { type: "string", default: CONTENDERS.join(",") },
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

// ---------------------------------------------------------------- tools

/** Absolute path of a command, also looking in sbin (nginx and haproxy live there; not on a user's PATH). */
function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    const file = path.join(dir, cmd);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {}
  }
  return undefined;
}

type Tools = Record<"nginx" | "haproxy" | "wrk" | "taskset", string>;

/** What every started process needs: the temp dir for configs and logs, and the tools' paths. */
interface Env {
  tmp: string;
  tools: Tools;
}

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

function version(cmd: string, args: string[]): string {
  // nginx -v and wrk -v print to stderr; wrk -v exits 1.
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 5000 });
  return `${r.stdout}${r.stderr}`.split("\n")[0]?.trim() ?? "?";
}

// ---------------------------------------------------------------- processes

interface Proc {
  name: string;
  pid: number;
  log: string;
  /** Resolves with the exit code, or the signal that ended it. */
  exit: Promise<number | string>;
  exited: boolean;
}

const procs: Proc[] = [];

/** Start `argv` pinned to `cpu`, in its own process group, output to <tmp>/<name>.log. */
function start(env: Env, name: string, cpu: string, argv: string[]): Proc {
  const log = path.join(env.tmp, `${name}.log`);
  const fd = fs.openSync(log, "w");
  const child = spawn(env.tools.taskset, ["-c", cpu, ...argv], {
    cwd: REPO,
    detached: true,
    stdio: ["ignore", fd, fd],
  });
  fs.closeSync(fd);
  if (child.pid === undefined) throw new Error(`${name}: spawn failed`);
  const proc: Proc = { name, pid: child.pid, log, exited: false, exit: Promise.resolve(0) };
  proc.exit = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      proc.exited = true;
      procs.splice(procs.indexOf(proc), 1);
      resolve(code ?? signal ?? "?");
    });
  });
  procs.push(proc);
  return proc;
}

function signalTree(proc: Proc, signal: NodeJS.Signals): void {
  // The group covers forked workers (and outlives its leader); the tree covers anything that left the
  // group, and is only walked while the leader lives, its pid not yet free for reuse.
  const tree = proc.exited ? [] : [...descendants(readProcs(), proc.pid), proc.pid];
  for (const pid of tree) {
    try {
      process.kill(pid, signal);
    } catch {}
  }
  try {
    process.kill(-proc.pid, signal);
  } catch {}
}

async function stopAll(): Promise<void> {
  const live = procs.filter((p) => !p.exited);
  for (const p of live) signalTree(p, "SIGTERM");
  await Promise.race([Promise.all(live.map((p) => p.exit)), sleep(3000)]);
  for (const p of live) signalTree(p, "SIGKILL");
  await Promise.race([Promise.all(live.map((p) => p.exit)), sleep(1000)]);
}

function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- /proc

interface ProcInfo {
  ppid: number;
  /** utime + stime, clock ticks. */
  ticks: number;
  /** cutime + cstime: reaped children, clock ticks. */
  childTicks: number;
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function readStat(pid: number): ProcInfo | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Fields after "(comm)"; comm may hold spaces and parentheses. f[0] is field 3 (state).
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const n = (i: number) => Number(f[i] ?? 0);
  return {
    ppid: n(1),
    ticks: n(11) + n(12),
    childTicks: n(13) + n(14),
  };
}

function readProcs(): Map<number, ProcInfo> {
  const table = new Map<number, ProcInfo>();
  for (const entry of fs.readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const info = readStat(pid);
    if (info) table.set(pid, info);
  }
  return table;
}

function descendants(table: Map<number, ProcInfo>, root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, info] of table) children.set(info.ppid, [...(children.get(info.ppid) ?? []), pid]);
  const out: number[] = [];
  const queue = [...(children.get(root) ?? [])];
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Busy and total jiffies per CPU, from /proc/stat. */
function readCpus(): { busy: number; total: number }[] {
  const cpus: { busy: number; total: number }[] = [];
  for (const line of fs.readFileSync("/proc/stat", "utf8").split("\n")) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m?.[1] || m[2] === undefined) continue;
    const v = m[2].split(" ").map(Number).slice(0, 8); // user nice system idle iowait irq softirq steal
    const total = v.reduce((a, b) => a + b, 0);
    cpus[Number(m[1])] = { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
  }
  return cpus;
}

function statusKiB(pid: number, file: "status" | "smaps_rollup", key: "VmRSS" | "Pss"): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/${file}`, "utf8"));
    return Number(m?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The process holding the listening socket on `port` (any address), among `pids`. */
function listenerOwner(port: number, pids: number[]): number | undefined {
  const suffix = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const sockets = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {}
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/); // sl local_address rem_address st ... inode (f[9])
      if (f[1]?.endsWith(suffix) && f[3] === "0A") sockets.add(`socket:[${f[9]}]`);
    }
  }
  for (const pid of pids) {
    try {
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        try {
          if (sockets.has(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))) return pid;
        } catch {}
      }
    } catch {}
  }
  return undefined;
}

// ---------------------------------------------------------------- ports and HTTP

const usedPorts = new Set<number>();

/** A free loopback port below 32768, away from the kernel's ephemeral range that wrk's own sockets use. */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12768);
    if (usedPorts.has(port)) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (ok) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error("no free port found below 32768");
}

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

/** Poll until `url` answers 200 with the origin's body; fail early if the process died. */
async function waitProxying(proc: Proc, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (proc.exited) {
      throw new Error(`${proc.name} exited during start-up; last lines of ${proc.log}:\n${tail(proc.log)}`);
    }
    try {
      const res = await get(url);
      if (res.status === 200 && res.body === BODY) return;
      last = `status ${res.status}, body ${JSON.stringify(res.body.slice(0, 80))}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(
    `${proc.name} did not proxy a 200 at ${url} within ${timeoutMs / 1000}s (last: ${last}); ` +
      `last lines of ${proc.log}:\n${tail(proc.log)}`,
  );
}

// ---------------------------------------------------------------- configs

function nginxCommon(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  return `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
`;
}

function nginxHttpCommon(dir: string): string {
  return `  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 300s;
  keepalive_requests 1000000000;
`;
}

function originConf(dir: string, port: number): string {
  return `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      default_type text/plain;
      return 200 ${JSON.stringify(BODY)};
    }
  }
}
`;
}

function nginxProxyConf(dir: string, port: number, origin: number): string {
  return `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}  upstream origin {
    server 127.0.0.1:${origin};
    keepalive 256;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
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

interface Snapshot {
  at: number;
  table: Map<number, ProcInfo>;
  cpus: { busy: number; total: number }[];
  /** CPU ticks of this bench and everything it started, including the wrk runs it has reaped. */
  ours: number;
}

function snapshot(): Snapshot {
  const table = readProcs();
  const self = table.get(process.pid);
  const ours = treeTicks(table, [process.pid, ...descendants(table, process.pid)]) + (self?.childTicks ?? 0);
  return { at: performance.now(), table, cpus: readCpus(), ours };
}

function treeTicks(table: Map<number, ProcInfo>, pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (table.get(pid)?.ticks ?? 0), 0);
}

/** Busy CPU time (all CPUs) that was not ours: other processes, the kernel, hypervisor steal. */
function otherTicks(a: Snapshot, b: Snapshot): number {
  const busy = b.cpus.reduce((sum, cpu, i) => sum + cpu.busy - (a.cpus[i]?.busy ?? 0), 0);
  return Math.max(0, busy - (b.ours - a.ours));
}

async function wrk(env: Env, url: string, connections: number, seconds: number): Promise<WrkResult> {
  const args = [`-t1`, `-c${connections}`, `-d${seconds}s`, "--latency", "--timeout", "5s", url];
  const proc = start(env, "wrk", GEN_CPU, [env.tools.wrk, ...args]);
  const timer = setTimeout(() => signalTree(proc, "SIGKILL"), (seconds + 30) * 1000);
  const code = await proc.exit;
  clearTimeout(timer);
  const out = fs.readFileSync(proc.log, "utf8");
  if (code !== 0) throw new Error(`wrk ${args.join(" ")} failed (${code}):\n${out}`);
  return parseWrk(out);
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

// ---------------------------------------------------------------- reporting

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0
    ? Number.NaN
    : s.length % 2
      ? (s[mid] ?? Number.NaN)
      : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};

const fmtRps = (n: number) =>
  Number.isNaN(n) ? "-" : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
const fmtUs = (us: number) =>
  us < 1000 ? `${us.toFixed(0)}µs` : us < 1e6 ? `${(us / 1000).toFixed(2)}ms` : `${(us / 1e6).toFixed(2)}s`;
const fmt = (n: number | undefined, digits = 0) =>
  n === undefined || Number.isNaN(n) ? "-" : n.toFixed(digits);

interface Summary {
  contender: string;
  connections: number;
  rounds: number;
  rps: number;
  ratioToNginx: number;
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

function summarize(runs: Run[], names: ContenderName[], levels: number[], disturbedPct: number): Summary[] {
  const out: Summary[] = [];
  for (const connections of levels) {
    for (const name of names) {
      const mine = runs.filter((r) => r.contender === name && r.connections === connections);
      const ratios = mine.flatMap((r) => {
        const base = runs.find(
          (n) => n.contender === "nginx" && n.connections === connections && n.round === r.round,
        );
        return base ? [r.wrk.rps / base.wrk.rps] : [];
      });
      const dp = mine.flatMap((r) => (r.dataPlaneCpuUsPerReq === undefined ? [] : [r.dataPlaneCpuUsPerReq]));
      out.push({
        contender: name,
        connections,
        rounds: mine.length,
        rps: median(mine.map((r) => r.wrk.rps)),
        ratioToNginx: median(ratios),
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

function table(rows: Summary[]): string {
  const head = [
    "contender",
    "req/s",
    "× nginx",
    "p50",
    "p99",
    "CPU-µs/req",
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
    fmt(s.ratioToNginx, 2),
    fmtUs(s.p50Us),
    fmtUs(s.p99Us),
    s.dataPlaneCpuUsPerReq === undefined
      ? fmt(s.cpuUsPerReq)
      : `${fmt(s.cpuUsPerReq)} (data plane ${fmt(s.dataPlaneCpuUsPerReq)})`,
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

const loadavg = () => fs.readFileSync("/proc/loadavg", "utf8").trim();

// ---------------------------------------------------------------- main

function nginxArgs(env: Env, dir: string, conf: string): string[] {
  return [env.tools.nginx, "-p", dir, "-e", `${dir}/error.log`, "-c", conf];
}

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
    // Every listener on a free port, so nothing collides with a running AGW or another bench.
    const flags = ["--admin", "--xds-listen", "--cp-admin"];
    const argv = [process.execPath, path.join(REPO, "cli/src/main.ts"), "run"];
    argv.push("-c", file("agw.yaml", agwConf(port, originPort)));
    for (const flag of flags) argv.push(flag, `127.0.0.1:${await freePort()}`);
    proc = start(env, name, PROXY_CPU, argv);
  }
  await waitProxying(proc, `http://127.0.0.1:${port}/`, name === "agw" ? 60_000 : 15_000);
  const tree = [proc.pid, ...descendants(readProcs(), proc.pid)];
  // AGW may run its control plane and data plane as separate processes: the data plane is the one
  // holding the listening socket. Its CPU is reported apart when it is not the whole tree.
  const dataPlanePid = name === "agw" && tree.length > 1 ? listenerOwner(port, tree) : undefined;
  const note = dataPlanePid === undefined ? "" : ` (data plane ${dataPlanePid})`;
  console.log(`${name} on 127.0.0.1:${port}, pids ${tree.join(", ")}${note}`);
  return { name, proc, port, dataPlanePid };
}

/** Wait (at most `maxS` seconds) for a one-second window in which CPU use not ours is at most `pct`. */
async function waitCalm(pct: number, maxS: number): Promise<void> {
  const deadline = performance.now() + maxS * 1000;
  let said = false;
  for (;;) {
    const a = snapshot();
    await sleep(1000);
    const b = snapshot();
    const other = (100 * otherTicks(a, b)) / CLK_TCK / ((b.at - a.at) / 1000);
    if (other <= pct) return;
    if (performance.now() >= deadline) {
      console.log(`  still busy after ${maxS}s (other CPU ${fmt(other)}%): measuring anyway`);
      return;
    }
    if (!said) console.log(`  machine busy (other CPU ${fmt(other)}%): waiting up to ${maxS}s for calm`);
    said = true;
  }
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

  const summary = summarize(runs, opts.only, levels, opts.disturbedPct);
  console.log(`\n# ${command}`);
  console.log(`${machine.date}; ${machine.nproc} CPUs (${machine.cpu}); ${machine.kernel}`);
  console.log(`load average before: ${machine.loadavgBefore}; after: ${machine.loadavgAfter}`);
  console.log(`origin alone: ${fmtRps(originAlone.rps)} req/s at -c${opts.connections}`);
  for (const connections of levels) {
    const seconds = connections === opts.connections ? opts.duration : opts.latencyDuration;
    console.log(`\nwrk -t1 -c${connections} -d${seconds}s --latency; medians of ${opts.rounds} rounds\n`);
    console.log(table(summary.filter((s) => s.connections === connections)));
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
