/**
 * Message-level xDS protocol tests: a raw gRPC client crafts DiscoveryRequests and
 * DeltaDiscoveryRequests against the real ADS server and reads exactly what comes back.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { irToSnapshot, type Snapshot } from "@agw/control-plane/xds/resources";
import { AsyncQueue, createLogger, RESOURCE_TYPES, TYPE_URL } from "@agw/core";
import { RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { AggregatedDiscoveryService } from "@agw/core/gen/envoy/service/discovery/v3/ads_pb.js";
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  type DiscoveryResponse,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import type { Ir, IrRoute } from "@agw/core/ir";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { waitFor } from "./helpers.ts";

const silent = createLogger("test", { write: () => true } as unknown as NodeJS.WritableStream);

function route(name: string, cluster = "c", timeoutMs = 1000): IrRoute {
  return {
    name,
    order: 0,
    hosts: [],
    path: { kind: "prefix", value: `/${name}` },
    methods: [],
    headers: [],
    query: [],
    target: { cluster },
    timeoutMs,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [], remove: [] },
    plugins: [],
  };
}

function cluster(name: string) {
  return {
    name,
    lb: "round_robin" as const,
    connectTimeoutMs: 1000,
    idleTimeoutMs: 1000,
    maxIdlePerEndpoint: 1,
    maxRequestsPerConnection: 0,
    endpoints: [{ address: "127.0.0.1", port: 9, weight: 1 }],
  };
}

function snapshot(routes: IrRoute[], clusters = ["c"]): Snapshot {
  const ir: Ir = {
    listeners: [{ name: "main", address: "127.0.0.1", port: 18080, protocol: "http", routes }],
    clusters: clusters.map(cluster),
  };
  return irToSnapshot(ir);
}

async function setup(t: { after(fn: () => Promise<void>): void }, first?: Snapshot) {
  // minIntervalMs 0: every set is published at once, so each step below is one publication.
  const cache = new SnapshotCache({ minIntervalMs: 0 });
  const registry = new DataPlaneRegistry();
  if (first) cache.set(first);
  const server = await startAdsServer("127.0.0.1", 0, createAdsService(cache, registry, silent));
  const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.address.port}` });
  const client = createClient(AggregatedDiscoveryService, transport);
  const streams: Array<{ close(): void }> = [];
  t.after(async () => {
    for (const s of streams) s.close();
    await server.close();
  });

  /** One raw stream: send() crafts requests, next() returns the next response (bounded wait). */
  function open<Req, Res>(call: (requests: AsyncIterable<Req>) => AsyncIterable<Res>) {
    const outbound = new AsyncQueue<Req>();
    const received: Res[] = [];
    let failure: unknown;
    void (async () => {
      try {
        for await (const response of call(outbound)) received.push(response);
        failure = new Error("stream ended");
      } catch (e) {
        failure = e;
      }
    })();
    const stream = {
      send: (request: Req) => outbound.push(request),
      async next(): Promise<Res> {
        return waitFor("the next response", () => {
          if (received.length > 0) return received.shift();
          if (failure) throw failure;
          return undefined;
        });
      },
      pending: () => received.length,
      close: () => outbound.close(),
    };
    streams.push(stream);
    return stream;
  }

  return {
    cache,
    registry,
    sotw: () => open<DiscoveryRequest, DiscoveryResponse>((r) => client.streamAggregatedResources(r)),
    delta: () =>
      open<DeltaDiscoveryRequest, DeltaDiscoveryResponse>((r) => client.deltaAggregatedResources(r)),
  };
}

type SotwInit = Omit<MessageInitShape<typeof DiscoveryRequestSchema>, "$typeName" | "node">;
type DeltaInit = Omit<MessageInitShape<typeof DeltaDiscoveryRequestSchema>, "$typeName" | "node">;
const sotwRequest = (init: SotwInit) =>
  create(DiscoveryRequestSchema, { node: { id: "raw" }, typeUrl: TYPE_URL.route, ...init });
