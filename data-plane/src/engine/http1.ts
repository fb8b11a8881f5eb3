/**
 * The HTTP/1.1 downstream on raw node:net sockets. One ClientConn per connection is the Exchange of
 * the request in flight (requests on a connection are handled one at a time, pipelined ones are
 * buffered) and is reused for the next one. Bodies stream in both directions with backpressure and
 * are never buffered whole, except up to its limit for a plugin that asks for one. What is HTTP/1.1
 * lives here: parsing heads, keep-alive, pipelining, the head timeouts, Upgrade/CONNECT tunnels and
 * the switch to h2c; the request body is http1-body.ts's, the bytes of its answers http1-response.ts's.
 */
import { randomUUID } from "node:crypto";
import type net from "node:net";
import type { ClusterRuntime, CompiledRoute, Endpoint, ListenerLimits } from "../runtime/types.ts";
import type { DownstreamTlsInfo } from "../tls/acceptor.ts";
import { BODY_CHUNKED as B_CHUNKED, BODY_LENGTH as B_LENGTH, BODY_NONE as B_NONE } from "./body-framing.ts";
import { AGW_ERRORS, codeForStatus } from "./errors.ts";
import { M_NONE } from "./exchange.ts";
import { asksForH2c, H2_PREFACE, SWITCHING_TO_H2C } from "./h2c-upgrade.ts";
import { hasName } from "./headers.ts";
import { Http1Body } from "./http1-body.ts";
import { type HeadError, HeadScanner, parseRequestHead, RequestHead } from "./http1-parser.ts";
import type { Http1Context } from "./http1-response.ts";
import { RearmableTimer } from "./rearmable-timer.ts";
import type { UpstreamConn } from "./upstream-conn.ts";

// ClientConn.phase
const P_HEAD = 0;
const P_ACTIVE = 1;
const P_LINGER = 2;
const P_CLOSED = 3;
/** After a 101 or a CONNECT's 200: bytes are spliced between the client and the upstream until either side closes. */
const P_TUNNEL = 4;

// ClientConn.timer kinds (0 is RearmableTimer's "disarmed").
const T_HEADER = 1;
const T_KEEPALIVE = 2;
const T_LINGER = 3;
/** A request body is expected: fires every bodyTimeoutMs and gives up when no byte came in between. */
const T_BODY = 4;

function onConnTimer(c: ClientConn, kind: number): void {
  c.onTimer(kind);
}

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

export class ClientConn extends Http1Body {
  phase = P_HEAD;
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

