/**
 * The control plane's own cost of a one-route change, without streams: SnapshotBuilder.build +
 * SnapshotCache publication for ROUTES routes (default 10,000) when one route object is replaced
 * and every other IR object is kept (what an incremental translator hands over). CPU per change,
 * 3 rounds of 50 changes. Runs in any checkout that has SnapshotBuilder/SnapshotCache (copy it there
 * for a before/after).
 *
 *   node bench/xds-build.ts
 */
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { SnapshotBuilder } from "@agw/control-plane/xds/resources";
import type { Ir, IrRoute } from "@agw/core/ir";

const ROUTES = Number(process.env.ROUTES ?? 10_000);
const route = (i: number, timeoutMs: number): IrRoute => ({
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
});
const routes = Array.from({ length: ROUTES }, (_, i) => route(i, 5000));
const clusters = Array.from({ length: 100 }, (_, i) => ({
  name: `c${i}`,
  lb: "round_robin" as const,
  connectTimeoutMs: 1000,
  idleTimeoutMs: 5000,
  maxIdlePerEndpoint: 4,
  maxRequestsPerConnection: 0,
  endpoints: [{ address: "127.0.0.1", port: 10_000 + i, weight: 1 }],
}));
const ir = (): Ir => ({
  listeners: [{ name: "web", address: "127.0.0.1", port: 8080, protocol: "http", routes: [...routes] }],
  clusters,
});
const builder = new SnapshotBuilder();
const cache = new SnapshotCache({ minIntervalMs: 0 });
cache.set(builder.build(ir()));
const cpuMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
for (let round = 0; round < 3; round++) {
  const start = cpuMs();
  for (let c = 0; c < 50; c++) {
    const i = (c * 7919) % ROUTES;
    routes[i] = route(i, (routes[i]?.timeoutMs ?? 5000) + 1);
    cache.set(builder.build(ir()));
  }
  console.log(
    `round ${round + 1}: ${((cpuMs() - start) / 50).toFixed(2)} ms CPU per one-route change (build + publish)`,
  );
}
cache.close();
