/**
 * HTTP/1.1 reverse proxy on raw node:net sockets. One ClientConn per downstream connection carries the
 * state of the request in flight (requests on a connection are handled one at a time, pipelined ones
 * are buffered). Bodies stream in both directions with backpressure and are never buffered whole.
 */
import { randomUUID } from "node:crypto";
import type net from "node:net";
import { RequestTraffic } from "../cluster/traffic.ts";
import type { ExchangeObserver } from "../observability/exchange.ts";
import type { PluginReply } from "../plugins/chain.ts";
import type {
  ClusterRuntime,
  CompiledRoute,
  Endpoint,
  HeaderOps,
  ListenerLimits,
  RuntimeConfig,
} from "../runtime/types.ts";
import type { DownstreamTlsInfo } from "../tls/acceptor.ts";
import { admit } from "./admission.ts";
import { AGW_ERRORS, type AgwErrorCode, codeForStatus, reasonPhrase } from "./errors.ts";
import { H2_PREFACE, H2Downstream } from "./h2.ts";
import { asksForH2c, SWITCHING_TO_H2C } from "./h2c-upgrade.ts";
import { clientAddress, HOP_BY_HOP, hasName, opsAppend, opsDrop, upstreamHead } from "./headers.ts";
import {
  ChunkedDecoder,
  type HeadError,
  HeadScanner,
  parseRequestHead,
  parseResponseHead,
  RequestHead,
  ResponseHead,
} from "./http1-parser.ts";
import { RearmableTimer } from "./rearmable-timer.ts";
import type { UpstreamConn, UpstreamHandler, UpstreamPool } from "./upstream-pool.ts";

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

// ClientConn.phase
const P_HEAD = 0;
const P_ACTIVE = 1;
const P_LINGER = 2;
const P_CLOSED = 3;
/** After a 101: bytes are spliced between the client and the upstream until either side closes. */
const P_TUNNEL = 4;

// Request body framing.
const B_NONE = 0;
const B_LENGTH = 1;
const B_CHUNKED = 2;

// Response framing towards the client.
const M_NONE = 0;
const M_LENGTH = 1;
/** Upstream chunked, client HTTP/1.1: validated bytes forwarded as they are. */
const M_CHUNKED_RAW = 2;
/** Upstream chunked, client HTTP/1.0: decoded data, close-delimited. */
const M_CHUNKED_DECODE = 3;
/** Upstream close-delimited, client HTTP/1.0: forwarded as is, close-delimited. */
const M_CLOSE_RAW = 4;
/** Upstream close-delimited, client HTTP/1.1: re-chunked so the client connection stays reusable. */
const M_CLOSE_CHUNK = 5;

// ClientConn.timer kinds (0 is RearmableTimer's "disarmed").
const T_HEADER = 1;
const T_KEEPALIVE = 2;
const T_LINGER = 3;
/** A request body is expected: fires every bodyTimeoutMs and gives up when no byte came in between. */
const T_BODY = 4;

/**
 * Methods that may be resent after a reused keep-alive connection dies unanswered (RFC 9110 §9.2.2);
 * like nginx, a POST is never sent twice: the upstream may have acted on it before closing.
 */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);

/** A chain's promise can only reject through a host bug; the request then fails closed. */
const PLUGIN_CRASHED: PluginReply = {
  status: 500,
  headers: [],
  body: new Uint8Array(0),
  error: "plugin_failed",
  message: "plugin host error",
};

const CRLF = Buffer.from("\r\n");
const LAST_CHUNK = Buffer.from("0\r\n\r\n");

export class HttpProxy {
  readonly listenerName: string;
  readonly getConfig: () => RuntimeConfig;
  readonly pool: UpstreamPool;
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
  /** For listeners that carry no limits (see HttpProxyOptions). */
  readonly defaultLimits: ListenerLimits;
  readonly lingerTimeoutMs: number;
  readonly forwardedProto: string;
  readonly observer: ExchangeObserver | null;
  /** Set by shutdown(): no more keep-alive. */
  draining = false;
  private readonly conns = new Set<ClientConn>();
  private h2: H2Downstream | null = null;

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

function onConnTimer(c: ClientConn, kind: number): void {
  c.onTimer(kind);
}

function retryAttempt(c: ClientConn, head: RequestHead | null): void {
  c.retryAttempt(head);
}

function onRouteTimer(c: ClientConn): void {
  c.onRouteTimeout();
}

/** The route timer's only kind. */
const ROUTE_TIMEOUT = 1;

function kickPending(c: ClientConn): void {
  if (c.phase === P_HEAD && !c.awaitingDrain) c.onHeadBytes(null);
}

/**
 * The protocol a request asks to switch to, or "" when it must be handled as a plain request: the
 * Upgrade field counts only with "upgrade" in Connection (RFC 9110 §7.8), on HTTP/1.1, without a body.
 * "h2c" is never tunnelled: the gateway itself switches to HTTP/2 (upgradeToH2c) or ignores it.
 */
function upgradeOf(head: RequestHead, bodyMode: number): string {
  if (head.upgrade === "" || head.minor !== 1 || bodyMode !== B_NONE || !hasName(head.connTokens, "upgrade"))
    return "";
  return /(^|[\s,])h2c($|[\s,])/i.test(head.upgrade) ? "" : head.upgrade;
}

class ClientConn implements UpstreamHandler {
  readonly socket: net.Socket;
  readonly proxy: HttpProxy;
  readonly clientIp: string;
  /** The connection's TLS facts (SNI, ALPN, verified client certificate); null on plain HTTP. */
  readonly tls: DownstreamTlsInfo | null;
  phase = P_HEAD;
  /** Unparsed downstream bytes: a partial head, or pipelined requests waiting their turn. */
  buf: Buffer | null = null;
  readonly scanner = new HeadScanner();
  /** Header, keep-alive, body and linger timeouts: one at a time (T_*). */
  readonly timer = new RearmableTimer<ClientConn>(this, onConnTimer);
  /** The client half-closed: answer what it already sent, then close. */
  eof = false;
  /** No request has started on this connection yet (it may still turn out to be h2c). */
  fresh = true;
  /** The listener's limits as of the connection's accept, then as of the first bytes of its latest request. */
  limits: ListenerLimits;
  /** Requests started on this connection (counted only under maxRequestsPerConnection). */
  requests = 0;
  /**
   * Responses are backed up (the socket's write buffer is over its high-water mark): no request is read
   * or started until the client drains them, so a pipelining client that never reads cannot make the
   * gateway buffer its answers without bound (docs/proxy.md, "Memory per connection").
   */
  awaitingDrain = false;

