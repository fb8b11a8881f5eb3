/**
 * The HTTP/2 downstream's stream: one H2Exchange per stream, the Exchange (exchange.ts) of its request.
 * node:http2 does the framing; what is HTTP/2 lives here: the field list turned into the engine's
 * request head, DATA frames as the request body, the response as HEADERS/DATA/trailers, gRPC's
 * trailers-only errors and deadline, CONNECT tunnels over a stream, and HTTP/2 upstreams reached
 * directly (an H2Call: fields, DATA and trailers pass as they are, which gRPC needs) for clusters
 * with protocol http2. HTTP/1.1 upstreams get the head the HTTP/1.1 side would send.
 */
import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import type net from "node:net";
import type {
  BufferedBody,
  ClusterRuntime,
  CompiledRoute,
  Endpoint,
  ListenerLimits,
  RoutePlugins,
} from "../runtime/types.ts";
import type { DownstreamTlsInfo } from "../tls/acceptor.ts";
import { BodyBuffer } from "./body-buffer.ts";
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE, frameChunk, LAST_CHUNK } from "./body-framing.ts";
import { AGW_ERRORS, type AgwErrorCode } from "./errors.ts";
import { Exchange, type FieldList, M_CLOSE, M_LENGTH, M_NONE, type ProxyContext } from "./exchange.ts";
import { H2Call, type H2CallSink, type H2FailureKind, MAX_REPLAY_BYTES } from "./h2-upstream.ts";
import { h2Fields, h2ResponseFieldAllowed, h2UpstreamHeaders, opsDrop } from "./headers.ts";
import { H2_CONNECTION_FIELDS as H2_FORBIDDEN } from "./hop-by-hop.ts";
import { connectTarget, h2Target, RequestHead } from "./http1-parser.ts";
import { collectResponse, responsePhase } from "./response-filter.ts";
import type { UpstreamConn, UpstreamSocket } from "./upstream-conn.ts";
import { h2Failure } from "./upstream-failure.ts";

export { grpcTimeoutMs } from "./grpc.ts";

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_CONNECT_ERROR } = http2.constants;
const END_STREAM = 0x1;

function closeLingeringTunnel(stream: http2.ServerHttp2Stream): void {
  if (!stream.closed) stream.close(NGHTTP2_NO_ERROR);
}

export class H2Exchange extends Exchange implements H2CallSink {
  readonly stream: http2.ServerHttp2Stream;
  readonly socket: net.Socket;
  readonly protocol = "HTTP/2";
  /** The HTTP/2 upstream request, for clusters with protocol http2, and its fields (for another attempt). */
  call: H2Call | null = null;
  h2Headers: http2.OutgoingHttpHeaders | null = null;
  /** The client sent "te: trailers" (gRPC does): passed on to HTTP/2 upstreams. */
  teTrailers = false;
  upTrailers: http2.IncomingHttpHeaders | null = null;
  /** The response comes from an HTTP/2 upstream through the response filter (its trailers pass). */
  h2Filtered = false;
  /** Largest request body (maxRequestBodyBytes), 0: unlimited; and the DATA bytes counted under it. */
  bodyLimit = 0;
  bodySeen = 0;
  done = false;
  reported = false;
  /** The session closes (GOAWAY) after this answer. */
  goaway = false;
  /**
   * DATA payload bytes of this stream each way (ExchangeView). Not the session socket's counters: the
   * socket is shared by every stream, and node:http2 unbinds it (reads throw) once the session ends.
   */
  bytesRead = 0;
  bytesWritten = 0;
  /**
   * The request body sent to an HTTP/1.1 upstream so far, kept (up to MAX_REPLAY_BYTES, as an H2Call
   * does) so another attempt can resend it; null once over that.
   */
  sentBody: Buffer[] | null = [];
  sentBytes = 0;
  /** What another attempt resends (set by canReplay()). */
  replayBody: readonly Buffer[] | null = null;
  /** The body read for the request's plugins (collectBody), until it is sent upstream. */
  collected: BodyBuffer | null = null;
  collectDone: ((body: BufferedBody) => void) | null = null;

