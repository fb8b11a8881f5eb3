/**
 * The HTTP/1.1 request body (the layer of the HTTP/1.1 connection between its answers,
 * http1-response.ts, and its life, http1.ts): its framing (Content-Length or chunked, re-framed
 * towards the upstream), its size limit, the bytes kept to resend it, and the body read for plugins
 * that ask for it (collectBody): de-framed up to their limit, then sent with a Content-Length.
 */
import type { BufferedBody } from "../plugins/chain.ts";
import { BodyBuffer } from "./body-buffer.ts";
import {
  BODY_CHUNKED as B_CHUNKED,
  BODY_LENGTH as B_LENGTH,
  BODY_NONE as B_NONE,
  CRLF,
  frameChunk,
  LAST_CHUNK,
} from "./body-framing.ts";
import { codeForStatus } from "./errors.ts";
import { ChunkedDecoder, type HeadError, type RequestHead } from "./http1-parser.ts";
import { Http1Exchange } from "./http1-response.ts";
import type { UpstreamConn } from "./upstream-conn.ts";

export abstract class Http1Body extends Http1Exchange {
  /** Unparsed downstream bytes: a partial head, or pipelined requests waiting their turn. */
  buf: Buffer | null = null;

  // The body of the request in flight, beside the Exchange's own state. Reset by finishExchange().
  /** Content-Length bytes still to come. */
  bodyRemaining = 0;
  /** Largest chunked body allowed (a Content-Length is checked up front); 0: unlimited. */
  bodyLimit = 0;
  /** Decoded chunked body bytes so far, counted under bodyLimit. */
  bodySeen = 0;
  /** Body bytes arrived since the T_BODY timer last fired. */
  bodyActive = false;
  readonly reqDecoder = new ChunkedDecoder();
  /** Body bytes that arrived with the head: they can be replayed on a retry. */
  firstBody: Buffer | null = null;
  /** Nothing but `firstBody` has been written upstream, so a retry can resend the whole request. */
  replayable = true;
  /** The body read for the request's plugins (collectBody), until it is sent upstream. */
  collected: BodyBuffer | null = null;
  /** Called once the body has been read for the plugins (or went past their limit). */
  collectDone: ((body: BufferedBody) => void) | null = null;

  mirrorBody(): Buffer | null {
    if (this.bodyMode === B_NONE) return null;
    const c = this.collected;
    return c === null ? this.buf : this.reqBodyDone ? c.whole() : null;
  }

  collectBody(limit: number, done: (body: BufferedBody) => void): void {
    const c = new BodyBuffer(limit);
    this.collected = c;
    this.collectDone = done;
    // A client that waits for 100 Continue would wait for ever: the gateway asks for the body itself.
    if (this.head?.minor === 1 && /^100-continue$/i.test(this.head.header("expect") ?? ""))
      this.socket.write("HTTP/1.1 100 Continue\r\n\r\n", "latin1");
    const early = this.buf;
    this.buf = null;
    if (early !== null) this.collect(c, early);
  }

  /** Request body bytes read for the plugins: de-framed and kept, up to their limit (and the route's). */
  collect(c: BodyBuffer, chunk: Buffer): void {
    let used: number;
    if (this.collectDone === null) {
      // Past the limit, while the plugins decide: kept as they came, for onBody once they let it go on.
      this.stash(chunk);
      return;
    }
    if (this.bodyMode === B_LENGTH) {
      used = Math.min(chunk.length, this.bodyRemaining);
      c.add(used === chunk.length ? chunk : chunk.subarray(0, used));
      this.bodyRemaining -= used;
      if (this.bodyRemaining === 0) this.reqBodyDone = true;
    } else {
      const dec = this.reqDecoder;
      used = dec.decode(chunk, 0);
      if (used < 0) {
        this.requestBodyError(dec.error as HeadError);
        return;
      }
      const pieces = dec.pieces;
      for (let i = 0; i < pieces.length; i++) c.add(pieces[i] as Buffer);
      this.bodySeen += dec.pieceBytes;
      pieces.length = 0;
      dec.pieceBytes = 0;
      if (this.bodyLimit > 0 && this.bodySeen > this.bodyLimit) {
        this.keepAlive = false;
        this.requestBodyError({ status: 413, message: `request body larger than ${this.bodyLimit} bytes` });
        return;
      }
      if (dec.done) this.reqBodyDone = true;
    }
    if (used < chunk.length) this.stash(chunk.subarray(used)); // pipelined, or the rest past the limit
    if (!this.reqBodyDone && !c.over) return;
    const done = this.collectDone;
    this.collectDone = null;
    if (this.reqBodyDone) {
      c.ended = true;
      this.bodySized(c.bytes);
    } else this.socket.pause(); // past the limit: the rest waits for the plugins' decision
    done(c.forPlugins());
  }

  /** The whole body was read: it goes upstream with a Content-Length, whatever framing it came in. */
  bodySized(length: number): void {
    if (this.bodyMode === B_CHUNKED) {
      (this.head as RequestHead).sized(length);
      this.bodyMode = B_LENGTH;
    }
  }

  /** The head and the body read for the plugins: whole (replayable), or what was read and then the rest. */
  sendCollected(up: UpstreamConn, c: BodyBuffer): void {
    this.collected = null;
    const s = up.socket;
    const body = c.whole();
    if (this.reqBodyDone) {
      this.bodyRemaining = body.length;
      this.reqBodyDone = false;
      this.writeRequest(up, body);
      this.firstBody = body;
      return;
    }
    this.replayable = false;
    s.cork();
    s.write(this.upHead, "latin1");
    s.write(this.bodyMode === B_CHUNKED ? frameChunk(body) : body);
    s.uncork();
    const rest = this.buf;
    this.buf = null;
    if (rest !== null) this.onBody(rest, 0);
    if (!this.reqBodyDone) this.resumeRequest();
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
    if (this.resHeadSent) this.abortResponse();
    else this.fail(e.status, codeForStatus(e.status), e.message);
  }

  /** Keeps downstream bytes that follow the current request until it completes. */
  stash(chunk: Buffer): void {
    const b = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    this.buf = b;
    if (b.length > this.proxy.maxHeadBytes) this.socket.pause();
  }

  canResend(): boolean {
    return this.replayable;
  }

  canReplay(): boolean {
    return this.replayable && this.reqBodyDone;
  }
}
