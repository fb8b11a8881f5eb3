/**
 * The control plane side of bench/xds.ts, in its own process so its CPU and RSS are its own: an ADS
 * server over a snapshot of ROUTES routes. stdin: "change N" rebuilds the snapshot with route N
 * changed (as a config edit would), "stats" prints CPU and RSS; stdout: JSON lines.
 */
import { createInterface } from "node:readline";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { SnapshotBuilder } from "@agw/control-plane/xds/resources";
import { createLogger } from "@agw/core";
import type { Ir, IrRoute } from "@agw/core/ir";

const ROUTES = Number(process.env.ROUTES ?? 10_000);
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
    target: { cluster: `c${i % 100}` },
    timeoutMs,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [["x-route", `r${i}`]], remove: [] },
    plugins: [],
  };
}

const timeouts = Array.from({ length: ROUTES }, () => 5000);
const ir = (): Ir => ({
  listeners: [
    {
      name: "web",
      address: "127.0.0.1",
      port: 8080,
      protocol: "http",
      routes: timeouts.map((t, i) => route(i, t)),
    },
  ],
  clusters: Array.from({ length: 100 }, (_, i) => ({
    name: `c${i}`,
    lb: "round_robin" as const,
    connectTimeoutMs: 1000,
    idleTimeoutMs: 5000,
    maxIdlePerEndpoint: 4,
    maxRequestsPerConnection: 0,
    endpoints: [{ address: "127.0.0.1", port: 10_000 + i, weight: 1 }],
  })),
});

const cache = new SnapshotCache();
const registry = new DataPlaneRegistry();
const snapshots = new SnapshotBuilder();
cache.set(snapshots.build(ir()));
const server = await startAdsServer("127.0.0.1", 0, createAdsService(cache, registry, silent));
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const cpuMs = () => {
  const cpu = process.cpuUsage();
  return (cpu.user + cpu.system) / 1000;
};
say({ event: "listening", port: server.address.port, cpuMs: cpuMs() });
createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.split(" ");
  if (command === "change") {
    const i = Number(arg);
    timeouts[i] = (timeouts[i] ?? 5000) + 1;
    cache.set(snapshots.build(ir()));
    say({ event: "changed" });
  } else if (command === "stats") {
    say({
      event: "stats",
      cpuMs: cpuMs(),
      rssMiB: process.memoryUsage().rss / 2 ** 20,
    });
  } else if (command === "quit") {
    void server.close().then(() => process.exit(0));
  }
});
