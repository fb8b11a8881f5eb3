/**
 * xDS at scale: DATA_PLANES simulated data planes plus REAL_DATA_PLANES real ones (`agw data-plane`
 * processes, the check that the simulation is honest) on a control plane (bench/xds-cp.ts, its own
 * process) serving ROUTES routes over CLUSTERS clusters.
 *
 * A simulated data plane is one HTTP/2 connection (node:http2) with one ADS stream, ACKing every
 * response as a real data plane does after it applied it; it reads the responses' framing, names,
 * versions and removals (what it sends back on reconnect as `initial_resource_versions`) and skips
 * the resources' bytes, so 1,000 of them fit in one process. It reconnects as the real client does
 * (data-plane/src/xds-client.ts: full jitter, 250 ms initial).
 *
 * Per contender (a control plane tree × protocol), in this order:
 * - initial sync of every data plane (wall, control plane CPU);
 * - CHANGES one-route changes, spaced beyond the push throttle: last ACK p50/p99 (simulated and
 *   real data planes), bytes per data plane, control plane CPU per change, RSS;
 * - ENDPOINT_CHANGES one-cluster endpoint changes (EndpointSlice events): the same, and how many
 *   route responses they caused (must be 0);
 * - a BURST of endpoint events at informer speed (BURST_GAP_MS apart): responses per data plane and
 *   the last ACK after the last event (the push throttle's coalescing against latency);
 * - a restart (Delta): the control plane closes gracefully and a new one starts on the same port;
 *   time until every data plane is back in sync, CPU, bytes re-sent, NACKs, and whether any data
 *   plane ended with a partial config.
 *
 *   node bench/xds.ts    (DATA_PLANES=100 ROUTES=10000 CLUSTERS=100 CHANGES=20 ENDPOINT_CHANGES=10
 *                         BURST=500 BURST_GAP_MS=2 REAL_DATA_PLANES=3 RESTART=1 PROTOCOLS=delta,sotw,delta)
 *   CP_PROFILE=/tmp/cp   a CPU profile of the control plane over the route changes, per contender
 *   BEFORE_TREE=/tmp/cp-before node bench/xds.ts
 *                        runs this same harness against the control plane of another checkout too,
 *                        alternating before/after (Delta only unless PROTOCOLS says otherwise)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync } from "node:fs";
import http2 from "node:http2";
import path from "node:path";
import { createInterface } from "node:readline";
import { RESOURCE_TYPES, TYPE_URL, type TypeUrl } from "@agw/core";
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { freePort } from "./lib.ts";

const DATA_PLANES = Number(process.env.DATA_PLANES ?? 100);
const REAL_DATA_PLANES = Number(process.env.REAL_DATA_PLANES ?? 3);
const ROUTES = Number(process.env.ROUTES ?? 10_000);
const CLUSTERS = Number(process.env.CLUSTERS ?? 100);
const CHANGES = Number(process.env.CHANGES ?? 20);
const ENDPOINT_CHANGES = Number(process.env.ENDPOINT_CHANGES ?? 10);
const BURST = Number(process.env.BURST ?? 500);
const BURST_GAP_MS = Number(process.env.BURST_GAP_MS ?? 2);
const RESTART = process.env.RESTART !== "0";
const BEFORE_TREE = process.env.BEFORE_TREE;
const HERE = path.resolve(import.meta.dirname, "..");
const GRPC_FRAME = 5;

type Protocol = "sotw" | "delta";

// ---------------------------------------------------------------- the simulated data plane

/** One string object per distinct name or version, shared by every simulated data plane. */
const interned = new Map<string, string>();
const intern = (s: string) => {
  const hit = interned.get(s);
  if (hit !== undefined) return hit;
  interned.set(s, s);
  return s;
};

interface Response {
  typeUrl: string;
  nonce: string;
  version: string;
  /** Delta: name → version of each resource sent; SotW: the names. */
  resources: Array<[string, string]>;
  removed: string[];
}

