/**
 * The protocol-neutral lifecycle of one request, written once for the HTTP/1.1 connection (http1.ts)
 * and the HTTP/2 stream (h2.ts). Its phases, in order:
 *
 *   route → local response → request filter (plugins; with the request body when one asks for it)
 *   → upstream peer (cluster pick, circuit breaker) → upstream request → response filter (plugins;
 *   with the response body when one asks: response-filter.ts) → response body → log
 *
 * Every error of any phase goes through one failure path (fail → sendError → the downstream's
 * writeLocal); retries, the resend of a request whose reused connection died, the route timeout and
 * the per-try timeout live here, once. The HTTP/1.1 upstream response is read here, once, whatever the
 * client speaks; the downstream only turns the response head (a field list) and the body into its
 * protocol (Downstream).
 *
 * A ClientConn is one Exchange reused from request to request on its connection (no allocation per
 * request); an HTTP/2 stream is one Exchange.
 */
import { RequestTraffic } from "../cluster/traffic.ts";
import type { ExchangeView } from "../observability/exchange.ts";
import { listenerAccess } from "../policies/access.ts";
import type {
  AuthRefusal,
  BodyEncoder,
  BufferedBody,
  ClusterRuntime,
  CompiledRoute,
  Endpoint,
  HeaderOps,
  ListenerLimits,
  ListenerRuntime,
  PluginReply,
  ResponseCompressor,
  RoutePlugins,
  RuntimeConfig,
} from "../runtime/types.ts";
import type { DownstreamTlsInfo } from "../tls/acceptor.ts";
import type { LocalReply } from "../traffic/local.ts";
import { admit } from "./admission.ts";
import type { BodyBuffer } from "./body-buffer.ts";
import { BODY_CHUNKED, BODY_NONE, M_CHUNKED, M_CLOSE, M_LENGTH, M_NONE } from "./body-framing.ts";
import type { Downstream, ProxyContext } from "./downstream.ts";
import { AGW_ERRORS, type AgwErrorCode } from "./errors.ts";
import { FieldList } from "./fields.ts";
import { grpcStatusFor, grpcTimeoutMs } from "./grpc.ts";
import { type Forwarding, hasName, opsDrop, upstreamHead } from "./headers.ts";
import { H2_CONNECTION_FIELDS, HOP_BY_HOP } from "./hop-by-hop.ts";
import {
  ChunkedDecoder,
  HeadScanner,
  parseResponseHead,
  type RequestHead,
  ResponseHead,
} from "./http1-parser.ts";
import { RearmableTimer } from "./rearmable-timer.ts";
import { collectResponse, PLUGIN_CRASHED, responseCollected, responsePhase } from "./response-filter.ts";
import type { UpstreamConn, UpstreamHandler } from "./upstream-conn.ts";
import { connFailure, PROTOCOL_ERROR, UPSTREAM_TIMED_OUT, type UpstreamFailure } from "./upstream-failure.ts";

/**
 * Methods that may be resent after a reused keep-alive connection dies unanswered (RFC 9110 §9.2.2);
 * like nginx, a POST is never sent twice that way: the upstream may have acted on it before closing.
 */
const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);

export { M_CHUNKED, M_CLOSE, M_LENGTH, M_NONE } from "./body-framing.ts";

/** A credential check's promise rejects only through a host bug: the request fails closed. */
const AUTH_CRASHED: AuthRefusal = {
  status: 500,
  code: AGW_ERRORS.AGW_ERR_AUTH_BUSY,
  message: "credential check failed",
  fields: [],
};

const NO_FIELDS: ReadonlyArray<readonly [string, string]> = [];

export type { Downstream, ProxyContext } from "./downstream.ts";
export { FieldList } from "./fields.ts";
export { PLUGIN_CRASHED } from "./response-filter.ts";

const ROUTE_TIMEOUT = 1; // the route timer's only kind

function onRouteTimer(x: Exchange): void {
  x.onRouteTimeout();
}

