/**
 * Fleet stats: the data plane's side of agw.v1.StatsService (proto/agw/v1/stats.proto, after Envoy's
 * Load Reporting Service). The stream runs on the xDS stream's HTTP/2 connection (XdsClient
 * `sideStream`), so it has the same authentication and follows it to another control plane replica
 * on failover. Nothing happens per request: at each interval the reporter reads the counters metrics
 * already keep (DataPlaneMetrics.counts) and sends what changed since the previous report.
 */
import {
  AsyncQueue,
  CODE_CLASSES,
  ENDPOINT_HEALTH,
  type EndpointHealthName,
  LATENCY_BOUNDS,
  type Logger,
  STATS_LIMITS,
} from "@agw/core";
import {
  type ClusterStats,
  type ReportStatsRequest,
  ReportStatsRequestSchema,
  type RouteStats,
  StatsService,
} from "@agw/core/gen/agw/v1/stats_pb.js";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import type { StatsCounts } from "./metrics.ts";

export interface StatsReporterOptions {
  nodeId: string;
  /** Cumulative counts of every serving thread. */
  counts(): Promise<StatsCounts[]>;
  /** Each cluster's endpoints with their health, in the active config. */
  health(): Iterable<[cluster: string, endpoints: Iterable<[address: string, health: EndpointHealthName]>]>;
  log: Logger;
  /** Per-report bounds (tests lower them); default STATS_LIMITS. */
  limits?: { routes: number; clusters: number; endpoints: number };
}

const BUCKETS = LATENCY_BOUNDS.length + 1;
/** Reports are not sent more often than this, whatever the control plane asks. */
const MIN_INTERVAL_MS = 500;

type Totals = Map<string, { requests: number[]; latency: number[] }>;

/** The largest count a report carries per entry and interval (uint32). */
const MAX_DELTA = 0xffffffff;

/**
 * a - b per entry, into a fresh array; a counter that went down (it cannot) counts from zero. Counts
 * are uint32 on the wire: per interval they never come near; with uint64 (BigInt) a report of 10,000
 * busy routes and clusters took ~0.8 s to build and encode instead of ~0.1 s.
 */
function delta(now: readonly number[], before: readonly number[] | undefined, length: number): number[] {
  const out = new Array<number>(length).fill(0);
  for (let i = 0; i < length; i++) {
    const n = now[i] ?? 0;
    const b = before?.[i] ?? 0;
    out[i] = Math.min(MAX_DELTA, n >= b ? n - b : n);
  }
  return out;
}

function isZero(a: readonly number[]): boolean {
  for (const n of a) if (n !== 0) return false;
  return true;
}

export class StatsReporter {
  private readonly options: StatsReporterOptions;
  private readonly limits: { routes: number; clusters: number; endpoints: number };
  /** Cumulative totals at the previous report: deltas are taken against them. */
  private routesBefore: Totals = new Map();
  private clustersBefore: Totals = new Map();
  private lastReportAt = Date.now();
  /** The health last sent complete, as one string: a new full set goes out when it differs. */
  private healthSent = "";
  /** Reports made, over every stream. */
  reports = 0;

  constructor(options: StatsReporterOptions) {
    this.options = options;
    this.limits = options.limits ?? STATS_LIMITS;
  }

  /**
   * One stream on `transport` (the xDS stream's connection) until `signal` aborts or the control plane
   * ends it. A control plane without the service (another xDS server) answers Unimplemented: then
   * nothing more is tried on this connection.
   */
  async stream(transport: Transport, signal: AbortSignal): Promise<void> {
    const client = createClient(StatsService, transport);
    const outbound = new AsyncQueue<ReportStatsRequest>();
    let timer: NodeJS.Timeout | undefined;
    let intervalMs = 0;
    // A new stream gets the complete endpoint health first.
    this.healthSent = "";
    const schedule = () => {
      // Reports go out in the middle of wall-clock slots of the interval, so that each lands in its
      // own slot of the control plane's ring (fleet-stats.ts) even when clocks differ a little.
      const now = Date.now();
      const next = Math.floor(now / intervalMs) * intervalMs + intervalMs / 2;
      timer = setTimeout(tick, next > now ? next - now : next + intervalMs - now);
    };
    const tick = () => {
      this.report()
        .then((r) => outbound.push(r))
        .catch((e: unknown) => this.options.log.warn({ err: e }, "fleet stats report failed"))
        .finally(() => {
          if (!signal.aborted) schedule();
        });
    };
    outbound.push(create(ReportStatsRequestSchema, { nodeId: this.options.nodeId }));
    try {
      for await (const response of client.reportStats(outbound, { signal })) {
        const asked = Math.max(MIN_INTERVAL_MS, response.intervalMs);
        if (asked === intervalMs) continue;
        intervalMs = asked;
        clearTimeout(timer);
        schedule();
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ConnectError && e.code === Code.Unimplemented) {
        this.options.log.info("the control plane takes no fleet stats (agw.v1.StatsService)");
        await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
        return;
      }
      this.options.log.debug({ err: e }, "fleet stats stream ended");
    } finally {
      clearTimeout(timer);
      outbound.close();
    }
  }