  // The request in flight. Everything below is reset by finishExchange().
  head: RequestHead | null = null;
  requestId = "";
  /** performance.now() when the head parsed; status and error code as sent: for the observer. */
  startedAt = 0;
  status = 0;
  errorCode = "";
  keepAlive = true;
  isHead = false;
  /** The protocol this request asked to switch to (sent upstream), "" for none. */
  upgrade = "";
  route: CompiledRoute | null = null;
  cluster: ClusterRuntime | null = null;
  endpoint: Endpoint | null = null;
  upstream: UpstreamConn | null = null;
  upHead = "";
  readonly routeTimer = new RearmableTimer<ClientConn>(this, onRouteTimer);
  bodyMode = B_NONE;
  bodyRemaining = 0;
  reqBodyDone = true;
  /** Largest chunked body allowed (a Content-Length is checked up front); 0: unlimited. */
  bodyLimit = 0;
  /** Decoded chunked body bytes so far, counted under bodyLimit. */
  bodySeen = 0;
  /** Body bytes arrived since the T_BODY timer last fired. */
  bodyActive = false;
  readonly reqDecoder = new ChunkedDecoder();
  /** Circuit breaking, attempt accounting, retries (data-plane/src/cluster/traffic.ts). */
  readonly traffic = new RequestTraffic(() => this.onPerTryTimeout());
  /** Body bytes that arrived with the head: they can be replayed on a retry. */
  firstBody: Buffer | null = null;
  /** Nothing but `firstBody` has been written upstream, so a retry can resend the whole request. */
  replayable = true;
  retried = false;
  /** Any byte received from the upstream for this request. */
  resStarted = false;
  resHeadSent = false;
  resBuf: Buffer | null = null;
  readonly resScanner = new HeadScanner();
  resMode = M_NONE;
  resRemaining = 0;
  readonly resDecoder = new ChunkedDecoder();
  upKeepAlive = false;
  /** Upstream sent bytes past the end of its response. */
  upExtra = false;
  closeAfter = false;

  constructor(proxy: HttpProxy, socket: net.Socket, tls: DownstreamTlsInfo | null) {
    this.proxy = proxy;
    this.socket = socket;
    this.tls = tls;
    this.clientIp = clientAddress(socket);
    // A client may half-close after its request; the response must still be sent.
    socket.allowHalfOpen = true;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.onDrain());
    socket.on("end", () => this.onEnd());
    socket.on("error", noop);
    socket.on("close", () => this.onClose());
    this.limits = proxy.limits();
    this.timer.arm(T_HEADER, this.limits.headerTimeoutMs);
  }

  get bytesRead(): number {
    return this.socket.bytesRead;
  }

  get bytesWritten(): number {
    return this.socket.bytesWritten;
  }

  // ---- downstream events

  onData(chunk: Buffer): void {
    switch (this.phase) {
      case P_HEAD:
        if (this.awaitingDrain) this.stash(chunk);
        else this.onHeadBytes(chunk);
        break;
      case P_TUNNEL: {
        const up = this.upstream;
        if (up !== null && !up.socket.write(chunk)) this.socket.pause(); // resumed by the upstream's 'drain'
        break;
      }
      case P_ACTIVE:
        if (this.reqBodyDone) this.stash(chunk);
        else {
          this.replayable = false;
          this.bodyActive = true;
          this.onBody(chunk, 0);
        }
        break;
      // P_LINGER / P_CLOSED: discarded
    }
  }

  onDrain(): void {
    if (this.awaitingDrain) {
      this.awaitingDrain = false;
      if (this.phase === P_HEAD) this.nextRequest();
      return;
    }
    const up = this.upstream;
    if (up?.socket.isPaused()) up.socket.resume();
  }

  onEnd(): void {
    this.eof = true;
    if (this.phase === P_TUNNEL) {
      this.upstream?.socket.end(); // the half-close is passed on
      return;
    }
    // Requests already received in full (in flight or pipelined) are still answered.
    if ((this.phase === P_ACTIVE && this.reqBodyDone) || this.awaitingDrain) return;
    if (this.phase === P_HEAD && this.buf !== null)
      this.onHeadBytes(null); // destroys if the head is partial
    else this.socket.destroy();
  }

  onClose(): void {
    this.phase = P_CLOSED;
    this.traffic.end();
    this.timer.stop();
    this.routeTimer.stop();
    const up = this.upstream;
    if (up !== null) {
      this.upstream = null;
      up.destroy();
    }
    this.buf = null;
    this.proxy.forget(this);
  }

  onTimer(kind: number): void {
    if (kind === T_HEADER && this.phase === P_HEAD && this.buf !== null) {
      this.requestId = randomUUID();
      this.keepAlive = false;
      this.sendLocal(408, AGW_ERRORS.AGW_ERR_REQUEST_TIMEOUT, "request head not received in time");
      return;
    }
    if (kind === T_BODY) {
      this.onBodyTimer();
      return;
    }
    this.socket.destroy();
  }