function retryAttempt(x: Exchange, head: RequestHead | null): void {
  x.retryAttempt(head);
}

export abstract class Exchange implements UpstreamHandler, ExchangeView, Downstream, Forwarding {
  readonly proxy: ProxyContext;
  /** The connection's peer: its remote address, or the source its PROXY protocol header named. */
  readonly peerIp: string;
  /** The request's client address (policies/client-address.ts): the peer until the request is routed. */
  clientIp: string;
  /** The connection's TLS facts (SNI, ALPN, verified client certificate); null on plain HTTP. */
  readonly tls: DownstreamTlsInfo | null;
  head: RequestHead | null = null;
  requestId = "";
  /** performance.now() when the head parsed; status and error code as sent: for the observer. */
  startedAt = 0;
  status = 0;
  errorCode = "";
  /** The request is gRPC (content-type application/grpc): errors are grpc-status, grpc-timeout counts. */
  grpc = false;
  route: CompiledRoute | null = null;
  cluster: ClusterRuntime | null = null;
  endpoint: Endpoint | null = null;
  upstream: UpstreamConn | null = null;
  /** The HTTP/1.1 head sent upstream for the current request. */
  upHead = "";
  readonly routeTimer = new RearmableTimer<Exchange>(this, onRouteTimer);
  /** Circuit breaking, attempt accounting, retries (data-plane/src/cluster/traffic.ts). */
  readonly traffic = new RequestTraffic(() => this.onPerTryTimeout());
  /** Request body framing (BODY_*), and whether the client has sent all of it. */
  bodyMode = BODY_NONE;
  reqBodyDone = true;
  /** The one resend on a fresh connection after a reused one died has happened. */
  retried = false;
  /** Bytes are spliced between the client and the upstream (Upgrade, CONNECT). */
  tunnel = false;
  /** Any byte received from the upstream for this attempt. */
  resStarted = false;
  resHeadSent = false;
  resBuf: Buffer | null = null;
  readonly resScanner = new HeadScanner();
  resMode = M_NONE;
  resRemaining = 0;
  readonly resDecoder = new ChunkedDecoder();
  /** A chunked response body goes to the client as received (validated), not decoded. */
  passChunked = false;
  upKeepAlive = false;
  /** Upstream sent bytes past the end of its response. */
  upExtra = false;
  /** The response head (upstream or local) being sent. */
  readonly fields = new FieldList();
  /** Response body bytes held while on-response plugins decide (non-null only then). */
  heldChunks: Buffer[] | null = null;
  /** The upstream closed while they decided: 1 with a FIN, 2 reset. */
  heldEnd = 0;
  /** Name, value pairs the route's shaping policies add to this answer (RateLimit); null: none. */
  shapingFields: string[] | null = null;
  /** The response body read for on-response plugins that asked for it (non-null only then). */
  resCollect: BodyBuffer | null = null;
  /** The response body goes through this compressor (shaping/compression.ts); null: as received. */
  encoder: BodyEncoder | null = null;
  resReason = "";

  constructor(proxy: ProxyContext, peerIp: string, tls: DownstreamTlsInfo | null) {
    this.proxy = proxy;
    this.peerIp = peerIp;
    this.clientIp = peerIp;
    this.tls = tls;
  }

  abstract readonly protocol: string;
  abstract readonly active: boolean;
  abstract readonly bytesRead: number;
  abstract readonly bytesWritten: number;
  abstract limitBody(route: CompiledRoute, limits: ListenerLimits): boolean;
  abstract pauseRequest(): void;
  abstract resumeRequest(): void;
  abstract closeAfterAnswer(): void;
  abstract writeLocal(status: number, fields: FieldList, body: Uint8Array | null): void;
  abstract respond(fields: FieldList, reason: string, buf: Buffer, headLen: number): void;
  abstract toClient(chunk: Buffer): boolean;
  abstract responseComplete(): void;
  abstract abortResponse(): void;
  abstract mirrorBody(): Buffer | null | undefined;
  abstract collectBody(limit: number, done: (body: BufferedBody) => void): void;
  abstract openTunnel(ep: Endpoint, cluster: ClusterRuntime): void;
  abstract upstreamRequest(route: CompiledRoute, cluster: ClusterRuntime, ep: Endpoint): void;
  abstract sendAttempt(ep: Endpoint, cluster: ClusterRuntime): void;
  abstract resend(): void;
  abstract canResend(): boolean;
  abstract canReplay(): boolean;