const deltaRequest = (init: DeltaInit) =>
  create(DeltaDiscoveryRequestSchema, { node: { id: "raw" }, typeUrl: TYPE_URL.route, ...init });
const routeState = (registry: DataPlaneRegistry) => registry.list()[0]?.types.get(TYPE_URL.route);
const names = (r: DeltaDiscoveryResponse) => r.resources.map((x) => x.name).sort();

test("SotW: a request with a stale nonce is ignored", async (t) => {
  const env = await setup(t, snapshot([route("a")]));
  const s = env.sotw();
  s.send(sotwRequest({}));
  const first = await s.next();
  s.send(sotwRequest({ versionInfo: first.versionInfo, responseNonce: first.nonce }));
  await waitFor("the ACK", () => (routeState(env.registry)?.acks === 1 ? true : undefined));
  env.cache.set(snapshot([route("a", "c", 2000)]));
  const second = await s.next();
  assert.notEqual(second.versionInfo, first.versionInfo);

  // A NACK carrying the first (stale) nonce must not be recorded against the second response ...
  s.send(
    sotwRequest({
      versionInfo: first.versionInfo,
      responseNonce: first.nonce,
      errorDetail: { code: 3, message: "stale" },
    }),
  );
  // ... and the ACK of the current nonce, sent after it on the same stream, is.
  s.send(sotwRequest({ versionInfo: second.versionInfo, responseNonce: second.nonce }));
  await waitFor("the ACK", () =>
    routeState(env.registry)?.ackedVersion === second.versionInfo ? true : undefined,
  );
  assert.equal(routeState(env.registry)?.lastNack, undefined, "the stale NACK was ignored");
});

test("SotW: a NACK keeps the last ACKed version, and the rejected version is not resent", async (t) => {
  const env = await setup(t, snapshot([route("a")]));
  const s = env.sotw();
  s.send(sotwRequest({}));
  s.send(sotwRequest({ typeUrl: TYPE_URL.cluster }));
  const v1 = await s.next();
  await s.next();
  s.send(sotwRequest({ versionInfo: v1.versionInfo, responseNonce: v1.nonce }));
  await waitFor("the ACK of v1", () => (routeState(env.registry)?.acks === 1 ? true : undefined));
  env.cache.set(snapshot([route("a", "c", 2000)]));
  const v2 = await s.next();
  s.send(
    sotwRequest({
      versionInfo: v1.versionInfo,
      responseNonce: v2.nonce,
      errorDetail: { code: 3, message: "no thanks" },
    }),
  );
  const nack = await waitFor("the NACK", () => routeState(env.registry)?.lastNack);
  assert.equal(nack.version, v2.versionInfo);
  assert.equal(nack.message, "no thanks");
  assert.equal(routeState(env.registry)?.ackedVersion, v1.versionInfo, "the data plane still runs v1");

  // Another type changing does not resend the rejected route version; the next route change is sent.
  env.cache.set(snapshot([route("a", "c", 2000)], ["c", "unused"]));
  const clusters = await s.next();
  assert.equal(clusters.typeUrl, TYPE_URL.cluster, "no route resend");
  env.cache.set(snapshot([route("a", "c", 3000)], ["c", "unused"]));
  const v3 = await s.next();
  assert.equal(v3.typeUrl, TYPE_URL.route);
  assert.notEqual(v3.versionInfo, v2.versionInfo);
});

