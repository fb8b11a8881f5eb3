// What the benchmarks share: pinned processes started and always stopped, /proc accounting (CPU
// ticks, memory, CPU use not ours), calm-waiting, free ports, wrk runs, the nginx origin, formatting.

import { execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { logPercentiles, parseH2load } from "./h2load.ts";
import { parseWrk, type WrkResult } from "./wrk.ts";

export const REPO = path.resolve(import.meta.dirname, "..");
export const GEN_CPU = "0"; // origin and load generators
export const PROXY_CPU = "1"; // the contender under test
// ~100 bytes, the same for everyone.
export const BODY = `agw bench origin: a fixed body of about one hundred bytes, served by nginx return 200 ${"-".repeat(12)}\n`;

export interface BaseTools {
  nginx: string;
  wrk: string;
  taskset: string;
}

/** What every started process needs: the temp dir for configs and logs, and the tools' paths. */
export interface Env<T extends BaseTools = BaseTools> {
  tmp: string;
  tools: T;
}

// ---------------------------------------------------------------- tools

/** Absolute path of a command, also looking in sbin (nginx and haproxy live there; not on a user's PATH). */
export function which(cmd: string): string | undefined {
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

export function version(cmd: string, args: string[]): string {
  // nginx -v and wrk -v print to stderr; wrk -v exits 1.
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 5000 });
  return `${r.stdout}${r.stderr}`.split("\n")[0]?.trim() ?? "?";
}

// ---------------------------------------------------------------- processes

export interface Proc {
  name: string;
  pid: number;
  log: string;
  /** Resolves with the exit code, or the signal that ended it. */
  exit: Promise<number | string>;
  exited: boolean;
}

export const procs: Proc[] = [];

