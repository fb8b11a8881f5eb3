/**
 * One listener's engine: HTTP/1.1 connections (http1.ts) and HTTP/2 sessions (h2-server.ts), whose
 * requests each run one Exchange (exchange.ts). index.ts and workers/worker.ts construct it; the
 * listener hands it accepted sockets.
 */
import type net from "node:net";
import type { ExchangeObserver } from "../observability/exchange.ts";
import type { ListenerLimits, RuntimeConfig } from "../runtime/types.ts";
import type { DownstreamTlsInfo } from "../tls/acceptor.ts";
import { H2Downstream } from "./h2-server.ts";
import { ClientConn } from "./http1.ts";
import type { Http1Context } from "./http1-response.ts";
import type { UpstreamPool } from "./upstream-pool.ts";

/**
 * The engine's own settings. A listener's `limits` (config.yaml, ListenerRuntime.limits) replace the
 * request-side ones; these apply to listeners without limits (the engine's tests) and to upstream heads.
 */
export interface HttpProxyOptions {
  /** Largest request (and upstream response) head in bytes; larger → 431 (502 upstream). Default 65536. */
  readonly maxHeadBytes?: number;
  /** Most header fields in a head; more → 431 (502 upstream). Default 100. */
  readonly maxHeaders?: number;
  /** Time allowed to receive a whole request head, from its first byte (or accept). → 408. Default 30000. */
  readonly headerTimeoutMs?: number;
  /** Idle time allowed between requests on a keep-alive connection before it is closed. Default 60000. */
  readonly keepAliveTimeoutMs?: number;
  /** Longest wait for the next bytes of a request body. → 408. Default 60000. */
  readonly bodyTimeoutMs?: number;
  /** After a response with `Connection: close`, how long unread request bytes are drained before closing. Default 5000. */
  readonly lingerTimeoutMs?: number;
  /** X-Forwarded-Proto value sent upstream. Default "http". */
  readonly forwardedProto?: string;
}

export interface HttpProxyInit {
  readonly listenerName: string;
  readonly getConfig: () => RuntimeConfig;
  readonly pool: UpstreamPool;
  readonly options?: HttpProxyOptions;
  /** Metrics, access logs and traces (data-plane/src/observability). */
  readonly observer?: ExchangeObserver;
}

export class HttpProxy implements Http1Context {
  readonly listenerName: string;
  readonly getConfig: () => RuntimeConfig;
  readonly pool: UpstreamPool;
  /** Set by shutdown(): no more keep-alive. */
  draining = false;
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
  private readonly conns = new Set<ClientConn>();
  /** For listeners that carry no limits (see HttpProxyOptions). */
  readonly defaultLimits: ListenerLimits;
  readonly lingerTimeoutMs: number;
  private h2: H2Downstream | null = null;
  readonly forwardedProto: string;
  readonly observer: ExchangeObserver | null;

  constructor(init: HttpProxyInit) {
    const o = init.options ?? {};
    this.listenerName = init.listenerName;
    this.getConfig = init.getConfig;
    this.pool = init.pool;
    this.maxHeadBytes = o.maxHeadBytes ?? 65536;
    this.maxHeaders = o.maxHeaders ?? 100;
    this.defaultLimits = {
      maxRequestHeaderBytes: this.maxHeadBytes,
      maxRequestHeaders: this.maxHeaders,
      maxRequestBodyBytes: 0,
      headerTimeoutMs: o.headerTimeoutMs ?? 30000,
      bodyTimeoutMs: o.bodyTimeoutMs ?? 60000,
      idleTimeoutMs: o.keepAliveTimeoutMs ?? 60000,
      maxRequestsPerConnection: 0,
      http2MaxConcurrentStreams: 128,
      http2InitialWindowSize: 65535,
      http2MaxHeaderListBytes: this.maxHeadBytes,
    };
    this.lingerTimeoutMs = o.lingerTimeoutMs ?? 5000;
    this.forwardedProto = o.forwardedProto ?? "http";
    this.observer = init.observer ?? null;
  }

  /** The listener's limits in the current config: read per connection and per request, never cached longer. */
  limits(): ListenerLimits {
    return this.getConfig().listeners.get(this.listenerName)?.limits ?? this.defaultLimits;
  }

  /** Takes ownership of an accepted downstream socket; `tls` when it is a TLS socket past its handshake. */
  handleConnection(socket: net.Socket, tls?: DownstreamTlsInfo): void {
    if (tls?.alpn === "h2") this.http2().accept(socket, tls, null);
    else this.conns.add(new ClientConn(this, socket, tls ?? null));
  }

  /** The HTTP/2 side, created on the first HTTP/2 connection. */
  http2(): H2Downstream {
    this.h2 ??= new H2Downstream(this);
    return this.h2;
  }

  /** HTTP/1.1 connections plus HTTP/2 sessions. */
  get connectionCount(): number {
    return this.conns.size + (this.h2?.sessionCount ?? 0);
  }

  /** Stops keep-alive: idle connections close now, busy ones after their current response. */
  shutdown(): void {
    this.draining = true;
    for (const c of this.conns) c.closeIfIdle();
    this.h2?.shutdown();
  }

  /** Destroys every downstream connection immediately. */
  destroyAll(): void {
    for (const c of this.conns) c.socket.destroy();
    this.h2?.destroyAll();
  }

  /** @internal */
  forget(c: ClientConn): void {
    this.conns.delete(c);
  }
}
