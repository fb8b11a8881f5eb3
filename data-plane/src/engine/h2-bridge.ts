/**
 * HTTP/1.1 downstream → HTTP/2 upstream. The HTTP/1.1 engine (exchange.ts, http1.ts) writes the upstream request
 * as HTTP/1.1 bytes and reads the response as HTTP/1.1 bytes; this bridge stands where its socket
 * would be and speaks HTTP/2 on the other side, through an H2Call. The HTTP/1.1 hot path thus stays
 * exactly as it is (one branch in UpstreamPool.acquire), at the price of re-parsing the head the engine
 * just built: the bridge is for clusters that need HTTP/2, not for speed.
 *
 * Response framing: a content-length response keeps it; any other body is chunked, and the upstream's
 * trailers go into the last chunk (HTTP/1.1 trailers), so nothing the upstream sent is lost.
 *
 * Why the exchange does not talk to HTTP/2 upstreams directly for HTTP/1.1 clients yet (issue 15
 * asks; looked at 2026-12-03, not done, not measured): the HTTP/2 upstream sink (onH2Response/Data/
 * End/Failure, trailers, the gRPC deadline's trailers) lives in h2.ts and answers through
 * node:http2's stream (respond, waitForTrailers); the HTTP/1.1 request body path (http1-body.ts
 * onBody, writeRequest, resend) writes HTTP/1.1 framing to `up.socket`. Dropping the bridge means
 * moving that sink into the exchange behind a Downstream trailers hook (HTTP/1.1: a trailer section
 * in the last chunk), a second body sink in http1-body.ts (de-framed pieces to H2Call.write/end),
 * and resend/replay through H2Call (which already resends refused streams itself) instead of
 * pool.connect; exchange.ts (~700 lines) has no room for the sink, so it needs a layer of its own.
 * The response filter is already shared (response-filter.ts), so on-response and bodies work here too.
 */
import type http2 from "node:http2";
import type { ClusterRuntime, Endpoint } from "../runtime/types.ts";
import {
  BODY_CHUNKED as B_CHUNKED,
  BODY_LENGTH as B_LENGTH,
  BODY_NONE as B_NONE,
  frameChunk,
  LAST_CHUNK,
} from "./body-framing.ts";
import { reasonPhrase } from "./errors.ts";
import { H2Call, type H2CallSink, type H2FailureKind, type H2SessionPool } from "./h2-upstream.ts";
import { h2ResponseFieldAllowed, h2UpstreamHeadersFromHttp1 } from "./headers.ts";
import { ChunkedDecoder, HeadScanner, parseRequestHead, RequestHead } from "./http1-parser.ts";
import type { UpstreamConn, UpstreamHandler, UpstreamSocket } from "./upstream-conn.ts";

/** The engine checks its own limits on the head it built; these only bound a broken one. */
const MAX_HEAD_BYTES = 1 << 20;
const MAX_FIELDS = 10_000;

// Request body framing, as the engine wrote it: BODY_* once its head is read, then done.
const B_HEAD = 3;
const B_DONE = 4;

export class H2BridgeConn implements UpstreamConn, UpstreamSocket, H2CallSink {
  readonly socket: UpstreamSocket = this;
  connected = true;
  connectTimedOut = false;
  readonly eof = false;
  tlsFailure: string | null = null;
  readonly reused = false;
  private handler: UpstreamHandler | null;
  private readonly pool: H2SessionPool;
  private readonly ep: Endpoint;
  private readonly cluster: ClusterRuntime;
  private call: H2Call | null = null;
  private headBuf: Buffer | null = null;
  private readonly scanner = new HeadScanner();
  private body = B_HEAD;
  private remaining = 0;
  private readonly decoder = new ChunkedDecoder();
  private isHead = false;
  private chunkedResponse = false;
  private paused = false;
  private destroyed = false;

  constructor(pool: H2SessionPool, ep: Endpoint, cluster: ClusterRuntime, handler: UpstreamHandler) {
    this.pool = pool;
    this.ep = ep;
    this.cluster = cluster;
    this.handler = handler;
  }

  // ---- UpstreamSocket: the engine's HTTP/1.1 request bytes

  write(data: string | Uint8Array, encoding?: BufferEncoding): boolean {
    if (this.destroyed) return true;
    const chunk =
      typeof data === "string"
        ? Buffer.from(data, encoding ?? "latin1")
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
    if (this.body === B_HEAD) return this.onHeadBytes(chunk);
    return this.onBody(chunk, 0);
  }

  cork(): void {}
  uncork(): void {}

  pause(): void {
    this.paused = true;
    this.call?.pause();
  }

  resume(): void {
    this.paused = false;
    this.call?.resume();
  }

  isPaused(): boolean {
    return this.paused;
  }

  /** Half-close is a tunnel operation; an HTTP/2 cluster never tunnels (no 101 over the bridge). */
  end(): void {}