  /** X-Forwarded-Proto: https on a TLS connection, else the engine's setting. */
  get forwardedProto(): string {
    return this.tls !== null ? "https" : this.proxy.forwardedProto;
  }

  /** X-Forwarded-Client-Cert: the verified client certificate, "" without one. */
  get clientCert(): string {
    return this.tls?.client?.forwardedHeader ?? "";
  }

  /** The trace context to send upstream (the observer starts the upstream span), "" for none. */
  traceparent(): string {
    return this.proxy.observer?.upstreamStart(this) ?? "";
  }

  /** The HTTP/1.1 head of the upstream request, whichever protocol the client spoke. */
  http1Head(route: CompiledRoute, ep: Endpoint, upgrade: string): string {
    const chunked = this.bodyMode === BODY_CHUNKED;
    return upstreamHead(this.head as RequestHead, route, ep, this, this.traceparent(), chunked, upgrade);
  }

  // ---- phases

  /**
   * route → local response → request filter → upstream peer → upstream request, for a parsed head:
   * the only read of `config` for this request, everything after uses these references.
   */
  routeRequest(head: RequestHead, config: RuntimeConfig, listener: ListenerRuntime | undefined): void {
    // access: the client address the listener trusts, then its IP rules (policies/access.ts).
    const denied = listenerAccess(this, head, listener);
    if (denied !== null) {
      this.fail(denied.status, denied.code, denied.message);
      return;
    }
    const refusal = admit(head, this.tls, listener?.paths);
    if (refusal !== null) {
      if (refusal.closeConnection) this.closeAfterAnswer();
      this.fail(refusal.status, refusal.code, refusal.message);
      return;
    }
    this.shapingFields = null;
    const route = listener?.router?.match(head);
    if (route === undefined) {
      this.fail(404, AGW_ERRORS.AGW_ERR_ROUTE_NOT_FOUND, "no route matched the request");
      return;
    }
    this.route = route;
    const ipRules = route.ipRules;
    if (ipRules != null && !ipRules.permits(this.clientIp)) {
      this.fail(403, AGW_ERRORS.AGW_ERR_CLIENT_ADDRESS_DENIED, "the route does not admit the client address");
      return;
    }
    if (this.bodyMode !== BODY_NONE && !this.limitBody(route, listener?.limits ?? this.proxy.defaultLimits))
      return;
    if (head.method === "CONNECT" && route.connect !== true) {
      this.fail(405, AGW_ERRORS.AGW_ERR_CONNECT_NOT_ALLOWED, "the route does not allow CONNECT");
      return;
    }
    // access after routing: the route's basic auth (policies/basic-auth.ts).
    const auth = route.basicAuth;
    if (auth != null && !route.local?.isPreflight(head)) {
      const verdict = auth.check(head);
      if (verdict instanceof Promise) {
        this.pauseRequest();
        verdict.then(
          (r) => this.afterAuth(head, r, route, config),
          () => this.afterAuth(head, AUTH_CRASHED, route, config),
        );
        return;
      }
      if (verdict !== null) {
        this.refuse(verdict);
        return;
      }
    }
    this.afterAccess(head, route, config);
  }

  /** A credential check that waited has decided; the client may have gone meanwhile. */
  afterAuth(
    head: RequestHead,
    verdict: AuthRefusal | null,
    route: CompiledRoute,
    config: RuntimeConfig,
  ): void {
    if (this.head !== head || !this.active) return;
    if (verdict !== null) {
      this.refuse(verdict);
      return;
    }
    // Resumed first: bytes flow only from the next tick, by when what follows has paused the
    // request again (plugins deciding) or is ready for its body (upstream, a plugin reading it).
    this.resumeRequest();
    this.afterAccess(head, route, config);
  }