  /** The report of what happened since the previous one (the next baseline is taken now). */
  async report(): Promise<ReportStatsRequest> {
    const all = await this.options.counts();
    const now = Date.now();
    const routesNow: Totals = new Map();
    const clustersNow: Totals = new Map();
    for (const counts of all) {
      for (const r of counts.routes) add(routesNow, `${r.listener}\n${r.route}`, r.requests, r.latency);
      for (const c of counts.clusters) add(clustersNow, c.cluster, c.requests, c.latency);
    }
    let dropped = 0;
    const routes: RouteStats[] = [];
    for (const [key, t] of routesNow) {
      const requests = delta(t.requests, this.routesBefore.get(key)?.requests, CODE_CLASSES.length);
      if (isZero(requests)) continue;
      if (routes.length >= this.limits.routes) {
        dropped++;
        continue;
      }
      const at = key.indexOf("\n");
      routes.push({
        $typeName: "agw.v1.RouteStats",
        listener: key.slice(0, at),
        route: key.slice(at + 1),
        requests,
        latency: delta(t.latency, this.routesBefore.get(key)?.latency, BUCKETS),
      });
    }
    const clusters = new Map<string, ClusterStats>();
    for (const [name, t] of clustersNow) {
      const requests = delta(t.requests, this.clustersBefore.get(name)?.requests, CODE_CLASSES.length);
      const latency = delta(t.latency, this.clustersBefore.get(name)?.latency, BUCKETS);
      if (isZero(requests) && isZero(latency)) continue;
      if (clusters.size >= this.limits.clusters) {
        dropped++;
        continue;
      }
      clusters.set(name, {
        $typeName: "agw.v1.ClusterStats",
        cluster: name,
        requests,
        latency,
        endpoints: [],
      });
    }
    // Endpoint health: complete, and only when it changed since the last complete set.
    const health: [string, [string, number][]][] = [];
    for (const [cluster, endpoints] of this.options.health())
      health.push([cluster, [...endpoints].map(([a, h]) => [a, ENDPOINT_HEALTH.indexOf(h)])]);
    const signature = JSON.stringify(health);
    const healthComplete = signature !== this.healthSent;
    if (healthComplete) {
      let entries = 0;
      for (const [cluster, endpoints] of health) {
        let c = clusters.get(cluster);
        if (c === undefined) {
          if (clusters.size >= this.limits.clusters) {
            dropped++;
            continue;
          }
          c = {
            $typeName: "agw.v1.ClusterStats",
            cluster,
            requests: [],
            latency: [],
            endpoints: [],
          };
          clusters.set(cluster, c);
        }
        for (const [address, h] of endpoints) {
          if (entries++ >= this.limits.endpoints) {
            dropped++;
            continue;
          }
          c.endpoints.push({ $typeName: "agw.v1.EndpointHealth", address, health: h });
        }
      }
      this.healthSent = signature;
    }
    const report: ReportStatsRequest = {
      $typeName: "agw.v1.ReportStatsRequest",
      nodeId: "",
      intervalMs: Math.max(0, Math.min(now - this.lastReportAt, MAX_DELTA)),
      routes,
      clusters: [...clusters.values()],
      dropped,
      healthComplete,
    };
    this.routesBefore = routesNow;
    this.clustersBefore = clustersNow;
    this.lastReportAt = now;
    this.reports++;
    return report;
  }
}

function add(into: Totals, key: string, requests: readonly number[], latency: readonly number[]): void {
  const t = into.get(key);
  if (t === undefined) {
    // The first (often only) thread's arrays are taken as they are: counts() made them fresh.
    into.set(key, { requests: requests as number[], latency: latency as number[] });
    return;
  }
  if (t.requests === requests) return;
  const r = new Array<number>(CODE_CLASSES.length);
  const l = new Array<number>(BUCKETS);
  for (let i = 0; i < r.length; i++) r[i] = (t.requests[i] ?? 0) + (requests[i] ?? 0);
  for (let i = 0; i < l.length; i++) l[i] = (t.latency[i] ?? 0) + (latency[i] ?? 0);
  into.set(key, { requests: r, latency: l });
}