  destroy(): void {
    this.handler = null;
    this.destroyed = true;
    this.call?.cancel();
    this.call = null;
  }

  private onHeadBytes(chunk: Buffer): boolean {
    const buf = this.headBuf === null ? chunk : Buffer.concat([this.headBuf, chunk]);
    const n = this.scanner.scan(buf, MAX_HEAD_BYTES, MAX_FIELDS);
    if (n === 0) {
      this.headBuf = buf;
      return true;
    }
    this.headBuf = null;
    const head = new RequestHead();
    if (n < 0 || parseRequestHead(buf, this.scanner, head) !== null) {
      this.failSoon("reset", "the request could not be translated to HTTP/2");
      return true;
    }
    this.isHead = head.method === "HEAD";
    if (head.chunked) {
      this.body = B_CHUNKED;
      this.decoder.reset(true);
    } else if (head.contentLength > 0) {
      this.body = B_LENGTH;
      this.remaining = head.contentLength;
    } else {
      this.body = B_NONE;
    }
    const headers = h2UpstreamHeadersFromHttp1(head, this.cluster.tls !== undefined ? "https" : "http");
    this.call = new H2Call(this.pool, this.ep, this.cluster, headers, this.body === B_NONE, this);
    if (this.paused) this.call.pause();
    return n < buf.length ? this.onBody(buf, n) : true;
  }

  private onBody(chunk: Buffer, off: number): boolean {
    const call = this.call;
    if (call === null) return true;
    if (this.body === B_LENGTH) {
      const n = Math.min(chunk.length - off, this.remaining);
      this.remaining -= n;
      const ok = n > 0 ? call.write(chunk.subarray(off, off + n)) : true;
      if (this.remaining === 0) {
        this.body = B_DONE;
        call.end();
      }
      return ok;
    }
    if (this.body !== B_CHUNKED) return true;
    const dec = this.decoder;
    if (dec.decode(chunk, off) < 0) {
      this.call?.cancel();
      this.failSoon("reset", "the request body could not be translated to HTTP/2");
      return true;
    }
    let ok = true;
    const pieces = dec.pieces;
    for (let i = 0; i < pieces.length; i++) ok = call.write(pieces[i] as Buffer);
    pieces.length = 0;
    dec.pieceBytes = 0;
    if (dec.done) {
      this.body = B_DONE;
      call.end();
    }
    return ok;
  }

  // ---- H2CallSink: the HTTP/2 response, as HTTP/1.1 bytes to the engine

  onH2Response(headers: http2.IncomingHttpHeaders, endStream: boolean): void {
    const status = Number(headers[":status"]);
    let h = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
    let hasLength = false;
    for (const name in headers) {
      if (!h2ResponseFieldAllowed(name)) continue;
      if (name === "content-length") hasLength = true;
      h += fieldLines(name, headers[name]);
    }
    const bodyless = this.isHead || status === 204 || status === 304;
    if (endStream) {
      if (!hasLength && !bodyless) h += "content-length: 0\r\n";
    } else if (!hasLength && !bodyless) {
      this.chunkedResponse = true;
      h += "transfer-encoding: chunked\r\n";
    }
    this.handler?.onUpstreamData(this, Buffer.from(`${h}\r\n`, "latin1"));
  }

  onH2Data(chunk: Buffer): void {
    const handler = this.handler;
    if (handler === null || chunk.length === 0) return;
    if (!this.chunkedResponse) {
      handler.onUpstreamData(this, chunk);
      return;
    }
    handler.onUpstreamData(this, frameChunk(chunk));
  }

  onH2End(trailers: http2.IncomingHttpHeaders | null): void {
    this.call = null;
    const handler = this.handler;
    if (handler === null || !this.chunkedResponse) return;
    if (trailers === null) {
      handler.onUpstreamData(this, LAST_CHUNK);
      return;
    }
    let t = "0\r\n";
    for (const name in trailers) if (h2ResponseFieldAllowed(name)) t += fieldLines(name, trailers[name]);
    handler.onUpstreamData(this, Buffer.from(`${t}\r\n`, "latin1"));
  }

  onH2Drain(): void {
    this.handler?.onUpstreamDrain(this);
  }

  onH2Failure(kind: H2FailureKind, message: string, _afterHead: boolean): void {
    this.call = null;
    this.connected = kind === "reset";
    this.connectTimedOut = kind === "connect_timeout";
    if (kind === "tls") this.tlsFailure = message;
    const handler = this.handler;
    this.handler = null;
    handler?.onUpstreamClose(this);
  }

  private failSoon(kind: H2FailureKind, message: string): void {
    setImmediate(() => this.onH2Failure(kind, message, false));
  }
}

function fieldLines(name: string, value: string | string[] | undefined): string {
  if (value === undefined) return "";
  if (!Array.isArray(value)) return `${name}: ${value}\r\n`;
  let s = "";
  for (const v of value) s += `${name}: ${v}\r\n`;
  return s;
}
