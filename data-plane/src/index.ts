/**
 * The data plane: xDS client → the serving unit (serving.ts: ConfigStore → listeners → proxy engine),
 * plus the admin listener (/ready, /healthz, /config_dump, /clusters, /stats/prometheus, /server_info;
 * POST /drain) and the observer (metrics, access logs, traces: ./observability).
 */
import {
  type AdminServer,
  createLogger,
  type Logger,
  startAdminServer,
  TYPE_URL,
  type TypeUrl,
} from "@agw/core";
import { AggregatorRegistry } from "prom-client";
import type { ConfigStore } from "./config-store.ts";
import type { ListenerManager } from "./listeners.ts";
import { clustersView, type GatewayObserver, type ObservabilityOptions } from "./observability/index.ts";
import { endpointHealth } from "./observability/metrics.ts";
import { StatsReporter } from "./observability/stats-reporter.ts";
import { ServingUnit } from "./serving.ts";
import { bucketMemory } from "./shaping/bucket-table.ts";
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
  /** Report fleet stats to the control plane (agw.v1.StatsService, docs/operability.md); default true. */
  statsReport?: boolean;
  log?: Logger;
}

export interface DataPlane {
  readonly serving: ServingUnit;
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
  let xdsClient: XdsClient | undefined;
  const workerCount = Math.max(1, options.workers ?? 1);
  // One table of rate-limit buckets for every thread (only touched pages take memory).
  const buckets = bucketMemory();
  const workers =
    workerCount > 1
      ? new WorkerGroup(
          workerCount - 1,
          { bindAddress: options.bindAddress, observability: options.observability, bucketMemory: buckets },
          log,
        )
      : undefined;
  const xdsServers = typeof options.xds === "string" ? [options.xds] : options.xds;
  // mTLS or only the private Unix socket: the control plane then sends the Secrets we reference.
  const xdsAuthenticated = options.xdsTls !== undefined || xdsServers.every((s) => s.startsWith(UNIX_PREFIX));
  const serving = await ServingUnit.start({
    log,
    bindAddress: options.bindAddress,
    observability: options.observability,
    reusePort: workers !== undefined,
    bucketMemory: buckets,
    xdsAuthenticated,
    xdsConnected: () => xdsClient?.connected === true,
    fetchComponent: (digest, size) =>
      xdsClient ? xdsClient.fetchComponent(digest, size) : Promise.reject(new Error("xDS not started")),
  });
  const { store: configStore, listeners, observer } = serving;
  // Worker threads do not talk xDS: they get the components this thread fetched and verified.
  const components = (typeUrl: TypeUrl) =>
    typeUrl === TYPE_URL.plugin ? configStore.plugins.components() : undefined;
  const stats =
    options.statsReport === false
      ? undefined
      : new StatsReporter({
          nodeId: options.nodeId,
          log,
          counts: async () => [observer.metrics.counts(), ...((await workers?.counts()) ?? [])],
          *health() {
            const now = Date.now();
            // "host:port" as the control plane's config names it (the key adds a TLS suffix).
            for (const c of configStore.current().clusters.values())
              yield [
                c.name,
                c.endpoints.map((e) => [`${e.host}:${e.port}`, endpointHealth(c, e, now)] as const),
              ];
          },
        });
  const xds = new XdsClient({
    servers: xdsServers,
    nodeId: options.nodeId,
    log,
    protocol: options.xdsProtocol ?? "delta",
    tls: options.xdsTls,
    ...(stats && { sideStream: (transport, signal) => stats.stream(transport, signal) }),
    onUpdate: (typeUrl, resources, version) =>
      countUpdate(
        typeUrl,
        serving
          .apply(typeUrl, resources, version)
          .then(() =>
            workers?.forward({ op: "sotw", typeUrl, resources, version, components: components(typeUrl) }),
          ),
      ),
    onDeltaUpdate: (typeUrl, updated, removed, version) =>
      countUpdate(
        typeUrl,
        serving.applyDelta(typeUrl, updated, removed, version).then(() =>
          workers?.forward({
            op: "delta",
            typeUrl,
            updated,
            removed,
            version,
            components: components(typeUrl),
          }),
        ),
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
    const primary = { worker: 0, ...serving.status() };
    const others = (await workers?.status()) ?? [];
    return [primary, ...others.map(({ metrics: _, ...rest }) => rest)];
  };
  const admin = options.admin
    ? await startAdminServer(
        options.admin.host,
        options.admin.port,
        {
          "/ready": () =>
            serving.draining
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
              serving.shutdown();
              return { body: { draining: true, connections: serving.connectionCount } };
            },
          },
          "/server_info": () => ({
            body: {
              node_id: options.nodeId,
              xds_servers: options.xds,
              xds_server: xds.server,
              xds_connected: xds.connected,
              xds_streams: xds.streams,
              stats_reports: stats?.reports ?? null,
              xds_tls: options.xdsTls !== undefined,
              xds_authenticated: xdsAuthenticated,
              started_at: startedAt,
              node_version: process.version,
              listeners: listeners.addresses(),
              draining: serving.draining,
            },
          }),
        },
        { token: options.adminToken, allowedHosts: options.adminHosts },
      )
    : undefined;
  xds.start();
  return {
    serving,
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
      const [here, there] = await Promise.all([serving.drain(deadlineMs), workers?.drain(deadlineMs) ?? 0]);
      log.info({ cut: here + there }, "drained");
      return here + there;
    },
    async close() {
      await xds.stop();
      await workers?.close();
      await admin?.close();
      await serving.close();
    },
  };
}