  constructor(
    proxy: ProxyContext,
    stream: http2.ServerHttp2Stream,
    socket: net.Socket,
    tls: DownstreamTlsInfo | null,
    peer: string,
  ) {
    super(proxy, peer, tls);
    this.startedAt = performance.now();
    this.stream = stream;
    this.socket = socket;
    stream.on("error", noop);
    stream.on("close", () => this.onStreamClose());
    stream.on("drain", () => {
      this.call?.resume();
      const up = this.upstream;
      if (up?.socket.isPaused()) up.socket.resume();
    });
  }

  get active(): boolean {
    return !this.done;
  }

  /** Tells the observer once, when the stream's exchange is over. */
  report(aborted: boolean): void {
    this.traffic.end();
    if (this.reported) return;
    this.reported = true;
    this.proxy.observer?.exchangeEnd(this, aborted);
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
    if (cookie !== "") head.add("cookie", cookie);
    this.requestId = head.requestId !== "" ? head.requestId : randomUUID();
    if (head.method === "CONNECT") {
      this.startConnect(head, raw, flags);
      return;
    }
    const e = h2Target(head, scheme, authority !== "" ? authority : hostField, path);
    if (e !== "") {
      this.reject(e);
      return;
    }
    this.head = head;
    if ((flags & END_STREAM) !== 0 || head.contentLength === 0) this.bodyMode = BODY_NONE;
    else if (head.contentLength > 0) this.bodyMode = BODY_LENGTH;
    else this.bodyMode = BODY_CHUNKED;
    this.reqBodyDone = this.bodyMode === BODY_NONE;
    this.begin(head);
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
    this.head = head;
    this.bodyMode = BODY_NONE;
    this.reqBodyDone = (flags & END_STREAM) !== 0;
    this.begin(head);
  }

  /** The only read of the config for this stream. */
  begin(head: RequestHead): void {
    const config = this.proxy.getConfig();
    this.routeRequest(head, config, config.listeners.get(this.proxy.listenerName));
  }

  limitBody(route: CompiledRoute, limits: ListenerLimits): boolean {
    const max = route.maxRequestBodyBytes ?? limits.maxRequestBodyBytes;
    if (max > 0 && (this.head as RequestHead).contentLength > max) {
      this.fail(413, AGW_ERRORS.AGW_ERR_REQUEST_BODY_TOO_LARGE, `request body larger than ${max} bytes`);
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
    if (this.resHeadSent) this.abortResponse();
    else this.fail(status, code, message);
  }

  reject(message: string): void {
    this.sendError(400, AGW_ERRORS.AGW_ERR_BAD_REQUEST, message);
  }

  /** The DATA frames wait in the stream until the upstream request starts: nothing to pause. */
  pauseRequest(): void {}

  resumeRequest(): void {
    if (this.stream.isPaused()) this.stream.resume();
  }

  closeAfterAnswer(): void {
    this.goaway = true;
  }

  /** A body streams in DATA frames and is never buffered for a mirror: only bodyless requests are copied. */
  mirrorBody(): null | undefined {
    return this.bodyMode === BODY_NONE ? null : undefined;
  }

  upstreamRequest(route: CompiledRoute, cluster: ClusterRuntime, ep: Endpoint): void {
    // The body read for the plugins goes first (all of it, or what was read past their limit).
    const c = this.collected;
    this.collected = null;
    const body = c === null ? [] : c.pieces;
    if (c !== null) {
      this.sentBytes = c.bytes;
      this.sentBody = c.bytes > MAX_REPLAY_BYTES ? null : c.pieces.slice();
    }
    if (cluster.http2 === true) {
      const scheme = cluster.tls !== undefined ? "https" : "http";
      const head = this.head as RequestHead;
      const headers = h2UpstreamHeaders(head, route, ep, this, this.traceparent(), scheme, this.teTrailers);
      this.h2Headers = headers;
      const ended = this.bodyMode === BODY_NONE || (c !== null && this.reqBodyDone);
      this.call = new H2Call(this.proxy.pool.h2, ep, cluster, headers, ended, this, body);
    } else {
      this.upHead = this.http1Head(route, ep, "");
      this.sendHttp1(this.proxy.pool.acquire(ep, cluster, this), body);
    }
    if (this.bodyMode !== BODY_NONE && c === null) this.listenForBody();
    else if (c !== null && !this.reqBodyDone) this.resumeRequest();
  }

  listenForBody(): void {
    const stream = this.stream;
    stream.on("data", (chunk: Buffer) => this.onRequestData(chunk));
    stream.on("end", () => this.onRequestEnd());
  }

  /** DATA frames read for the plugins, up to their limit; a whole body is then sized (Content-Length). */
  collectBody(limit: number, done: (body: BufferedBody) => void): void {
    this.collected = new BodyBuffer(limit);
    this.collectDone = done;
    this.listenForBody();
  }

  /** The body read for the plugins ended, or (`ended` false) went past their limit. */
  bodyCollected(c: BodyBuffer, ended: boolean): void {
    const done = this.collectDone as (body: BufferedBody) => void;
    this.collectDone = null;
    if (!ended)
      this.stream.pause(); // the rest waits for the plugins' decision
    else {
      c.ended = true;
      const head = this.head as RequestHead;
      if (this.bodyMode === BODY_CHUNKED) {
        head.sized(c.bytes); // sent upstream with a Content-Length
        this.bodyMode = BODY_LENGTH;
      }
    }
    done(c.forPlugins());
  }

  /**
   * Terminated CONNECT, as the HTTP/1.1 side does it: a new TCP (or TLS, per the cluster) connection
   * to the route's endpoint whatever the authority names; 200 once it is up, then the stream's DATA ↔
   * the socket's bytes, END_STREAM ↔ FIN. A failed connect answers like any request.
   */
  openTunnel(ep: Endpoint, cluster: ClusterRuntime): void {
    this.tunnel = true;
    const up = this.proxy.pool.tunnel(ep, cluster, this);
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
    this.proxy.observer?.exchangeEnd(this, false);
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
      if (!this.reqBodyDone) setTimeout(closeLingeringTunnel, this.proxy.lingerTimeoutMs, stream);
      return;
    }
    this.done = true;
    if (!stream.destroyed) stream.close(NGHTTP2_CONNECT_ERROR); // RFC 9113 §8.5
    this.report(true);
  }

