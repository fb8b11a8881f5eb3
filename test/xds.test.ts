/**
 * The xDS protocol between a real control plane ADS server and the data plane's client and config
 * store, over gRPC on loopback: ACK, NACK with error_detail, versions kept per data plane.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { irToSnapshot, typeSnapshot, versioned } from "@agw/control-plane/xds/resources";
import { createLogger, TYPE_URL } from "@agw/core";
import { RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import type { Ir } from "@agw/core/ir";
import { ConfigStore } from "@agw/data-plane/config-store";
import { ListenerManager } from "@agw/data-plane/listeners";
import { XdsClient } from "@agw/data-plane/xds-client";
import { create } from "@bufbuild/protobuf";
import { freePort, waitFor } from "./helpers.ts";

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, log: createLogger("test", stream) };
}

const IR = (port: number): Ir => ({
  listeners: [
    {
      name: "main",
      address: "127.0.0.1",
      port,
      protocol: "http",
      routes: [
        {
          name: "all",
          order: 0,
          hosts: [],
          path: { kind: "prefix", value: "/" },
          methods: [],
          headers: [],
          query: [],
          target: { cluster: "c" },
          timeoutMs: 1000,
          requestHeaders: { add: [], set: [], remove: [] },
          responseHeaders: { add: [], set: [], remove: [] },
          plugins: [],
        },
      ],
    },
  ],
  clusters: [
    {
      name: "c",
      lb: "round_robin",
      connectTimeoutMs: 1000,
      idleTimeoutMs: 1000,
      maxIdlePerEndpoint: 1,
      maxRequestsPerConnection: 0,
      endpoints: [{ address: "127.0.0.1", port: 9, weight: 1 }],
    },
  ],
});

test("NACK: the data plane rejects a bad route with error_detail; the stream and the last ACK survive", async (t) => {
  const cp = capture();
  const dp = capture();
  const cache = new SnapshotCache();
  const registry = new DataPlaneRegistry();
  const ir = IR(await freePort());
  const good = irToSnapshot(ir);
  cache.set(good);
  const server = await startAdsServer("127.0.0.1", 0, createAdsService(cache, registry, cp.log));
  const listeners = new ListenerManager(() => ({ handle: (socket) => socket.destroy() }), dp.log);
  const store = new ConfigStore(listeners, dp.log);
  const client = new XdsClient({
    servers: [`127.0.0.1:${server.address.port}`],
    nodeId: "dp-1",
    log: dp.log,
    onUpdate: (type, resources, version) => store.apply(type, resources, version),
  });
  t.after(async () => {
    await client.stop();
    listeners.closeAll();
    await server.close();
  });
  client.start();

  const goodRouteVersion = good.get(TYPE_URL.route)?.version;
  await waitFor("the first ACK of every type", () => {
    const dpState = registry.list()[0];
    return dpState && [...dpState.types.values()].every((s) => s.ackedVersion === s.sentVersion && s.ackedAt)
      ? dpState
      : undefined;
  });
  assert.equal(registry.list()[0]?.types.get(TYPE_URL.route)?.ackedVersion, goodRouteVersion);
  const configBefore = store.current();

  // A resource the control plane's own validation would never emit, injected straight into the cache.
  const bad = new Map(good);
  bad.set(
    TYPE_URL.route,
    typeSnapshot([
      versioned(
        RouteSchema,
        "main/all",
        create(RouteSchema, {
          name: "all",
          routeConfig: "main",
          match: { path: { case: "regex", value: "([a-z" } },
          action: { target: { case: "cluster", value: "c" } },
        }),
      ),
    ]),
  );
  cache.set(bad);
  const badVersion = bad.get(TYPE_URL.route)?.version;

  const nack = await waitFor("the NACK", () => registry.list()[0]?.types.get(TYPE_URL.route)?.lastNack);
  assert.equal(nack.version, badVersion);
  assert.match(nack.message, /agw\.v1\.Route main\/all: invalid regex: Invalid regular expression/);
  const routeState = registry.list()[0]?.types.get(TYPE_URL.route);
  assert.equal(routeState?.ackedVersion, goodRouteVersion, "the last ACKed version is kept");
  assert.equal(store.current(), configBefore, "the data plane keeps serving its previous config");
  assert.ok(
    cp.lines.some(
      (l) =>
        l.msg === "data plane rejected config (NACK)" &&
        l.node === "dp-1" &&
        /Invalid regular/.test(String(l.error)),
    ),
    "the control plane logs the NACK",
  );

  // The stream is still up: a good change is pushed and ACKed on it.
  const streamId = registry.list()[0]?.streamId;
  const fixed = irToSnapshot({
    ...ir,
    listeners: ir.listeners.map((l) => ({ ...l, routes: l.routes.map((r) => ({ ...r, timeoutMs: 2000 })) })),
  });
  cache.set(fixed);
  await waitFor("the ACK of the fixed config", () =>
    registry.list()[0]?.types.get(TYPE_URL.route)?.ackedVersion === fixed.get(TYPE_URL.route)?.version
      ? true
      : undefined,
  );
  assert.equal(registry.list()[0]?.streamId, streamId, "same stream");
  assert.notEqual(store.current(), configBefore);
});

test("NACK: a regex that cannot run in linear time is refused by the data plane itself, whatever control plane sent it", async (t) => {
  const cache = new SnapshotCache();
  const registry = new DataPlaneRegistry();
  const ir = IR(await freePort());
  const good = irToSnapshot(ir);
  cache.set(good);
  const server = await startAdsServer("127.0.0.1", 0, createAdsService(cache, registry, capture().log));
  const dp = capture();
  const listeners = new ListenerManager(() => ({ handle: (socket) => socket.destroy() }), dp.log);
  const store = new ConfigStore(listeners, dp.log);
  const client = new XdsClient({
    servers: [`127.0.0.1:${server.address.port}`],
    nodeId: "dp-1",
    log: dp.log,
    onUpdate: (type, resources, version) => store.apply(type, resources, version),
  });
  t.after(async () => {
    await client.stop();
    listeners.closeAll();
    await server.close();
  });
  client.start();
  await waitFor("the first ACK of routes", () =>
    registry.list()[0]?.types.get(TYPE_URL.route)?.ackedVersion === good.get(TYPE_URL.route)?.version
      ? true
      : undefined,
  );
  const configBefore = store.current();
  // What go-control-plane or any other server could send: our control plane's validation is bypassed.
  const bad = new Map(good);
  bad.set(
    TYPE_URL.route,
    typeSnapshot([
      versioned(
        RouteSchema,
        "main/all",
        create(RouteSchema, {
          name: "all",
          routeConfig: "main",
          match: { path: { case: "regex", value: "/(a+)\\1" } },
          action: { target: { case: "cluster", value: "c" } },
        }),
      ),
    ]),
  );
  cache.set(bad);
  const nack = await waitFor("the NACK", () => registry.list()[0]?.types.get(TYPE_URL.route)?.lastNack);
  assert.equal(nack.version, bad.get(TYPE_URL.route)?.version);
  assert.match(nack.message, /agw\.v1\.Route main\/all: .*cannot run in linear time/);
  assert.equal(store.current(), configBefore, "the data plane keeps serving its previous config");
});

test("replicas: a data plane skips a dead address, fails over when its control plane shuts down, and reconnects after max stream age", async (t) => {
  const dp = capture();
  const ir = IR(await freePort());
  const servers = await Promise.all(
    [0, 1].map(async () => {
      const cache = new SnapshotCache();
      cache.set(irToSnapshot(ir));
      const registry = new DataPlaneRegistry();
      const server = await startAdsServer(
        "127.0.0.1",
        0,
        createAdsService(cache, registry, capture().log, { maxStreamAgeMs: 400 }),
      );
      return { server, registry };
    }),
  );
  const [a, b] = servers as [(typeof servers)[0], (typeof servers)[0]];
  const dead = await freePort();
  const listeners = new ListenerManager(() => ({ handle: (socket) => socket.destroy() }), dp.log);
  const store = new ConfigStore(listeners, dp.log);
  const client = new XdsClient({
    servers: [
      `127.0.0.1:${dead}`,
      `127.0.0.1:${a.server.address.port}`,
      `127.0.0.1:${b.server.address.port}`,
    ],
    nodeId: "dp-replicas",
    log: dp.log,
    onDeltaUpdate: (type, updated, removed, version) => store.applyDelta(type, updated, removed, version),
  });
  t.after(async () => {
    await client.stop();
    listeners.closeAll();
    await Promise.all([a.server.close(), b.server.close()]);
  });
  client.start();
  await waitFor("a full config", () => (store.ready ? true : undefined));
  const config = store.current();

  // Max stream age: streams end gracefully and the data plane comes back, config unchanged.
  const streamsBefore = client.streams;
  await waitFor("a reconnect after max stream age", () =>
    client.streams > streamsBefore + 1 ? true : undefined,
  );
  assert.equal(store.current(), config, "nothing re-applied: the reconnect sent initial_resource_versions");

  // Shutting a replica down moves its data plane to the other one.
  await waitFor("a stream on replica a", () => (a.registry.list().length === 1 ? true : undefined));
  await a.server.close();
  await waitFor("the data plane on replica b", () =>
    b.registry.list().some((d) => d.nodeId === "dp-replicas") && client.connected ? true : undefined,
  );
  assert.equal(store.current(), config, "still the same config");
  assert.ok(dp.lines.some((l) => l.msg === "xDS stream closed by the control plane"));
});