/** The fields a data plane acts on, read from the wire; resource bodies are skipped. */
function readResponse(bytes: Uint8Array, protocol: Protocol): Response {
  const r = new BinaryReader(bytes);
  const out: Response = { typeUrl: "", nonce: "", version: "", resources: [], removed: [] };
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) out.version = r.string();
    else if (no === 4 && wt === WireType.LengthDelimited) out.typeUrl = r.string();
    else if (no === 5 && wt === WireType.LengthDelimited) out.nonce = r.string();
    else if (no === 6 && wt === WireType.LengthDelimited && protocol === "delta")
      out.removed.push(r.string());
    else if (no === 2 && wt === WireType.LengthDelimited && protocol === "delta") {
      const res = new BinaryReader(r.bytes());
      let name = "";
      let version = "";
      while (res.pos < res.len) {
        const [f, w] = res.tag();
        if (f === 3 && w === WireType.LengthDelimited) name = res.string();
        else if (f === 1 && w === WireType.LengthDelimited) version = res.string();
        else res.skip(w);
      }
      out.resources.push([intern(name), intern(version)]);
    } else if (no === 2 && wt === WireType.LengthDelimited) {
      r.skip(wt);
      out.resources.push(["", ""]);
    } else r.skip(wt);
  }
  return out;
}

function frame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(GRPC_FRAME + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, GRPC_FRAME);
  return out;
}

class Sim {
  readonly id: string;
  readonly protocol: Protocol;
  /** Delta: what this data plane has, per type (sent back on reconnect). SotW: resource counts. */
  readonly known = new Map<string, Map<string, string>>();
  /** Types answered on the current stream. */
  answered = new Set<string>();
  changeStart = Number.POSITIVE_INFINITY;
  watchType = "";
  bytesSinceChange = 0;
  responsesSinceChange = new Map<string, number>();
  ackedAt: number | undefined;
  lastResponseAt = 0;
  streams = 0;
  private port: number;
  private session: http2.ClientHttp2Session | undefined;
  private closed = false;
  private failures = 0;

  constructor(id: string, protocol: Protocol, port: number) {
    this.id = id;
    this.protocol = protocol;
    this.port = port;
    for (const t of RESOURCE_TYPES) this.known.set(t, new Map());
  }

  get synced(): boolean {
    return this.answered.size === RESOURCE_TYPES.length;
  }

  startChange(type: string, at: number): void {
    this.changeStart = at;
    this.watchType = type;
    this.bytesSinceChange = 0;
    this.responsesSinceChange = new Map();
    this.ackedAt = undefined;
  }