  /** A policy's refusal, with the fields it carries (a 401's challenge). */
  refuse(r: AuthRefusal): void {
    this.routeTimer.disarm();
    this.sendError(r.status, r.code, r.message, r.fields);
  }

  /** local response → rate limit → request filter → upstream peer, once access is granted. */
  afterAccess(head: RequestHead, route: CompiledRoute, config: RuntimeConfig): void {
    // local response: redirects, direct responses and CORS preflights, before plugins. The traffic
    // state receives the CORS fields of a proxied response.
    const local = route.local?.reply(head, this.tls !== null, this.traffic);
    if (local !== undefined) {
      this.sendReply(local);
      return;
    }
    // local rate limit (shaping/rate-limit.ts): before any plugin or upstream work.
    const limit = route.rateLimit;
    if (limit && !limit.admit(this, head, this.clientIp)) {
      this.fail(429, AGW_ERRORS.AGW_ERR_RATE_LIMITED, "rate limit exceeded");
      return;
    }
    // request filter: the route's plugins see the request (and its body, when one asks for it)
    // before any upstream work.
    const plugins = route.plugins;
    if (!plugins) this.upstreamPeer(head, route, config);
    else if (plugins.requestBody === null || this.bodyMode === BODY_NONE)
      this.filterRequest(plugins, head, route, config, undefined);
    else
      this.collectBody(plugins.requestBody.limit, (body) => {
        if (this.head === head && this.active) this.filterRequest(plugins, head, route, config, body);
      });
  }

  filterRequest(
    plugins: RoutePlugins,
    head: RequestHead,
    route: CompiledRoute,
    config: RuntimeConfig,
    body: BufferedBody | undefined,
  ): void {
    const verdict = plugins.requestFilter(head, this.clientIp, route.name, this.requestId, body);
    if (verdict instanceof Promise) {
      this.pauseRequest();
      verdict.then(
        (v) => this.afterRequestFilter(head, v, route, config),
        () => this.afterRequestFilter(head, PLUGIN_CRASHED, route, config),
      );
    } else if (verdict !== undefined) this.sendReply(verdict);
    else this.upstreamPeer(head, route, config);
  }

  /** A plugin chain that waited (on Redis, on HTTP) has decided; the client may have gone meanwhile. */
  afterRequestFilter(
    head: RequestHead,
    verdict: PluginReply | undefined,
    route: CompiledRoute,
    config: RuntimeConfig,
  ): void {
    if (this.head !== head || !this.active) return;
    if (verdict !== undefined) this.sendReply(verdict);
    else {
      this.upstreamPeer(head, route, config);
      this.resumeRequest();
    }
  }

  /** upstream peer: the route's cluster, its circuit breaker, an endpoint; then the upstream request. */
  upstreamPeer(head: RequestHead, route: CompiledRoute, config: RuntimeConfig): void {
    const cluster = config.clusters.get(route.pickCluster());
    if (cluster === undefined) {
      this.fail(503, AGW_ERRORS.AGW_ERR_CLUSTER_NOT_FOUND, "the route's cluster does not exist");
      return;
    }
    this.cluster = cluster;
    if (!this.traffic.begin(cluster, route.retry, head)) {
      this.fail(503, AGW_ERRORS.AGW_ERR_OVERFLOW, "the cluster's circuit breaker is open");
      return;
    }
    const ep = cluster.pickEndpoint(head, this.clientIp);
    if (ep === undefined) {
      this.fail(503, AGW_ERRORS.AGW_ERR_NO_HEALTHY_UPSTREAM, "the cluster has no endpoint");
      return;
    }
    this.endpoint = ep;
    this.traffic.attemptStarted(ep);
    if (head.method === "CONNECT") {
      this.openTunnel(ep, cluster);
      return;
    }
    const mirror = route.mirror;
    if (mirror) {
      const body = this.mirrorBody();
      if (body !== undefined) mirror.copy(head, body, this.clientIp, config.clusters);
    }
    this.routeTimer.arm(ROUTE_TIMEOUT, this.deadlineMs(route, head));
    this.upstreamRequest(route, cluster, ep);
  }

