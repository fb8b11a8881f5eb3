/**
 * W3C trace context and OpenTelemetry spans: a server span per request (child of the client's
 * traceparent, if any) and a client span per upstream request, whose id is the traceparent the
 * upstream receives. Spans are batched and exported over OTLP/HTTP (JSON).
 */
import {
  context,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { ExchangeView } from "./exchange.ts";

export interface TracingOptions {
  /** OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces. */
  readonly otlpEndpoint: string;
  /** Fraction of new traces sampled, 0…1 (default 1); a client's sampled flag is followed. */
  readonly sampleRate?: number;
  readonly serviceName?: string;
  /** Export batching delay (default 1000 ms). */
  readonly exportDelayMs?: number;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The client's trace context, or undefined when absent or malformed (then a new trace starts). */
export function parseTraceparent(value: string | undefined): SpanContext | undefined {
  if (value === undefined) return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (m === null) return undefined;
  const traceId = m[1] as string;
  const spanId = m[2] as string;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, traceFlags: Number.parseInt(m[3] as string, 16) & 1, isRemote: true };
}

export function formatTraceparent(c: SpanContext): string {
  return `00-${c.traceId}-${c.spanId}-${c.traceFlags & 1 ? "01" : "00"}`;
}

/** The spans of one exchange in flight. */
export interface ExchangeSpans {
  readonly server: Span;
  client: Span | null;
}

export class Tracing {
  private readonly provider: TracerProvider;
  private readonly tracer: Tracer;

  constructor(options: TracingOptions) {
    const rate = options.sampleRate ?? 1;
    if (!(rate >= 0 && rate <= 1)) throw new Error(`tracing sample rate must be within 0…1, got ${rate}`);
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({ "service.name": options.serviceName ?? "agw-data-plane" }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(rate) }),
      spanProcessors: [
        new BatchSpanProcessor({
          exporter: new OTLPTraceExporter({ url: options.otlpEndpoint }),
          scheduledDelayMillis: options.exportDelayMs ?? 1000,
        }),
      ],
    });
    this.tracer = this.provider.getTracer("agw");
  }

  /** The server span, started when the request head was parsed. */
  startServer(x: ExchangeView): ExchangeSpans {
    const head = x.head;
    const parent = parseTraceparent(head?.header("traceparent"));
    const ctx = parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
    const server = this.tracer.startSpan(
      head === null ? "HTTP" : head.method,
      {
        kind: SpanKind.SERVER,
        startTime: performance.timeOrigin + (x.startedAt === 0 ? performance.now() : x.startedAt),
        attributes: {
          "http.request.method": head?.method ?? "",
          "url.path": head?.path ?? "",
          "server.address": head?.host ?? "",
          "client.address": x.clientIp,
          "agw.listener": x.proxy.listenerName,
          "agw.request_id": x.requestId,
        },
      },
      ctx,
    );
    return { server, client: null };
  }

  /** A client span for the upstream request; returns the traceparent to send with it. */
  startClient(spans: ExchangeSpans, x: ExchangeView): string {
    const ep = x.endpoint;
    const client = this.tracer.startSpan(
      `${x.head?.method ?? "HTTP"} ${x.cluster?.name ?? ""}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          "server.address": ep?.host ?? "",
          "server.port": ep?.port ?? 0,
          "agw.cluster": x.cluster?.name ?? "",
        },
      },
      trace.setSpan(context.active(), spans.server),
    );
    spans.client = client;
    return formatTraceparent(client.spanContext());
  }

  end(spans: ExchangeSpans, x: ExchangeView, aborted: boolean): void {
    const status = x.status;
    const failed = aborted || status >= 500 || status === 0;
    const client = spans.client;
    if (client !== null) {
      if (status !== 0) client.setAttribute("http.response.status_code", status);
      if (failed) client.setStatus({ code: SpanStatusCode.ERROR });
      client.end();
    }
    const server = spans.server;
    if (x.route !== null) {
      server.setAttribute("http.route", x.route.name);
      server.updateName(`${x.head?.method ?? "HTTP"} ${x.route.name}`);
    }
    if (status !== 0) server.setAttribute("http.response.status_code", status);
    if (x.errorCode !== "") server.setAttribute("error.type", x.errorCode);
    if (failed) server.setStatus({ code: SpanStatusCode.ERROR });
    server.end();
  }

  /** Exports what is buffered, then stops. */
  async close(): Promise<void> {
    await this.provider.shutdown();
  }
}
