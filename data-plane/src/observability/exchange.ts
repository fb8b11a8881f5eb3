/**
 * The engine's one observation point: what metrics, access logs and traces may read of a request
 * exchange, and the two calls the engine makes. Everything else lives in this directory, so the
 * engine stays free of observability logic.
 */
import type { RequestHead } from "../engine/http1-parser.ts";
import type { ClusterRuntime, CompiledRoute, Endpoint } from "../runtime/types.ts";

/** The engine's per-connection state, read-only, at the moment of a call. */
export interface ExchangeView {
  readonly proxy: { readonly listenerName: string };
  /**
   * Bytes read from and written to the client so far: the connection's counters on HTTP/1.1 (the
   * observer takes differences per exchange), the stream's DATA payload on HTTP/2.
   */
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly clientIp: string;
  /** null for a request rejected before its head parsed (400, 408, 431). */
  readonly head: RequestHead | null;
  /** "HTTP/1.0", "HTTP/1.1" or "HTTP/2": what the client spoke; "" before a head parsed. */
  readonly protocol: string;
  readonly requestId: string;
  readonly route: CompiledRoute | null;
  readonly cluster: ClusterRuntime | null;
  readonly endpoint: Endpoint | null;
  /** performance.now() when the head was parsed; 0 for a request rejected before that. */
  readonly startedAt: number;
  /** Status sent to the client; 0 when nothing was sent. */
  readonly status: number;
  /** The x-agw-error code of a local reply; "" for a proxied response. */
  readonly errorCode: string;
}

export interface ExchangeObserver {
  /** The request goes upstream now; returns the traceparent to send instead of the client's, or "". */
  upstreamStart(x: ExchangeView): string;
  /** The exchange is over: answered in full, or `aborted` (connection reset, response truncated). */
  exchangeEnd(x: ExchangeView, aborted: boolean): void;
}