  /** The route timeout, or the client's grpc-timeout when it is shorter (the gateway enforces both). */
  deadlineMs(route: CompiledRoute, head: RequestHead): number {
    const timeoutMs = route.timeoutMs;
    if (!this.grpc) return timeoutMs;
    const deadline = grpcTimeoutMs(head.header("grpc-timeout"));
    return deadline > 0 && (timeoutMs === 0 || deadline < timeoutMs) ? deadline : timeoutMs;
  }

  // ---- retries, replay, timeouts

  /** The retry policy wants another attempt: after its backoff, on another endpoint when there is one. */
  policyRetry(): void {
    this.dropUpstream();
    const delay = this.traffic.backoffMs();
    if (delay > 0) setTimeout(retryAttempt, delay, this, this.head);
    else this.retryAttempt(this.head);
  }

  retryAttempt(head: RequestHead | null): void {
    if (this.head !== head || !this.active) return;
    const ep = this.traffic.nextEndpoint(this.clientIp);
    if (ep === undefined) {
      this.fail(503, AGW_ERRORS.AGW_ERR_NO_HEALTHY_UPSTREAM, "the cluster has no endpoint");
      return;
    }
    this.endpoint = ep;
    this.traffic.attemptStarted(ep);
    this.resStarted = false;
    this.sendAttempt(ep, this.cluster as ClusterRuntime);
  }

  /**
   * The one rule for resending on a fresh connection: the reused keep-alive connection died before a
   * byte of the answer, the method is idempotent, it has not been done for this request, and what was
   * sent is still held. A non-idempotent request is never sent twice this way, on either protocol.
   */
  mayResend(conn: UpstreamConn): boolean {
    return (
      conn.reused &&
      !this.resStarted &&
      !this.retried &&
      IDEMPOTENT.has(this.head?.method ?? "") &&
      this.canResend()
    );
  }

  /** An attempt failed before its response head: the retry policy, else the failure's answer. */
  upstreamFailed(f: UpstreamFailure): void {
    if (f.retryable !== null && this.traffic.attemptFailed(f.retryable, this.canReplay())) {
      this.policyRetry();
      return;
    }
    this.fail(f.status, f.code, f.message);
  }

  /** Whether an upstream attempt is in flight. */
  hasUpstream(): boolean {
    return this.upstream !== null;
  }

