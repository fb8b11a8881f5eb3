/**
 * The control plane side of bench/xds.ts, in its own process so its CPU and RSS are its own: an ADS
 * server over a snapshot of ROUTES routes and CLUSTERS clusters, on PORT (0: any).
 *
 * stdin (one command a line) → stdout (JSON lines):
 * - "change N": route N's timeout edited → {"event":"changed"}. The IR is what an incremental
 *   translator hands over for a one-object edit: a new route object, every other IR object the same
 *   object as before (the listener and its route array are new, as they hold the route).
 * - "endpoints N": cluster N's endpoints changed (an EndpointSlice event) → {"event":"changed"}.
 * - "watch TYPE_URL": the ACK counts of the real data planes (node ids "real-*") for that type are
 *   noted; when each has ACKed it again → {"event":"real-acks","at":{node: epoch ms}}.
 * - "stats" → CPU, RSS, connected streams, streams in sync with the snapshot, NACKs.
 * - "profile start" / "profile stop FILE": a CPU profile (.cpuprofile) of what happens in between.
 * - "quit": graceful close (streams end OK, GOAWAY), then exit.
 *
 * Written against the SnapshotBuilder/SnapshotCache/ADS API that older trees have too, so the
 * bench can run this same file in a checkout of an earlier commit (BEFORE_TREE) for a
 * before/after in one run.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { createInterface } from "node:readline";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { SnapshotBuilder } from "@agw/control-plane/xds/resources";
import { createLogger } from "@agw/core";
import type { Ir, IrCluster, IrListener, IrRoute } from "@agw/core/ir";

const ROUTES = Number(process.env.ROUTES ?? 10_000);
const CLUSTERS = Number(process.env.CLUSTERS ?? 100);
const PORT = Number(process.env.PORT ?? 0);
const LISTENER_PORT = Number(process.env.LISTENER_PORT ?? 8080);
const silent = createLogger("bench", { write: () => true } as unknown as NodeJS.WritableStream);

function route(i: number, timeoutMs: number): IrRoute {
  return {
    name: `r${i}`,
    order: i,
    hosts: [],
    path: { kind: "prefix", value: `/service-${i}/` },
    methods: [],
    headers: [],
    query: [],
    target: { cluster: `c${i % CLUSTERS}` },
    timeoutMs,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [["x-route", `r${i}`]], remove: [] },
    plugins: [],
  };
}

function cluster(i: number, port: number): IrCluster {
  return {
    name: `c${i}`,
    lb: "round_robin" as const,
    connectTimeoutMs: 1000,
    idleTimeoutMs: 5000,
    maxIdlePerEndpoint: 4,
    maxRequestsPerConnection: 0,
    endpoints: [{ address: "127.0.0.1", port, weight: 1 }],
  };
}

const routes = Array.from({ length: ROUTES }, (_, i) => route(i, 5000));
const clusters = Array.from({ length: CLUSTERS }, (_, i) => cluster(i, 10_000 + i));
const listener = (): IrListener => ({
  name: "web",
  address: "127.0.0.1",
  port: LISTENER_PORT,
  protocol: "http",
  routes: [...routes],
});
let ir: Ir = { listeners: [listener()], clusters: [...clusters] };

const cache = new SnapshotCache();
const registry = new DataPlaneRegistry();
const snapshots = new SnapshotBuilder();
cache.set(snapshots.build(ir));
const service = createAdsService(cache, registry, silent);
const server = await startAdsServer("127.0.0.1", PORT, service);
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const cpuMs = () => {
  const cpu = process.cpuUsage();
  return (cpu.user + cpu.system) / 1000;
};
const realStreams = () => registry.list().filter((s) => s.nodeId.startsWith("real-"));
say({ event: "listening", port: server.address.port, cpuMs: cpuMs(), epochMs: Date.now() });
let inspector: Session | undefined;
async function profile(what: string, file: string | undefined) {
  if (what === "start") {
    inspector = new Session();
    inspector.connect();
    await inspector.post("Profiler.enable");
    await inspector.post("Profiler.start");
  } else if (inspector && file) {
    const { profile } = await inspector.post("Profiler.stop");
    writeFileSync(file, JSON.stringify(profile));
    inspector.disconnect();
    say({ event: "profiled", file });
  }
}
createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.split(" ");
  if (command === "change") {
    const i = Number(arg);
    routes[i] = route(i, (routes[i]?.timeoutMs ?? 5000) + 1);
    ir = { ...ir, listeners: [listener()] };
    cache.set(snapshots.build(ir));
    say({ event: "changed" });
  } else if (command === "endpoints") {
    const i = Number(arg) % CLUSTERS;
    clusters[i] = cluster(i, (clusters[i]?.endpoints[0]?.port ?? 10_000) + 1);
    ir = { ...ir, clusters: [...clusters] };
    cache.set(snapshots.build(ir));
    say({ event: "changed" });
  } else if (command === "watch") {
    const type = arg ?? "";
    const real = realStreams();
    const from = new Map(real.map((s) => [s.nodeId, s.types.get(type)?.acks ?? 0]));
    const at: Record<string, number> = {};
    const deadline = Date.now() + 60_000;
    const poll = setInterval(() => {
      for (const s of real) {
        const before = from.get(s.nodeId);
        if (before !== undefined && at[s.nodeId] === undefined && (s.types.get(type)?.acks ?? 0) > before)
          at[s.nodeId] = Date.now();
      }
      if (Object.keys(at).length === from.size || Date.now() > deadline) {
        clearInterval(poll);
        say({ event: "real-acks", at });
      }
    }, 1);
  } else if (command === "stats") {
    const snapshot = cache.snapshot;
    const streams = registry.list();
    const inSync = streams.filter(
      (s) =>
        s.types.size > 0 &&
        [...s.types].every(
          ([t, ts]) => ts.ackedVersion !== "" && ts.ackedVersion === snapshot?.get(t as never)?.version,
        ),
    );
    say({
      event: "stats",
      cpuMs: cpuMs(),
      rssMiB: process.memoryUsage().rss / 2 ** 20,
      heapMiB: process.memoryUsage().heapUsed / 2 ** 20,
      connected: streams.length,
      inSync: inSync.length,
      realInSync: inSync.filter((s) => s.nodeId.startsWith("real-")).length,
      nacks: streams.reduce((n, s) => n + [...s.types.values()].reduce((m, t) => m + t.nacks, 0), 0),
    });
  } else if (command === "profile") {
    void profile(arg ?? "", line.split(" ")[2]);
  } else if (command === "quit") {
    void server.close().then(() => process.exit(0));
  }
});
