/**
 * Incremental snapshot building is exact: after any sequence of edits, the snapshot a long-lived
 * SnapshotBuilder produces is byte for byte the one a fresh builder makes from the same IR, and the
 * changes the cache hands to in-step streams turn the previous publication into the new one. Two
 * sources of edits: IR edits as an incremental translator makes them (untouched objects kept, some
 * re-created with equal content as a re-translation does), and Kubernetes events through
 * translateKube + mergeIr.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Ir, IrCluster, IrListener, IrRoute } from "@agw/core/ir";
import fc from "fast-check";
import { mergeIr } from "../providers/kubernetes/merge.ts";
import { type KubeObjects, translateKube } from "../providers/kubernetes/translate.ts";
import {
  CONTROLLER_NAME,
  type EndpointSlice,
  type GatewayRoute,
  type Service,
} from "../providers/kubernetes/types.ts";
import { SnapshotCache } from "./cache.ts";
import { type Snapshot, SnapshotBuilder, type TypeSnapshot } from "./resources.ts";

/** Every byte a stream could be sent, per type: versions, names in order, and each resource's encodings. */
function wire(snapshot: Snapshot): unknown {
  return [...snapshot].map(([type, snap]) => [
    type,
    snap.version,
    [...snap.resources.values()].map((r) => [
      r.name,
      r.version,
      r.size,
      Buffer.from(r.deltaBytes).toString("base64"),
      Buffer.from(r.sotwBytes).toString("base64"),
      r.secrets,
    ]),
  ]);
}

/** Checks one build against a fresh one, and the cache's published changes against the snapshots. */
function checker() {
  const builder = new SnapshotBuilder();
  const cache = new SnapshotCache({ minIntervalMs: 0 });
  let previous: Snapshot | undefined;
  return (ir: Ir) => {
    const incremental = builder.build(ir);
    assert.deepEqual(wire(incremental), wire(new SnapshotBuilder().build(ir)));
    cache.set(incremental);
    if (previous)
      for (const [type, to] of incremental) {
        const from = previous.get(type);
        const changes = cache.changesOf(type);
        if (!from || from === to) continue;
        assert.ok(changes, type);
        // What an in-step stream has after applying the changes = the new snapshot.
        const versions = (s: TypeSnapshot) =>
          new Map([...s.resources.values()].map((r) => [r.name, r.version]));
        const streamHas: Map<string, string> = versions(from);
        for (const r of changes.updated) streamHas.set(r.name, r.version);
        for (const n of changes.removed) streamHas.delete(n);
        assert.deepEqual(streamHas, versions(to), type);
      }
    previous = incremental;
    cache.close();
  };
}

function route(i: number, timeoutMs: number, cluster: number): IrRoute {
  return {
    name: `r${i}`,
    order: i,
    hosts: [],
    path: { kind: "prefix", value: `/s${i}/` },
    methods: [],
    headers: [],
    query: [],
    target: { cluster: `c${cluster}` },
    timeoutMs,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [], remove: [] },
    plugins: [],
  };
}

function cluster(i: number, port: number): IrCluster {
  return {
    name: `c${i}`,
    lb: "round_robin",
    connectTimeoutMs: 1000,
    idleTimeoutMs: 5000,
    maxIdlePerEndpoint: 4,
    maxRequestsPerConnection: 0,
    endpoints: [{ address: "127.0.0.1", port, weight: 1 }],
  };
}

