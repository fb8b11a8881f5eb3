/**
 * Data plane Prometheus metrics (prom-client, one registry per data plane). The per-request path does
 * no label work and no prom-client call: each compiled route (immutable, one per config) finds its
 * series once, on its first request, and a request then costs a WeakMap and a Map lookup plus a few
 * number increments; prom-client reads the numbers at scrape time.
 */
import { CODE_CLASSES, LATENCY_BOUNDS } from "@agw/core";
import { Counter, Gauge, Histogram, type MetricValueWithName, Registry } from "prom-client";
import { PLUGIN_CALL_BUCKETS, type PluginStats } from "../plugins/host.ts";
import type { ClusterRuntime, CompiledRoute, Endpoint } from "../runtime/types.ts";
import { compressionCounts } from "../shaping/compression.ts";
import { type BucketCounts, newBucketCounts, observeSeconds } from "./bucket-counts.ts";
import type { L4ConnectionView } from "./connection.ts";
import type { ExchangeView } from "./exchange.ts";

/** Latency buckets in seconds (the fleet stats' too: @agw/core fleet-stats.ts). */
const LATENCY_BUCKETS: readonly number[] = LATENCY_BOUNDS;

/** The counts of one (listener, route) pair — or of a listener's unrouted requests, route "". */
class RouteSeries {
  readonly listener: string;
  readonly route: string;
  readonly duration = newBucketCounts(LATENCY_BUCKETS);
  /** Per cluster ("" when none was chosen): requests per CODE_CLASSES index. */
  readonly byCluster = new Map<string, number[]>();

  constructor(listener: string, route: string) {
    this.listener = listener;
    this.route = route;
  }

  forCluster(cluster: string): number[] {
    let c = this.byCluster.get(cluster);
    if (c === undefined) {
      c = new Array<number>(CODE_CLASSES.length).fill(0);
      this.byCluster.set(cluster, c);
    }
    return c;
  }
}

/** The counts of one L4 listener's connections to one cluster ("" when none was chosen). */
class L4Series {
  readonly listener: string;
  readonly cluster: string;
  /** Connections by outcome ("" counted as "ok"). */
  readonly outcomes = new Map<string, number>();
  bytesReceived = 0;
  bytesSent = 0;
  readonly duration = newBucketCounts(L4_DURATION_BUCKETS);

  constructor(listener: string, cluster: string) {
    this.listener = listener;
    this.cluster = cluster;
  }
}

/** L4 connection durations in seconds: 1 ms … 1 h. */
const L4_DURATION_BUCKETS = [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];

/**
 * Cumulative counts since start, plain arrays (they cross threads): what the fleet stats reporter
 * reads at its interval (stats-reporter.ts). Requests per CODE_CLASSES index; latency per bucket.
 */
export interface StatsCounts {
  readonly routes: { listener: string; route: string; requests: number[]; latency: number[] }[];
  readonly clusters: { cluster: string; requests: number[]; latency: number[] }[];
}

export type EndpointHealth = "unchecked" | "healthy" | "unhealthy" | "ejected";

/**
 * An endpoint's health as the load balancer sees it: ejected by outlier detection, failing active
 * checks, healthy, or unchecked (the cluster has neither active checks nor outlier detection).
 */
export function endpointHealth(
  cluster: ClusterRuntime,
  endpoint: Endpoint,
  now = Date.now(),
): EndpointHealth {
  const state = cluster.state?.endpoints.get(endpoint.key);
  if (state === undefined) return "unchecked";
  if (state.ejected(now)) return "ejected";
  if (!state.checkHealthy) return "unhealthy";
  return cluster.healthCheck !== undefined || cluster.state?.outlier != null ? "healthy" : "unchecked";
}

interface CountedHistogramConfig {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  /** Upper bounds in seconds; BucketCounts.durations has one more slot, for slower observations. */
  readonly buckets: readonly number[];
}

