/**
 * The contracts around an Exchange (exchange.ts): what a listener's engine offers it (ProxyContext)
 * and what it needs from the protocol a request arrived on (Downstream).
 */
import type { ExchangeObserver } from "../observability/exchange.ts";
import type { BufferedBody } from "../plugins/chain.ts";
import type {
  ClusterRuntime,
  CompiledRoute,
  Endpoint,
  ListenerLimits,
  RuntimeConfig,
} from "../runtime/types.ts";
import type { FieldList } from "./fields.ts";
import type { UpstreamPool } from "./upstream-pool.ts";

/** What one listener's engine offers its exchanges (HttpProxy implements it). */
export interface ProxyContext {
  /** The listener whose config (router, limits, paths) requests read. */
  readonly listenerName: string;
  /** The current config: read once per request. */
  readonly getConfig: () => RuntimeConfig;
  /** Upstream connections (HTTP/1.1) and sessions (HTTP/2), shared across configs. */
  readonly pool: UpstreamPool;
  /** Largest upstream response head, and its most fields. */
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
  /** For listeners that carry no limits. */
  readonly defaultLimits: ListenerLimits;
  /** How long a closing connection drains what the client still sends. */
  readonly lingerTimeoutMs: number;
  /** X-Forwarded-Proto on plain connections. */
  readonly forwardedProto: string;
  /** Metrics, access log, traces; null: none. */
  readonly observer: ExchangeObserver | null;
  /** Set by shutdown(): no more keep-alive. */
  readonly draining: boolean;
  /** The listener's limits in the current config. */
  limits(): ListenerLimits;
}

/**
 * What the exchange needs from the protocol it was received on. The HTTP/1.1 connection and the HTTP/2
 * stream implement it; everything else of a request's life is the Exchange's.
 */
export interface Downstream {
  /** "HTTP/1.0", "HTTP/1.1" or "HTTP/2", for the access log. */
  readonly protocol: string;
  /** The exchange is still in progress (not answered, not reset, the client still there). */
  readonly active: boolean;
  /** Applies the body size limit and arms the body timeout; false when the request was answered. */
  limitBody(route: CompiledRoute, limits: ListenerLimits): boolean;
  /** Stop / restart reading the request body (while plugins decide). */
  pauseRequest(): void;
  resumeRequest(): void;
  /** The connection closes after this answer (Connection: close; GOAWAY on HTTP/2). */
  closeAfterAnswer(): void;
  /** A local answer: status, its fields, and its body (null: none, e.g. HEAD). */
  writeLocal(status: number, fields: FieldList, body: Uint8Array | null): void;
  /** The upstream response head in `fields`; `buf[headLen..]` is the start of its body. */
  respond(fields: FieldList, reason: string, buf: Buffer, headLen: number): void;
  /** Response body bytes to the client; false when the client is backed up. */
  toClient(chunk: Buffer): boolean;
  /** The response is complete (the upstream connection is already released). */
  responseComplete(): void;
  /** The response was cut short after its head: the client must not see it as complete. */
  abortResponse(): void;
  /**
   * Reads the request body for the request filter, de-framed, up to `limit` bytes: `done` gets the
   * whole body, or OVER_LIMIT once more was read (what was read is kept, and sent upstream first
   * with the rest of the body if the request goes on). A whole body is then sent with a Content-Length.
   */
  collectBody(limit: number, done: (body: BufferedBody) => void): void;
  /** What a mirror copy carries of the body: null none, undefined: do not mirror this request. */
  mirrorBody(): Buffer | null | undefined;
  /** Terminated CONNECT: open a TCP (TLS) connection to `ep` and splice. */
  openTunnel(ep: Endpoint, cluster: ClusterRuntime): void;
  /** The upstream request of the current attempt (upHead built, route timer armed). */
  upstreamRequest(route: CompiledRoute, cluster: ClusterRuntime, ep: Endpoint): void;
  /** Another attempt of the whole request to `ep` on a fresh connection (the retry policy). */
  sendAttempt(ep: Endpoint, cluster: ClusterRuntime): void;
  /** Resends what was sent of the request on a fresh connection to the same endpoint. */
  resend(): void;
  /** Everything sent upstream so far can be sent again (the rest of the body may still stream). */
  canResend(): boolean;
  /** The whole request is held and can be sent again (a retry policy's attempt). */
  canReplay(): boolean;
}