type Edit =
  | { kind: "timeout"; listener: number; route: number; timeoutMs: number }
  | { kind: "add"; listener: number; id: number }
  | { kind: "remove"; listener: number; route: number }
  | { kind: "move"; listener: number; route: number }
  | { kind: "endpoints"; cluster: number; port: number }
  | { kind: "cluster"; cluster: number; connectTimeoutMs: number }
  | { kind: "port"; listener: number; port: number }
  | { kind: "recreate" };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({
    kind: fc.constant("timeout" as const),
    listener: fc.nat(2),
    route: fc.nat(40),
    timeoutMs: fc.constantFrom(1000, 2000, 3000),
  }),
  fc.record({ kind: fc.constant("add" as const), listener: fc.nat(2), id: fc.nat(60) }),
  fc.record({ kind: fc.constant("remove" as const), listener: fc.nat(2), route: fc.nat(40) }),
  fc.record({ kind: fc.constant("move" as const), listener: fc.nat(2), route: fc.nat(40) }),
  fc.record({
    kind: fc.constant("endpoints" as const),
    cluster: fc.nat(5),
    port: fc.constantFrom(9000, 9001),
  }),
  fc.record({
    kind: fc.constant("cluster" as const),
    cluster: fc.nat(5),
    connectTimeoutMs: fc.constantFrom(500, 1000),
  }),
  fc.record({ kind: fc.constant("port" as const), listener: fc.nat(2), port: fc.constantFrom(8080, 8081) }),
  fc.constant({ kind: "recreate" as const }),
);

/** Applies an edit as an incremental translator would: new objects for what changed, the rest kept. */
function apply(ir: Ir, e: Edit): Ir {
  const listeners = [...ir.listeners];
  const clusters = [...ir.clusters];
  const withRoutes = (li: number, f: (routes: IrRoute[]) => IrRoute[]) => {
    const l = listeners[li % listeners.length] as IrListener;
    listeners[li % listeners.length] = { ...l, routes: f([...l.routes]) };
  };
  switch (e.kind) {
    case "timeout":
      withRoutes(e.listener, (rs) => {
        const at = e.route % Math.max(1, rs.length);
        const r = rs[at];
        if (r) rs[at] = { ...r, timeoutMs: e.timeoutMs };
        return rs;
      });
      break;
    case "add":
      withRoutes(e.listener, (rs) =>
        rs.some((r) => r.name === `r${e.id}`) ? rs : [...rs, route(e.id, 1000, e.id % clusters.length)],
      );
      break;
    case "remove":
      withRoutes(e.listener, (rs) => rs.filter((_, i) => i !== e.route % Math.max(1, rs.length)));
      break;
    case "move":
      withRoutes(e.listener, (rs) => {
        const [r] = rs.splice(e.route % Math.max(1, rs.length), 1);
        return r ? [r, ...rs] : rs;
      });
      break;
    case "endpoints": {
      const c = clusters[e.cluster % clusters.length] as IrCluster;
      clusters[e.cluster % clusters.length] = {
        ...c,
        endpoints: [{ address: "127.0.0.1", port: e.port, weight: 1 }],
      };
      break;
    }
    case "cluster": {
      const c = clusters[e.cluster % clusters.length] as IrCluster;
      clusters[e.cluster % clusters.length] = { ...c, connectTimeoutMs: e.connectTimeoutMs };
      break;
    }
    case "port": {
      const l = listeners[e.listener % listeners.length] as IrListener;
      listeners[e.listener % listeners.length] = { ...l, port: e.port };
      break;
    }
    case "recreate":
      // A whole re-translation (config.yaml re-read on the worker): every object new, equal content.
      return structuredClone(ir);
  }
  return { ...ir, listeners, clusters };
}

const config = fc.record({
  listeners: fc.integer({ min: 1, max: 3 }),
  routes: fc.array(fc.nat(40), { minLength: 0, maxLength: 30 }),
  clusters: fc.integer({ min: 1, max: 6 }),
});

test("incremental builds equal full builds, byte for byte, after random IR edits", () => {
  fc.assert(
    fc.property(config, fc.array(edit, { maxLength: 25 }), (c, edits) => {
      const clusters = Array.from({ length: c.clusters }, (_, i) => cluster(i, 9000));
      let ir: Ir = {
        listeners: Array.from({ length: c.listeners }, (_, li) => ({
          name: `l${li}`,
          address: "127.0.0.1",
          port: 8000 + li,
          protocol: "http" as const,
          routes: [...new Set(c.routes)]
            .filter((_, i) => i % c.listeners === li)
            .map((id) => route(id, 1000, id % c.clusters)),
        })),
        clusters,
      };
      const check = checker();
      check(ir);
      for (const e of edits) {
        ir = apply(ir, e);
        check(ir);
      }
    }),
    { numRuns: 150 },
  );
});