  /** A slow body (slowloris after the head): no byte for bodyTimeoutMs → 408, or a reset once answered. */
  onBodyTimer(): void {
    if (this.phase !== P_ACTIVE || this.reqBodyDone) return;
    // A paused socket is waiting for the upstream (backpressure) or a plugin, not for the client.
    if (this.bodyActive || this.socket.isPaused()) {
      this.bodyActive = false;
      this.timer.arm(T_BODY, this.limits.bodyTimeoutMs);
      return;
    }
    this.keepAlive = false;
    this.requestBodyError({ status: 408, message: "request body not received in time" });
  }

  /**
   * h2c with prior knowledge: a connection that opens with the HTTP/2 preface goes to the HTTP/2
   * side with the bytes read so far. Returns false when `buf` is not (the start of) the preface.
   */
  toHttp2(buf: Buffer): boolean {
    const n = Math.min(buf.length, H2_PREFACE.length);
    if (buf.compare(H2_PREFACE, 0, n, 0, n) !== 0) return false;
    if (n < H2_PREFACE.length) {
      this.buf = buf; // the rest of the preface is on its way
      return true;
    }
    const socket = this.socket;
    this.phase = P_CLOSED;
    this.buf = null;
    this.timer.stop();
    for (const event of ["data", "drain", "end", "close"]) socket.removeAllListeners(event);
    socket.allowHalfOpen = false;
    this.proxy.forget(this);
    this.proxy.http2().accept(socket, this.tls, buf);
    return true;
  }

  /** h2c by Upgrade: plain HTTP/1.1, no body, nothing pipelined behind it; otherwise served as HTTP/1.1. */
  canUpgradeToH2c(head: RequestHead): boolean {
    return (
      this.tls === null &&
      head.minor === 1 &&
      this.bodyMode === B_NONE &&
      this.buf === null &&
      !this.proxy.draining &&
      asksForH2c(head)
    );
  }

  /** 101, then the socket is an HTTP/2 session whose stream 1 is this request (h2c-upgrade.ts). */
  upgradeToH2c(head: RequestHead): void {
    const socket = this.socket;
    this.phase = P_CLOSED;
    this.timer.stop();
    for (const event of ["data", "drain", "end", "close"]) socket.removeAllListeners(event);
    socket.allowHalfOpen = false;
    this.proxy.forget(this);
    socket.write(SWITCHING_TO_H2C, "latin1");
    this.proxy.http2().acceptUpgrade(socket, head);
  }

  closeIfIdle(): void {
    if (this.phase !== P_HEAD || this.buf !== null) return;
    // Responses still on their way out are flushed first (end(), bounded by the linger timeout).
    if (this.awaitingDrain) this.linger();
    else this.socket.destroy();
  }

  // ---- request head

  onHeadBytes(chunk: Buffer | null): void {
    let buf: Buffer | null;
    if (chunk === null) buf = this.buf;
    else if (this.buf === null) {
      buf = chunk;
      if (!this.fresh) this.limits = this.proxy.limits(); // a push applies from the next request's head on
    } else buf = Buffer.concat([this.buf, chunk]);
    if (buf === null) return;
    if (this.fresh && buf[0] === 0x50 /* P */ && this.toHttp2(buf)) return;
    const limits = this.limits;
    const n = this.scanner.scan(buf, limits.maxRequestHeaderBytes, limits.maxRequestHeaders);
    if (n === 0) {
      this.buf = buf;
      if (this.eof)
        this.socket.destroy(); // the rest of this head will never come
      else if (this.timer.kind !== T_HEADER) this.timer.arm(T_HEADER, limits.headerTimeoutMs);
      return;
    }
    this.buf = null;
    this.timer.disarm();
    if (n < 0) {
      this.reject(this.scanner.error as HeadError);
      return;
    }
    const head = new RequestHead();
    const e = parseRequestHead(buf, this.scanner, head);
    if (e !== null) {
      this.reject(e);
      return;
    }
    if (n < buf.length) this.buf = buf.subarray(n);
    this.startRequest(head);
  }

  reject(e: HeadError): void {
    this.phase = P_ACTIVE;
    this.fresh = false;
    this.requestId = randomUUID();
    this.keepAlive = false;
    this.sendLocal(e.status, codeForStatus(e.status), e.message);
  }