  connect(): void {
    if (this.closed) return;
    const session = http2.connect(`http://127.0.0.1:${this.port}`);
    this.session = session;
    session.on("error", () => undefined);
    const method = this.protocol === "delta" ? "DeltaAggregatedResources" : "StreamAggregatedResources";
    const stream = session.request({
      ":method": "POST",
      ":path": `/envoy.service.discovery.v3.AggregatedDiscoveryService/${method}`,
      "content-type": "application/grpc",
      te: "trailers",
    });
    this.answered = new Set();
    this.streams++;
    let established = false;
    const node = { id: this.id };
    const send = (bytes: Uint8Array) => stream.write(frame(bytes));
    for (const typeUrl of RESOURCE_TYPES)
      send(
        this.protocol === "delta"
          ? toBinary(
              DeltaDiscoveryRequestSchema,
              create(DeltaDiscoveryRequestSchema, {
                node,
                typeUrl,
                initialResourceVersions: Object.fromEntries(this.known.get(typeUrl) ?? []),
              }),
            )
          : toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { node, typeUrl })),
      );
    let buffered: Buffer = Buffer.alloc(0);
    stream.on("data", (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      while (buffered.length >= GRPC_FRAME) {
        const length = buffered.readUInt32BE(1);
        if (buffered.length < GRPC_FRAME + length) break;
        const message = buffered.subarray(GRPC_FRAME, GRPC_FRAME + length);
        buffered = buffered.subarray(GRPC_FRAME + length);
        established = true;
        this.onResponse(readResponse(message, this.protocol), GRPC_FRAME + length, send);
      }
    });
    stream.on("error", () => undefined);
    stream.on("close", () => {
      session.close();
      if (this.closed) return;
      // As data-plane/src/xds-client.ts: full jitter, 250 ms initial, doubling to 15 s.
      this.failures = established ? 0 : this.failures + 1;
      const delay = Math.random() * Math.min(15_000, 250 * 2 ** this.failures);
      setTimeout(() => this.connect(), delay);
    });
  }

  private onResponse(r: Response, size: number, send: (b: Uint8Array) => void): void {
    const now = performance.now();
    this.lastResponseAt = now;
    const known = this.known.get(r.typeUrl);
    if (this.protocol === "delta") {
      for (const [name, version] of r.resources) known?.set(name, version);
      for (const name of r.removed) known?.delete(name);
      send(
        toBinary(
          DeltaDiscoveryRequestSchema,
          create(DeltaDiscoveryRequestSchema, { typeUrl: r.typeUrl, responseNonce: r.nonce }),
        ),
      );
    } else {
      known?.clear();
      for (let i = 0; i < r.resources.length; i++) known?.set(String(i), "");
      send(
        toBinary(
          DiscoveryRequestSchema,
          create(DiscoveryRequestSchema, {
            node: { id: this.id },
            typeUrl: r.typeUrl,
            versionInfo: r.version,
            responseNonce: r.nonce,
          }),
        ),
      );
    }
    this.answered.add(r.typeUrl);
    if (now >= this.changeStart) {
      this.bytesSinceChange += size;
      this.responsesSinceChange.set(r.typeUrl, (this.responsesSinceChange.get(r.typeUrl) ?? 0) + 1);
      if (r.typeUrl === this.watchType && this.ackedAt === undefined) this.ackedAt = now;
    }
  }

  count(type: TypeUrl): number {
    return this.known.get(type)?.size ?? 0;
  }

  close(): void {
    this.closed = true;
    this.session?.destroy();
  }
}

// ---------------------------------------------------------------- the control plane and real data planes

interface Cp {
  proc: ChildProcess;
  port: number;
  /** Its CPU when it started listening (the first snapshot built). */
  listenCpuMs: number;
  next(event: string): Promise<Record<string, number> & { at?: Record<string, number> }>;
  send(line: string): void;
}