/**
 * A histogram read at scrape time from BucketCounts kept elsewhere (bucket-counts.ts): the observing
 * path only increments numbers. prom-client reads a histogram through get() (JSON, worker aggregation)
 * and getForPromString() (text); both answer from the counts.
 */
class CountedHistogram extends Histogram<string> {
  private readonly read: () => Iterable<[labels: Record<string, string>, counts: BucketCounts]>;
  private readonly bounds: readonly number[];
  /** Unregistered and never observed: gives the name, help, type and aggregator of the output. */
  private readonly empty: Histogram<string>;

  constructor(
    registry: Registry,
    config: CountedHistogramConfig,
    read: () => Iterable<[Record<string, string>, BucketCounts]>,
  ) {
    const histogram = { ...config, buckets: [...config.buckets] };
    super({ ...histogram, registers: [registry] });
    this.empty = new Histogram({ ...histogram, registers: [] });
    this.read = read;
    this.bounds = config.buckets;
  }

  override async get(): ReturnType<Histogram<string>["get"]> {
    const base = await this.empty.get();
    const name = base.name;
    const values: MetricValueWithName<string>[] = [];
    for (const [labels, counts] of this.read()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += counts.durations[i] ?? 0;
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative });
      });
      values.push(
        { metricName: `${name}_bucket`, labels: { ...labels, le: "+Inf" }, value: counts.calls },
        { metricName: `${name}_sum`, labels, value: counts.seconds },
        { metricName: `${name}_count`, labels, value: counts.calls },
      );
    }
    return { ...base, values };
  }

  getForPromString(): ReturnType<Histogram<string>["get"]> {
    return this.get();
  }
}

/** A counter whose totals are kept elsewhere (plain fields on the hot path) and read at scrape time. */
function countedElsewhere<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<[labels: Record<L, string>, total: number]>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, total] of read()) this.inc(labels as Partial<Record<L, string>>, total);
    },
  });
}

export interface MetricSources {
  /** Open downstream connections per listener. */
  downstreamConnections(): Iterable<[listener: string, count: number]>;
  upstreamIdleConnections(): number;
  /** HTTP/2 sessions to upstreams, by whether they carry streams now. */
  upstreamHttp2Sessions(): { idle: number; active: number };
  /** Endpoints per cluster in the active config. */
  clusterEndpoints(): Iterable<[cluster: string, count: number]>;
  xdsConnected(): boolean;
  /** Accepted version per resource type. */
  xdsVersions(): Iterable<[type: string, version: string]>;
  /** Clusters of the active config, with their traffic-policy state. */
  clusters?(): Iterable<ClusterRuntime>;
  /** Plugins of the active config and their call counts. */
  plugins?(): Iterable<[plugin: string, stats: PluginStats]>;
  /** Local rate-limit decisions per route, this thread's (data-plane/src/shaping). */
  rateLimits?(): Iterable<[route: string, counts: { admitted: number; refused: number }]>;
}

