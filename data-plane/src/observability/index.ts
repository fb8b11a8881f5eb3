/** The data plane's observer: metrics always, access logs and traces when configured. */

import type { RuntimeConfig } from "../runtime/types.ts";
import { AccessLog, type AccessLogOptions } from "./access-log.ts";
import type { L4ConnectionObserver, L4ConnectionView } from "./connection.ts";
import type { ExchangeObserver, ExchangeView } from "./exchange.ts";
import { DataPlaneMetrics, endpointHealth, type MetricSources } from "./metrics.ts";
import type { ExchangeSpans, Tracing, TracingOptions } from "./tracing.ts";

export type { AccessLogOptions } from "./access-log.ts";
export type { TracingOptions } from "./tracing.ts";

/** The admin's /clusters: each cluster's endpoints with their health, and its traffic-policy counters. */
export function clustersView(config: RuntimeConfig): unknown[] {
  const now = Date.now();
  return [...config.clusters.values()].map((c) => ({
    name: c.name,
    tls: c.tls !== undefined,
    ...(c.state !== undefined && {
      active_requests: c.state.activeRequests,
      counters: { ...c.state.counters },
    }),
    endpoints: c.endpoints.map((e) => ({ address: e.key, health: endpointHealth(c, e, now) })),
  }));
}

export interface ObservabilityOptions {
  readonly accessLog?: AccessLogOptions | undefined;
  readonly tracing?: TracingOptions | undefined;
  /**
   * Per-request metrics (counts, latency histograms); default true. Off, and with no access log or
   * tracing, the engine is given no observer at all: the baseline for measuring what observing costs.
   */
  readonly requestMetrics?: boolean | undefined;
}

/** Per downstream connection (requests on one connection are sequential). */
interface ConnState {
  upstreamStartedAt: number;
  spans: ExchangeSpans | null;
  /** Socket byte counters at the end of the previous exchange. */
  bytesRead: number;
  bytesWritten: number;
}

export class GatewayObserver implements ExchangeObserver, L4ConnectionObserver {
  readonly metrics: DataPlaneMetrics;
  readonly accessLog: AccessLog | null;
  readonly tracing: Tracing | null;
  readonly requestMetrics: boolean;
  private readonly conns = new WeakMap<ExchangeView, ConnState>();

  /** The OpenTelemetry SDK is loaded only when tracing is configured (~30 MiB RSS, ~300 ms at start-up). */
  static async create(sources: MetricSources, options: ObservabilityOptions = {}): Promise<GatewayObserver> {
    const tracing = options.tracing ? new (await import("./tracing.ts")).Tracing(options.tracing) : null;
    return new GatewayObserver(sources, options, tracing);
  }

  private constructor(sources: MetricSources, options: ObservabilityOptions, tracing: Tracing | null) {
    this.metrics = new DataPlaneMetrics(sources);
    this.accessLog = options.accessLog ? new AccessLog(options.accessLog) : null;
    this.tracing = tracing;
    this.requestMetrics = options.requestMetrics ?? true;
  }

  /** Whether the engine needs to call this observer at all. */
  get observesRequests(): boolean {
    return this.requestMetrics || this.accessLog !== null || this.tracing !== null;
  }

  private state(x: ExchangeView): ConnState {
    let s = this.conns.get(x);
    if (s === undefined) {
      s = { upstreamStartedAt: 0, spans: null, bytesRead: 0, bytesWritten: 0 };
      this.conns.set(x, s);
    }
    return s;
  }

  upstreamStart(x: ExchangeView): string {
    const s = this.state(x);
    s.upstreamStartedAt = performance.now();
    const tracing = this.tracing;
    if (tracing === null) return "";
    const spans = tracing.startServer(x);
    s.spans = spans;
    return tracing.startClient(spans, x);
  }

  exchangeEnd(x: ExchangeView, aborted: boolean): void {
    const now = performance.now();
    const s = this.state(x);
    if (this.requestMetrics) this.metrics.record(x, aborted, now, s.upstreamStartedAt);
    let traceId = "";
    const tracing = this.tracing;
    if (tracing !== null) {
      const spans = s.spans ?? tracing.startServer(x);
      traceId = spans.server.spanContext().traceId;
      tracing.end(spans, x, aborted);
      s.spans = null;
    }
    s.upstreamStartedAt = 0;
    const log = this.accessLog;
    // Byte counters are read only with an access log: a socket's bytesWritten walks its write queue.
    if (log === null) return;
    const read = x.bytesRead;
    const written = x.bytesWritten;
    if (log.wants(x)) {
      log.write(x, {
        endedAtMs: now,
        aborted,
        bytesReceived: read - s.bytesRead,
        bytesSent: written - s.bytesWritten,
        traceId,
      });
    }
    s.bytesRead = read;
    s.bytesWritten = written;
  }

  /** An L4 connection closed: one count and a duration per connection, bytes both ways, a log line. */
  l4ConnectionEnd(c: L4ConnectionView, endedAt: number): void {
    if (this.requestMetrics) this.metrics.recordL4(c, endedAt);
    this.accessLog?.writeL4(c, endedAt);
  }

  async close(): Promise<void> {
    await this.accessLog?.close();
    await this.tracing?.close();
  }
}
