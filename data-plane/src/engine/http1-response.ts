/**
 * The bytes of HTTP/1.1 answers: the layer of the HTTP/1.1 connection (http1.ts) that writes response
 * heads (from the exchange's field list), bodies in the client's framing, local answers and the 101 of
 * an Upgrade. The connection's life (parsing, keep-alive, pipelining, timeouts) is http1.ts's.
 */
import type net from "node:net";
import { peerAddress } from "../policies/client-address.ts";
import type { CompiledRoute } from "../runtime/types.ts";
import type { DownstreamTlsInfo } from "../tls/acceptor.ts";
import { CRLF, LAST_CHUNK } from "./body-framing.ts";
import { reasonPhrase } from "./errors.ts";
import { Exchange, type FieldList, M_CLOSE, M_LENGTH, M_NONE, type ProxyContext } from "./exchange.ts";
import { opsDrop } from "./headers.ts";
import type { RequestHead, ResponseHead } from "./http1-parser.ts";
import type { UpstreamConn } from "./upstream-conn.ts";

/** What the HTTP/1.1 side needs beyond the exchange's context: the HTTP/2 side for h2c, and its registry. */
export interface Http1Context extends ProxyContext {
  /** The HTTP/2 side of the listener, for connections that turn out to speak it. */
  http2(): {
    accept(socket: net.Socket, tls: DownstreamTlsInfo | null, early: Buffer | null): void;
    acceptUpgrade(socket: net.Socket, head: RequestHead): void;
  };
  /** The connection is gone (closed, or handed to the HTTP/2 side). */
  forget(c: object): void;
}

export abstract class Http1Exchange extends Exchange {
  declare readonly proxy: Http1Context;
  readonly socket: net.Socket;
  /** The connection stays open after this request. */
  keepAlive = true;
  /** The protocol this request asked to switch to (sent upstream), "" for none. */
  upgrade = "";
  /** The connection closes after the response being sent. */
  closeAfter = false;
  /** The response body is chunked here (toClient): close-delimited, or decoded for plugins. */
  rechunk = false;

  constructor(proxy: Http1Context, socket: net.Socket, tls: DownstreamTlsInfo | null) {
    super(proxy, peerAddress(socket), tls);
    this.socket = socket;
  }

  /** The request is over: the next one, or the connection's close. */
  abstract finishExchange(close: boolean): void;
  /** A tunnel is open (its 101 or 200 sent): bytes flow both ways from now on. */
  abstract splice(up: UpstreamConn): void;

  // ---- response

  override informational(head: Buffer): void {
    if ((this.head as RequestHead).minor === 1) this.socket.write(head);
  }

  override switchProtocols(rh: ResponseHead, buf: Buffer, headLen: number): void {
    // Switching protocols is only valid in answer to an Upgrade we sent, and must name the protocol.
    if (this.upgrade === "" || rh.header("upgrade") === undefined) this.protocolError();
    else this.beginTunnel(rh, buf, headLen);
  }

  /**
   * The upstream accepted the Upgrade: its 101 goes to the client, then both sockets are spliced. The
   * tunnel holds no config reference, so config swaps leave it alone; the route timeout stops here.
   */
  beginTunnel(rh: ResponseHead, buf: Buffer, headLen: number): void {
    this.routeTimer.disarm();
    const up = this.upstream as UpstreamConn;
    const ops = (this.route as CompiledRoute).responseHeaders;
    const f = this.upstreamFields(rh, ops);
    f.add("upgrade", rh.header("upgrade") as string);
    f.add("connection", "upgrade");
    if (!opsDrop(ops, "x-request-id")) f.add("x-request-id", this.requestId);
    for (const [n, v] of ops.set) f.push(n, n, v);
    for (const [n, v] of ops.add) f.push(n, n, v);
    this.status = 101;
    const out = this.socket;
    out.cork();
    out.write(`HTTP/1.1 101 ${rh.reason}\r\n${f.lines()}\r\n`, "latin1");
    if (headLen < buf.length) out.write(buf.subarray(headLen));
    out.uncork();
    this.splice(up); // metrics and the access log record the upgrade, as for CONNECT
  }

  respond(f: FieldList, reason: string, buf: Buffer, headLen: number): void {
    const client11 = (this.head as RequestHead).minor === 1;
    // A compressed body's length is known only at its end: framed as a close-delimited one.
    const mode = this.encoder === null ? this.resMode : M_CLOSE;
    // An HTTP/1.0 client learns where an unsized body ends by the close.
    const close =
      !this.keepAlive || this.proxy.draining || (!client11 && mode !== M_NONE && mode !== M_LENGTH);
    this.closeAfter = close;
    let h = `HTTP/1.1 ${f.status} ${reason}\r\n${f.lines()}`;
    // Chunked bytes pass as they came; a close-delimited (or decoded) body is re-chunked (toClient).
    const chunked = client11 && mode !== M_NONE && mode !== M_LENGTH;
    this.rechunk = chunked && (mode === M_CLOSE || !this.passChunked);
    if (chunked) h += "transfer-encoding: chunked\r\n";
    if (close) h += "connection: close\r\n\r\n";
    else h += client11 ? "\r\n" : "connection: keep-alive\r\n\r\n";

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

  toClient(chunk: Buffer): boolean {
    const out = this.socket;
    if (!this.rechunk) return out.write(chunk);
    out.cork();
    out.write(`${chunk.length.toString(16)}\r\n`, "latin1");
    out.write(chunk);
    const ok = out.write(CRLF);
    out.uncork();
    return ok;
  }

  responseComplete(): void {
    if (this.rechunk) this.socket.write(LAST_CHUNK);
    this.finishExchange(this.closeAfter || !this.reqBodyDone);
  }

  // ---- local responses and teardown

  writeLocal(status: number, f: FieldList, body: Uint8Array | null): void {
    this.status = status;
    const close = !this.keepAlive || !this.reqBodyDone || this.proxy.draining;
    let h = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n${f.lines()}`;
    if (close) h += "connection: close\r\n";
    else if (this.head?.minor === 0) h += "connection: keep-alive\r\n";
    const out = this.socket;
    if (body === null || body.length === 0) out.write(`${h}\r\n`, "latin1");
    else {
      out.cork();
      out.write(`${h}\r\n`, "latin1");
      out.write(body);
      out.uncork();
    }
    this.finishExchange(close);
  }

  /** Hard close: the client sees a reset/truncated response. */
  abortResponse(): void {
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
}
