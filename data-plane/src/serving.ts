/**
 * One serving unit: the config store (validate, build, swap) → listeners → proxy engine, with its
 * upstream pool, TLS contexts and observer. The primary data plane (index.ts: xDS + admin on top)
 * and each worker thread (workers/worker.ts: fed the updates the primary accepted) run one each,
 * built here the same way; tests start one in-process and push agw.v1 resources into it.
 */
import type { Logger, TypeUrl } from "@agw/core";
import type { Any } from "@bufbuild/protobuf/wkt";
import { ConfigStore } from "./config-store.ts";
import { HttpProxy, type HttpProxyOptions } from "./engine/proxy.ts";
import { UpstreamPool } from "./engine/upstream-pool.ts";
import { L4Proxy } from "./l4/proxy.ts";
import { ListenerManager, type PortProxy, servePort } from "./listeners.ts";
import { GatewayObserver, type ObservabilityOptions } from "./observability/index.ts";
import type { MetricSources } from "./observability/metrics.ts";
import type { ComponentFetcher } from "./plugins/index.ts";
import { closeRedisClients } from "./plugins/redis.ts";
import type { RuntimeConfig } from "./runtime/types.ts";
import type { BucketMemory } from "./shaping/bucket-table.ts";
import { TlsManager } from "./tls/manager.ts";
import { drainProxies, openConnections } from "./workers/drain.ts";
import type { DeltaResource } from "./xds-client.ts";

export interface ServingOptions {
  readonly log: Logger;
  /** Binds every listener on this address instead of the configured one. */
  readonly bindAddress?: string | undefined;
  readonly observability?: ObservabilityOptions | undefined;
  /** SO_REUSEPORT, so that several workers' listeners share each port (workers/). */
  readonly reusePort?: boolean | undefined;
  /** See ConfigStoreOptions.xdsAuthenticated. */
  readonly xdsAuthenticated?: boolean | undefined;
  /**
   * The unit that holds the xDS stream reports it and the active config's clusters, plugins and
   * versions; a worker's share of those gauges is zero, so the sum over workers stays right.
   */
  readonly xdsConnected?: (() => boolean) | undefined;
  /** Gets plugin components that are not inline (plugins/index.ts). */
  readonly fetchComponent?: ComponentFetcher | undefined;
  /** Engine settings no pushed resource carries (see HttpProxyOptions). */
  readonly proxy?: HttpProxyOptions | undefined;
  /** Rate-limit buckets shared with the other worker threads; a private table when absent. */
  readonly bucketMemory?: BucketMemory | undefined;
}

/** One thread's view of its serving state (admin /workers). */
export interface ServingStatus {
  /** Connections accepted since start. */
  readonly accepted: number;
  /** Downstream connections open now. */
  readonly connections: number;
  /** The active config's version (per type). */
  readonly version: string;
  readonly ready: boolean;
}

function endpointKeys(config: RuntimeConfig): Set<string> {
  const keys = new Set<string>();
  for (const cluster of config.clusters.values()) for (const e of cluster.endpoints) keys.add(e.key);
  return keys;
}

export class ServingUnit {
  readonly store: ConfigStore;
  readonly listeners: ListenerManager;
  readonly pool: UpstreamPool;
  readonly observer: GatewayObserver;
  /** Every proxy with connections; a listener keeps one for its life (listeners.ts servePort). */
  readonly proxies = new Set<PortProxy>();
  private readonly tls: TlsManager;
  private stoppedKeepAlive = false;