  startRequest(head: RequestHead): void {
    const p = this.proxy;
    this.phase = P_ACTIVE;
    this.fresh = false;
    this.head = head;
    this.startedAt = performance.now();
    this.requestId = head.requestId !== "" ? head.requestId : randomUUID();
    this.keepAlive = head.keepAlive && !p.draining;
    this.isHead = head.method === "HEAD";
    if (head.chunked) {
      this.bodyMode = B_CHUNKED;
      this.reqBodyDone = false;
      this.reqDecoder.reset(true);
    } else if (head.contentLength > 0) {
      this.bodyMode = B_LENGTH;
      this.bodyRemaining = head.contentLength;
      this.reqBodyDone = false;
    }
    this.upgrade = upgradeOf(head, this.bodyMode);
    if (head.upgrade !== "" && this.upgrade === "" && this.canUpgradeToH2c(head)) {
      this.upgradeToH2c(head);
      return;
    }

    // The only read of the config for this request: everything below uses these references.
    const limits = this.limits;
    if (limits.maxRequestsPerConnection > 0 && ++this.requests >= limits.maxRequestsPerConnection)
      this.keepAlive = false;
    const config = p.getConfig();
    const listener = config.listeners.get(p.listenerName);
    const refusal = admit(head, this.tls, listener?.paths);
    if (refusal !== null) {
      if (refusal.closeConnection) this.keepAlive = false;
      this.fail(refusal.status, refusal.code, refusal.message);
      return;
    }
    const route = listener?.router?.match(head);
    if (route === undefined) {
      this.fail(404, AGW_ERRORS.AGW_ERR_ROUTE_NOT_FOUND, "no route matched the request");
      return;
    }
    this.route = route;
    if (this.bodyMode !== B_NONE && !this.limitBody(route, limits)) return;
    if (head.method === "CONNECT" && route.connect !== true) {
      this.fail(405, AGW_ERRORS.AGW_ERR_CONNECT_NOT_ALLOWED, "the route does not allow CONNECT");
      return;
    }
    // Redirects, direct responses and CORS preflights are answered here, before plugins.
    const local = route.local?.reply(head, this.tls !== null, this.traffic);
    if (local !== undefined) {
      this.sendPluginReply(local);
      return;
    }
    // request_filter phase: the route's plugins see the request before any upstream work.
    const plugins = route.plugins;
    if (plugins) {
      const verdict = plugins.requestFilter(head, this.clientIp, route.name, this.requestId);
      if (verdict instanceof Promise) {
        this.socket.pause();
        verdict.then(
          (v) => this.afterRequestFilter(head, v, route, config),
          () => this.afterRequestFilter(head, PLUGIN_CRASHED, route, config),
        );
        return;
      }
      if (verdict !== undefined) {
        this.sendPluginReply(verdict);
        return;
      }
    }
    this.toUpstream(head, route, config);
  }

  /** Applies the body size limit and arms the body timeout; false when the request was answered 413. */
  limitBody(route: CompiledRoute, limits: ListenerLimits): boolean {
    const max = route.maxRequestBodyBytes ?? limits.maxRequestBodyBytes;
    if (max > 0) {
      if (this.bodyMode === B_LENGTH && (this.head as RequestHead).contentLength > max) {
        this.keepAlive = false;
        this.fail(413, AGW_ERRORS.AGW_ERR_REQUEST_BODY_TOO_LARGE, `request body larger than ${max} bytes`);
        return false;
      }
      this.bodyLimit = max;
    }
    // A body that came whole with the head needs no timer (the common small POST).
    const arrived = this.bodyMode === B_LENGTH && (this.buf?.length ?? 0) >= this.bodyRemaining;
    if (limits.bodyTimeoutMs > 0 && !arrived) this.timer.arm(T_BODY, limits.bodyTimeoutMs);
    return true;
  }

  /** A plugin chain that waited (on Redis, on HTTP) has decided; the client may have gone meanwhile. */
  afterRequestFilter(
    head: RequestHead,
    verdict: PluginReply | undefined,
    route: CompiledRoute,
    config: RuntimeConfig,
  ): void {
    if (this.head !== head || this.phase !== P_ACTIVE) return;
    if (verdict !== undefined) this.sendPluginReply(verdict);
    else {
      this.toUpstream(head, route, config);
      if (this.socket.isPaused()) this.socket.resume();
    }
  }

  sendPluginReply(r: PluginReply): void {
    if (r.error !== undefined) {
      this.sendLocal(r.status, r.error, r.message ?? r.error);
      return;
    }
    const close = !this.keepAlive || !this.reqBodyDone || this.proxy.draining;
    this.status = r.status;
    let h = `HTTP/1.1 ${r.status} ${reasonPhrase(r.status)}\r\n`;
    for (const [n, v] of r.headers) if (n.toLowerCase() !== "content-length") h += `${n}: ${v}\r\n`;
    h += `content-length: ${r.body.length}\r\nx-request-id: ${this.requestId}\r\n`;
    if (close) h += "connection: close\r\n";
    else if (this.head?.minor === 0) h += "connection: keep-alive\r\n";
    this.socket.cork();
    this.socket.write(`${h}\r\n`, "latin1");
    if (!this.isHead && r.body.length > 0) this.socket.write(r.body);
    this.socket.uncork();
    this.finishExchange(close);
  }

  toUpstream(head: RequestHead, route: CompiledRoute, config: RuntimeConfig): void {
    const p = this.proxy;
    const cluster = config.clusters.get(route.pickCluster());
    if (cluster === undefined) {
      this.fail(503, AGW_ERRORS.AGW_ERR_CLUSTER_NOT_FOUND, "the route's cluster does not exist");
      return;
    }
    if (!this.traffic.begin(cluster, route.retry, head)) {
      this.fail(503, AGW_ERRORS.AGW_ERR_OVERFLOW, "the cluster's circuit breaker is open");
      return;
    }
    const ep = cluster.pickEndpoint(head, this.clientIp);
    if (ep === undefined) {
      this.fail(503, AGW_ERRORS.AGW_ERR_NO_HEALTHY_UPSTREAM, "the cluster has no endpoint");
      return;
    }
    this.cluster = cluster;
    this.endpoint = ep;
    this.traffic.attemptStarted(ep);
    if (route.connect === true && head.method === "CONNECT") {
      this.openConnectTunnel(ep, cluster);
      return;
    }
    this.upHead = this.buildUpstreamHead(head, route.requestHeaders, ep);
    route.mirror?.copy(head, this.bodyMode === B_NONE ? null : this.buf, this.clientIp, config.clusters);
    this.routeTimer.arm(ROUTE_TIMEOUT, route.timeoutMs);
    const up = p.pool.acquire(ep, cluster, this);
    this.upstream = up;
    if (this.bodyMode === B_NONE) {
      up.socket.write(this.upHead, "latin1");
      return;
    }
    const body = this.buf;
    this.buf = null;
    const used = this.writeRequest(up, body);
    if (body !== null && used > 0) this.firstBody = body.subarray(0, used);
  }