async function startCp(tree: string, port: number, listenerPort: number): Promise<Cp> {
  // The same harness file in whichever tree is measured (BEFORE_TREE: an older checkout).
  const script = path.join(tree, "bench", tree === HERE ? "xds-cp.ts" : ".xds-cp-harness.ts");
  if (tree !== HERE) copyFileSync(path.join(HERE, "bench", "xds-cp.ts"), script);
  const proc = spawn(process.execPath, [script], {
    cwd: tree,
    env: {
      ...process.env,
      ROUTES: String(ROUTES),
      CLUSTERS: String(CLUSTERS),
      PORT: String(port),
      LISTENER_PORT: String(listenerPort),
    },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: Array<Record<string, number>> = [];
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on("line", (l) =>
    lines.push(JSON.parse(l)),
  );
  const next = async (event: string) => {
    await until(`control plane ${event}`, () => lines.some((l) => l.event === (event as never)), 120_000);
    const i = lines.findIndex((l) => l.event === (event as never));
    return lines.splice(i, 1)[0] as Record<string, number>;
  };
  const listening = await next("listening");
  return {
    proc,
    port: listening.port as number,
    listenCpuMs: listening.cpuMs as number,
    next,
    send: (line) => proc.stdin?.write(`${line}\n`),
  };
}

async function stopCp(cp: Cp): Promise<void> {
  const exited = new Promise((r) => cp.proc.once("exit", r));
  cp.send("quit");
  await exited;
}

function startReal(tree: string, port: number, i: number, protocol: Protocol): ChildProcess {
  const dp = spawn(
    process.execPath,
    [
      path.join(tree, "cli", "src", "main.ts"),
      "data-plane",
      "--xds",
      `127.0.0.1:${port}`,
      "--xds-protocol",
      protocol,
      "--node-id",
      `real-${i}`,
      "--bind-address",
      `127.0.0.${40 + i}`,
      "--admin",
      "127.0.0.1:0",
      "--no-stats-report",
    ],
    { cwd: tree, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, AGW_LOG_LEVEL: "error" } },
  );
  return dp;
}

// ---------------------------------------------------------------- measuring

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const began = performance.now();
const progress = (what: string) =>
  process.stderr.write(`xds bench: +${((performance.now() - began) / 1000).toFixed(1)} s ${what}\n`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ChangeFigures {
  lastAck: number[];
  realLastAck: number[];
  bytes: number[];
  cpuMs: number;
  /** Responses of other types than the one changed, summed over data planes and changes. */
  otherResponses: number;
}

/** `count` isolated changes of one kind; ACK times of the sims (same clock) and real DPs (epoch). */
async function changes(
  cp: Cp,
  sims: Sim[],
  count: number,
  type: TypeUrl,
  command: (c: number) => string,
): Promise<ChangeFigures> {
  const figures: ChangeFigures = { lastAck: [], realLastAck: [], bytes: [], cpuMs: 0, otherResponses: 0 };
  cp.send("stats");
  const before = await cp.next("stats");
  for (let c = 0; c < count; c++) {
    // Spaced beyond the push throttle (100 ms) so each change is one isolated edit.
    await sleep(250);
    if (REAL_DATA_PLANES > 0) cp.send(`watch ${type}`);
    const start = performance.now();
    const startEpoch = Date.now();
    for (const s of sims) s.startChange(type, start);
    cp.send(command(c));
    await until("every data plane's ACK", () => sims.every((s) => s.ackedAt !== undefined), 120_000);
    await cp.next("changed");
    if (REAL_DATA_PLANES > 0) {
      const real = await cp.next("real-acks");
      const at = Object.values(real.at ?? {});
      if (at.length > 0) figures.realLastAck.push(Math.max(...at) - startEpoch);
    }
    figures.lastAck.push(Math.max(...sims.map((s) => (s.ackedAt as number) - start)));
    figures.bytes.push(...sims.map((s) => s.bytesSinceChange));
    for (const s of sims)
      for (const [t, n] of s.responsesSinceChange) if (t !== type) figures.otherResponses += n;
  }
  cp.send("stats");
  const after = await cp.next("stats");
  figures.cpuMs = ((after.cpuMs as number) - (before.cpuMs as number)) / Math.max(1, count);
  return figures;
}

async function run(tree: string, label: string, protocol: Protocol) {
  const port = await freePort();
  const listenerPort = await freePort();
  let cp = await startCp(tree, port, listenerPort);
  const cpuAtListen = cp.listenCpuMs;
  const sims = Array.from({ length: DATA_PLANES }, (_, i) => new Sim(`sim-${i}`, protocol, port));
  const reals: ChildProcess[] = [];
  const t0 = performance.now();
  for (const s of sims) s.connect();
  for (let i = 0; i < REAL_DATA_PLANES; i++) reals.push(startReal(tree, port, i, protocol));
  /** Real data planes that exited (crashed): reported, and no longer waited for. */
  const realDead = () => reals.filter((r) => r.exitCode !== null || r.signalCode !== null).length;
  /** Polls the control plane until every live data plane's stream is in sync; its last stats. */
  const allInSync = async () => {
    const deadline = Date.now() + 900_000;
    for (;;) {
      cp.send("stats");
      const s = await cp.next("stats");
      const real = REAL_DATA_PLANES - realDead();
      if ((s.inSync as number) >= DATA_PLANES + real && (s.realInSync as number) >= real) return s;
      if (Date.now() > deadline) throw new Error("timed out waiting for every data plane to be in sync");
      await sleep(100);
    }
  };
  await until("initial config on every simulated data plane", () => sims.every((s) => s.synced), 900_000);
  const stats = await allInSync();
  const initialMs = performance.now() - t0;
  progress(`initial sync ${initialMs.toFixed(0)} ms`);
  const initialCpuMs = (stats.cpuMs as number) - cpuAtListen;
  await sleep(500);

  if (process.env.CP_PROFILE) cp.send("profile start");
  const route = await changes(
    cp,
    sims,
    protocol === "sotw" ? Math.max(3, Math.round(CHANGES / 4)) : CHANGES,
    TYPE_URL.route,
    (c) => `change ${(c * 7919) % ROUTES}`,
  );
  if (process.env.CP_PROFILE) {
    cp.send(`profile stop ${process.env.CP_PROFILE}.${label.replace(/ /g, "-")}.cpuprofile`);
    await cp.next("profiled");
  }
  progress("route changes done");
  cp.send("stats");
  const afterChanges = await cp.next("stats");
  const endpoints = await changes(cp, sims, ENDPOINT_CHANGES, TYPE_URL.endpoints, (c) => `endpoints ${c}`);

  progress("endpoint changes done");
  // A rolling update at informer speed: BURST endpoint events BURST_GAP_MS apart.
  await sleep(250);
  const burstStart = performance.now();
  for (const s of sims) s.startChange(TYPE_URL.endpoints, burstStart);
  for (let b = 0; b < BURST; b++) {
    cp.send(`endpoints ${b}`);
    if (BURST_GAP_MS > 0) await sleep(BURST_GAP_MS);
  }
  const burstEnd = performance.now();
  for (let b = 0; b < BURST; b++) await cp.next("changed");
  // Settled: no response for 500 ms (beyond any coalescing window).
  await until(
    "the burst to settle",
    () => sims.every((s) => performance.now() - s.lastResponseAt > 500),
    120_000,
  );
  const burst = {
    sendMs: burstEnd - burstStart,
    responsesPerDp: percentile(
      sims.map((s) => s.responsesSinceChange.get(TYPE_URL.endpoints) ?? 0),
      50,
    ),
    lastAckAfterLastEventMs: Math.max(...sims.map((s) => s.lastResponseAt)) - burstEnd,
    routeResponses: sims.reduce((n, s) => n + (s.responsesSinceChange.get(TYPE_URL.route) ?? 0), 0),
  };

  progress("burst done");
  let restart: Record<string, number> | undefined;
  if (RESTART && protocol === "delta") {
    for (const s of sims) s.startChange("", Number.POSITIVE_INFINITY);
    const streamsBefore = sims.map((s) => s.streams);
    await stopCp(cp);
    const down = performance.now();
    for (const s of sims) s.startChange("", down);
    cp = await startCp(tree, port, listenerPort);
    const up = performance.now();
    progress(`control plane restarted (down ${(up - down).toFixed(0)} ms)`);
    const cpuAtRestart = cp.listenCpuMs;
    await until(
      "every simulated data plane back",
      () => sims.every((s, i) => s.streams > (streamsBefore[i] ?? 0) && s.synced),
      600_000,
    );
    const back = await allInSync();
    restart = {
      reconnectMs: performance.now() - up,
      downMs: up - down,
      cpuMs: (back.cpuMs as number) - cpuAtRestart,
      bytesPerDp: percentile(
        sims.map((s) => s.bytesSinceChange),
        50,
      ),
      nacks: back.nacks as number,
      // Every simulated data plane ends with the whole config: nothing partial.
      partial: sims.filter(
        (s) => s.count(TYPE_URL.route) !== ROUTES || s.count(TYPE_URL.cluster) !== CLUSTERS,
      ).length,
    };
  }
  cp.send("stats");
  const last = await cp.next("stats");
  for (const s of sims) s.close();
  for (const r of reals) r.kill("SIGTERM");
  await Promise.all(
    reals.map((r) => new Promise((res) => (r.exitCode !== null ? res(0) : r.once("exit", res)))),
  );
  await stopCp(cp);
  return {
    label,
    protocol,
    initialMs,
    initialCpuMs,
    route,
    endpoints,
    burst,
    restart,
    realDead: realDead(),
    rssMiB: afterChanges.rssMiB as number,
    heapMiB: afterChanges.heapMiB as number,
    nacks: last.nacks as number,
  };
}

const contenders: Array<{ tree: string; label: string; protocol: Protocol }> = [];
const protocols = (process.env.PROTOCOLS ?? (BEFORE_TREE ? "delta" : "delta,sotw,delta")).split(
  ",",
) as Protocol[];
for (const protocol of protocols) {
  if (BEFORE_TREE) contenders.push({ tree: path.resolve(BEFORE_TREE), label: "before", protocol });
  contenders.push({ tree: HERE, label: BEFORE_TREE ? "after" : "this tree", protocol });
}
const results = [];
for (const c of contenders) {
  progress(`${c.label} ${c.protocol} ${new Date().toISOString()}`);
  results.push(await run(c.tree, c.label, c.protocol));
}
const f = (n: number | undefined, d = 0) => (n === undefined || Number.isNaN(n) ? "—" : n.toFixed(d));
const p = (values: number[]) => `${f(percentile(values, 50), 1)} / ${f(percentile(values, 99), 1)}`;
console.log(
  `xDS bench: ${DATA_PLANES} simulated + ${REAL_DATA_PLANES} real data planes, ${ROUTES} routes, ${CLUSTERS} clusters, ${new Date().toISOString()}`,
);
console.log(
  "| run | protocol | initial sync (ms) | CP CPU for it (ms) | one-route change: last ACK p50 / p99 (ms) | real DPs' last ACK p50 / p99 (ms) | bytes per DP | CP CPU per change (ms) | CP RSS (MiB) | real DPs that exited |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const r of results)
  console.log(
    `| ${r.label} | ${r.protocol} | ${f(r.initialMs)} | ${f(r.initialCpuMs)} | ${p(r.route.lastAck)} | ${p(r.route.realLastAck)} | ${f(percentile(r.route.bytes, 50))} | ${f(r.route.cpuMs, 1)} | ${f(r.rssMiB)} | ${r.realDead} |`,
  );
console.log("");
console.log(
  "| run | endpoint change: last ACK p50 / p99 (ms) | real DPs' (ms) | bytes per DP | CP CPU per change (ms) | route responses caused | burst: events / responses per DP / last ACK after last event (ms) | burst route responses |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of results)
  console.log(
    `| ${r.label} ${r.protocol} | ${p(r.endpoints.lastAck)} | ${p(r.endpoints.realLastAck)} | ${f(percentile(r.endpoints.bytes, 50))} | ${f(r.endpoints.cpuMs, 1)} | ${r.endpoints.otherResponses} | ${BURST} / ${r.burst.responsesPerDp} / ${f(r.burst.lastAckAfterLastEventMs)} | ${r.burst.routeResponses} |`,
  );
if (results.some((r) => r.restart)) {
  console.log("");
  console.log(
    "| run | restart: all DPs back in sync (ms) | CP CPU for it (ms) | bytes per DP | NACKs | DPs with a partial config |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const r of results)
    if (r.restart)
      console.log(
        `| ${r.label} ${r.protocol} | ${f(r.restart.reconnectMs)} | ${f(r.restart.cpuMs)} | ${f(r.restart.bytesPerDp)} | ${r.restart.nacks} | ${r.restart.partial} |`,
      );
}
process.exit(0);
