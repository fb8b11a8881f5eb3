/**
 * HTTP/2 downstream: node:http2 does the framing (HPACK, flow control, stream limits) and every
 * stream is bridged into the same path as an HTTP/1.1 request: one config read, the router, the
 * route's plugins, the cluster's endpoint, the shared HTTP/1.1 upstream pool. Connections arrive by
 * ALPN "h2" on HTTPS listeners or as h2c with prior knowledge (the HTTP/1.1 engine spots the preface).
 */
import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import type net from "node:net";
import { RequestTraffic } from "../cluster/traffic.ts";
import type { ExchangeView } from "../observability/exchange.ts";
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
import {
  BODY_CHUNKED as B_CHUNKED,
  BODY_LENGTH as B_LENGTH,
  BODY_NONE as B_NONE,
  frameChunk,
  LAST_CHUNK,
} from "./body-framing.ts";
import { AGW_ERRORS, type AgwErrorCode } from "./errors.ts";
import { H2Call, type H2CallSink, type H2FailureKind, MAX_REPLAY_BYTES } from "./h2-upstream.ts";
import { stream1Headers, UpgradedSocket } from "./h2c-upgrade.ts";
import {
  clientAddress,
  H2_CONNECTION_FIELDS,
  h2ResponseFieldAllowed,
  h2UpstreamHeaders,
  hasName,
  opsDrop,
  upstreamHead,
} from "./headers.ts";
import {
  ChunkedDecoder,
  connectTarget,
  HeadScanner,
  parseResponseHead,
  RequestHead,
  ResponseHead,
} from "./http1-parser.ts";
import type { HttpProxy } from "./proxy.ts";
import type { UpstreamConn, UpstreamHandler, UpstreamSocket } from "./upstream-pool.ts";

/** The client preface of HTTP/2 (RFC 9113 §3.4); an h2c client with prior knowledge starts with it. */
export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_CONNECT_ERROR } = http2.constants;
const END_STREAM = 0x1;
/** Fields that have no meaning in HTTP/2 and must not be sent in it (RFC 9113 §8.2.2). */
const H2_FORBIDDEN = H2_CONNECTION_FIELDS;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const AUTHORITY = /^[-._~!$&'()*+,;=:[\]%0-9A-Za-z]+$/;
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);
// Response body framing from the upstream.
const M_NONE = 0;
const M_LENGTH = 1;
const M_CHUNKED = 2;
const M_CLOSE = 3;