  /**
   * Terminated CONNECT (Envoy's model): a fresh TCP (or TLS, per the cluster) connection to the route's
   * endpoint, whatever the authority says; 200 once it is up, then the sockets are spliced like an
   * Upgrade tunnel. A failed connect answers like any request (503/504).
   */
  openConnectTunnel(ep: Endpoint, cluster: ClusterRuntime): void {
    this.replayable = false; // never resent: a retry would write an HTTP head into the tunnel
    const up = this.proxy.pool.tunnel(ep, cluster, this);
    this.upstream = up;
    up.socket.once(cluster.tls !== undefined ? "secureConnect" : "connect", () =>
      this.connectEstablished(up),
    );
  }

  connectEstablished(up: UpstreamConn): void {
    if (this.upstream !== up || this.phase !== P_ACTIVE) return;
    this.timer.disarm();
    this.status = 200;
    this.phase = P_TUNNEL;
    this.resHeadSent = true;
    const out = this.socket;
    out.write(`HTTP/1.1 200 Connection Established\r\nx-request-id: ${this.requestId}\r\n\r\n`, "latin1");
    this.reportExchange(false); // the access log records the tunnel's opening
    // Bytes the client sent before the 200 (it may not wait) are the tunnel's.
    const early = this.buf;
    this.buf = null;
    if (early !== null) up.socket.write(early);
    if (this.eof) up.socket.end();
    if (out.isPaused()) out.resume();
  }

  /** Writes the upstream head and `body` (the start of the request body) in one batch; returns body bytes used. */
  writeRequest(up: UpstreamConn, body: Buffer | null): number {
    const s = up.socket;
    if (body === null) {
      s.write(this.upHead, "latin1");
      return 0;
    }
    // Corked: if the body turns out malformed, destroying the upstream discards the unsent head too.
    s.cork();
    s.write(this.upHead, "latin1");
    const used = this.onBody(body, 0);
    s.uncork();
    return used;
  }

  buildUpstreamHead(h: RequestHead, ops: HeaderOps, ep: Endpoint): string {
    return upstreamHead(
      h,
      ops,
      this.route?.rewrite ?? null,
      ep,
      this.clientIp,
      this.tls !== null ? "https" : this.proxy.forwardedProto,
      this.tls?.client?.forwardedHeader ?? "",
      this.requestId,
      this.proxy.observer?.upstreamStart(this) ?? "",
      this.bodyMode === B_CHUNKED,
      this.upgrade,
    );
  }

  // ---- request body

  /** Forwards request body bytes from chunk[off..]; returns how many belonged to the body. */
  onBody(chunk: Buffer, off: number): number {
    const up = this.upstream;
    if (up === null) return 0;
    const s = up.socket;
    let ok = true;
    let used: number;
    if (this.bodyMode === B_LENGTH) {
      const avail = chunk.length - off;
      used = Math.min(avail, this.bodyRemaining);
      if (used > 0)
        ok = s.write(off === 0 && used === chunk.length ? chunk : chunk.subarray(off, off + used));
      this.bodyRemaining -= used;
      if (this.bodyRemaining === 0) this.reqBodyDone = true;
    } else {
      const dec = this.reqDecoder;
      used = dec.decode(chunk, off);
      if (used < 0) {
        this.requestBodyError(dec.error as HeadError);
        return 0;
      }
      if (dec.pieceBytes > 0) {
        // Checked before writing: not one byte past the limit reaches the upstream.
        if (this.bodyLimit > 0) {
          this.bodySeen += dec.pieceBytes;
          if (this.bodySeen > this.bodyLimit) {
            this.keepAlive = false;
            this.requestBodyError({
              status: 413,
              message: `request body larger than ${this.bodyLimit} bytes`,
            });
            return 0;
          }
        }
        // Re-framed: extensions and trailers are dropped, one chunk per read.
        s.write(`${dec.pieceBytes.toString(16)}\r\n`, "latin1");
        const pieces = dec.pieces;
        for (let i = 0; i < pieces.length; i++) s.write(pieces[i] as Buffer);
        ok = s.write(CRLF);
        pieces.length = 0;
        dec.pieceBytes = 0;
      }
      if (dec.done) {
        ok = s.write(LAST_CHUNK);
        this.reqBodyDone = true;
      }
    }
    if (this.reqBodyDone) {
      const rest = off + used;
      if (rest < chunk.length) this.stash(chunk.subarray(rest));
    } else if (!ok) {
      this.socket.pause(); // resumed by the upstream's 'drain'
    }
    return used;
  }

  requestBodyError(e: HeadError): void {
    this.dropUpstream();
    if (this.resHeadSent) this.abort();
    else this.fail(e.status, codeForStatus(e.status), e.message);
  }

  /** Keeps downstream bytes that follow the current request until it completes. */
  stash(chunk: Buffer): void {
    const b = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    this.buf = b;
    if (b.length > this.proxy.maxHeadBytes) this.socket.pause();
  }

  // ---- upstream events

  onUpstreamDrain(_conn: UpstreamConn): void {
    if (this.phase === P_TUNNEL) {
      if (this.socket.isPaused()) this.socket.resume();
      return;
    }
    if (!this.reqBodyDone && this.phase === P_ACTIVE && this.socket.isPaused()) this.socket.resume();
  }

  onUpstreamData(conn: UpstreamConn, chunk: Buffer): void {
    if (conn !== this.upstream) return;
    if (this.phase === P_TUNNEL) {
      if (!this.socket.write(chunk)) conn.socket.pause(); // resumed by the client's 'drain'
      return;
    }
    this.resStarted = true;
    if (this.resHeadSent) this.onResponseBody(chunk, 0);
    else this.onResponseHeadBytes(chunk);
  }

