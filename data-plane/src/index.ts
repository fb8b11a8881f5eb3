/**
 * The data plane: xDS client → ConfigStore (validate, build, swap) → listeners → proxy engine,
 * plus the admin listener (/ready, /healthz, /config_dump, /clusters, /stats/prometheus, /server_info;
 * POST /drain) and the observer (metrics, access logs, traces: ./observability).
 */
import { type AdminServer, createLogger, type Logger, startAdminServer } from "@agw/core";
import { AggregatorRegistry } from "prom-client";
import { ConfigStore } from "./config-store.ts";
import { HttpProxy } from "./engine/proxy.ts";
import { UpstreamPool } from "./engine/upstream-pool.ts";
import { ListenerManager, servePort } from "./listeners.ts";
import { clustersView, GatewayObserver, type ObservabilityOptions } from "./observability/index.ts";
import { closeRedisClients } from "./plugins/redis.ts";
import type { RuntimeConfig } from "./runtime/types.ts";
import { TlsManager } from "./tls/manager.ts";
import { drainProxies, openConnections } from "./workers/drain.ts";
import { WorkerGroup } from "./workers/group.ts";
import type { WorkerStatus } from "./workers/protocol.ts";
import { UNIX_PREFIX, XdsClient, type XdsTlsOptions } from "./xds-client.ts";

export interface DataPlaneOptions {
  /** "host:port" of the control plane's ADS server, or of each replica (a DNS name may give several). */
  xds: string | readonly string[];
  /** xDS variant; incremental (delta) by default. */
  xdsProtocol?: "delta" | "sotw";
  /** mTLS to the control plane; omitted = plaintext. */
  xdsTls?: XdsTlsOptions | undefined;
  nodeId: string;
  admin?: { host: string; port: number };
  /** Lets remote admin clients in with `Authorization: Bearer TOKEN`; without it the admin is local-only. */
  adminToken?: string | undefined;
  /** Host names the admin answers besides IP addresses, localhost and its listen address. */
  adminHosts?: readonly string[] | undefined;
  /** Access log, tracing, and whether per-request metrics are kept (default: yes). */
  observability?: ObservabilityOptions;
  /** Binds every listener on this address instead of the configured one. */
  bindAddress?: string;
  /**
   * Threads serving traffic (default 1): this one (xDS, admin, and a share of the traffic) plus
   * workers - 1 worker threads; listeners then bind with SO_REUSEPORT (docs/proxy.md).
   */
  workers?: number;
  log?: Logger;
}

function endpointKeys(config: RuntimeConfig): Set<string> {
  const keys = new Set<string>();
  for (const cluster of config.clusters.values()) for (const e of cluster.endpoints) keys.add(e.key);
  return keys;
}

export interface DataPlane {
  readonly store: ConfigStore;
  readonly listeners: ListenerManager;
  readonly xds: XdsClient;
  readonly admin: AdminServer | undefined;
  readonly observer: GatewayObserver;
  /** Resolves once the first config has been applied. */
  ready(timeoutMs: number): Promise<boolean>;
  /** Prometheus text, summed over every worker. */
  metricsText(): Promise<string>;
  /**
   * Graceful drain: stop accepting (the ports close), no more keep-alive, GOAWAY on HTTP/2, wait for
   * in-flight requests up to `deadlineMs`, then cut what is left. Resolves with the number cut.
   */
  drain(deadlineMs: number): Promise<number>;
  close(): Promise<void>;
}

