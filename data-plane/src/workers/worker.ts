/**
 * A worker thread of a data plane started with several workers: its own listeners (bound with
 * SO_REUSEPORT next to the primary's, so the kernel spreads connections), engine, upstream pool and
 * metrics, fed with the xDS updates the primary accepted. It has no xDS stream and no admin.
 */
import { parentPort, workerData } from "node:worker_threads";
import { createLogger } from "@agw/core";
import { ConfigStore } from "../config-store.ts";
import { HttpProxy } from "../engine/proxy.ts";
import { UpstreamPool } from "../engine/upstream-pool.ts";
import { ListenerManager, servePort } from "../listeners.ts";
import { GatewayObserver } from "../observability/index.ts";
import { TlsManager } from "../tls/manager.ts";
import { drainProxies, openConnections } from "./drain.ts";
import type { WorkerInit, WorkerReply, WorkerRequest, WorkerStatus } from "./protocol.ts";

const init = workerData as WorkerInit;
const port = parentPort;
if (port === null) throw new Error("data-plane/src/workers/worker.ts runs as a worker thread");
const log = createLogger("data-plane").child({ worker: init.index });
const pool = new UpstreamPool();
const proxies = new Set<HttpProxy>();
let draining = false;
let store: ConfigStore | undefined;
// The primary reports xDS state and endpoint counts; a worker's share of those gauges is zero, so
// the aggregated metrics (a sum over workers) stay right.
const observer = await GatewayObserver.create(
  {
    *downstreamConnections() {
      for (const p of proxies) yield [p.listenerName, p.connectionCount];
    },
    upstreamIdleConnections: () => pool.idleConnections,
    upstreamHttp2Sessions: () => pool.h2.sessionStates(),
    clusterEndpoints: () => [],
    xdsConnected: () => false,
    xdsVersions: () => [],
  },
  init.observability,
);
const listeners = new ListenerManager(
  (listenerName) => {
    const proxy = new HttpProxy({
      listenerName,
      getConfig: () => (store as ConfigStore).current(),
      pool,
      observer,
    });
    if (draining) proxy.shutdown();
    return servePort(proxies, proxy);
  },
  log,
  { reusePort: true },
);
const tls = new TlsManager();
const configStore = new ConfigStore(listeners, log, {
  bindAddress: init.bindAddress,
  tls,
  onSwap: (config) => {
    const keys = new Set<string>();
    for (const cluster of config.clusters.values()) for (const e of cluster.endpoints) keys.add(e.key);
    pool.retainOnly(keys);
  },
});
store = configStore;

/** Updates apply one after another, in the order the primary accepted them. */
let updates: Promise<unknown> = Promise.resolve();

function inOrder(apply: () => Promise<void>): Promise<unknown> {
  // A rejected update does not stop the next one (the store kept its previous state).
  updates = updates.then(apply, apply);
  return updates;
}

async function handle(req: WorkerRequest): Promise<unknown> {
  switch (req.op) {
    case "sotw":
      return inOrder(() => configStore.apply(req.typeUrl, req.resources, req.version));
    case "delta":
      return inOrder(() => configStore.applyDelta(req.typeUrl, req.updated, req.removed, req.version));
    case "status":
      return {
        worker: init.index,
        accepted: listeners.accepted,
        connections: openConnections(proxies),
        version: configStore.current().version,
        ready: configStore.ready,
        metrics: await observer.metrics.registry.getMetricsAsJSON(),
      } satisfies WorkerStatus;
    case "drain": {
      draining = true;
      listeners.stopAccepting();
      const cut = await drainProxies(proxies, req.deadlineMs);
      configStore.close();
      tls.close();
      pool.close();
      await observer.close();
      return cut;
    }
  }
}

port.on("message", (message: { id: number; req: WorkerRequest }) => {
  handle(message.req).then(
    (value) => port.postMessage({ id: message.id, ok: true, value } satisfies WorkerReply),
    (e: unknown) =>
      port.postMessage({ id: message.id, ok: false, error: (e as Error).message } satisfies WorkerReply),
  );
});