export class DataPlaneMetrics {
  readonly registry = new Registry();
  readonly xdsUpdates: Counter<string>;
  /** Keyed by listener + "\n" + route: outlives the configs whose routes fed it. */
  private readonly series = new Map<string, RouteSeries>();
  private readonly routeSeries = new WeakMap<CompiledRoute, RouteSeries>();
  private readonly upstreamByCluster = new Map<string, BucketCounts>();
  /** Keyed by listener + "\n" + cluster. */
  private readonly l4 = new Map<string, L4Series>();

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    const series = this.series;
    countedElsewhere(
      this.registry,
      "agw_downstream_requests_total",
      "Requests answered, by listener, route, cluster and status class (aborted: no status sent)",
      ["listener", "route", "cluster", "code_class"],
      function* () {
        for (const s of series.values())
          for (const [cluster, counts] of s.byCluster)
            for (let i = 0; i < CODE_CLASSES.length; i++) {
              const n = counts[i] as number;
              if (n > 0)
                yield [
                  { listener: s.listener, route: s.route, cluster, code_class: CODE_CLASSES[i] as string },
                  n,
                ];
            }
      },
    );
    new CountedHistogram(
      this.registry,
      {
        name: "agw_downstream_request_duration_seconds",
        help: "From the request head parsed to the response sent",
        labelNames: ["listener", "route"],
        buckets: LATENCY_BUCKETS,
      },
      function* () {
        for (const s of series.values())
          if (s.duration.calls > 0) yield [{ listener: s.listener, route: s.route }, s.duration];
      },
    );
    const upstream = this.upstreamByCluster;
    new CountedHistogram(
      this.registry,
      {
        name: "agw_upstream_request_duration_seconds",
        help: "From the request sent upstream to the upstream response complete",
        labelNames: ["cluster"],
        buckets: LATENCY_BUCKETS,
      },
      function* () {
        for (const [cluster, counts] of upstream) yield [{ cluster }, counts];
      },
    );
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
      name: "agw_upstream_http2_sessions",
      help: "HTTP/2 sessions to upstreams (clusters with protocol http2), idle (no stream) or active",
      labelNames: ["state"],
      registers,
      collect() {
        const s = sources.upstreamHttp2Sessions();
        this.set({ state: "idle" }, s.idle);
        this.set({ state: "active" }, s.active);
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
    this.registerL4();
    this.registerTrafficPolicies(sources);
    this.registerPlugins(sources);
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

  private registerL4(): void {
    const l4 = this.l4;
    countedElsewhere(
      this.registry,
      "agw_l4_connections_total",
      'Closed TCP and TLS passthrough connections, by listener, cluster and outcome ("ok", or why it ended: docs/l4.md)',
      ["listener", "cluster", "outcome"],
      function* () {
        for (const s of l4.values())
          for (const [outcome, n] of s.outcomes)
            yield [{ listener: s.listener, cluster: s.cluster, outcome: outcome || "ok" }, n];
      },
    );
    countedElsewhere(
      this.registry,
      "agw_l4_bytes_total",
      "Bytes of closed TCP and TLS passthrough connections, received from and sent to the client",
      ["listener", "cluster", "direction"],
      function* () {
        for (const s of l4.values()) {
          yield [{ listener: s.listener, cluster: s.cluster, direction: "received" }, s.bytesReceived];
          yield [{ listener: s.listener, cluster: s.cluster, direction: "sent" }, s.bytesSent];
        }
      },
    );
    new CountedHistogram(
      this.registry,
      {
        name: "agw_l4_connection_duration_seconds",
        help: "From accept to close, per TCP or TLS passthrough listener and cluster",
        labelNames: ["listener", "cluster"],
        buckets: L4_DURATION_BUCKETS,
      },
      function* () {
        for (const s of l4.values()) yield [{ listener: s.listener, cluster: s.cluster }, s.duration];
      },
    );
  }

  /** One closed L4 connection. */
  recordL4(c: L4ConnectionView, endedAt: number): void {
    const key = `${c.listener}\n${c.cluster}`;
    let s = this.l4.get(key);
    if (s === undefined) {
      s = new L4Series(c.listener, c.cluster);
      this.l4.set(key, s);
    }
    s.outcomes.set(c.outcome, (s.outcomes.get(c.outcome) ?? 0) + 1);
    s.bytesReceived += c.bytesReceived;
    s.bytesSent += c.bytesSent;
    observeSeconds(s.duration, L4_DURATION_BUCKETS, (endedAt - c.startedAt) / 1000);
  }

  private registerTrafficPolicies(sources: MetricSources): void {
    const registry = this.registry;
    const clusters = sources.clusters;
    if (clusters === undefined) return;
    const byCluster = (count: (c: NonNullable<ClusterRuntime["state"]>) => number) =>
      function* (): Generator<[{ cluster: string }, number]> {
        for (const c of clusters()) if (c.state !== undefined) yield [{ cluster: c.name }, count(c.state)];
      };
    countedElsewhere(
      registry,
      "agw_upstream_retries_total",
      "Retry attempts started, per cluster",
      ["cluster"],
      byCluster((s) => s.counters.retries),
    );
    countedElsewhere(
      registry,
      "agw_upstream_retries_refused_total",
      "Retries not started: the retry budget or the max-retries circuit breaker refused them",
      ["cluster"],
      byCluster((s) => s.counters.retriesRefused),
    );
    countedElsewhere(
      registry,
      "agw_circuit_breaker_overflows_total",
      "Requests answered 503 overflow by the cluster's circuit breaker",
      ["cluster"],
      byCluster((s) => s.counters.overflows),
    );
    countedElsewhere(
      registry,
      "agw_outlier_ejections_total",
      "Endpoints ejected by outlier detection, per cluster",
      ["cluster"],
      byCluster((s) => s.counters.ejections),
    );
    new Gauge({
      name: "agw_upstream_requests_active",
      help: "Requests admitted by the cluster's circuit breaker and not finished",
      labelNames: ["cluster"],
      registers: [registry],
      collect() {
        this.reset();
        for (const c of clusters())
          if (c.state !== undefined) this.set({ cluster: c.name }, c.state.activeRequests);
      },
    });
    new Gauge({
      name: "agw_endpoint_health",
      help: "1 for the endpoint's health (unchecked, healthy, unhealthy: failing active checks, ejected: by outlier detection)",
      labelNames: ["cluster", "endpoint", "health"],
      registers: [registry],
      collect() {
        this.reset();
        const now = Date.now();
        for (const c of clusters())
          for (const e of c.endpoints)
            this.set({ cluster: c.name, endpoint: e.key, health: endpointHealth(c, e, now) }, 1);
      },
    });
  }

  private registerPlugins(sources: MetricSources): void {
    const rateLimits = sources.rateLimits;
    if (rateLimits !== undefined)
      countedElsewhere(
        this.registry,
        "agw_rate_limit_decisions_total",
        "Local rate-limit decisions (admitted, refused with 429), per route",
        ["route", "decision"],
        function* () {
          for (const [route, c] of rateLimits()) {
            yield [{ route, decision: "admitted" }, c.admitted];
            yield [{ route, decision: "refused" }, c.refused];
          }
        },
      );
    countedElsewhere(
      this.registry,
      "agw_compression_bytes_total",
      "Response body bytes through the gateway's compression, per route and coding: in (from the upstream) and out (to the client); out/in is the ratio",
      ["route", "coding", "direction"],
      function* () {
        for (const [key, c] of compressionCounts) {
          const at = key.indexOf("\n");
          const labels = { route: key.slice(0, at), coding: key.slice(at + 1) };
          yield [{ ...labels, direction: "in" }, c.bytesIn];
          yield [{ ...labels, direction: "out" }, c.bytesOut];
        }
      },
    );
    countedElsewhere(
      this.registry,
      "agw_compression_responses_total",
      "Responses compressed, per route and coding",
      ["route", "coding"],
      function* () {
        for (const [key, c] of compressionCounts) {
          const at = key.indexOf("\n");
          yield [{ route: key.slice(0, at), coding: key.slice(at + 1) }, c.responses];
        }
      },
    );
    const plugins = sources.plugins;
    if (plugins === undefined) return;
    const registry = this.registry;
    const perPlugin = (count: (s: PluginStats) => number) =>
      function* (): Generator<[{ plugin: string }, number]> {
        for (const [plugin, stats] of plugins()) yield [{ plugin }, count(stats)];
      };
    countedElsewhere(
      registry,
      "agw_plugin_calls_total",
      "Plugin calls, per plugin",
      ["plugin"],
      perPlugin((s) => s.calls),
    );
    countedElsewhere(
      registry,
      "agw_plugin_errors_total",
      "Plugin calls that failed (trap, invalid answer, out of fuel), per plugin",
      ["plugin"],
      perPlugin((s) => s.errors),
    );
    countedElsewhere(
      registry,
      "agw_plugin_timeouts_total",
      "Plugin calls stopped because they ran out of fuel, per plugin",
      ["plugin"],
      perPlugin((s) => s.timeouts),
    );
    countedElsewhere(
      registry,
      "agw_plugin_log_dropped_total",
      "Guest log lines dropped by the per-plugin rate limit",
      ["plugin"],
      perPlugin((s) => s.logDropped),
    );
    countedElsewhere(
      registry,
      "agw_plugin_kv_refused_total",
      "kv sets refused because the plugin's store was full",
      ["plugin"],
      perPlugin((s) => s.kvRefused),
    );
    new Gauge({
      name: "agw_plugin_instances",
      help: "Live instances of each plugin",
      labelNames: ["plugin"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [plugin, stats] of plugins()) this.set({ plugin }, stats.instances);
      },
    });
    new CountedHistogram(
      registry,
      {
        name: "agw_plugin_call_duration_seconds",
        help: "Plugin call duration, per plugin",
        labelNames: ["plugin"],
        buckets: PLUGIN_CALL_BUCKETS,
      },
      function* () {
        for (const [plugin, stats] of plugins()) yield [{ plugin }, stats];
      },
    );
  }