  onUpstreamClose(conn: UpstreamConn): void {
    if (conn !== this.upstream) return;
    this.upstream = null;
    if (this.phase === P_TUNNEL) {
      // An orderly FIN from the upstream is passed on after what it sent; a reset cuts the client too.
      if (conn.eof) {
        this.socket.end();
        this.timer.arm(T_LINGER, this.proxy.lingerTimeoutMs);
      } else {
        this.socket.destroy();
      }
      return;
    }
    if (this.resHeadSent) {
      if (conn.eof && (this.resMode === M_CLOSE_RAW || this.resMode === M_CLOSE_CHUNK)) {
        if (this.resMode === M_CLOSE_CHUNK) this.socket.write(LAST_CHUNK);
        this.completeResponse();
      } else {
        this.abort(); // truncated: the client must not see a complete response
      }
      return;
    }
    if (
      conn.reused &&
      !this.resStarted &&
      this.replayable &&
      !this.retried &&
      IDEMPOTENT.has(this.head?.method ?? "")
    ) {
      this.retry();
      return;
    }
    const failure = !conn.connected ? (conn.connectTimedOut ? "timeout" : "connect_failure") : "reset";
    if (this.traffic.attemptFailed(failure, this.replayable && this.reqBodyDone)) {
      this.policyRetry();
      return;
    }
    if (!conn.connected) {
      if (conn.tlsFailure !== null) {
        this.fail(
          502,
          AGW_ERRORS.AGW_ERR_UPSTREAM_TLS_FAILED,
          `upstream TLS handshake failed: ${conn.tlsFailure}`,
        );
      } else if (conn.connectTimedOut) {
        this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_TIMEOUT, "timed out connecting to the upstream");
      } else {
        this.fail(503, AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_FAILED, "could not connect to the upstream");
      }
      return;
    }
    this.fail(502, AGW_ERRORS.AGW_ERR_UPSTREAM_RESET, "upstream closed the connection before responding");
  }

  /** A reused keep-alive connection died before answering (the upstream closed it while idle): resend once. */
  retry(): void {
    this.retried = true;
    const up = this.proxy.pool.connect(this.endpoint as Endpoint, this.cluster as ClusterRuntime, this);
    this.upstream = up;
    this.resScanner.reset();
    this.resBuf = null;
    const head = this.head as RequestHead;
    if (this.bodyMode === B_LENGTH) {
      this.bodyRemaining = head.contentLength;
      this.reqBodyDone = false;
    } else if (this.bodyMode === B_CHUNKED) {
      this.reqDecoder.reset(true);
      this.reqBodyDone = false;
      this.bodySeen = 0;
    }
    this.writeRequest(up, this.firstBody);
    if (this.bodyMode !== B_NONE && !this.reqBodyDone && this.socket.isPaused()) this.socket.resume();
  }

  /** The retry policy wants another attempt: after its backoff, on another endpoint when there is one. */
  policyRetry(): void {
    this.dropUpstream();
    const delay = this.traffic.backoffMs();
    if (delay > 0) setTimeout(retryAttempt, delay, this, this.head);
    else this.retryAttempt(this.head);
  }

  retryAttempt(head: RequestHead | null): void {
    if (this.head !== head || this.phase !== P_ACTIVE) return;
    const ep = this.traffic.nextEndpoint(this.clientIp);
    if (ep === undefined) {
      this.fail(503, AGW_ERRORS.AGW_ERR_NO_HEALTHY_UPSTREAM, "the cluster has no endpoint");
      return;
    }
    this.endpoint = ep;
    this.traffic.attemptStarted(ep);
    this.resStarted = false;
    this.retry();
  }

  onPerTryTimeout(): void {
    if (this.phase !== P_ACTIVE || this.resHeadSent || this.upstream === null) return;
    this.dropUpstream();
    if (this.traffic.attemptFailed("timeout", this.replayable && this.reqBodyDone)) this.policyRetry();
    else this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT, "the upstream did not respond in time");
  }

  onRouteTimeout(): void {
    this.dropUpstream();
    if (this.resHeadSent) this.abort();
    else this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT, "the upstream did not respond in time");
  }

  // ---- response

  onResponseHeadBytes(chunk: Buffer): void {
    let buf = this.resBuf === null ? chunk : Buffer.concat([this.resBuf, chunk]);
    const sc = this.resScanner;
    const p = this.proxy;
    for (;;) {
      const n = sc.scan(buf, p.maxHeadBytes, p.maxHeaders);
      if (n === 0) {
        this.resBuf = buf;
        return;
      }
      this.resBuf = null;
      if (n < 0) {
        this.upstreamProtocolError();
        return;
      }
      const rh = new ResponseHead();
      if (parseResponseHead(buf, sc, rh) !== null) {
        this.upstreamProtocolError();
        return;
      }
      if (rh.status === 101) {
        // Switching protocols is only valid in answer to an Upgrade we sent, and must name the protocol.
        if (this.upgrade === "" || rh.header("upgrade") === undefined) this.upstreamProtocolError();
        else this.beginTunnel(rh, buf, n);
        return;
      }
      if (rh.status >= 200) {
        this.beginResponse(rh, buf, n);
        return;
      }
      // 1xx (e.g. 100 Continue, 103): relayed to HTTP/1.1 clients, then the final response is awaited.
      if ((this.head as RequestHead).minor === 1) this.socket.write(buf.subarray(0, n));
      sc.reset();
      if (n === buf.length) return;
      buf = buf.subarray(n);
    }
  }

  upstreamProtocolError(): void {
    this.dropUpstream();
    this.fail(502, AGW_ERRORS.AGW_ERR_UPSTREAM_PROTOCOL_ERROR, "the upstream sent an invalid response");
  }

  beginResponse(rh: ResponseHead, buf: Buffer, headLen: number): void {
    if (this.traffic.responseStarted(rh.status, this.replayable && this.reqBodyDone)) {
      this.policyRetry();
      return;
    }
    const client11 = (this.head as RequestHead).minor === 1;
    const status = rh.status;
    this.status = status;
    this.upKeepAlive = rh.minor === 1 ? !rh.connClose : rh.connKeepAlive && !rh.connClose;
    let mode: number;
    if (this.isHead || status === 204 || status === 304) mode = M_NONE;
    else if (rh.chunked) mode = client11 ? M_CHUNKED_RAW : M_CHUNKED_DECODE;
    else if (rh.contentLength >= 0) mode = M_LENGTH;
    else mode = client11 ? M_CLOSE_CHUNK : M_CLOSE_RAW;
    if (mode === M_CHUNKED_RAW || mode === M_CHUNKED_DECODE) this.resDecoder.reset(mode === M_CHUNKED_DECODE);
    if (mode === M_CLOSE_CHUNK || mode === M_CLOSE_RAW) this.upKeepAlive = false;
    this.resMode = mode;
    this.resRemaining = rh.contentLength;
    const close = !this.keepAlive || this.proxy.draining || mode === M_CHUNKED_DECODE || mode === M_CLOSE_RAW;
    this.closeAfter = close;

    const ops = (this.route as CompiledRoute).responseHeaders;
    let h = `HTTP/1.1 ${status} ${rh.reason}\r\n`;
    const names = rh.names;
    const conn = rh.connTokens;
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      if (HOP_BY_HOP.has(name) || name === "x-request-id" || hasName(conn, name) || opsDrop(ops, name))
        continue;
      h += `${rh.rawNames[i]}: ${rh.values[i]}\r\n`;
    }
    if (!opsDrop(ops, "x-request-id")) h += `x-request-id: ${this.requestId}\r\n`;
    h += opsAppend(ops) + this.traffic.responseHeaders();
    if (mode === M_CHUNKED_RAW || mode === M_CLOSE_CHUNK) h += "transfer-encoding: chunked\r\n";
    if (close) h += "connection: close\r\n\r\n";
    else h += client11 ? "\r\n" : "connection: keep-alive\r\n\r\n";

    this.resHeadSent = true;
    const out = this.socket;
    const bodyEnd = headLen + this.resRemaining;
    if (mode === M_LENGTH && bodyEnd <= buf.length) {
      // The whole response is at hand: one buffer, one write. A corked head + body pair goes through
      // writev, which a --cpu-prof of agw under wrk -c64 showed as the largest single self-time entry.
      const whole = Buffer.allocUnsafe(h.length + this.resRemaining);
      whole.write(h, 0, "latin1");
      buf.copy(whole, h.length, headLen, bodyEnd);
      this.resRemaining = 0;
      if (bodyEnd < buf.length) this.upExtra = true;
      out.write(whole);
      this.completeResponse();
      return;
    }
    out.cork();
    out.write(h, "latin1");
    if (mode === M_NONE) {
      if (headLen < buf.length) this.upExtra = true;
      this.completeResponse();
    } else if (headLen < buf.length) {
      this.onResponseBody(buf, headLen);
    }
    out.uncork();
  }

  /**
   * The upstream accepted the Upgrade: its 101 goes to the client, then both sockets are spliced. The
   * tunnel holds no config reference, so config swaps leave it alone; the route timeout stops here.
   */
  beginTunnel(rh: ResponseHead, buf: Buffer, headLen: number): void {
    this.routeTimer.disarm();
    this.timer.disarm();
    const up = this.upstream as UpstreamConn;
    const ops = (this.route as CompiledRoute).responseHeaders;
    let h = `HTTP/1.1 101 ${rh.reason}\r\n`;
    const names = rh.names;
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      if (
        HOP_BY_HOP.has(name) ||
        name === "x-request-id" ||
        hasName(rh.connTokens, name) ||
        opsDrop(ops, name)
      )
        continue;
      h += `${rh.rawNames[i]}: ${rh.values[i]}\r\n`;
    }
    h += `upgrade: ${rh.header("upgrade")}\r\nconnection: upgrade\r\n`;
    if (!opsDrop(ops, "x-request-id")) h += `x-request-id: ${this.requestId}\r\n`;
    h += `${opsAppend(ops)}\r\n`;
    this.phase = P_TUNNEL;
    this.resHeadSent = true;
    this.status = 101;
    const out = this.socket;
    out.cork();
    out.write(h, "latin1");
    if (headLen < buf.length) out.write(buf.subarray(headLen));
    out.uncork();
    this.reportExchange(false); // metrics and the access log record the upgrade, as for CONNECT
    // Bytes the client sent after its Upgrade request belong to the new protocol.
    const early = this.buf;
    this.buf = null;
    if (early !== null) up.socket.write(early);
    if (this.eof) up.socket.end();
    if (out.isPaused()) out.resume();
  }

  onResponseBody(chunk: Buffer, off: number): void {
    const out = this.socket;
    const len = chunk.length;
    let ok = true;
    switch (this.resMode) {
      case M_LENGTH: {
        const avail = len - off;
        const n = Math.min(avail, this.resRemaining);
        if (n > 0) ok = out.write(off === 0 && n === len ? chunk : chunk.subarray(off, off + n));
        this.resRemaining -= n;
        if (this.resRemaining === 0) {
          if (off + n < len) this.upExtra = true;
          this.completeResponse();
          return;
        }
        break;
      }
      case M_CHUNKED_RAW:
      case M_CHUNKED_DECODE: {
        const dec = this.resDecoder;
        const used = dec.decode(chunk, off);
        if (used < 0) {
          this.dropUpstream();
          this.abort();
          return;
        }
        if (this.resMode === M_CHUNKED_RAW) {
          if (used > 0) ok = out.write(off === 0 && used === len ? chunk : chunk.subarray(off, off + used));
        } else {
          const pieces = dec.pieces;
          for (let i = 0; i < pieces.length; i++) ok = out.write(pieces[i] as Buffer);
          pieces.length = 0;
          dec.pieceBytes = 0;
        }
        if (dec.done) {
          if (off + used < len) this.upExtra = true;
          this.completeResponse();
          return;
        }
        break;
      }
      case M_CLOSE_RAW:
        ok = out.write(off === 0 ? chunk : chunk.subarray(off));
        break;
      case M_CLOSE_CHUNK:
        if (len > off) {
          out.cork();
          out.write(`${(len - off).toString(16)}\r\n`, "latin1");
          out.write(off === 0 ? chunk : chunk.subarray(off));
          ok = out.write(CRLF);
          out.uncork();
        }
        break;
    }
    const up = this.upstream;
    if (!ok && up !== null) up.socket.pause(); // resumed by the client's 'drain'
  }

  completeResponse(): void {
    this.routeTimer.disarm();
    const up = this.upstream;
    if (up !== null) {
      this.upstream = null;
      if (this.upKeepAlive && this.reqBodyDone && !this.upExtra)
        this.proxy.pool.release(up, this.cluster as ClusterRuntime);
      else up.destroy();
    }
    this.finishExchange(this.closeAfter || !this.reqBodyDone);
  }

  // ---- local responses and teardown

  /** Answers the current request locally (nothing of the upstream response was forwarded). */
  fail(status: number, code: AgwErrorCode, message: string): void {
    this.routeTimer.disarm();
    this.dropUpstream();
    this.sendLocal(status, code, message);
  }

  sendLocal(status: number, code: AgwErrorCode, message: string): void {
    this.status = status;
    this.errorCode = code;
    const close = !this.keepAlive || !this.reqBodyDone || this.proxy.draining;
    const body = JSON.stringify({ error: code, message, request_id: this.requestId });
    const head = this.head;
    let h =
      `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\ncontent-type: application/json\r\n` +
      `content-length: ${body.length}\r\nx-agw-error: ${code}\r\nx-request-id: ${this.requestId}\r\n`;
    const attempts = this.traffic.attemptsValue;
    if (attempts !== "") h += `x-agw-attempts: ${attempts}\r\n`;
    if (close) h += "connection: close\r\n";
    else if (head !== null && head.minor === 0) h += "connection: keep-alive\r\n";
    this.socket.write(this.isHead ? `${h}\r\n` : `${h}\r\n${body}`, "latin1");
    this.finishExchange(close);
  }

  finishExchange(close: boolean): void {
    this.traffic.end();
    this.reportExchange(false);
    this.head = null;
    this.route = null;
    this.cluster = null;
    this.endpoint = null;
    this.upHead = "";
    this.bodyMode = B_NONE;
    this.bodyRemaining = 0;
    this.reqBodyDone = true;
    this.bodyLimit = 0;
    this.bodySeen = 0;
    this.bodyActive = false;
    this.firstBody = null;
    this.replayable = true;
    this.retried = false;
    this.resStarted = false;
    this.resHeadSent = false;
    this.resBuf = null;
    this.resScanner.reset();
    this.resMode = M_NONE;
    this.resRemaining = 0;
    this.upKeepAlive = false;
    this.upExtra = false;
    this.closeAfter = false;
    this.isHead = false;
    this.upgrade = "";
    if (this.phase === P_CLOSED) return;
    if (close || !this.keepAlive || this.proxy.draining || (this.eof && this.buf === null)) {
      this.linger();
      return;
    }
    this.phase = P_HEAD;
    this.scanner.reset();
    if (this.socket.writableNeedDrain) {
      // The client is not reading what it was sent: read nothing more until it does. A client that
      // never drains is an idle connection, closed after idleTimeout.
      this.awaitingDrain = true;
      this.socket.pause();
      this.timer.arm(T_KEEPALIVE, this.limits.idleTimeoutMs);
      return;
    }
    this.nextRequest();
  }

  /** Between requests, with the client's responses flowing: the next pipelined request, or wait for one. */
  nextRequest(): void {
    if (this.buf === null && this.proxy.draining) {
      this.linger();
      return;
    }
    if (this.buf !== null) {
      this.timer.arm(T_HEADER, this.limits.headerTimeoutMs);
      setImmediate(kickPending, this);
    } else {
      this.timer.arm(T_KEEPALIVE, this.limits.idleTimeoutMs);
    }
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** Graceful close: FIN after the response, unread client bytes are drained (avoids an RST losing the response). */
  linger(): void {
    this.phase = P_LINGER;
    this.buf = null;
    this.socket.end();
    if (this.socket.isPaused()) this.socket.resume();
    this.timer.arm(T_LINGER, this.proxy.lingerTimeoutMs);
  }

  /** Hard close: the client sees a reset/truncated response. */
  abort(): void {
    this.reportExchange(true);
    this.dropUpstream();
    this.routeTimer.disarm();
    this.socket.destroy();
  }

  reportExchange(aborted: boolean): void {
    if (this.startedAt === 0 && this.status === 0) return;
    this.proxy.observer?.exchangeEnd(this, aborted);
    this.startedAt = 0;
    this.status = 0;
    this.errorCode = "";
  }

  dropUpstream(): void {
    const up = this.upstream;
    if (up !== null) {
      this.upstream = null;
      up.destroy();
    }
  }
}

function noop(): void {}