  // ---- retries (the exchange decides; this resends)

  override hasUpstream(): boolean {
    return this.upstream !== null || this.call !== null;
  }

  canResend(): boolean {
    return this.sentBody !== null;
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

  resend(): void {
    const ep = this.endpoint as Endpoint;
    this.sendHttp1(this.proxy.pool.connect(ep, this.cluster as ClusterRuntime, this), this.sentBody ?? []);
  }

  sendAttempt(ep: Endpoint, cluster: ClusterRuntime): void {
    const body = this.replayBody ?? [];
    if (cluster.http2 === true) {
      const headers = this.h2Headers as http2.OutgoingHttpHeaders;
      this.call = new H2Call(this.proxy.pool.h2, ep, cluster, headers, true, this, body);
    } else this.sendHttp1(this.proxy.pool.connect(ep, cluster, this), body);
  }

  override dropUpstream(): void {
    const call = this.call;
    if (call !== null) {
      this.call = null;
      call.cancel();
    }
    super.dropUpstream();
  }

  /**
   * gRPC: a deadline that passes once the response has started ends the stream as a gRPC server
   * would, with DEADLINE_EXCEEDED in its trailers, instead of a reset the client cannot read.
   */
  override onRouteTimeout(): void {
    if (this.grpc && this.resHeadSent && this.call !== null && !this.done && !this.stream.destroyed) {
      this.upTrailers = { "grpc-status": "4", "grpc-message": "deadline exceeded" };
      this.errorCode = AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT;
      this.dropUpstream();
      this.completeH2();
      return;
    }
    super.onRouteTimeout();
  }

  // ---- request body (HTTP/2 DATA frames → the upstream's body)

  onRequestData(chunk: Buffer): void {
    this.bytesRead += chunk.length;
    const call = this.call;
    const up = this.upstream;
    const c = this.collected;
    if ((up === null && call === null && c === null) || chunk.length === 0) return;
    // Checked before writing: not one byte past the limit reaches the upstream.
    if (this.bodyLimit > 0) {
      this.bodySeen += chunk.length;
      if (this.bodySeen > this.bodyLimit) {
        const message = `request body larger than ${this.bodyLimit} bytes`;
        this.bodyError(413, AGW_ERRORS.AGW_ERR_REQUEST_BODY_TOO_LARGE, message);
        return;
      }
    }
    if (c !== null) {
      c.add(chunk);
      if (this.collectDone !== null && c.over) this.bodyCollected(c, false);
      return;
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
    return s.write(this.bodyMode === BODY_CHUNKED ? frameChunk(chunk) : chunk);
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
    if (this.reqBodyDone && this.bodyMode === BODY_CHUNKED) s.write(LAST_CHUNK);
    s.uncork();
    if (!this.reqBodyDone && this.stream.isPaused()) this.stream.resume();
  }

  onRequestEnd(): void {
    this.reqBodyDone = true;
    this.stream.setTimeout(0);
    const c = this.collected;
    if (c !== null) {
      if (this.collectDone !== null) this.bodyCollected(c, true);
      return;
    }
    if (this.call !== null) {
      this.call.end();
      return;
    }
    const up = this.upstream;
    if (up !== null && this.bodyMode === BODY_CHUNKED) up.socket.write(LAST_CHUNK);
    if (this.resMode === M_NONE && this.resHeadSent && !this.done) this.completeResponse();
  }

  // ---- the response to the client

  respond(f: FieldList, _reason: string, buf: Buffer, headLen: number): void {
    const stream = this.stream;
    if (stream.destroyed) return;
    const endStream =
      this.encoder === null &&
      (this.resMode === M_NONE || (this.resMode === M_LENGTH && this.resRemaining === 0));
    const out = h2Fields({ ":status": f.status }, f);
    if (this.h2Filtered && !(endStream && this.upTrailers === null)) this.respondWithTrailers(out);
    else stream.respond(out, { endStream });
    if (endStream) {
      if (headLen < buf.length) this.upExtra = true;
      this.completeResponse();
    } else if (headLen < buf.length) {
      this.onResponseBody(buf, headLen);
    }
  }

  /** Response DATA to the client, counted for the access log. */
  toClient(chunk: Buffer): boolean {
    if (this.stream.destroyed) return true;
    this.bytesWritten += chunk.length;
    return this.stream.write(chunk);
  }

  responseComplete(): void {
    if (this.h2Filtered) {
      this.completeH2();
      return;
    }
    this.routeTimer.stop();
    this.done = true;
    if (!this.stream.destroyed) {
      this.stream.end();
      // The client may still be sending a body the upstream did not wait for.
      if (!this.reqBodyDone) this.stream.close(NGHTTP2_CANCEL);
    }
    this.report(false);
  }

  abortResponse(): void {
    this.done = true;
    this.routeTimer.stop();
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
    this.report(true);
  }

  writeLocal(status: number, f: FieldList, body: Uint8Array | null): void {
    this.routeTimer.stop();
    this.done = true;
    const stream = this.stream;
    if (stream.destroyed || stream.headersSent) {
      this.abortResponse();
      return;
    }
    this.status = status;
    stream.respond(h2Fields({ ":status": status }, f), { endStream: body === null });
    if (body !== null) {
      this.bytesWritten += body.length;
      stream.end(body);
    }
    if (!this.reqBodyDone) stream.close(NGHTTP2_CANCEL);
    if (this.goaway) stream.session?.close(); // GOAWAY: streams in flight finish
    this.report(false);
  }

  onStreamClose(): void {
    this.routeTimer.stop();
    this.done = true;
    this.dropUpstream(); // the client went away (RST_STREAM, GOAWAY, socket closed) before the end
    this.report(true); // a no-op when the exchange was already reported
  }

  // ---- HTTP/2 upstream events (H2CallSink)

  onH2Response(headers: http2.IncomingHttpHeaders, endStream: boolean): void {
    const status = Number(headers[":status"]);
    if (this.traffic.responseStarted(status, this.canReplay())) {
      this.policyRetry();
      return;
    }
    this.status = status;
    const route = this.route as CompiledRoute;
    if (route.plugins?.responsePhase === true) {
      this.filterH2Response(route.plugins, route, headers, endStream);
      return;
    }
    const ops = route.responseHeaders;
    const out: http2.OutgoingHttpHeaders = { ":status": status };
    for (const name in headers) {
      if (!h2ResponseFieldAllowed(name) || name === "x-request-id" || opsDrop(ops, name)) continue;
      const v = headers[name];
      if (v !== undefined) out[name] = v;
    }
    const f = this.fields;
    f.clear(status);
    this.gatewayFields(f, ops);
    h2Fields(out, f);
    this.resHeadSent = true;
    const stream = this.stream;
    if (stream.destroyed) return;
    if (endStream) {
      // One HEADERS frame with END_STREAM: gRPC's trailers-only response stays one.
      stream.respond(out, { endStream: true });
      this.completeH2();
      return;
    }
    this.respondWithTrailers(out);
  }

  /** The response head; the upstream's trailers (upTrailers) follow its body. */
  respondWithTrailers(out: http2.OutgoingHttpHeaders): void {
    const stream = this.stream;
    stream.respond(out, { waitForTrailers: true });
    stream.once("wantTrailers", () => {
      stream.sendTrailers(this.upTrailers ?? {});
      if (!this.reqBodyDone) stream.close(NGHTTP2_NO_ERROR);
    });
  }

  /**
   * The response filter for an HTTP/2 upstream's response, as for an HTTP/1.1 one: its fields as the
   * field list the plugins edit, its DATA as a body that ends at END_STREAM (then its trailers).
   */
  filterH2Response(
    plugins: RoutePlugins,
    route: CompiledRoute,
    headers: http2.IncomingHttpHeaders,
    endStream: boolean,
  ): void {
    const ops = route.responseHeaders;
    const f = this.fields;
    f.clear(this.status);
    for (const name in headers) {
      const v = headers[name];
      if (!h2ResponseFieldAllowed(name) || name === "x-request-id" || opsDrop(ops, name) || v === undefined)
        continue;
      if (Array.isArray(v)) for (const one of v) f.add(name, one);
      else f.add(name, String(v));
    }
    this.h2Filtered = true;
    this.resMode = endStream ? M_NONE : M_CLOSE;
    responsePhase(this, plugins, "", Buffer.alloc(0), 0);
  }

  override pauseUpstream(): void {
    super.pauseUpstream();
    this.call?.pause();
  }

  override resumeUpstream(): void {
    super.resumeUpstream();
    this.call?.resume();
  }

  onH2Data(chunk: Buffer): void {
    if (this.heldChunks !== null) this.heldChunks.push(chunk);
    else if (this.resCollect !== null) collectResponse(this, chunk, 0);
    else if (!this.toClient(chunk)) this.call?.pause(); // resumed by 'drain'
  }

  onH2End(trailers: http2.IncomingHttpHeaders | null): void {
    if (trailers !== null) {
      const t: http2.IncomingHttpHeaders = {};
      for (const name in trailers) if (h2ResponseFieldAllowed(name)) t[name] = trailers[name];
      this.upTrailers = t;
    }
    if (this.heldChunks !== null || this.resCollect !== null) {
      // The response plugins are deciding, or waiting for the body: its end is theirs to handle.
      this.call = null;
      if (this.heldChunks !== null) this.heldEnd = 1;
      else this.completeResponse();
      return;
    }
    this.completeH2();
  }

  completeH2(): void {
    this.routeTimer.stop();
    this.call = null;
    this.done = true;
    if (!this.stream.destroyed) {
      if (!this.stream.writableEnded) this.stream.end();
      else if (!this.reqBodyDone) this.stream.close(NGHTTP2_NO_ERROR);
    }
    this.report(false);
  }

  onH2Drain(): void {
    if (this.stream.isPaused()) this.stream.resume();
  }

  onH2Failure(kind: H2FailureKind, message: string, afterHead: boolean): void {
    if (afterHead) {
      this.call = null;
      if (this.heldChunks !== null) this.heldEnd = 2;
      else if (this.resCollect !== null) this.fail(502, AGW_ERRORS.AGW_ERR_UPSTREAM_RESET, message);
      else this.abortResponse();
      return;
    }
    // The call stays set until the failure path is through: what it still holds decides a retry.
    this.upstreamFailed(h2Failure(kind, message));
  }
}

function noop(): void {}