export async function startDataPlane(options: DataPlaneOptions): Promise<DataPlane> {
  const log = options.log ?? createLogger("data-plane");
  const startedAt = new Date().toISOString();
  const pool = new UpstreamPool();
  let store: ConfigStore | undefined;
  let xdsClient: XdsClient | undefined;
  /** Every proxy ever made; a listener keeps one for its life. */
  const proxies = new Set<HttpProxy>();
  let draining = false;
  const workerCount = Math.max(1, options.workers ?? 1);
  const workers =
    workerCount > 1
      ? new WorkerGroup(
          workerCount - 1,
          { bindAddress: options.bindAddress, observability: options.observability },
          log,
        )
      : undefined;
  const observer = await GatewayObserver.create(
    {
      *downstreamConnections() {
        for (const p of proxies) yield [p.listenerName, p.connectionCount];
      },
      upstreamIdleConnections: () => pool.idleConnections,
      upstreamHttp2Sessions: () => pool.h2.sessionStates(),
      *clusterEndpoints() {
        for (const c of (store as ConfigStore).current().clusters.values())
          yield [c.name, c.endpoints.length];
      },
      xdsConnected: () => xdsClient?.connected === true,
      clusters: () => (store as ConfigStore).current().clusters.values(),
      *plugins() {
        for (const [name, runtime] of (store as ConfigStore).plugins.runtimes()) yield [name, runtime.stats];
      },
      *xdsVersions() {
        const version = (store as ConfigStore).current().version;
        for (const pair of version === "" ? [] : version.split(",")) {
          const at = pair.indexOf("=");
          yield [pair.slice(0, at), pair.slice(at + 1)];
        }
      },
    },
    options.observability,
  );
  const listeners = new ListenerManager(
    (listenerName) => {
      const proxy = new HttpProxy({
        listenerName,
        getConfig: () => (store as ConfigStore).current(),
        pool,
        ...(observer.observesRequests ? { observer } : {}),
      });
      if (draining) proxy.shutdown();
      return servePort(proxies, proxy);
    },
    log,
    { reusePort: workers !== undefined },
  );
  const tls = new TlsManager();
  const xdsServers = typeof options.xds === "string" ? [options.xds] : options.xds;
  // mTLS or only the private Unix socket: the control plane then sends the Secrets we reference.
  const xdsAuthenticated = options.xdsTls !== undefined || xdsServers.every((s) => s.startsWith(UNIX_PREFIX));
  store = new ConfigStore(listeners, log, {
    xdsAuthenticated,
    bindAddress: options.bindAddress,
    tls,
    onSwap: (config) => pool.retainOnly(endpointKeys(config)),
  });
  const configStore = store;
  const xds = new XdsClient({
    servers: xdsServers,
    nodeId: options.nodeId,
    log,
    protocol: options.xdsProtocol ?? "delta",
    tls: options.xdsTls,
    onUpdate: (typeUrl, resources, version) =>
      countUpdate(
        typeUrl,
        configStore
          .apply(typeUrl, resources, version)
          .then(() => workers?.forward({ op: "sotw", typeUrl, resources, version })),
      ),
    onDeltaUpdate: (typeUrl, updated, removed, version) =>
      countUpdate(
        typeUrl,
        configStore
          .applyDelta(typeUrl, updated, removed, version)
          .then(() => workers?.forward({ op: "delta", typeUrl, updated, removed, version })),
      ),
  });
  xdsClient = xds;
  const countUpdate = (typeUrl: string, applied: Promise<void>) =>
    applied.then(
      () => observer.metrics.xdsUpdates.inc({ type: typeUrl.split(".").pop() ?? typeUrl, result: "ack" }),
      (e: unknown) => {
        observer.metrics.xdsUpdates.inc({ type: typeUrl.split(".").pop() ?? typeUrl, result: "nack" });
        throw e;
      },
    );
  const metricsText = async () => {
    if (workers === undefined) return observer.metrics.registry.metrics();
    const all = [await observer.metrics.registry.getMetricsAsJSON()];
    for (const w of await workers.status()) all.push(w.metrics);
    return AggregatorRegistry.aggregate(all).metrics();
  };
  const workerStatus = async (): Promise<Array<Omit<WorkerStatus, "metrics">>> => {
    const primary = {
      worker: 0,
      accepted: listeners.accepted,
      connections: openConnections(proxies),
      version: configStore.current().version,
      ready: configStore.ready,
    };
    const others = (await workers?.status()) ?? [];
    return [primary, ...others.map(({ metrics: _, ...rest }) => rest)];
  };
  const admin = options.admin
    ? await startAdminServer(
        options.admin.host,
        options.admin.port,
        {
          "/ready": () =>
            draining
              ? { status: 503, body: "draining\n" }
              : configStore.ready
                ? { body: "ready\n" }
                : {
                    status: 503,
                    body: `waiting for the first config\n${Object.entries(configStore.rejections)
                      .map(([type, reason]) => `rejected ${type}: ${reason}\n`)
                      .join("")}`,
                  },
          "/healthz": () => ({ body: "ok\n" }),
          "/config_dump": () => ({
            body: {
              version: configStore.current().version,
              warming: configStore.warming,
              rejected: configStore.rejections,
              resources: configStore.dump(),
            },
          }),
          "/clusters": () => ({ body: clustersView(configStore.current()) }),
          "/workers": async () => ({ body: await workerStatus() }),
          "/stats/prometheus": async () => ({
            body: await metricsText(),
            contentType: observer.metrics.registry.contentType,
          }),
          "/drain": {
            post: () => {
              draining = true;
              for (const p of proxies) p.shutdown();
              return {
                body: {
                  draining: true,
                  connections: [...proxies].reduce((n, p) => n + p.connectionCount, 0),
                },
              };
            },
          },
          "/server_info": () => ({
            body: {
              node_id: options.nodeId,
              xds_servers: options.xds,
              xds_server: xds.server,
              xds_connected: xds.connected,
              xds_streams: xds.streams,
              xds_tls: options.xdsTls !== undefined,
              xds_authenticated: xdsAuthenticated,
              started_at: startedAt,
              node_version: process.version,
              listeners: listeners.addresses(),
              draining,
            },
          }),
        },
        { token: options.adminToken, allowedHosts: options.adminHosts },
      )
    : undefined;
  xds.start();
  return {
    store: configStore,
    listeners,
    xds,
    admin,
    observer,
    async ready(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!configStore.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return configStore.ready;
    },
    metricsText,
    async drain(deadlineMs) {
      draining = true;
      listeners.stopAccepting();
      const [here, there] = await Promise.all([
        drainProxies(proxies, deadlineMs),
        workers?.drain(deadlineMs) ?? 0,
      ]);
      log.info({ cut: here + there }, "drained");
      return here + there;
    },
    async close() {
      await xds.stop();
      await workers?.close();
      listeners.closeAll();
      tls.close();
      pool.close();
      await admin?.close();
      await observer.close();
      // Plugins' Redis clients reconnect forever otherwise (and keep the process alive).
      await closeRedisClients();
    },
  };
}