  onPerTryTimeout(): void {
    if (!this.active || this.resHeadSent || !this.hasUpstream()) return;
    const replayable = this.canReplay();
    this.dropUpstream();
    if (this.traffic.attemptFailed("timeout", replayable)) this.policyRetry();
    else this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT, UPSTREAM_TIMED_OUT.message);
  }

  onRouteTimeout(): void {
    if (!this.active) return;
    const inFlight = this.hasUpstream();
    this.dropUpstream();
    if (this.resHeadSent) {
      this.abortResponse();
      return;
    }
    if (inFlight) this.traffic.attemptFailed("timeout", false);
    this.fail(504, AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT, UPSTREAM_TIMED_OUT.message);
  }

  // ---- the HTTP/1.1 upstream response (one reader, whatever the client speaks)

  onUpstreamDrain(_conn: UpstreamConn): void {
    if (!this.reqBodyDone && this.active) this.resumeRequest();
  }

  onUpstreamData(conn: UpstreamConn, chunk: Buffer): void {
    if (conn !== this.upstream) return;
    if (this.tunnel) {
      if (!this.toClient(chunk)) conn.socket.pause(); // resumed by the client's 'drain'
      return;
    }
    this.resStarted = true;
    if (this.resHeadSent) this.onResponseBody(chunk, 0);
    else if (this.heldChunks !== null) this.heldChunks.push(chunk);
    else if (this.resCollect !== null) collectResponse(this, chunk, 0);
    else this.onResponseHeadBytes(chunk);
  }

  onUpstreamClose(conn: UpstreamConn): void {
    if (conn !== this.upstream) return;
    if (this.heldChunks !== null) {
      this.upstream = null;
      this.heldEnd = conn.eof ? 1 : 2; // handled once the response plugins have decided
      return;
    }
    if (this.resCollect !== null) {
      this.upstream = null;
      if (conn.eof && this.resMode === M_CLOSE) this.completeResponse();
      else this.fail(502, AGW_ERRORS.AGW_ERR_UPSTREAM_RESET, "the upstream closed during the response");
      return;
    }
    this.upstream = null;
    if (this.tunnel && this.resHeadSent) {
      this.closeTunnel(conn.eof);
      return;
    }
    if (this.resHeadSent) {
      if (conn.eof && this.resMode === M_CLOSE) this.completeResponse();
      else this.abortResponse(); // truncated: the client must not see a complete response
      return;
    }
    if (this.mayResend(conn)) {
      this.retried = true;
      this.resend();
      return;
    }
    this.upstreamFailed(connFailure(conn));
  }

  /** The tunnel's upstream side closed: a FIN is passed on after what it carried, a reset cuts. */
  abstract closeTunnel(eof: boolean): void;

  /** A 1xx response head (not 101) the client may be told about. */
  informational(_head: Buffer): void {}

  /** A 101 from the upstream; only an HTTP/1.1 Upgrade asks for one. */
  switchProtocols(_rh: ResponseHead, _buf: Buffer, _headLen: number): void {
    this.protocolError();
  }

  protocolError(): void {
    this.upstreamFailed(PROTOCOL_ERROR);
  }

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
        this.protocolError();
        return;
      }
      const rh = new ResponseHead();
      if (parseResponseHead(buf, sc, rh) !== null) {
        this.protocolError();
        return;
      }
      if (rh.status === 101) {
        this.switchProtocols(rh, buf, n);
        return;
      }
      if (rh.status >= 200) {
        this.beginResponse(rh, buf, n);
        return;
      }
      // 1xx (e.g. 100 Continue, 103): relayed where the protocol can, then the final response is awaited.
      this.informational(buf.subarray(0, n));
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
    else if (rh.contentLength >= 0) mode = M_LENGTH;
    else mode = M_CLOSE;
    if (mode === M_CHUNKED) this.resDecoder.reset(!this.passChunked);
    if (mode === M_CLOSE) this.upKeepAlive = false;
    this.resMode = mode;
    this.resRemaining = rh.contentLength;

    const route = this.route as CompiledRoute;
    const f = this.upstreamFields(rh, route.responseHeaders);
    const plugins = route.plugins;
    if (plugins?.responsePhase === true) responsePhase(this, plugins, rh.reason, buf, headLen);
    else this.sendResponseHead(f, route.responseHeaders, rh.reason, buf, headLen);
  }

  /** The response head goes to the client with the gateway's fields; `buf[headLen..]` starts its body. */
  sendResponseHead(f: FieldList, ops: HeaderOps, reason: string, buf: Buffer, headLen: number): void {
    const compression = (this.route as CompiledRoute).compression;
    if (compression) this.beginEncoding(compression, f);
    this.gatewayFields(f, ops);
    this.resHeadSent = true;
    this.respond(f, reason, buf, headLen);
  }

  /**
   * The response is compressed when its route asks and the client accepts it: after the response
   * filter, so plugins see the upstream's head and body; the body is then read decoded (chunked
   * framing is the client side's again) and goes to the client through the encoder (bodyOut).
   */
  beginEncoding(compression: ResponseCompressor, f: FieldList): void {
    const s = f.status;
    const bodyless = this.resMode === M_NONE || s === 204 || s === 304;
    const enc = compression.begin(this, this.head as RequestHead, f, bodyless, this.grpc);
    if (enc === null) return;
    this.encoder = enc;
    if (this.passChunked && this.resMode === M_CHUNKED) this.resDecoder.reset(true);
    this.passChunked = false;
  }

  /** The upstream's response fields that reach the client: not hop-by-hop, not replaced by the route. */
  upstreamFields(rh: ResponseHead, ops: HeaderOps): FieldList {
    const f = this.fields;
    f.clear(rh.status);
    const names = rh.names;
    const conn = rh.connTokens;
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      if (HOP_BY_HOP.has(name) || name === "x-request-id" || hasName(conn, name) || opsDrop(ops, name))
        continue;
      f.push(rh.rawNames[i] as string, name, rh.values[i] as string);
    }
    return f;
  }

  /**
   * The fields the gateway adds to an upstream's response, on either protocol: x-request-id, the
   * route's header operations, CORS, then the policies' x-agw-attempts and affinity cookie.
   */
  gatewayFields(f: FieldList, ops: HeaderOps): void {
    if (!opsDrop(ops, "x-request-id")) f.add("x-request-id", this.requestId);
    for (const [n, v] of ops.set) f.push(n, n.toLowerCase(), v);
    for (const [n, v] of ops.add) f.push(n, n.toLowerCase(), v);
    const traffic = this.traffic;
    for (const [n, v] of traffic.responseFields) f.push(n, n.toLowerCase(), v);
    const attempts = traffic.attemptsValue;
    if (attempts !== "") f.add("x-agw-attempts", attempts);
    const cookie = traffic.affinitySetCookie();
    if (cookie !== "") f.add("set-cookie", cookie);
    if (this.shapingFields !== null) this.addShapingFields(f);
  }

  /** The shaping policies' fields (RateLimit, Retry-After), added once to whichever answer goes out. */
  addShapingFields(f: FieldList): void {
    const s = this.shapingFields as string[];
    this.shapingFields = null;
    for (let i = 0; i < s.length; i += 2) f.add(s[i] as string, s[i + 1] as string);
  }

  /** Pauses / resumes the upstream's response (while on-response plugins decide). */
  pauseUpstream(): void {
    this.upstream?.socket.pause();
  }

  resumeUpstream(): void {
    this.upstream?.socket.resume();
  }

  /** Response body bytes: to the client (through the encoder, if any), or to the plugins that asked for the body. */
  bodyOut(chunk: Buffer): boolean {
    const c = this.resCollect;
    if (c === null) {
      const enc = this.encoder;
      return enc === null ? this.toClient(chunk) : enc.write(chunk);
    }
    c.add(chunk);
    return true;
  }

  onResponseBody(chunk: Buffer, off: number): void {
    const len = chunk.length;
    let ok = true;
    switch (this.resMode) {
      case M_LENGTH: {
        const n = Math.min(len - off, this.resRemaining);
        if (n > 0) ok = this.bodyOut(off === 0 && n === len ? chunk : chunk.subarray(off, off + n));
        this.resRemaining -= n;
        if (this.resRemaining === 0) {
          if (off + n < len) this.upExtra = true;
          this.completeResponse();
          return;
        }
        break;
      }
      case M_CHUNKED: {
        const dec = this.resDecoder;
        const used = dec.decode(chunk, off);
        if (used < 0) {
          this.dropUpstream();
          this.abortResponse();
          return;
        }
        if (this.passChunked) {
          if (used > 0)
            ok = this.bodyOut(off === 0 && used === len ? chunk : chunk.subarray(off, off + used));
        } else {
          const pieces = dec.pieces;
          for (let i = 0; i < pieces.length; i++) ok = this.bodyOut(pieces[i] as Buffer);
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
      case M_CLOSE:
        if (len > off) ok = this.bodyOut(off === 0 ? chunk : chunk.subarray(off));
        break;
    }
    const up = this.upstream;
    if (!ok && up !== null) up.socket.pause(); // resumed by the client's 'drain'
  }

  /** The upstream response is complete: its connection goes back to the pool when it is clean. */
  completeResponse(): void {
    this.routeTimer.disarm();
    const up = this.upstream;
    if (up !== null) {
      this.upstream = null;
      if (this.upKeepAlive && this.reqBodyDone && !this.upExtra)
        this.proxy.pool.release(up, this.cluster as ClusterRuntime);
      else up.destroy();
    }
    const c = this.resCollect;
    if (c !== null && this.heldChunks === null) {
      c.ended = true;
      responseCollected(this, c);
      return;
    }
    const enc = this.encoder;
    if (enc !== null)
      enc.finish(); // it completes the response once its last bytes are out
    else this.responseComplete();
  }

  // ---- local answers: the one failure path

  /** Answers the current request locally (nothing of the upstream response was forwarded). */
  fail(status: number, code: AgwErrorCode, message: string): void {
    this.routeTimer.disarm();
    this.heldChunks = null; // answered while response plugins decide: nothing is held any more
    this.heldEnd = 0;
    this.resCollect = null;
    this.dropUpstream();
    this.sendError(status, code, message);
  }

  /** A gateway error: JSON for HTTP clients, a trailers-only response with grpc-status for gRPC ones. */
  sendError(
    status: number,
    code: AgwErrorCode,
    message: string,
    extra: ReadonlyArray<readonly [string, string]> = NO_FIELDS,
  ): void {
    this.errorCode = code;
    const f = this.fields;
    if (this.grpc) {
      f.clear(200);
      f.add("content-type", "application/grpc");
      f.add("grpc-status", String(grpcStatusFor(status)));
      f.add("grpc-message", encodeURIComponent(message));
      this.errorFields(f, code);
      this.writeLocal(200, f, null);
      return;
    }
    const body = Buffer.from(JSON.stringify({ error: code, message, request_id: this.requestId }));
    f.clear(status);
    f.add("content-type", "application/json");
    f.add("content-length", String(body.length));
    this.errorFields(f, code);
    for (const [n, v] of extra) f.add(n, v);
    this.writeLocal(status, f, this.head?.method === "HEAD" ? null : body);
  }

  private errorFields(f: FieldList, code: AgwErrorCode): void {
    f.add("x-agw-error", code);
    f.add("x-request-id", this.requestId);
    const attempts = this.traffic.attemptsValue;
    if (attempts !== "") f.add("x-agw-attempts", attempts);
    if (this.shapingFields !== null) this.addShapingFields(f);
  }

  /** A local response (redirect, direct response, CORS preflight) or a plugin's reply. */
  sendReply(r: LocalReply | PluginReply): void {
    const error = (r as PluginReply).error;
    if (error !== undefined) {
      this.sendError(r.status, error as AgwErrorCode, (r as PluginReply).message ?? error);
      return;
    }
    const f = this.fields;
    f.clear(r.status);
    for (const [n, v] of r.headers) {
      const name = n.toLowerCase();
      if (name !== "content-length" && !H2_CONNECTION_FIELDS.has(name)) f.push(n, name, v);
    }
    f.add("content-length", String(r.body.length));
    f.add("x-request-id", this.requestId);
    if (this.shapingFields !== null) this.addShapingFields(f);
    // 204 and 304 carry no body (HTTP/2 refuses one: a CORS preflight's 204 held its stream open).
    const bodyless = this.head?.method === "HEAD" || r.status === 204 || r.status === 304;
    this.writeLocal(r.status, f, bodyless ? null : r.body);
  }

  dropUpstream(): void {
    const up = this.upstream;
    if (up !== null) {
      this.upstream = null;
      up.destroy();
    }
    const enc = this.encoder;
    if (enc !== null) {
      this.encoder = null;
      enc.destroy();
    }
  }
}
