/**
 * A control plane restart with many connected data planes: every data plane (the real client and
 * config store, each on its own loopback address) reconnects with its jittered backoff, the new
 * control plane admits their initial syncs a few at a time (SyncAdmission), and they converge with
 * no NACK, no resource re-sent that they already had, and no data plane ever serving anything but
 * the whole config.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { SnapshotBuilder } from "@agw/control-plane/xds/resources";
import { createLogger, RESOURCE_TYPES, TYPE_URL } from "@agw/core";
import type { Ir, IrRoute } from "@agw/core/ir";
import { ConfigStore } from "@agw/data-plane/config-store";
import { ListenerManager } from "@agw/data-plane/listeners";
import { XdsClient } from "@agw/data-plane/xds-client";
import { freePort, waitFor } from "./helpers.ts";

const DATA_PLANES = 24;
const ROUTES = 300;
const MAX_SYNCS = 4;
const quiet = createLogger("test", new Writable({ write: (_c, _e, done) => done() }));

function route(i: number): IrRoute {
  return {
    name: `r${i}`,
    order: i,
    hosts: [],
    path: { kind: "prefix", value: `/s${i}/` },
    methods: [],
    headers: [],
    query: [],
    target: { cluster: `c${i % 10}` },
    timeoutMs: 5000,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [], remove: [] },
    plugins: [],
  };
}

test("a control plane restart with many data planes converges: admitted a few at a time, no NACK, nothing partial served", async (t) => {
  const port = await freePort();
  const listenerPort = await freePort();
  const ir: Ir = {
    listeners: [
      {
        name: "web",
        address: "127.0.0.1",
        port: listenerPort,
        protocol: "http",
        routes: Array.from({ length: ROUTES }, (_, i) => route(i)),
      },
    ],
    clusters: Array.from({ length: 10 }, (_, i) => ({
      name: `c${i}`,
      lb: "round_robin" as const,
      connectTimeoutMs: 1000,
      idleTimeoutMs: 5000,
      maxIdlePerEndpoint: 4,
      maxRequestsPerConnection: 0,
      endpoints: [{ address: "127.0.0.1", port: 9, weight: 1 }],
    })),
  };
  const startCp = async () => {
    const cache = new SnapshotCache();
    cache.set(new SnapshotBuilder().build(ir));
    const registry = new DataPlaneRegistry();
    const service = createAdsService(cache, registry, quiet, { maxConcurrentSyncs: MAX_SYNCS });
    const server = await startAdsServer("127.0.0.1", port, service);
    const inSync = () =>
      registry
        .list()
        .filter(
          (s) =>
            s.types.size === RESOURCE_TYPES.length &&
            [...s.types.values()].every((x) => x.sentNonce !== "" && x.ackedVersion === x.sentVersion),
        ).length;
    const nacks = () =>
      registry.list().reduce((n, s) => n + [...s.types.values()].reduce((m, x) => m + x.nacks, 0), 0);
    return { cache, registry, service, server, inSync, nacks };
  };

  let cp = await startCp();
  const dps = Array.from({ length: DATA_PLANES }, (_, i) => {
    const listeners = new ListenerManager(() => ({ handle: (socket) => socket.destroy() }), quiet);
    const store = new ConfigStore(listeners, quiet, { bindAddress: `127.0.9.${i + 1}` });
    /** Every config this data plane served once it had a whole one. */
    const served = new Set<string>();
    const client = new XdsClient({
      servers: [`127.0.0.1:${port}`],
      nodeId: `dp-${i}`,
      log: quiet,
      backoff: { initialMs: 100, maxMs: 2000 },
      onDeltaUpdate: async (type, updated, removed, version) => {
        await store.applyDelta(type, updated, removed, version);
        if (store.ready) served.add(store.current().version);
      },
    });
    client.start();
    return { store, client, listeners, served };
  });
  t.after(async () => {
    await Promise.all(dps.map((d) => d.client.stop()));
    for (const d of dps) d.listeners.closeAll();
    await cp.server.close();
  });

  await waitFor("every data plane's first sync", () => cp.inSync() === DATA_PLANES || undefined, 60_000);
  assert.ok(cp.service.admission.peak <= MAX_SYNCS, `peak ${cp.service.admission.peak}`);
  const whole = new Set(dps.map((d) => d.store.current().version));
  assert.equal(whole.size, 1, "every data plane serves the same config");
  for (const d of dps) assert.deepEqual([...d.served], [...whole]);

  // The restart: streams end gracefully, the port is free for a moment, a new process serves it.
  await cp.server.close();
  cp = await startCp();
  await waitFor("every data plane back in sync", () => cp.inSync() === DATA_PLANES || undefined, 60_000);

  assert.equal(cp.nacks(), 0);
  assert.ok(cp.service.admission.peak <= MAX_SYNCS, `peak ${cp.service.admission.peak}`);
  assert.ok(cp.service.admission.waited > 0, "the herd was queued, not served at once");
  // Nothing partial served at any moment, before or after the restart: the one whole config.
  for (const d of dps) assert.deepEqual([...d.served], [...whole]);
  // The data planes sent what they had (initial_resource_versions): no route was re-sent.
  for (const s of cp.registry.list()) {
    const routes = s.types.get(TYPE_URL.route);
    assert.equal(routes?.responses, 1, `${s.nodeId}: one (empty) route answer`);
    assert.ok((routes?.bytes ?? 0) < 200, `${s.nodeId}: ${routes?.bytes} route bytes after the restart`);
  }
});