test("Delta: a data plane that subscribed before the control plane's first config gets every type's first answer with it, empty types included", async (t) => {
  // A data plane started before its control plane had loaded config.yaml stayed unready for ever:
  // the empty Secret and Plugin types were never answered (docs/xds.md's walk-through under load).
  const env = await setup(t);
  const s = env.delta();
  s.send(deltaRequest({ typeUrl: TYPE_URL.secret }));
  s.send(deltaRequest({ typeUrl: TYPE_URL.route }));
  await waitFor("both subscriptions", () => {
    const types = env.registry.list()[0]?.types;
    return types?.has(TYPE_URL.secret) && types.has(TYPE_URL.route) ? true : undefined;
  });
  assert.equal(s.pending(), 0, "nothing is answered before there is a config");
  env.cache.set(snapshot([route("a")]));
  const answers = [await s.next(), await s.next()];
  const secret = answers.find((r) => r.typeUrl === TYPE_URL.secret);
  const routes = answers.find((r) => r.typeUrl === TYPE_URL.route);
  assert.ok(secret, "the empty Secret type is answered");
  assert.deepEqual(secret.resources, []);
  assert.ok(routes);
  assert.deepEqual(names(routes), ["main/a"]);
});

test("Delta: unsubscribe stops updates, resubscribe sends the current version", async (t) => {
  const env = await setup(t, snapshot([route("a"), route("b")]));
  const s = env.delta();
  s.send(deltaRequest({ resourceNamesSubscribe: ["main/a"] }));
  const first = await s.next();
  assert.deepEqual(names(first), ["main/a"]);
  s.send(deltaRequest({ responseNonce: first.nonce, resourceNamesSubscribe: ["main/b"] }));
  const b = await s.next();
  assert.deepEqual(names(b), ["main/b"]);

  // Requests on a stream are handled in order: once this ACK is counted, the unsubscribe is done.
  s.send(deltaRequest({ responseNonce: b.nonce, resourceNamesUnsubscribe: ["main/a"] }));
  await waitFor("the ACK", () => (routeState(env.registry)?.acks === 2 ? true : undefined));
  env.cache.set(snapshot([route("a", "c", 2000), route("b", "c", 2000)]));
  const afterChange = await s.next();
  assert.deepEqual(names(afterChange), ["main/b"], "main/a is no longer sent");
  assert.deepEqual(afterChange.removedResources, []);

  s.send(deltaRequest({ resourceNamesSubscribe: ["main/a"] }));
  const resubscribed = await s.next();
  assert.deepEqual(names(resubscribed), ["main/a"]);
  const a = resubscribed.resources[0]?.resource;
  assert.ok(a);
  assert.equal(Number(anyUnpack(a, RouteSchema)?.action?.timeout?.seconds), 2, "the current version");

  s.send(deltaRequest({ resourceNamesSubscribe: ["main/nope"] }));
  assert.deepEqual((await s.next()).removedResources, ["main/nope"], "a name that does not exist is removed");
});

test("Delta: a reconnect with initial_resource_versions receives only what changed; deletions arrive as removed_resources", async (t) => {
  const routes = Array.from({ length: 20 }, (_, i) => route(`r${i}`));
  const env = await setup(t, snapshot(routes));
  const first = env.delta();
  for (const typeUrl of RESOURCE_TYPES) first.send(deltaRequest({ typeUrl }));
  const versions = new Map<string, Record<string, string>>();
  for (const _ of RESOURCE_TYPES) {
    const r = await first.next();
    versions.set(r.typeUrl, Object.fromEntries(r.resources.map((x) => [x.name, x.version])));
  }
  assert.equal(Object.keys(versions.get(TYPE_URL.route) ?? {}).length, 20);
  first.close();

  // While disconnected: r3 changes, r7 is deleted, r20 is added.
  const changed = routes
    .filter((r) => r.name !== "r7")
    .map((r) => (r.name === "r3" ? route("r3", "c", 5000) : r));
  env.cache.set(snapshot([...changed, route("r20")]));

  const second = env.delta();
  for (const typeUrl of RESOURCE_TYPES)
    second.send(deltaRequest({ typeUrl, initialResourceVersions: versions.get(typeUrl) ?? {} }));
  const byType = new Map<string, DeltaDiscoveryResponse>();
  for (const _ of RESOURCE_TYPES) {
    const r = await second.next();
    byType.set(r.typeUrl, r);
  }
  const routesResponse = byType.get(TYPE_URL.route);
  assert.ok(routesResponse);
  assert.deepEqual(names(routesResponse), ["main/r20", "main/r3"]);
  assert.deepEqual(routesResponse.removedResources, ["main/r7"]);
  for (const [typeUrl, r] of byType)
    if (typeUrl !== TYPE_URL.route)
      assert.deepEqual([r.resources.length, r.removedResources.length], [0, 0], `${typeUrl}: nothing resent`);

  // Connected: a deletion is one response with removed_resources and no resources.
  env.cache.set(snapshot([...changed.filter((r) => r.name !== "r0"), route("r20")]));
  const deletion = await second.next();
  assert.equal(deletion.typeUrl, TYPE_URL.route);
  assert.deepEqual([deletion.resources.length, deletion.removedResources], [0, ["main/r0"]]);
});

