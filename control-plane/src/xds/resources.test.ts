import assert from "node:assert/strict";
import { test } from "node:test";
import type { Ir, IrRoute } from "@agw/core/ir";
import { TYPE_URL } from "@agw/core/xds/types";
import { SnapshotCache } from "./cache.ts";
import { irToSnapshot, SnapshotBuilder } from "./resources.ts";

function route(name: string, timeoutMs: number): IrRoute {
  return {
    name,
    order: 0,
    hosts: [],
    path: { kind: "prefix", value: `/${name}` },
    methods: [],
    headers: [],
    query: [],
    target: { cluster: "c" },
    timeoutMs,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [], remove: [] },
    plugins: [],
  };
}

function ir(routes: IrRoute[], port = 8080): Ir {
  return {
    listeners: [{ name: "web", address: "127.0.0.1", port, protocol: "http", routes }],
    clusters: [
      {
        name: "c",
        lb: "round_robin",
        connectTimeoutMs: 1000,
        idleTimeoutMs: 5000,
        maxIdlePerEndpoint: 4,
        maxRequestsPerConnection: 0,
        endpoints: [{ address: "127.0.0.1", port: 9000, weight: 1 }],
      },
    ],
  };
}

test("a rebuild re-encodes only the resources whose IR changed and keeps unchanged types as they were", () => {
  const builder = new SnapshotBuilder();
  const first = builder.build(ir([route("a", 1000), route("b", 1000)]));
  assert.equal(builder.lastBuild.encoded, 6);
  // Fresh objects with the same content (as a re-translation produces) and one edited route.
  const second = builder.build(ir([route("a", 1000), route("b", 2000)]));
  assert.deepEqual(builder.lastBuild, { encoded: 1, reused: 5 });
  for (const type of [TYPE_URL.listener, TYPE_URL.cluster, TYPE_URL.endpoints, TYPE_URL.routeConfig])
    assert.equal(second.get(type), first.get(type), type);
  const routesBefore = first.get(TYPE_URL.route);
  const routesAfter = second.get(TYPE_URL.route);
  assert.notEqual(routesAfter?.version, routesBefore?.version);
  assert.equal(routesAfter?.resources.get("web/a"), routesBefore?.resources.get("web/a"));
  assert.notEqual(
    routesAfter?.resources.get("web/b")?.version,
    routesBefore?.resources.get("web/b")?.version,
  );
  // The incremental build equals a build from scratch.
  const scratch = irToSnapshot(ir([route("a", 1000), route("b", 2000)]));
  for (const [type, snap] of scratch) assert.equal(second.get(type)?.version, snap.version, type);
});

test("a listener edit re-encodes the listener alone, not its routes", () => {
  const builder = new SnapshotBuilder();
  builder.build(ir([route("a", 1000)]));
  builder.build(ir([route("a", 1000)], 8081));
  assert.deepEqual(builder.lastBuild, { encoded: 1, reused: 4 });
});

test("the cache computes each publication's changes once: updated and removed names per type", () => {
  const builder = new SnapshotBuilder();
  const cache = new SnapshotCache({ minIntervalMs: 0 });
  cache.set(builder.build(ir([route("a", 1000), route("b", 1000)])));
  assert.equal(cache.changesOf(TYPE_URL.route), undefined);
  cache.set(builder.build(ir([route("a", 1500), route("c", 1000)])));
  const changes = cache.changesOf(TYPE_URL.route);
  assert.deepEqual(
    changes?.updated.map((r) => r.name),
    ["web/a", "web/c"],
  );
  assert.deepEqual(changes?.removed, ["web/b"]);
  assert.equal(cache.changesOf(TYPE_URL.cluster), undefined);
  cache.close();
});

test("a one-route edit of 2,000 routes serializes and encodes that route alone: the other IR objects are the same objects", () => {
  const routes = Array.from({ length: 2000 }, (_, i) => route(`r${i}`, 1000));
  const builder = new SnapshotBuilder();
  const first = builder.build(ir(routes));
  const edited = [...routes];
  edited[7] = route("r7", 2000);
  const stringify = JSON.stringify;
  let calls = 0;
  JSON.stringify = ((...args: Parameters<typeof stringify>) => {
    calls++;
    return stringify(...args);
  }) as typeof stringify;
  let second: ReturnType<SnapshotBuilder["build"]>;
  try {
    second = builder.build(ir(edited));
  } finally {
    JSON.stringify = stringify;
  }
  // The edited route, and the listener and cluster objects ir() re-creates: not the 2,000 routes.
  assert.ok(calls <= 5, `${calls} JSON.stringify calls`);
  assert.equal(builder.lastBuild.encoded, 1);
  const changes = second.get(TYPE_URL.route)?.changedFrom;
  assert.equal(changes?.from.deref(), first.get(TYPE_URL.route));
  assert.deepEqual(
    changes?.updated.map((r) => r.name),
    ["web/r7"],
  );
});
