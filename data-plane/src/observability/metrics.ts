/**
 * Data plane Prometheus metrics (prom-client, one registry per data plane). The per-request path does
 * no label work: each compiled route (immutable, one per config) gets its label children once, on its
 * first request, and a request then costs a WeakMap and a Map lookup plus the increments.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { CompiledRoute } from "../runtime/types.ts";
import type { ExchangeView } from "./exchange.ts";

/** Latency buckets in seconds: 0.5 ms … 30 s. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const CODE_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;

interface ClassChildren {
  /** Index = status / 100 - 1; [5] counts exchanges aborted before any status was sent. */
  readonly requests: Counter.Internal[];
}

/** Label children of one route (or of a listener's unrouted requests), per cluster. */
class RouteSeries {
  readonly duration: Histogram.Internal<string>;
  private readonly byCluster = new Map<string, ClassChildren>();
  private readonly metrics: DataPlaneMetrics;
  private readonly listener: string;
  private readonly route: string;

  constructor(metrics: DataPlaneMetrics, listener: string, route: string) {
    this.metrics = metrics;
    this.listener = listener;
    this.route = route;
    this.duration = metrics.downstreamDuration.labels(listener, route);
  }

  forCluster(cluster: string): ClassChildren {
    let c = this.byCluster.get(cluster);
    if (c === undefined) {
      const counter = this.metrics.downstreamRequests;
      c = {
        requests: [...CODE_CLASSES, "aborted"].map((k) =>
          counter.labels(this.listener, this.route, cluster, k),
        ),
      };
      this.byCluster.set(cluster, c);
    }
    return c;
  }
}

export interface MetricSources {
  /** Open downstream connections per listener. */
  downstreamConnections(): Iterable<[listener: string, count: number]>;
  upstreamIdleConnections(): number;
  /** Endpoints per cluster in the active config. */
  clusterEndpoints(): Iterable<[cluster: string, count: number]>;
  xdsConnected(): boolean;
  /** Accepted version per resource type. */
  xdsVersions(): Iterable<[type: string, version: string]>;
}

export class DataPlaneMetrics {
  readonly registry = new Registry();
  readonly downstreamRequests: Counter<string>;
  readonly downstreamDuration: Histogram<string>;
  readonly upstreamDuration: Histogram<string>;
  readonly xdsUpdates: Counter<string>;
  private readonly routeSeries = new WeakMap<CompiledRoute, RouteSeries>();
  private readonly unrouted = new Map<string, RouteSeries>();
  private readonly upstreamByCluster = new Map<string, Histogram.Internal<string>>();

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    this.downstreamRequests = new Counter({
      name: "agw_downstream_requests_total",
      help: "Requests answered, by listener, route, cluster and status class (aborted: no status sent)",
      labelNames: ["listener", "route", "cluster", "code_class"],
      registers,
    });
    this.downstreamDuration = new Histogram({
      name: "agw_downstream_request_duration_seconds",
      help: "From the request head parsed to the response sent",
      labelNames: ["listener", "route"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: "agw_upstream_request_duration_seconds",
      help: "From the request sent upstream to the upstream response complete",
      labelNames: ["cluster"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.xdsUpdates = new Counter({
      name: "agw_xds_updates_total",
      help: "xDS responses applied (ack) or rejected (nack), by resource type",
      labelNames: ["type", "result"],
      registers,
    });
    new Gauge({
      name: "agw_downstream_connections_active",
      help: "Open downstream connections",
      labelNames: ["listener"],
      registers,
      collect() {
        this.reset();
        for (const [listener, n] of sources.downstreamConnections()) this.set({ listener }, n);
      },
    });
    new Gauge({
      name: "agw_upstream_connections_idle",
      help: "Idle keep-alive upstream connections in the pool",
      registers,
      collect() {
        this.set(sources.upstreamIdleConnections());
      },
    });
    new Gauge({
      name: "agw_cluster_endpoints",
      help: "Endpoints per cluster in the active config",
      labelNames: ["cluster"],
      registers,
      collect() {
        this.reset();
        for (const [cluster, n] of sources.clusterEndpoints()) this.set({ cluster }, n);
      },
    });
    new Gauge({
      name: "agw_xds_connected",
      help: "1 while the xDS stream to a control plane is up",
      registers,
      collect() {
        this.set(sources.xdsConnected() ? 1 : 0);
      },
    });
    new Gauge({
      name: "agw_xds_config_info",
      help: "The accepted config version per resource type (value is always 1)",
      labelNames: ["type", "version"],
      registers,
      collect() {
        this.reset();
        for (const [type, version] of sources.xdsVersions()) this.set({ type, version }, 1);
      },
    });
  }

  /** The hot path: counts one finished exchange. */
  record(x: ExchangeView, aborted: boolean, nowMs: number, upstreamStartedAt: number): void {
    const route = x.route;
    let series: RouteSeries | undefined;
    if (route !== null) {
      series = this.routeSeries.get(route);
      if (series === undefined) {
        series = new RouteSeries(this, x.proxy.listenerName, route.name);
        this.routeSeries.set(route, series);
      }
    } else {
      const listener = x.proxy.listenerName;
      series = this.unrouted.get(listener);
      if (series === undefined) {
        series = new RouteSeries(this, listener, "");
        this.unrouted.set(listener, series);
      }
    }
    const cluster = x.cluster;
    const status = x.status;
    const index = aborted || status < 100 || status > 599 ? 5 : ((status / 100) | 0) - 1;
    (series.forCluster(cluster === null ? "" : cluster.name).requests[index] as Counter.Internal).inc();
    if (x.startedAt !== 0) series.duration.observe((nowMs - x.startedAt) / 1000);
    if (cluster !== null && upstreamStartedAt !== 0) {
      let h = this.upstreamByCluster.get(cluster.name);
      if (h === undefined) {
        h = this.upstreamDuration.labels(cluster.name);
        this.upstreamByCluster.set(cluster.name, h);
      }
      h.observe((nowMs - upstreamStartedAt) / 1000);
    }
  }
}
