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
  const listeners = new ListenerManager(() => (socket) => socket.destroy(), dp.log);
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
  assert.match(nack.message, /agw\.v1\.Route main\/all: Invalid regular expression/);
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