  static async start(options: ServingOptions): Promise<ServingUnit> {
    // The store is made after the observer, whose gauges read it; `unit` closes over both.
    let unit: ServingUnit | undefined;
    const store = () => (unit as ServingUnit).store;
    const pool = new UpstreamPool();
    const proxies = new Set<PortProxy>();
    const xdsConnected = options.xdsConnected;
    const perConfig: Pick<
      MetricSources,
      "clusterEndpoints" | "xdsConnected" | "xdsVersions" | "clusters" | "plugins"
    > =
      xdsConnected === undefined
        ? { clusterEndpoints: () => [], xdsConnected: () => false, xdsVersions: () => [] }
        : {
            *clusterEndpoints() {
              for (const c of store().current().clusters.values()) yield [c.name, c.endpoints.length];
            },
            xdsConnected,
            clusters: () => store().current().clusters.values(),
            *plugins() {
              for (const [name, runtime] of store().plugins.runtimes()) yield [name, runtime.stats];
            },
            *xdsVersions() {
              const version = store().current().version;
              for (const pair of version === "" ? [] : version.split(",")) {
                const at = pair.indexOf("=");
                yield [pair.slice(0, at), pair.slice(at + 1)];
              }
            },
          };
    const observer = await GatewayObserver.create(
      {
        *downstreamConnections() {
          for (const p of proxies) yield [p.listenerName, p.connectionCount];
        },
        upstreamIdleConnections: () => pool.idleConnections,
        upstreamHttp2Sessions: () => pool.h2.sessionStates(),
        rateLimits: () => store().buckets.decisions,
        ...perConfig,
      },
      options.observability,
    );
    unit = new ServingUnit(options, pool, proxies, observer);
    return unit;
  }

  private constructor(
    options: ServingOptions,
    pool: UpstreamPool,
    proxies: Set<PortProxy>,
    observer: GatewayObserver,
  ) {
    this.pool = pool;
    this.proxies = proxies;
    this.observer = observer;
    const requestObserver = observer.observesRequests ? { observer } : {};
    this.listeners = new ListenerManager(
      (listenerName, listener) => {
        if (listener.l4 !== undefined)
          return servePort(
            proxies,
            new L4Proxy({
              listenerName,
              getConfig: () => this.store.current(),
              ...(observer.observesRequests && { observer }),
            }),
          );
        const proxy = new HttpProxy({
          listenerName,
          getConfig: () => this.store.current(),
          pool,
          ...requestObserver,
          ...(options.proxy && { options: options.proxy }),
        });
        if (this.stoppedKeepAlive) proxy.shutdown();
        return servePort(proxies, proxy);
      },
      options.log,
      { reusePort: options.reusePort === true },
    );
    this.tls = new TlsManager();
    this.store = new ConfigStore(this.listeners, options.log, {
      bindAddress: options.bindAddress,
      tls: this.tls,
      ...(options.xdsAuthenticated !== undefined && { xdsAuthenticated: options.xdsAuthenticated }),
      // Pooled connections to endpoints still in the config stay; those to endpoints gone close.
      onSwap: (config) => pool.retainOnly(endpointKeys(config)),
      fetchComponent: options.fetchComponent,
      bucketMemory: options.bucketMemory,
    });
  }

  /** State of the world: `resources` is the type's complete set (ConfigStore.apply). */
  apply(typeUrl: TypeUrl, resources: Any[], version: string): Promise<void> {
    return this.store.apply(typeUrl, resources, version);
  }

  /** Incremental update (ConfigStore.applyDelta). */
  applyDelta(typeUrl: TypeUrl, updated: DeltaResource[], removed: string[], version: string): Promise<void> {
    return this.store.applyDelta(typeUrl, updated, removed, version);
  }

  /** Stopped keep-alive (shutdown or drain). */
  get draining(): boolean {
    return this.stoppedKeepAlive;
  }

  /** No more keep-alive: idle connections close now, busy ones after their response, GOAWAY on HTTP/2. */
  shutdown(): void {
    this.stoppedKeepAlive = true;
    for (const p of this.proxies) p.shutdown();
  }

  get connectionCount(): number {
    return openConnections(this.proxies);
  }

  status(): ServingStatus {
    return {
      accepted: this.listeners.accepted,
      connections: openConnections(this.proxies),
      version: this.store.current().version,
      ready: this.store.ready,
    };
  }

  /**
   * Graceful drain: the ports close, keep-alive stops, in-flight requests get up to `deadlineMs`,
   * then what is left is cut. Resolves with the number of connections cut.
   */
  drain(deadlineMs: number): Promise<number> {
    this.stoppedKeepAlive = true;
    this.listeners.stopAccepting();
    return drainProxies(this.proxies, deadlineMs);
  }

  /** Closes ports, connections, health checks, the pool and the observer. */
  async close(): Promise<void> {
    this.listeners.closeAll();
    for (const p of this.proxies) p.destroyAll();
    this.store.close();
    this.tls.close();
    this.pool.close();
    await this.observer.close();
    // Plugins' Redis clients (one set per thread) reconnect forever otherwise, keeping it alive.
    await closeRedisClients();
  }
}