/** Start `argv` pinned to `cpu`, in its own process group, output to <tmp>/<name>.log. */
export function start(env: Env, name: string, cpu: string, argv: string[]): Proc {
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

export function signalTree(proc: Proc, signal: NodeJS.Signals): void {
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

export async function stopAll(): Promise<void> {
  const live = procs.filter((p) => !p.exited);
  for (const p of live) signalTree(p, "SIGTERM");
  await Promise.race([Promise.all(live.map((p) => p.exit)), sleep(3000)]);
  for (const p of live) signalTree(p, "SIGKILL");
  await Promise.race([Promise.all(live.map((p) => p.exit)), sleep(1000)]);
}

export function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- /proc

export interface ProcInfo {
  ppid: number;
  /** utime + stime, clock ticks. */
  ticks: number;
  /** cutime + cstime: reaped children, clock ticks. */
  childTicks: number;
}

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export function readStat(pid: number): ProcInfo | undefined {
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

export function readProcs(): Map<number, ProcInfo> {
  const table = new Map<number, ProcInfo>();
  for (const entry of fs.readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const info = readStat(pid);
    if (info) table.set(pid, info);
  }
  return table;
}

export function descendants(table: Map<number, ProcInfo>, root: number): number[] {
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
export function readCpus(): { busy: number; total: number }[] {
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

export function statusKiB(pid: number, file: "status" | "smaps_rollup", key: "VmRSS" | "Pss"): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/${file}`, "utf8"));
    return Number(m?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The process holding the listening socket on `port` (any address), among `pids`. */
export function listenerOwner(port: number, pids: number[]): number | undefined {
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
export async function freePort(): Promise<number> {
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

export function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // The benches' HTTPS contenders serve a certificate made for the run: no chain to check.
    const client = url.startsWith("https:") ? https : http;
    const req = client.get(url, { agent: false, timeout: 2000, rejectUnauthorized: false }, (res) => {
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
export async function waitProxying(proc: Proc, url: string, timeoutMs: number): Promise<void> {
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

export function nginxCommon(dir: string, workers = 1): string {
  fs.mkdirSync(dir, { recursive: true });
  return `worker_processes ${workers};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
`;
}

export function nginxHttpCommon(dir: string): string {
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

export function originConf(dir: string, port: number): string {
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

export interface NginxProxyOptions {
  /** TLS directives for the server; `ssl` is added to the listen line. */
  tls?: string;
  /** worker_processes (default 1). */
  workers?: number;
  /** A second, plain listener speaking HTTP/2 with prior knowledge (h2c): nginx cannot serve both on one port. */
  h2cPort?: number;
}

/** nginx as the reverse proxy. */
export function nginxProxyConf(
  dir: string,
  port: number,
  origin: number,
  opts: NginxProxyOptions = {},
): string {
  const { tls, workers = 1, h2cPort } = opts;
  const h2c = h2cPort === undefined ? "" : `    listen 127.0.0.1:${h2cPort} http2 backlog=4096;\n`;
  return `${nginxCommon(dir, workers)}http {
${nginxHttpCommon(dir)}  upstream origin {
    server 127.0.0.1:${origin};
    keepalive 256;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port}${tls === undefined ? "" : " ssl"} backlog=4096;
${h2c}${tls ?? ""}    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

export interface Snapshot {
  at: number;
  table: Map<number, ProcInfo>;
  cpus: { busy: number; total: number }[];
  /** CPU ticks of this bench and everything it started, including the wrk runs it has reaped. */
  ours: number;
}

export function snapshot(): Snapshot {
  const table = readProcs();
  const self = table.get(process.pid);
  const ours = treeTicks(table, [process.pid, ...descendants(table, process.pid)]) + (self?.childTicks ?? 0);
  return { at: performance.now(), table, cpus: readCpus(), ours };
}

export function treeTicks(table: Map<number, ProcInfo>, pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (table.get(pid)?.ticks ?? 0), 0);
}

/** Busy CPU time (all CPUs) that was not ours: other processes, the kernel, hypervisor steal. */
export function otherTicks(a: Snapshot, b: Snapshot): number {
  const busy = b.cpus.reduce((sum, cpu, i) => sum + cpu.busy - (a.cpus[i]?.busy ?? 0), 0);
  return Math.max(0, busy - (b.ours - a.ours));
}

export async function wrk(
  env: Env,
  url: string,
  connections: number,
  seconds: number,
  cpu = GEN_CPU,
): Promise<WrkResult> {
  const args = [`-t1`, `-c${connections}`, `-d${seconds}s`, "--latency", "--timeout", "5s", url];
  const proc = start(env, "wrk", cpu, [env.tools.wrk, ...args]);
  const timer = setTimeout(() => signalTree(proc, "SIGKILL"), (seconds + 30) * 1000);
  const code = await proc.exit;
  clearTimeout(timer);
  const out = fs.readFileSync(proc.log, "utf8");
  if (code !== 0) throw new Error(`wrk ${args.join(" ")} failed (${code}):\n${out}`);
  return parseWrk(out);
}

/**
 * HTTP/2 with prior knowledge (h2c): `clients` connections with up to `streams` concurrent streams each,
 * one h2load thread. Latency percentiles come from h2load's per-request log.
 */
export async function h2load(
  env: Env & { tools: { h2load: string } },
  url: string,
  clients: number,
  streams: number,
  seconds: number,
  cpu = GEN_CPU,
): Promise<WrkResult> {
  const log = path.join(env.tmp, "h2load-requests.tsv");
  const args = ["-t1", `-c${clients}`, `-m${streams}`, `-D${seconds}`, `--log-file=${log}`, url];
  const proc = start(env, "h2load", cpu, [env.tools.h2load, ...args]);
  const timer = setTimeout(() => signalTree(proc, "SIGKILL"), (seconds + 30) * 1000);
  const code = await proc.exit;
  clearTimeout(timer);
  const out = fs.readFileSync(proc.log, "utf8");
  if (code !== 0) throw new Error(`h2load ${args.join(" ")} failed (${code}):\n${out}`);
  const result = { ...parseH2load(out), ...logPercentiles(fs.readFileSync(log, "utf8")) };
  fs.rmSync(log, { force: true });
  return result;
}

/** Move a running process, all its threads and its descendants to `cpus` (taskset's list syntax). */
export function pinTree(env: Env, proc: Proc, cpus: string): void {
  for (const pid of [proc.pid, ...descendants(readProcs(), proc.pid)]) {
    execFileSync(env.tools.taskset, ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
  }
}

// ---------------------------------------------------------------- reporting

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0
    ? Number.NaN
    : s.length % 2
      ? (s[mid] ?? Number.NaN)
      : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};

export const fmtRps = (n: number) =>
  Number.isNaN(n) ? "-" : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
export const fmtUs = (us: number): string =>
  us < 0
    ? `-${fmtUs(-us)}`
    : us < 1000
      ? `${us.toFixed(0)}µs`
      : us < 1e6
        ? `${(us / 1000).toFixed(2)}ms`
        : `${(us / 1e6).toFixed(2)}s`;
export const fmt = (n: number | undefined, digits = 0) =>
  n === undefined || Number.isNaN(n) ? "-" : n.toFixed(digits);

export const loadavg = () => fs.readFileSync("/proc/loadavg", "utf8").trim();

export function nginxArgs(env: Env, dir: string, conf: string): string[] {
  return [env.tools.nginx, "-p", dir, "-e", `${dir}/error.log`, "-c", conf];
}

/** Wait (at most `maxS` seconds) for a one-second window in which CPU use not ours is at most `pct`. */
export async function waitCalm(pct: number, maxS: number): Promise<void> {
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