/** gRPC status for a gateway error (the gRPC HTTP-to-status mapping, timeouts as DEADLINE_EXCEEDED). */
function grpcStatusFor(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 408:
    case 504:
      return 4; // DEADLINE_EXCEEDED
    case 429:
    case 502:
    case 503:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** grpc-timeout ("1S", "250m", ...) in milliseconds; 0 when absent or malformed. */
export function grpcTimeoutMs(v: string | undefined): number {
  const m = v === undefined ? null : /^(\d{1,8})([HMSmun])$/.exec(v);
  if (m === null) return 0;
  const n = Number(m[1]);
  const unit = m[2];
  const ms =
    unit === "H"
      ? n * 3_600_000
      : unit === "M"
        ? n * 60_000
        : unit === "S"
          ? n * 1000
          : unit === "m"
            ? n
            : unit === "u"
              ? n / 1000
              : n / 1_000_000;
  return Math.max(1, Math.ceil(ms));
}

function onStreamTimer(x: H2Exchange): void {
  x.onTimeout();
}

function retryAttempt(x: H2Exchange, body: readonly Buffer[]): void {
  x.retryAttempt(body);
}

/** Whether two limits give HTTP/2 sessions the same server settings. */
function sameSessionLimits(a: ListenerLimits, b: ListenerLimits): boolean {
  return (
    a === b ||
    (a.maxRequestHeaders === b.maxRequestHeaders &&
      a.idleTimeoutMs === b.idleTimeoutMs &&
      a.maxRequestsPerConnection === b.maxRequestsPerConnection &&
      a.http2MaxConcurrentStreams === b.http2MaxConcurrentStreams &&
      a.http2InitialWindowSize === b.http2InitialWindowSize &&
      a.http2MaxHeaderListBytes === b.http2MaxHeaderListBytes)
  );
}

/**
 * The HTTP/2 side of one HttpProxy (one listener): never-listening Http2Servers fed accepted sockets.
 * A server's SETTINGS are fixed when it is created, so a push that changes the listener's limits gets a
 * new server for new connections; sessions of the previous one carry on with the settings they had.
 */
export class H2Downstream {
  readonly proxy: HttpProxy;
  private server: http2.Http2Server;
  private serverLimits: ListenerLimits;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  /** The TLS facts of the socket being handed to the server right now (accept()). */
  private acceptingTls: DownstreamTlsInfo | null = null;

  constructor(proxy: HttpProxy) {
    this.proxy = proxy;
    this.serverLimits = proxy.limits();
    this.server = this.createServer(this.serverLimits);
  }

  private createServer(limits: ListenerLimits): http2.Http2Server {
    const proxy = this.proxy;
    const server = http2.createServer({
      maxHeaderListPairs: limits.maxRequestHeaders + 8,
      settings: {
        maxConcurrentStreams: limits.http2MaxConcurrentStreams,
        maxHeaderListSize: limits.http2MaxHeaderListBytes,
        initialWindowSize: limits.http2InitialWindowSize,
      },
    });
    server.on("session", (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      // node:http2 creates the session inside emit("connection") (accept() below) and hands out a
      // proxy of the socket afterwards, never the socket itself: the TLS facts are keyed by session.
      if (this.acceptingTls !== null) tlsOf.set(session, this.acceptingTls);
      session.on("error", noop);
      session.once("close", () => this.sessions.delete(session));
      // An idle session (no frames either way) is closed gracefully, like an idle keep-alive connection.
      if (limits.idleTimeoutMs > 0) session.setTimeout(limits.idleTimeoutMs, () => session.close());
      const max = limits.maxRequestsPerConnection;
      if (max > 0) {
        // GOAWAY naming the last allowed stream: it and those before it finish, later ones are refused.
        let streams = 0;
        session.on("stream", () => {
          if (++streams >= max) session.close();
        });
      }
      if (proxy.draining) session.close();
    });
    server.on(
      "stream",
      (
        stream: http2.ServerHttp2Stream,
        _headers: http2.IncomingHttpHeaders,
        flags: number,
        raw: string[],
      ) => {
        const session = stream.session;
        const socket = session?.socket as net.Socket | undefined;
        if (session === undefined || socket === undefined) return;
        const x = new H2Exchange(this, stream, socket, tlsOf.get(session) ?? null);
        x.start(raw, flags);
      },
    );
    return server;
  }

  /** Takes an accepted socket speaking HTTP/2; `early` is what was already read from it. */
  accept(socket: net.Socket, tls: DownstreamTlsInfo | null, early: Buffer | null): void {
    const limits = this.proxy.limits();
    if (!sameSessionLimits(limits, this.serverLimits)) {
      this.server = this.createServer(limits);
      this.serverLimits = limits;
    }
    if (early !== null) {
      socket.pause(); // no 'data' listener until the session attaches: nothing may flow past it
      socket.unshift(early);
    }
    this.acceptingTls = tls;
    try {
      this.server.emit("connection", socket);
    } finally {
      this.acceptingTls = null;
    }
  }

  /** A plain socket just answered 101 to `Upgrade: h2c`: `head` becomes stream 1 of its session. */
  acceptUpgrade(socket: net.Socket, head: RequestHead): void {
    socket.pause();
    const upgraded = new UpgradedSocket(socket, stream1Headers(head));
    this.accept(upgraded as unknown as net.Socket, null, null);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** GOAWAY to every session: streams in flight finish, no new ones start. */
  shutdown(): void {
    for (const s of this.sessions) s.close();
  }

  destroyAll(): void {
    for (const s of this.sessions) s.destroy();
  }
}

/** Each HTTP/2 session's TLS facts (SNI, ALPN, client certificate); none for h2c. */
const tlsOf = new WeakMap<http2.Http2Session, DownstreamTlsInfo>();

function closeLingeringTunnel(stream: http2.ServerHttp2Stream): void {
  if (!stream.closed) stream.close(NGHTTP2_NO_ERROR);
}

/**
 * One HTTP/2 stream proxied to an HTTP/1.1 upstream (bytes through the pool), or to an HTTP/2
 * upstream (an H2Call: fields, DATA and trailers pass as they are, which gRPC needs).
 */
class H2Exchange implements UpstreamHandler, H2CallSink, ExchangeView {
  readonly h2: H2Downstream;
  readonly stream: http2.ServerHttp2Stream;
  readonly socket: net.Socket;
  readonly tls: DownstreamTlsInfo | null;
  readonly clientIp: string;
  head: RequestHead | null = null;
  requestId = "";
  grpc = false;
  route: CompiledRoute | null = null;
  cluster: ClusterRuntime | null = null;
  endpoint: Endpoint | null = null;
  upstream: UpstreamConn | null = null;
  /** The HTTP/2 upstream request, for clusters with protocol http2. */
  call: H2Call | null = null;
  h2Headers: http2.OutgoingHttpHeaders | null = null;
  /** The client sent "te: trailers" (gRPC does): passed on to HTTP/2 upstreams. */
  teTrailers = false;
  upTrailers: http2.IncomingHttpHeaders | null = null;
  upHead = "";
  timer: NodeJS.Timeout | null = null;
  bodyMode = B_NONE;
  reqBodyDone = true;
  /** Largest request body (maxRequestBodyBytes), 0: unlimited; and the DATA bytes counted under it. */
  bodyLimit = 0;
  bodySeen = 0;
  retried = false;
  /** A CONNECT stream: its DATA frames are spliced with a TCP connection (openTunnel). */
  tunnel = false;
  resStarted = false;
  resHeadSent = false;
  resBuf: Buffer | null = null;
  readonly resScanner = new HeadScanner();
  resMode = M_NONE;
  resRemaining = 0;
  readonly resDecoder = new ChunkedDecoder();
  upKeepAlive = false;
  upExtra = false;
  done = false;
  /** For the observer (metrics, access logs, traces): as on HTTP/1.1 (ExchangeView). */
  readonly http2 = true;
  startedAt = performance.now();
  status = 0;
  errorCode = "";
  reported = false;
  /**
   * DATA payload bytes of this stream each way (ExchangeView). Not the session socket's counters: the
   * socket is shared by every stream, and node:http2 unbinds it (reads throw) once the session ends.
   */
  bytesRead = 0;
  bytesWritten = 0;
  /** Circuit breaking, attempt accounting (least request, outlier detection) and retries, as on HTTP/1.1. */
  readonly traffic = new RequestTraffic(() => this.onPerTryTimeout());
  /**
   * The request body sent to an HTTP/1.1 upstream so far, kept (up to MAX_REPLAY_BYTES, as an H2Call
   * does) so another attempt can resend it; null once over that.
   */
  sentBody: Buffer[] | null = [];
  sentBytes = 0;
  /** What another attempt resends (set by canReplay()). */
  replayBody: readonly Buffer[] | null = null;

  constructor(
    h2: H2Downstream,
    stream: http2.ServerHttp2Stream,
    socket: net.Socket,
    tls: DownstreamTlsInfo | null,
  ) {
    this.h2 = h2;
    this.stream = stream;
    this.socket = socket;
    this.tls = tls;
    this.clientIp = clientAddress(socket);
    stream.on("error", noop);
    stream.on("close", () => this.onStreamClose());
    stream.on("drain", () => {
      this.call?.resume();
      const up = this.upstream;
      if (up?.socket.isPaused()) up.socket.resume();
    });
  }

  get proxy(): HttpProxy {
    return this.h2.proxy;
  }

  /** Tells the observer once, when the stream's exchange is over. */
  report(aborted: boolean): void {
    this.traffic.end();
    if (this.reported) return;
    this.reported = true;
    this.h2.proxy.observer?.exchangeEnd(this, aborted);
  }

  /** Turns the HTTP/2 field list into the engine's request head, then routes it. */
  start(raw: string[], flags: number): void {
    const head = new RequestHead();
    let authority = "";
    let hostField = "";
    let path = "";
    let scheme = "";
    let cookie = "";
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] as string;
      const value = raw[i + 1] as string;
      if (name.charCodeAt(0) === 58 /* : */) {
        if (name === ":method") head.method = value;
        else if (name === ":path") path = value;
        else if (name === ":authority") authority = value;
        else if (name === ":scheme") scheme = value;
        continue;
      }
      if (H2_FORBIDDEN.has(name)) {
        if (name === "host") hostField = value;
        // "te: trailers" is the only TE HTTP/2 allows; hop-by-hop, so only HTTP/2 upstreams get it.
        else if (name === "te" && value.toLowerCase() === "trailers") this.teTrailers = true;
        continue;
      }
      if (name === "cookie") {
        // HTTP/2 may split cookies into several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
        cookie = cookie === "" ? value : `${cookie}; ${value}`;
        continue;
      }
      if (name === "content-length") {
        if (!/^\d{1,15}$/.test(value)) {
          this.reject("invalid content-length");
          return;
        }
        head.contentLength = Number(value);
      } else if (name === "x-request-id" && head.requestId === "") head.requestId = value;
      else if (name === "content-type" && value.startsWith("application/grpc")) this.grpc = true;
      head.rawNames.push(name);
      head.names.push(name);
      head.values.push(value);
    }
    if (cookie !== "") {
      head.rawNames.push("cookie");
      head.names.push("cookie");
      head.values.push(cookie);
    }
    this.requestId = head.requestId !== "" ? head.requestId : randomUUID();
    if (head.method === "CONNECT") {
      this.startConnect(head, raw, flags);
      return;
    }
    const rawHost = authority !== "" ? authority : hostField;
    if (!TOKEN.test(head.method) || scheme === "" || rawHost === "" || !AUTHORITY.test(rawHost)) {
      this.reject("invalid pseudo-header fields");
      return;
    }
    if (path === "*" && head.method === "OPTIONS") {
      head.path = "*";
      head.originForm = "*";
    } else {
      if (path.charCodeAt(0) !== 47 || !visibleAscii(path)) {
        this.reject("invalid :path");
        return;
      }
      const q = path.indexOf("?");
      head.path = q < 0 ? path : path.slice(0, q);
      head.query = q < 0 ? "" : path.slice(q + 1);
      head.originForm = path;
    }
    head.target = path;
    head.rawHost = rawHost;
    const close = rawHost.charCodeAt(0) === 91 ? rawHost.indexOf("]") + 1 : rawHost.indexOf(":");
    head.host = (close <= 0 ? rawHost : rawHost.slice(0, close)).toLowerCase();
    head.minor = 1;
    this.head = head;
    if ((flags & END_STREAM) !== 0 || head.contentLength === 0) this.bodyMode = B_NONE;
    else if (head.contentLength > 0) this.bodyMode = B_LENGTH;
    else this.bodyMode = B_CHUNKED;
    this.reqBodyDone = this.bodyMode === B_NONE;
    this.routeRequest(head);
  }

  /**
   * CONNECT (RFC 9113 §8.5): :authority only, no :scheme or :path; the authority is checked as an
   * HTTP/1.1 CONNECT target is. The stream's DATA frames are the tunnel's bytes, not a body.
   */
  startConnect(head: RequestHead, raw: string[], flags: number): void {
    let authority = "";
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] as string;
      if (name === ":authority") authority = raw[i + 1] as string;
      else if (name === ":scheme" || name === ":path" || name === ":protocol") {
        this.reject("CONNECT takes :authority only");
        return;
      }
    }
    const e = connectTarget(head, authority);
    if (e !== null) {
      this.reject(e.message);
      return;
    }
    head.target = authority;
    head.minor = 1;
    this.head = head;
    this.bodyMode = B_NONE;
    this.reqBodyDone = (flags & END_STREAM) !== 0;
    this.routeRequest(head);
  }

  /** Routes the stream's request: the only read of the config for this stream. */
  routeRequest(head: RequestHead): void {
    const config = this.h2.proxy.getConfig();
    const listener = config.listeners.get(this.h2.proxy.listenerName);
    const refusal = admit(head, this.tls, listener?.paths);
    if (refusal !== null) {
      this.sendLocal(refusal.status, refusal.code, refusal.message);
      if (refusal.closeConnection) this.stream.session?.close(); // GOAWAY: streams in flight finish
      return;
    }
    const route = listener?.router?.match(head);
    if (route === undefined) {
      this.sendLocal(404, AGW_ERRORS.AGW_ERR_ROUTE_NOT_FOUND, "no route matched the request");
      return;
    }
    this.route = route;
    if (this.bodyMode !== B_NONE && !this.limitBody(route, listener?.limits ?? this.h2.proxy.defaultLimits))
      return;
    if (head.method === "CONNECT" && route.connect !== true) {
      this.sendLocal(405, AGW_ERRORS.AGW_ERR_CONNECT_NOT_ALLOWED, "the route does not allow CONNECT");
      return;
    }
    // Redirects, direct responses and CORS preflights, as on HTTP/1.1 (data-plane/src/traffic).
    const local = route.local?.reply(head, this.tls !== null, null);
    if (local !== undefined) {
      this.sendPluginReply(local);
      return;
    }
    const plugins = route.plugins;
    if (plugins) {
      const verdict = plugins.requestFilter(head, this.clientIp, route.name, this.requestId);
      if (verdict instanceof Promise) {
        verdict.then(
          (v) => this.afterRequestFilter(v, route, config),
          () =>
            this.afterRequestFilter(
              {
                status: 500,
                headers: [],
                body: new Uint8Array(0),
                error: "plugin_failed",
                message: "plugin host error",
              },
              route,
              config,
            ),
        );
        return;
      }
      if (verdict !== undefined) {
        this.sendPluginReply(verdict);
        return;
      }
    }
    this.toUpstream(route, config);
  }

  /** The stream's body limit and timeout; false when the request was answered 413. */
  limitBody(route: CompiledRoute, limits: ListenerLimits): boolean {
    const max = route.maxRequestBodyBytes ?? limits.maxRequestBodyBytes;
    if (max > 0 && (this.head as RequestHead).contentLength > max) {
      this.sendLocal(413, AGW_ERRORS.AGW_ERR_REQUEST_BODY_TOO_LARGE, `request body larger than ${max} bytes`);
      return false;
    }
    this.bodyLimit = max;
    if (limits.bodyTimeoutMs > 0) this.stream.setTimeout(limits.bodyTimeoutMs, () => this.onBodyTimeout());
    return true;
  }

  /** No DATA for bodyTimeoutMs while the body is unfinished; a paused stream waits for the upstream instead. */
  onBodyTimeout(): void {
    if (this.done || this.reqBodyDone || this.stream.isPaused()) return;
    this.bodyError(408, AGW_ERRORS.AGW_ERR_REQUEST_TIMEOUT, "request body not received in time");
  }

  /** 413 or 408 while the body streams: answered when nothing was sent yet, else the stream is reset. */
  bodyError(status: number, code: AgwErrorCode, message: string): void {
    this.dropUpstream();
    if (this.resHeadSent) this.resetStream();
    else this.fail(status, code, message);
  }

  reject(message: string): void {
    this.sendLocal(400, AGW_ERRORS.AGW_ERR_BAD_REQUEST, message);
  }

  afterRequestFilter(v: PluginReply | undefined, route: CompiledRoute, config: RuntimeConfig): void {
    if (this.done) return;
    if (v !== undefined) this.sendPluginReply(v);
    else this.toUpstream(route, config);
  }

  sendPluginReply(r: PluginReply): void {
    if (r.error !== undefined) {
      this.sendLocal(r.status, r.error as AgwErrorCode, r.message ?? r.error);
      return;
    }
    const headers: http2.OutgoingHttpHeaders = { ":status": r.status };
    for (const [n, v] of r.headers) {
      const name = n.toLowerCase();
      if (name !== "content-length" && !H2_FORBIDDEN.has(name)) addHeader(headers, name, v);
    }
    headers["content-length"] = r.body.length;
    headers["x-request-id"] = this.requestId;
    this.finishLocal(headers, this.head?.method === "HEAD" ? null : Buffer.from(r.body));
  }

  toUpstream(route: CompiledRoute, config: RuntimeConfig): void {
    const cluster = config.clusters.get(route.pickCluster());
    if (cluster === undefined) {
      this.sendLocal(503, AGW_ERRORS.AGW_ERR_CLUSTER_NOT_FOUND, "the route's cluster does not exist");
      return;
    }
    this.cluster = cluster;
    const head = this.head as RequestHead;
    if (!this.traffic.begin(cluster, route.retry, head)) {
      this.sendLocal(503, AGW_ERRORS.AGW_ERR_OVERFLOW, "the cluster's circuit breaker is open");
      return;
    }
    const ep = cluster.pickEndpoint(head, this.clientIp);
    if (ep === undefined) {
      this.sendLocal(503, AGW_ERRORS.AGW_ERR_NO_HEALTHY_UPSTREAM, "the cluster has no endpoint");
      return;
    }
    this.endpoint = ep;
    this.traffic.attemptStarted(ep);
    if (head.method === "CONNECT") {
      this.openTunnel(ep, cluster);
      return;
    }
    // A body streams in DATA frames and is never buffered for a mirror: only bodyless requests are copied.
    if (this.bodyMode === B_NONE)
      route.mirror?.copy(this.head as RequestHead, null, this.clientIp, config.clusters);
    // The route timeout, or the client's grpc-timeout when it is shorter.
    let timeoutMs = route.timeoutMs;
    const deadline = this.grpc ? grpcTimeoutMs(this.head?.header("grpc-timeout")) : 0;
    if (deadline > 0 && (timeoutMs === 0 || deadline < timeoutMs)) timeoutMs = deadline;
    if (timeoutMs > 0) this.timer = setTimeout(onStreamTimer, timeoutMs, this);
    if (cluster.http2 === true) {
      this.toH2Upstream(route, cluster, ep);
      return;
    }
    this.upHead = this.buildUpstreamHead(route, ep);
    this.sendHttp1(this.h2.proxy.pool.acquire(ep, cluster, this), []);
    if (this.bodyMode !== B_NONE) {
      const stream = this.stream;
      stream.on("data", (chunk: Buffer) => this.onRequestData(chunk));
      stream.on("end", () => this.onRequestEnd());
    }
  }

  toH2Upstream(route: CompiledRoute, cluster: ClusterRuntime, ep: Endpoint): void {
    const headers = h2UpstreamHeaders(
      this.head as RequestHead,
      route.requestHeaders,
      route.rewrite ?? null,
      ep,
      this.clientIp,
      this.tls !== null ? "https" : this.h2.proxy.forwardedProto,
      this.tls?.client?.forwardedHeader ?? "",
      this.requestId,
      this.h2.proxy.observer?.upstreamStart(this) ?? "",
      cluster.tls !== undefined ? "https" : "http",
      this.teTrailers,
    );
    this.h2Headers = headers;
    this.call = new H2Call(this.h2.proxy.pool.h2, ep, cluster, headers, this.bodyMode === B_NONE, this);
    if (this.bodyMode !== B_NONE) {
      const stream = this.stream;
      stream.on("data", (chunk: Buffer) => this.onRequestData(chunk));
      stream.on("end", () => this.onRequestEnd());
    }
  }

  /**
   * Terminated CONNECT, as proxy.ts does it for HTTP/1.1: a new TCP (or TLS, per the cluster)
   * connection to the route's endpoint whatever the authority names; 200 once it is up, then the
   * stream's DATA ↔ the socket's bytes, END_STREAM ↔ FIN. A failed connect answers like any request.
   */
  openTunnel(ep: Endpoint, cluster: ClusterRuntime): void {
    this.tunnel = true;
    const up = this.h2.proxy.pool.tunnel(ep, cluster, this);
    this.upstream = up;
    up.socket.once(cluster.tls !== undefined ? "secureConnect" : "connect", () => this.tunnelEstablished(up));
  }

  tunnelEstablished(up: UpstreamConn): void {
    const stream = this.stream;
    if (this.upstream !== up || this.done || stream.destroyed) return;
    this.traffic.responseStarted(200, false);
    this.status = 200;
    this.resHeadSent = true;
    stream.respond({ ":status": 200, "x-request-id": this.requestId });
    // The access log records the tunnel's opening, as on HTTP/1.1; the policies hold it until it closes.
    this.reported = true;
    this.h2.proxy.observer?.exchangeEnd(this, false);
    const s = up.socket;
    stream.on("data", (chunk: Buffer) => {
      this.bytesRead += chunk.length;
      if (!s.write(chunk)) stream.pause(); // resumed by the upstream's 'drain'
    });
    stream.on("end", () => {
      this.reqBodyDone = true;
      s.end(); // the half-close is passed on
    });
    if (this.reqBodyDone) s.end();
  }

  /** The tunnel's TCP side closed: a FIN ends the stream after what it carried, a reset resets it. */
  closeTunnel(eof: boolean): void {
    const stream = this.stream;
    if (eof) {
      if (!stream.destroyed && !stream.writableEnded) stream.end();
      // As an HTTP/1.1 tunnel lingers after the upstream's FIN: the client gets lingerTimeoutMs to
      // end its side too, then the stream is closed rather than held half-open for ever.
      if (!this.reqBodyDone) setTimeout(closeLingeringTunnel, this.h2.proxy.lingerTimeoutMs, stream);
      return;
    }
    this.done = true;
    if (!stream.destroyed) stream.close(NGHTTP2_CONNECT_ERROR); // RFC 9113 §8.5
    this.report(true);
  }

  // ---- HTTP/2 upstream events (H2CallSink)

  onH2Response(headers: http2.IncomingHttpHeaders, endStream: boolean): void {
    const status = Number(headers[":status"]);
    if (this.traffic.responseStarted(status, this.canReplay())) {
      this.policyRetry();
      return;
    }
    this.status = status;
    const ops = (this.route as CompiledRoute).responseHeaders;
    const out: http2.OutgoingHttpHeaders = { ":status": status };
    for (const name in headers) {
      if (!h2ResponseFieldAllowed(name) || name === "x-request-id" || opsDrop(ops, name)) continue;
      const v = headers[name];
      if (v !== undefined) out[name] = v;
    }
    this.addGatewayFields(out, ops);
    this.resHeadSent = true;
    const stream = this.stream;
    if (stream.destroyed) return;
    if (endStream) {
      // One HEADERS frame with END_STREAM: gRPC's trailers-only response stays one.
      stream.respond(out, { endStream: true });
      this.completeH2();
      return;
    }
    stream.respond(out, { waitForTrailers: true });
    stream.once("wantTrailers", () => {
      stream.sendTrailers(this.upTrailers ?? {});
      if (!this.reqBodyDone) stream.close(NGHTTP2_NO_ERROR);
    });
  }

  onH2Data(chunk: Buffer): void {
    if (!this.stream.destroyed && !this.toClient(chunk)) this.call?.pause(); // resumed by 'drain'
  }

  /** Response DATA to the client, counted for the access log. */
  toClient(chunk: Buffer): boolean {
    this.bytesWritten += chunk.length;
    return this.stream.write(chunk);
  }

  onH2End(trailers: http2.IncomingHttpHeaders | null): void {
    if (trailers !== null) {
      const t: http2.IncomingHttpHeaders = {};
      for (const name in trailers) if (h2ResponseFieldAllowed(name)) t[name] = trailers[name];
      this.upTrailers = t;
    }
    this.completeH2();
  }

  onH2Drain(): void {
    if (this.stream.isPaused()) this.stream.resume();
  }

  onH2Failure(kind: H2FailureKind, message: string, afterHead: boolean): void {
    if (afterHead) {
      this.call = null;
      this.resetStream();
      return;
    }
    const replayable = this.canReplay();
    this.call = null;
    const outcome = kind === "connect_timeout" ? "timeout" : kind === "reset" ? "reset" : "connect_failure";
    if (this.traffic.attemptFailed(outcome, replayable)) {
      this.policyRetry();
      return;
    }
    switch (kind) {
      case "tls":
        this.fail(502, AGW_ERRORS.AGW_ERR_UPSTREAM_TLS_FAILED, `upstream TLS handshake failed: ${message}`);
        return;
      case "connect_timeout":
        this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_TIMEOUT, message);
        return;
      case "connect_failure":
        this.fail(503, AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_FAILED, message);
        return;
      default:
        this.fail(502, AGW_ERRORS.AGW_ERR_UPSTREAM_RESET, message);
    }
  }

  /** Whether another attempt could resend the whole request; keeps what it would resend in replayBody. */
  canReplay(): boolean {
    const call = this.call;
    if (!this.reqBodyDone || this.tunnel)
      this.replayBody = null; // a tunnel is never resent
    else if (call !== null) this.replayBody = call.replayable ? call.sentBody : null;
    else this.replayBody = this.sentBody;
    return this.replayBody !== null;
  }

  /** The retry policy wants another attempt: after its backoff, on another endpoint when there is one. */
  policyRetry(): void {
    const body = this.replayBody ?? [];
    this.dropUpstream();
    const delay = this.traffic.backoffMs();
    if (delay > 0) setTimeout(retryAttempt, delay, this, body);
    else this.retryAttempt(body);
  }

  retryAttempt(body: readonly Buffer[]): void {
    if (this.done) return;
    const ep = this.traffic.nextEndpoint(this.clientIp);
    if (ep === undefined) {
      this.sendLocal(503, AGW_ERRORS.AGW_ERR_NO_HEALTHY_UPSTREAM, "the cluster has no endpoint");
      return;
    }
    this.endpoint = ep;
    this.traffic.attemptStarted(ep);
    const cluster = this.cluster as ClusterRuntime;
    const pool = this.h2.proxy.pool;
    if (cluster.http2 === true)
      this.call = new H2Call(
        pool.h2,
        ep,
        cluster,
        this.h2Headers as http2.OutgoingHttpHeaders,
        true,
        this,
        body,
      );
    else this.sendHttp1(pool.connect(ep, cluster, this), body);
  }

  /** The per-try timeout of the route's retry policy passed before the response head. */
  onPerTryTimeout(): void {
    if (this.done || this.resHeadSent || (this.upstream === null && this.call === null)) return;
    const replayable = this.canReplay();
    this.dropUpstream();
    if (this.traffic.attemptFailed("timeout", replayable)) this.policyRetry();
    else this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT, "the upstream did not respond in time");
  }

  completeH2(): void {
    this.clearTimer();
    this.call = null;
    this.done = true;
    if (!this.stream.destroyed) {
      if (!this.stream.writableEnded) this.stream.end();
      else if (!this.reqBodyDone) this.stream.close(NGHTTP2_NO_ERROR);
    }
    this.report(false);
  }

  buildUpstreamHead(route: CompiledRoute, ep: Endpoint): string {
    return upstreamHead(
      this.head as RequestHead,
      route.requestHeaders,
      route.rewrite ?? null,
      ep,
      this.clientIp,
      this.tls !== null ? "https" : this.h2.proxy.forwardedProto,
      this.tls?.client?.forwardedHeader ?? "",
      this.requestId,
      this.h2.proxy.observer?.upstreamStart(this) ?? "",
      this.bodyMode === B_CHUNKED,
      "",
    );
  }

  // ---- request body (HTTP/2 DATA frames → HTTP/1.1 body)

  onRequestData(chunk: Buffer): void {
    this.bytesRead += chunk.length;
    const call = this.call;
    const up = this.upstream;
    if ((up === null && call === null) || chunk.length === 0) return;
    // Checked before writing: not one byte past the limit reaches the upstream.
    if (this.bodyLimit > 0) {
      this.bodySeen += chunk.length;
      if (this.bodySeen > this.bodyLimit) {
        const message = `request body larger than ${this.bodyLimit} bytes`;
        this.bodyError(413, AGW_ERRORS.AGW_ERR_REQUEST_BODY_TOO_LARGE, message);
        return;
      }
    }
    if (call !== null) {
      if (!call.write(chunk)) this.stream.pause(); // resumed by onH2Drain
      return;
    }
    const sent = this.sentBody;
    if (sent !== null) {
      this.sentBytes += chunk.length;
      if (this.sentBytes > MAX_REPLAY_BYTES) this.sentBody = null;
      else sent.push(chunk);
    }
    if (!this.writeBody((up as UpstreamConn).socket, chunk)) this.stream.pause(); // resumed by the upstream's 'drain'
  }

  /** Writes body bytes to an HTTP/1.1 upstream in the request's framing. */
  writeBody(s: UpstreamSocket, chunk: Buffer): boolean {
    return s.write(this.bodyMode === B_CHUNKED ? frameChunk(chunk) : chunk);
  }

  /** Sends the upstream head and `body` (what an earlier attempt sent of the body) on `up`. */
  sendHttp1(up: UpstreamConn, body: readonly Buffer[]): void {
    this.upstream = up;
    this.resStarted = false;
    this.resScanner.reset();
    this.resBuf = null;
    const s = up.socket;
    s.cork();
    s.write(this.upHead, "latin1");
    for (const chunk of body) this.writeBody(s, chunk);
    if (this.reqBodyDone && this.bodyMode === B_CHUNKED) s.write(LAST_CHUNK);
    s.uncork();
    if (!this.reqBodyDone && this.stream.isPaused()) this.stream.resume();
  }

  onRequestEnd(): void {
    this.reqBodyDone = true;
    this.stream.setTimeout(0);
    if (this.call !== null) {
      this.call.end();
      return;
    }
    const up = this.upstream;
    if (up !== null && this.bodyMode === B_CHUNKED) up.socket.write(LAST_CHUNK);
    if (this.resMode === M_NONE && this.resHeadSent) this.complete();
  }

  // ---- upstream events

  onUpstreamDrain(_conn: UpstreamConn): void {
    if (this.stream.isPaused()) this.stream.resume();
  }

  onUpstreamData(conn: UpstreamConn, chunk: Buffer): void {
    if (conn !== this.upstream) return;
    if (this.tunnel) {
      if (!this.stream.destroyed && !this.toClient(chunk)) conn.socket.pause(); // resumed by 'drain'
      return;
    }
    this.resStarted = true;
    if (this.resHeadSent) this.onResponseBody(chunk, 0);
    else this.onResponseHeadBytes(chunk);
  }

  onUpstreamClose(conn: UpstreamConn): void {
    if (conn !== this.upstream) return;
    this.upstream = null;
    if (this.tunnel && this.resHeadSent) {
      this.closeTunnel(conn.eof);
      return;
    }
    if (this.resHeadSent) {
      if (conn.eof && this.resMode === M_CLOSE) this.complete();
      else this.resetStream(); // truncated: the client must not see a complete response
      return;
    }
    // A reused keep-alive connection that died before answering: resent once on a fresh one.
    const sent = this.sentBody;
    if (
      conn.reused &&
      !this.resStarted &&
      sent !== null &&
      !this.retried &&
      IDEMPOTENT.has(this.head?.method ?? "")
    ) {
      this.retried = true;
      this.sendHttp1(
        this.h2.proxy.pool.connect(this.endpoint as Endpoint, this.cluster as ClusterRuntime, this),
        sent,
      );
      return;
    }
    const failure = !conn.connected ? (conn.connectTimedOut ? "timeout" : "connect_failure") : "reset";
    if (this.traffic.attemptFailed(failure, this.canReplay())) {
      this.policyRetry();
      return;
    }
    if (!conn.connected) {
      if (conn.tlsFailure !== null)
        this.fail(
          502,
          AGW_ERRORS.AGW_ERR_UPSTREAM_TLS_FAILED,
          `upstream TLS handshake failed: ${conn.tlsFailure}`,
        );
      else if (conn.connectTimedOut)
        this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_TIMEOUT, "timed out connecting to the upstream");
      else this.fail(503, AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_FAILED, "could not connect to the upstream");
      return;
    }
    this.fail(502, AGW_ERRORS.AGW_ERR_UPSTREAM_RESET, "upstream closed the connection before responding");
  }

  onTimeout(): void {
    this.timer = null;
    if (this.resHeadSent) {
      this.dropUpstream();
      this.resetStream();
    } else {
      this.traffic.attemptFailed("timeout", false);
      this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT, "the upstream did not respond in time");
    }
  }

  onResponseHeadBytes(chunk: Buffer): void {
    let buf = this.resBuf === null ? chunk : Buffer.concat([this.resBuf, chunk]);
    const sc = this.resScanner;
    const p = this.h2.proxy;
    for (;;) {
      const n = sc.scan(buf, p.maxHeadBytes, p.maxHeaders);
      if (n === 0) {
        this.resBuf = buf;
        return;
      }
      this.resBuf = null;
      const rh = new ResponseHead();
      if (n < 0 || parseResponseHead(buf, sc, rh) !== null || rh.status === 101) {
        this.fail(502, AGW_ERRORS.AGW_ERR_UPSTREAM_PROTOCOL_ERROR, "the upstream sent an invalid response");
        return;
      }
      if (rh.status >= 200) {
        this.beginResponse(rh, buf, n);
        return;
      }
      // 1xx informational responses are not relayed over HTTP/2 (node:http2 sends 100 by itself).
      sc.reset();
      if (n === buf.length) return;
      buf = buf.subarray(n);
    }
  }

  beginResponse(rh: ResponseHead, buf: Buffer, headLen: number): void {
    const status = rh.status;
    if (this.traffic.responseStarted(status, this.canReplay())) {
      this.policyRetry();
      return;
    }
    this.status = status;
    this.upKeepAlive = rh.minor === 1 ? !rh.connClose : rh.connKeepAlive && !rh.connClose;
    let mode: number;
    if (this.head?.method === "HEAD" || status === 204 || status === 304) mode = M_NONE;
    else if (rh.chunked) mode = M_CHUNKED;
    else if (rh.contentLength >= 0) mode = rh.contentLength === 0 ? M_NONE : M_LENGTH;
    else mode = M_CLOSE;
    if (mode === M_CHUNKED) this.resDecoder.reset(true);
    if (mode === M_CLOSE) this.upKeepAlive = false;
    this.resMode = mode;
    this.resRemaining = rh.contentLength;

    const ops = (this.route as CompiledRoute).responseHeaders;
    const headers: http2.OutgoingHttpHeaders = { ":status": status };
    const names = rh.names;
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      if (
        H2_FORBIDDEN.has(name) ||
        name === "x-request-id" ||
        hasName(rh.connTokens, name) ||
        opsDrop(ops, name)
      )
        continue;
      addHeader(headers, name, rh.values[i] as string);
    }
    this.addGatewayFields(headers, ops);
    this.resHeadSent = true;
    if (this.stream.destroyed) return;
    this.stream.respond(headers, { endStream: mode === M_NONE });
    if (mode === M_NONE) {
      if (headLen < buf.length) this.upExtra = true;
      this.complete();
    } else if (headLen < buf.length) {
      this.onResponseBody(buf, headLen);
    }
  }

  onResponseBody(chunk: Buffer, off: number): void {
    const len = chunk.length;
    let ok = true;
    switch (this.resMode) {
      case M_LENGTH: {
        const n = Math.min(len - off, this.resRemaining);
        if (n > 0) ok = this.toClient(off === 0 && n === len ? chunk : chunk.subarray(off, off + n));
        this.resRemaining -= n;
        if (this.resRemaining === 0) {
          if (off + n < len) this.upExtra = true;
          this.complete();
          return;
        }
        break;
      }
      case M_CHUNKED: {
        const dec = this.resDecoder;
        const used = dec.decode(chunk, off);
        if (used < 0) {
          this.dropUpstream();
          this.resetStream();
          return;
        }
        const pieces = dec.pieces;
        for (let i = 0; i < pieces.length; i++) ok = this.toClient(pieces[i] as Buffer);
        pieces.length = 0;
        dec.pieceBytes = 0;
        if (dec.done) {
          if (off + used < len) this.upExtra = true;
          this.complete();
          return;
        }
        break;
      }
      case M_CLOSE:
        ok = this.toClient(off === 0 ? chunk : chunk.subarray(off));
        break;
    }
    const up = this.upstream;
    if (!ok && up !== null) up.socket.pause(); // resumed by the stream's 'drain'
  }

  /** The upstream response is complete: end the stream, return the upstream connection if it is clean. */
  complete(): void {
    this.clearTimer();
    const up = this.upstream;
    if (up !== null) {
      this.upstream = null;
      if (this.upKeepAlive && this.reqBodyDone && !this.upExtra)
        this.h2.proxy.pool.release(up, this.cluster as ClusterRuntime);
      else up.destroy();
    }
    this.done = true;
    if (!this.stream.destroyed) {
      this.stream.end();
      // The client may still be sending a body the upstream did not wait for.
      if (!this.reqBodyDone) this.stream.close(NGHTTP2_CANCEL);
    }
    this.report(false);
  }

  /**
   * The fields the gateway adds to an upstream's response, as the HTTP/1.1 side does: x-request-id,
   * CORS, the route's header operations, then the policies' x-agw-attempts and affinity cookie.
   */
  addGatewayFields(out: http2.OutgoingHttpHeaders, ops: HeaderOps): void {
    if (!opsDrop(ops, "x-request-id")) out["x-request-id"] = this.requestId;
    const cors = (this.route as CompiledRoute).local?.corsHeaders(this.head as RequestHead);
    if (cors !== undefined) for (const [n, v] of cors) addHeader(out, n, v);
    for (const [n, v] of ops.set) out[n.toLowerCase()] = v;
    for (const [n, v] of ops.add) addHeader(out, n.toLowerCase(), v);
    const traffic = this.traffic;
    const attempts = traffic.attemptsValue;
    if (attempts !== "") out["x-agw-attempts"] = attempts;
    const cookie = traffic.affinitySetCookie();
    if (cookie !== "") addHeader(out, "set-cookie", cookie);
  }

  // ---- local responses and teardown

  fail(status: number, code: AgwErrorCode, message: string): void {
    this.dropUpstream();
    this.sendLocal(status, code, message);
  }

  /** A gateway error: JSON for HTTP clients, a trailers-only response with grpc-status for gRPC ones. */
  sendLocal(status: number, code: AgwErrorCode, message: string): void {
    this.errorCode = code;
    const attempts = this.traffic.attemptsValue;
    if (this.grpc) {
      const headers: http2.OutgoingHttpHeaders = {
        ":status": 200,
        "content-type": "application/grpc",
        "grpc-status": grpcStatusFor(status),
        "grpc-message": encodeURIComponent(message),
        "x-agw-error": code,
        "x-request-id": this.requestId,
      };
      if (attempts !== "") headers["x-agw-attempts"] = attempts;
      this.finishLocal(headers, null);
      return;
    }
    const body = Buffer.from(JSON.stringify({ error: code, message, request_id: this.requestId }));
    const headers: http2.OutgoingHttpHeaders = {
      ":status": status,
      "content-type": "application/json",
      "content-length": body.length,
      "x-agw-error": code,
      "x-request-id": this.requestId,
    };
    if (attempts !== "") headers["x-agw-attempts"] = attempts;
    this.finishLocal(headers, this.head?.method === "HEAD" ? null : body);
  }

  finishLocal(headers: http2.OutgoingHttpHeaders, body: Buffer | null): void {
    this.clearTimer();
    this.done = true;
    const stream = this.stream;
    if (stream.destroyed || stream.headersSent) {
      this.resetStream();
      return;
    }
    this.status = Number(headers[":status"]);
    stream.respond(headers, { endStream: body === null });
    if (body !== null) {
      this.bytesWritten += body.length;
      stream.end(body);
    }
    if (!this.reqBodyDone) stream.close(NGHTTP2_CANCEL);
    this.report(false);
  }

  resetStream(): void {
    this.done = true;
    this.clearTimer();
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
    this.report(true);
  }

  onStreamClose(): void {
    this.clearTimer();
    this.done = true;
    this.dropUpstream(); // the client went away (RST_STREAM, GOAWAY, socket closed) before the end
    this.report(true); // a no-op when the exchange was already reported
  }

  dropUpstream(): void {
    const call = this.call;
    if (call !== null) {
      this.call = null;
      call.cancel();
    }
    const up = this.upstream;
    if (up !== null) {
      this.upstream = null;
      up.destroy();
    }
  }

  clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}

/** Whether `v` has only visible ASCII or obs-text (what a request-target may hold). */
function visibleAscii(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c > 0xff) return false;
  }
  return true;
}

function addHeader(headers: http2.OutgoingHttpHeaders, name: string, value: string): void {
  const cur = headers[name];
  if (cur === undefined) headers[name] = value;
  else if (Array.isArray(cur)) cur.push(value);
  else headers[name] = [String(cur), value];
}

function noop(): void {}