type KubeEvent =
  | { kind: "slice"; service: number; ips: number[] }
  | { kind: "route"; service: number; timeout: number | undefined; prefix: number }
  | { kind: "delete-route"; service: number }
  | { kind: "delete-service"; service: number }
  | { kind: "add-service"; service: number };

const kubeEvent: fc.Arbitrary<KubeEvent> = fc.oneof(
  fc.record({
    kind: fc.constant("slice" as const),
    service: fc.nat(3),
    ips: fc.array(fc.nat(5), { maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant("route" as const),
    service: fc.nat(3),
    timeout: fc.option(fc.constantFrom(1, 2, 5), { nil: undefined }),
    prefix: fc.nat(3),
  }),
  fc.record({ kind: fc.constant("delete-route" as const), service: fc.nat(3) }),
  fc.record({ kind: fc.constant("delete-service" as const), service: fc.nat(3) }),
  fc.record({ kind: fc.constant("add-service" as const), service: fc.nat(3) }),
);

test("incremental builds equal full builds, byte for byte, after random Kubernetes events", () => {
  const svc = (i: number): Service => ({
    metadata: { name: `svc${i}`, namespace: "shop" },
    spec: { ports: [{ name: "http", port: 80 }] },
  });
  const slice = (i: number, ips: number[]): EndpointSlice => ({
    metadata: { name: `svc${i}-x`, namespace: "shop", labels: { "kubernetes.io/service-name": `svc${i}` } },
    addressType: "IPv4",
    ports: [{ name: "http", port: 8080 }],
    endpoints: ips.map((ip) => ({ addresses: [`10.0.0.${ip + 1}`], conditions: { ready: true } })),
  });
  const gatewayRoute = (i: number, timeout: number | undefined, prefix: number): GatewayRoute => ({
    metadata: { name: `route${i}`, namespace: "shop", generation: 1 },
    spec: {
      listener: { name: "http", port: 8080 },
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: `/p${prefix}/${i}` } }],
          backendRefs: [{ name: `svc${i}`, port: "http" }],
          ...(timeout !== undefined && { timeout: `${timeout}s` }),
        },
      ],
    },
  });
  const file: Ir = {
    listeners: [
      { name: "file", address: "127.0.0.1", port: 9090, protocol: "http", routes: [route(0, 1000, 0)] },
    ],
    clusters: [cluster(0, 9000)],
  };
  fc.assert(
    fc.property(fc.array(kubeEvent, { minLength: 1, maxLength: 25 }), (events) => {
      const services = new Map<number, Service>([0, 1].map((i) => [i, svc(i)]));
      const slices = new Map<number, EndpointSlice>();
      const routes = new Map<number, GatewayRoute>([[0, gatewayRoute(0, undefined, 0)]]);
      const objects = (): KubeObjects => ({
        services: [...services.values()],
        endpointSlices: [...slices.values()],
        gatewayRoutes: [...routes.values()],
        secrets: [],
        gatewayClasses: [{ metadata: { name: "agw" }, spec: { controllerName: CONTROLLER_NAME } }],
      });
      const check = checker();
      let served = new Map();
      const step = () => {
        const merged = mergeIr(file, translateKube(objects()), served);
        served = merged.servedSecrets;
        check(merged.ir);
      };
      step();
      for (const e of events) {
        if (e.kind === "slice") slices.set(e.service, slice(e.service, e.ips));
        else if (e.kind === "route") routes.set(e.service, gatewayRoute(e.service, e.timeout, e.prefix));
        else if (e.kind === "delete-route") routes.delete(e.service);
        else if (e.kind === "delete-service") services.delete(e.service);
        else services.set(e.service, svc(e.service));
        step();
      }
    }),
    { numRuns: 100 },
  );
});