test("Delta: NACK is recorded and the ACKed version kept; make-before-break order on a change", async (t) => {
  const env = await setup(t, snapshot([route("a")], ["c"]));
  const s = env.delta();
  for (const typeUrl of RESOURCE_TYPES) s.send(deltaRequest({ typeUrl }));
  for (const _ of RESOURCE_TYPES) {
    const r = await s.next();
    s.send(deltaRequest({ typeUrl: r.typeUrl, responseNonce: r.nonce }));
  }
  const acked = await waitFor("ACKs", () =>
    routeState(env.registry)?.ackedAt ? routeState(env.registry) : undefined,
  );
  const v1 = acked.ackedVersion;

  // Route a moves from cluster c to d, and c goes away.
  env.cache.set(snapshot([route("a", "d")], ["d"]));
  const order: string[] = [];
  let routeResponse: DeltaDiscoveryResponse | undefined;
  // Cluster(+d), ClusterLoadAssignment(+d), Route(a), then ClusterLoadAssignment(-c), Cluster(-c).
  for (let i = 0; i < 5; i++) {
    const r = await s.next();
    order.push(`${r.typeUrl.split(".").pop()}${r.removedResources.length ? "-" : "+"}`);
    if (r.typeUrl === TYPE_URL.route) routeResponse = r;
    else s.send(deltaRequest({ typeUrl: r.typeUrl, responseNonce: r.nonce }));
  }
  assert.deepEqual(order, [
    "Cluster+",
    "ClusterLoadAssignment+",
    "Route+",
    "ClusterLoadAssignment-",
    "Cluster-",
  ]);
  assert.ok(routeResponse);
  s.send(
    deltaRequest({
      responseNonce: routeResponse.nonce,
      errorDetail: { code: 3, message: "agw.v1.Route main/a: bad" },
    }),
  );
  const nack = await waitFor("the NACK", () => routeState(env.registry)?.lastNack);
  assert.equal(nack.message, "agw.v1.Route main/a: bad");
  assert.equal(routeState(env.registry)?.ackedVersion, v1);
});

test("a burst of 1000 changes is coalesced into a bounded number of pushes", async (t) => {
  // The interval only has to outlast the loop below: 2 s leaves room for a machine under heavy load
  // (at 50 ms the loop overran it once at load average 14, and two pushes went out).
  const cache = new SnapshotCache({ minIntervalMs: 2000 });
  t.after(() => cache.close());
  cache.set(snapshot([route("a")]));
  let published = 0;
  cache.watch(() => published++);
  const target = snapshot([route("a", "c", 9000)]);
  for (let i = 0; i < 999; i++) cache.set(snapshot([route("a", "c", 1000 + i)]));
  cache.set(target);
  await waitFor("the trailing publication", () => (published > 0 ? true : undefined));
  assert.equal(published, 1, "1000 changes within the interval: one push");
  assert.equal(cache.snapshot, target, "the last change wins");
});
