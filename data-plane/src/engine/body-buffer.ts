/**
 * A body read for plugins that asked for it (the chain's BodyNeed): the request body before the
 * request filter, the response body before the response filter. Only routes whose plugins ask get
 * one; every other request streams its body and never allocates this.
 */
import { type BufferedBody, OVER_LIMIT } from "../plugins/chain.ts";

export class BodyBuffer {
  /** The most bytes the plugins take; past it they get OVER_LIMIT and the body streams on. */
  readonly limit: number;
  /** The de-framed body bytes read so far, in order (they are all forwarded, whatever the limit). */
  readonly pieces: Buffer[] = [];
  bytes = 0;
  /** The body ended (all of it is in `pieces`). */
  ended = false;

  constructor(limit: number) {
    this.limit = limit;
  }

  add(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.pieces.push(chunk);
    this.bytes += chunk.length;
  }

  /** More than `limit` bytes were read. */
  get over(): boolean {
    return this.bytes > this.limit;
  }

  whole(): Buffer {
    const p = this.pieces;
    return p.length === 1 ? (p[0] as Buffer) : Buffer.concat(p, this.bytes);
  }

  /** What the plugins get: the whole body when it ended (the chain applies each plugin's own limit). */
  forPlugins(): BufferedBody {
    return this.ended ? this.whole() : OVER_LIMIT;
  }
}