  constructor(proxy: Http1Context, socket: net.Socket, tls: DownstreamTlsInfo | null) {
    super(proxy, socket, tls);
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

  get protocol(): string {
    const head = this.head;
    return head === null ? "" : head.minor === 1 ? "HTTP/1.1" : "HTTP/1.0";
  }

  get active(): boolean {
    return this.phase === P_ACTIVE;
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
        else if (this.collected !== null) {
          this.bodyActive = true;
          this.collect(this.collected, chunk);
        } else {
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
    this.dropUpstream();
    this.buf = null;
    this.proxy.forget(this);
  }

  onTimer(kind: number): void {
    if (kind === T_HEADER && this.phase === P_HEAD && this.buf !== null) {
      this.requestId = randomUUID();
      this.keepAlive = false;
      this.sendError(408, AGW_ERRORS.AGW_ERR_REQUEST_TIMEOUT, "request head not received in time");
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
    this.detach();
    this.proxy.http2().accept(this.socket, this.tls, buf);
    return true;
  }

  /** The socket leaves the HTTP/1.1 engine for the HTTP/2 side. */
  private detach(): void {
    const socket = this.socket;
    this.phase = P_CLOSED;
    this.buf = null;
    this.timer.stop();
    for (const event of ["data", "drain", "end", "close"]) socket.removeAllListeners(event);
    socket.allowHalfOpen = false;
    this.proxy.forget(this);
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
    this.detach();
    this.socket.write(SWITCHING_TO_H2C, "latin1");
    this.proxy.http2().acceptUpgrade(this.socket, head);
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
    this.sendError(e.status, codeForStatus(e.status), e.message);
  }

  startRequest(head: RequestHead): void {
    const p = this.proxy;
    this.phase = P_ACTIVE;
    this.fresh = false;
    this.head = head;
    this.startedAt = performance.now();
    this.requestId = head.requestId !== "" ? head.requestId : randomUUID();
    this.keepAlive = head.keepAlive && !p.draining;
    this.passChunked = head.minor === 1;
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
    const limits = this.limits;
    if (limits.maxRequestsPerConnection > 0 && ++this.requests >= limits.maxRequestsPerConnection)
      this.keepAlive = false;
    // The only read of the config for this request: everything below uses these references.
    const config = p.getConfig();
    this.routeRequest(head, config, config.listeners.get(p.listenerName));
  }

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

  pauseRequest(): void {
    this.socket.pause();
  }

  resumeRequest(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  closeAfterAnswer(): void {
    this.keepAlive = false;
  }

  upstreamRequest(route: CompiledRoute, cluster: ClusterRuntime, ep: Endpoint): void {
    this.upHead = this.http1Head(route, ep, this.upgrade);
    const up = this.proxy.pool.acquire(ep, cluster, this);
    this.upstream = up;
    if (this.bodyMode === B_NONE) {
      up.socket.write(this.upHead, "latin1");
      return;
    }
    if (this.collected !== null) {
      this.sendCollected(up, this.collected);
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
  openTunnel(ep: Endpoint, cluster: ClusterRuntime): void {
    this.replayable = false; // never resent: a retry would write an HTTP head into the tunnel
    const up = this.proxy.pool.tunnel(ep, cluster, this);
    this.upstream = up;
    up.socket.once(cluster.tls !== undefined ? "secureConnect" : "connect", () =>
      this.connectEstablished(up),
    );
  }

  connectEstablished(up: UpstreamConn): void {
    if (this.upstream !== up || this.phase !== P_ACTIVE) return;
    this.status = 200;
    this.socket.write(
      `HTTP/1.1 200 Connection Established\r\nx-request-id: ${this.requestId}\r\n\r\n`,
      "latin1",
    );
    this.splice(up);
  }

  /** The tunnel is open (after its 101 or 200): the access log records its opening, then bytes flow. */
  splice(up: UpstreamConn): void {
    this.timer.disarm();
    this.phase = P_TUNNEL;
    this.tunnel = true;
    this.resHeadSent = true;
    this.reportExchange(false);
    // Bytes the client sent before the answer (it may not wait) are the tunnel's.
    const early = this.buf;
    this.buf = null;
    if (early !== null) up.socket.write(early);
    if (this.eof) up.socket.end();
    if (this.socket.isPaused()) this.socket.resume();
  }

  closeTunnel(eof: boolean): void {
    // An orderly FIN from the upstream is passed on after what it sent; a reset cuts the client too.
    if (eof) {
      this.socket.end();
      this.timer.arm(T_LINGER, this.proxy.lingerTimeoutMs);
    } else {
      this.socket.destroy();
    }
  }

  // ---- request body

  // ---- retries (the exchange decides; this resends the bytes)

  /** The request (head and what it had of the body) again, on a fresh connection to this.endpoint. */
  resend(): void {
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

  sendAttempt(_ep: Endpoint, _cluster: ClusterRuntime): void {
    this.resend();
  }

  override onUpstreamDrain(_conn: UpstreamConn): void {
    if (this.phase === P_TUNNEL || (this.phase === P_ACTIVE && !this.reqBodyDone)) this.resumeRequest();
  }

  finishExchange(close: boolean): void {
    this.traffic.end();
    this.reportExchange(false);
    this.head = null;
    this.clientIp = this.peerIp;
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
    this.collected = null;
    this.collectDone = null;
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
    this.rechunk = false;
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
}

function noop(): void {}
