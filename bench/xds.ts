/**
 * xDS at scale: DATA_PLANES simulated data planes (each its own HTTP/2 connection and ADS stream,
 * ACKing every response) on a control plane (bench/xds-cp.ts, its own process) serving ROUTES
 * routes. For SotW and Delta in turn: time from a one-route config change to each data plane's
 * ACK (p50/p99 of the last ACK per change, and over all data planes), gRPC message bytes per data
 * plane for that change, and the control plane's CPU per change and RSS.
 *
 *   node bench/xds.ts            (DATA_PLANES=100 ROUTES=10000 CHANGES=20 PROTOCOLS=delta,sotw,delta
 *                                 by default)
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { AsyncQueue, RESOURCE_TYPES, TYPE_URL } from "@agw/core";
import { AggregatedDiscoveryService } from "@agw/core/gen/envoy/service/discovery/v3/ads_pb.js";
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  DeltaDiscoveryResponseSchema,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

const DATA_PLANES = Number(process.env.DATA_PLANES ?? 100);
const ROUTES = Number(process.env.ROUTES ?? 10_000);
const CHANGES = Number(process.env.CHANGES ?? 20);
const GRPC_FRAME = 5;

interface Sim {
  initialTypes: Set<string>;
  changeStart: number;
  bytesSinceChange: number;
  ackedAt: number | undefined;
  close(): void;
}

function startSim(port: number, protocol: "sotw" | "delta", id: number): Sim {
  const sessions = new Http2SessionManager(`http://127.0.0.1:${port}`);
  const client = createClient(
    AggregatedDiscoveryService,
    createGrpcTransport({ baseUrl: sessions.authority, sessionManager: sessions, readMaxBytes: 2 ** 30 }),
  );
  const sim: Sim = {
    initialTypes: new Set(),
    changeStart: Number.POSITIVE_INFINITY,
    bytesSinceChange: 0,
    ackedAt: undefined,
    close: () => {
      abort.abort();
      sessions.abort();
    },
  };
  const abort = new AbortController();
  const node = { id: `sim-${id}` };
  // Bytes are counted (by re-encoding what arrived) only for changes: re-encoding every initial
  // 10,000-resource response in this one process would make the simulator, not the control
  // plane, the bottleneck of the initial sync.
  const onResponse = (typeUrl: string, bytes: () => number) => {
    sim.initialTypes.add(typeUrl);
    if (performance.now() >= sim.changeStart) {
      sim.bytesSinceChange += bytes();
      if (typeUrl === TYPE_URL.route && sim.ackedAt === undefined) sim.ackedAt = performance.now();
    }
  };
  void (async () => {
    try {
      if (protocol === "sotw") {
        const out = new AsyncQueue<DiscoveryRequest>();
        for (const typeUrl of RESOURCE_TYPES) out.push(create(DiscoveryRequestSchema, { node, typeUrl }));
        for await (const r of client.streamAggregatedResources(out, { signal: abort.signal })) {
          out.push(
            create(DiscoveryRequestSchema, {
              node,
              typeUrl: r.typeUrl,
              versionInfo: r.versionInfo,
              responseNonce: r.nonce,
            }),
          );
          onResponse(r.typeUrl, () => GRPC_FRAME + toBinary(DiscoveryResponseSchema, r).length);
        }
      } else {
        const out = new AsyncQueue<DeltaDiscoveryRequest>();
        for (const typeUrl of RESOURCE_TYPES)
          out.push(create(DeltaDiscoveryRequestSchema, { node, typeUrl }));
        for await (const r of client.deltaAggregatedResources(out, { signal: abort.signal })) {
          out.push(create(DeltaDiscoveryRequestSchema, { typeUrl: r.typeUrl, responseNonce: r.nonce }));
          onResponse(r.typeUrl, () => GRPC_FRAME + toBinary(DeltaDiscoveryResponseSchema, r).length);
        }
      }
    } catch (e) {
      if (!abort.signal.aborted) console.error(`sim-${id}: ${(e as Error).message}`);
    }
  })();
  return sim;
}

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

async function runProtocol(protocol: "sotw" | "delta", changes: number) {
  const cp = spawn(process.execPath, [new URL("./xds-cp.ts", import.meta.url).pathname], {
    env: { ...process.env, ROUTES: String(ROUTES) },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: Array<Record<string, unknown>> = [];
  createInterface({ input: cp.stdout as NodeJS.ReadableStream }).on("line", (l) => lines.push(JSON.parse(l)));
  const next = async (event: string) => {
    await until(`control plane ${event}`, () => lines.some((l) => l.event === event), 120_000);
    const i = lines.findIndex((l) => l.event === event);
    return lines.splice(i, 1)[0] as Record<string, number>;
  };
  const { port, cpuMs: cpuAtListen } = await next("listening");
  const sims = Array.from({ length: DATA_PLANES }, (_, i) => startSim(port as number, protocol, i));
  const t0 = performance.now();
  await until(
    "initial config on every data plane",
    () => sims.every((s) => s.initialTypes.size === RESOURCE_TYPES.length),
    600_000,
  );
  const initialMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 500));
  cp.stdin?.write("stats\n");
  const before = await next("stats");
  const lastAck: number[] = [];
  const allAcks: number[] = [];
  const bytes: number[] = [];
  for (let c = 0; c < changes; c++) {
    // Spaced beyond the push throttle (100 ms) so each change is one isolated edit.
    await new Promise((r) => setTimeout(r, 250));
    const start = performance.now();
    for (const s of sims) {
      s.changeStart = start;
      s.bytesSinceChange = 0;
      s.ackedAt = undefined;
    }
    cp.stdin?.write(`change ${(c * 7919) % ROUTES}\n`);
    await until("every data plane's ACK", () => sims.every((s) => s.ackedAt !== undefined), 120_000);
    await next("changed");
    const acks = sims.map((s) => (s.ackedAt as number) - start);
    lastAck.push(Math.max(...acks));
    allAcks.push(...acks);
    bytes.push(...sims.map((s) => s.bytesSinceChange));
  }
  cp.stdin?.write("stats\n");
  const after = await next("stats");
  for (const s of sims) s.close();
  cp.stdin?.write("quit\n");
  await new Promise((r) => cp.once("exit", r));
  return {
    protocol,
    initialMs,
    initialCpuMs: (before.cpuMs as number) - (cpuAtListen as number),
    lastAckP50: percentile(lastAck, 50),
    lastAckP99: percentile(lastAck, 99),
    ackP50: percentile(allAcks, 50),
    ackP99: percentile(allAcks, 99),
    bytesPerDpMedian: percentile(bytes, 50),
    bytesPerDpMax: Math.max(...bytes),
    cpuMsPerChange: ((after.cpuMs as number) - (before.cpuMs as number)) / changes,
    rssMiB: after.rssMiB as number,
  };
}

const results = [];
// Alternating contenders; SotW re-sends every route to every data plane, so it gets fewer changes.
const protocols = (process.env.PROTOCOLS ?? "delta,sotw,delta").split(",") as Array<"delta" | "sotw">;
for (const protocol of protocols)
  results.push(
    await runProtocol(protocol, protocol === "sotw" ? Math.max(3, Math.round(CHANGES / 4)) : CHANGES),
  );
console.log(`xDS bench: ${DATA_PLANES} data planes, ${ROUTES} routes, ${new Date().toISOString()}`);
console.log(
  "| protocol | initial sync of all DPs (ms) | CP CPU for it (ms) | last ACK p50 / p99 (ms) | per-DP ACK p50 / p99 (ms) | bytes per DP for a one-route change (median / max) | CP CPU per change (ms) | CP RSS (MiB) |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of results)
  console.log(
    `| ${r.protocol} | ${r.initialMs.toFixed(0)} | ${r.initialCpuMs.toFixed(0)} | ${r.lastAckP50.toFixed(1)} / ${r.lastAckP99.toFixed(1)} | ${r.ackP50.toFixed(1)} / ${r.ackP99.toFixed(1)} | ${r.bytesPerDpMedian} / ${r.bytesPerDpMax} | ${r.cpuMsPerChange.toFixed(1)} | ${r.rssMiB.toFixed(0)} |`,
  );
process.exit(0);