  /** The hot path: counts one finished exchange. */
  record(x: ExchangeView, aborted: boolean, nowMs: number, upstreamStartedAt: number): void {
    const route = x.route;
    let series = route === null ? undefined : this.routeSeries.get(route);
    if (series === undefined) {
      series = this.seriesOf(x.proxy.listenerName, route === null ? "" : route.name);
      if (route !== null) this.routeSeries.set(route, series);
    }
    const cluster = x.cluster;
    const status = x.status;
    const index = aborted || status < 100 || status > 599 ? 5 : ((status / 100) | 0) - 1;
    (series.forCluster(cluster === null ? "" : cluster.name)[index] as number)++;
    if (x.startedAt !== 0) observeSeconds(series.duration, LATENCY_BUCKETS, (nowMs - x.startedAt) / 1000);
    if (cluster !== null && upstreamStartedAt !== 0) {
      let h = this.upstreamByCluster.get(cluster.name);
      if (h === undefined) {
        h = newBucketCounts(LATENCY_BUCKETS);
        this.upstreamByCluster.set(cluster.name, h);
      }
      observeSeconds(h, LATENCY_BUCKETS, (nowMs - upstreamStartedAt) / 1000);
    }
  }

  /** The counts as they are now (no per-request work: read at the stats interval). */
  counts(): StatsCounts {
    const routes: StatsCounts["routes"][number][] = [];
    const clusters = new Map<string, { cluster: string; requests: number[]; latency: number[] }>();
    const clusterOf = (name: string) => {
      let c = clusters.get(name);
      if (c === undefined) {
        c = {
          cluster: name,
          requests: new Array<number>(CODE_CLASSES.length).fill(0),
          latency: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0),
        };
        clusters.set(name, c);
      }
      return c;
    };
    for (const s of this.series.values()) {
      const requests = new Array<number>(CODE_CLASSES.length).fill(0);
      for (const [cluster, counts] of s.byCluster) {
        const c = cluster === "" ? undefined : clusterOf(cluster);
        for (let i = 0; i < counts.length; i++) {
          requests[i] = (requests[i] as number) + (counts[i] as number);
          if (c) c.requests[i] = (c.requests[i] as number) + (counts[i] as number);
        }
      }
      routes.push({ listener: s.listener, route: s.route, requests, latency: [...s.duration.durations] });
    }
    for (const [cluster, h] of this.upstreamByCluster) clusterOf(cluster).latency = [...h.durations];
    return { routes, clusters: [...clusters.values()] };
  }

  private seriesOf(listener: string, route: string): RouteSeries {
    const key = `${listener}\n${route}`;
    let s = this.series.get(key);
    if (s === undefined) {
      s = new RouteSeries(listener, route);
      this.series.set(key, s);
    }
    return s;
  }
}
