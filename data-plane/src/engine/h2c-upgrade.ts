/**
 * h2c via `Upgrade: h2c` (RFC 7540 §3.2; RFC 9113 deprecates it, Envoy and `curl --http2` on http://
 * still use it). After the 101, the request that asked for the upgrade is stream 1, half-closed by the
 * client, and is answered on stream 1. node:http2 has no API to open a server session with stream 1
 * already there, so the session reads the socket through UpgradedSocket, which inserts a HEADERS frame
 * for stream 1 (END_STREAM | END_HEADERS) right after the client's preface and first SETTINGS frame,
 * carrying the HTTP/1.1 request's fields as HPACK literals without indexing: that leaves the HPACK
 * state of both peers as it was, so the client's next header blocks decode as it meant them.
 */
import type net from "node:net";
import { Duplex } from "node:stream";
import { hasName } from "./headers.ts";
import { HOP_BY_HOP } from "./hop-by-hop.ts";
import type { RequestHead } from "./http1-parser.ts";

const PREFACE_LENGTH = 24;
const FRAME_HEADER_LENGTH = 9;
const FRAME_SETTINGS = 0x4;
const FRAME_HEADERS = 0x1;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
/** SETTINGS_MAX_FRAME_SIZE's initial value: the most a HEADERS frame may carry before CONTINUATION. */
const MAX_FRAME = 16384;
/** HTTP2-Settings: a base64url SETTINGS payload (token68 without padding), 6 bytes per setting. */
const SETTINGS_VALUE = /^[A-Za-z0-9_-]*$/;

/** The client preface of HTTP/2 (RFC 9113 §3.4); an h2c client with prior knowledge starts with it. */
export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** The 101 that switches the connection to HTTP/2. */
export const SWITCHING_TO_H2C =
  "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

/**
 * Whether the request asks for h2c the way RFC 7540 §3.2 says: Upgrade lists h2c, Connection names
 * both Upgrade and HTTP2-Settings, and one well-formed HTTP2-Settings field is there.
 */
export function asksForH2c(head: RequestHead): boolean {
  if (!/(^|[\s,])h2c($|[\s,])/i.test(head.upgrade)) return false;
  if (!hasName(head.connTokens, "upgrade") || !hasName(head.connTokens, "http2-settings")) return false;
  let settings: string | undefined;
  const names = head.names;
  for (let i = 0; i < names.length; i++) {
    if (names[i] !== "http2-settings") continue;
    if (settings !== undefined) return false;
    settings = head.values[i] as string;
  }
  return (
    settings !== undefined &&
    SETTINGS_VALUE.test(settings) &&
    Buffer.from(settings, "base64url").length % 6 === 0
  );
}

function hpackInteger(out: number[], value: number, prefixBits: number, first: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest & 127) | 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

/** "Literal Header Field without Indexing — New Name" (RFC 7541 §6.2.2), strings not Huffman-coded. */
function literalField(parts: Buffer[], name: string, value: string): void {
  const n = Buffer.from(name, "latin1");
  const v = Buffer.from(value, "latin1");
  const prefix: number[] = [0x00];
  hpackInteger(prefix, n.length, 7, 0);
  parts.push(Buffer.from(prefix), n);
  const vlen: number[] = [];
  hpackInteger(vlen, v.length, 7, 0);
  parts.push(Buffer.from(vlen), v);
}

/** The HEADERS (+ CONTINUATION) frames of stream 1 for the request that asked for the upgrade. */
export function stream1Headers(head: RequestHead): Buffer {
  const fields: Buffer[] = [];
  literalField(fields, ":method", head.method);
  literalField(fields, ":scheme", "http");
  literalField(fields, ":path", head.originForm);
  literalField(fields, ":authority", head.rawHost);
  const names = head.names;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    if (
      HOP_BY_HOP.has(name) ||
      name === "host" ||
      name === "http2-settings" ||
      hasName(head.connTokens, name)
    )
      continue;
    literalField(fields, name, head.values[i] as string);
  }
  const block = Buffer.concat(fields);
  const frames: Buffer[] = [];
  let off = 0;
  do {
    const part = block.subarray(off, off + MAX_FRAME);
    const first = off === 0;
    off += part.length;
    const header = Buffer.alloc(FRAME_HEADER_LENGTH);
    header.writeUIntBE(part.length, 0, 3);
    header[3] = first ? FRAME_HEADERS : FRAME_CONTINUATION;
    header[4] = (first ? FLAG_END_STREAM : 0) | (off >= block.length ? FLAG_END_HEADERS : 0);
    header.writeUInt32BE(1, 5);
    frames.push(header, part);
  } while (off < block.length);
  return Buffer.concat(frames);
}

/**
 * The upgraded socket as the HTTP/2 session sees it: the client's bytes with stream 1's HEADERS
 * inserted after its preface and first SETTINGS frame, then passed through untouched (with
 * backpressure); writes go straight to the socket.
 */
export class UpgradedSocket extends Duplex {
  private readonly socket: net.Socket;
  private inject: Buffer | null;
  private pending: Buffer | null = null;

  constructor(socket: net.Socket, inject: Buffer) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    this.inject = inject;
    socket.on("data", (chunk: Buffer) => this.onSocketData(chunk));
    socket.on("end", () => this.push(null));
    socket.on("error", (e: Error) => this.destroy(e));
    socket.on("close", () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  get remoteFamily(): string | undefined {
    return this.socket.remoteFamily;
  }

  /** Bytes the client sent right after its upgrade request (the preface may already be among them). */
  early(chunk: Buffer | null): void {
    if (chunk !== null && chunk.length > 0) this.onSocketData(chunk);
  }

  private onSocketData(chunk: Buffer): void {
    const inject = this.inject;
    if (inject === null) {
      if (!this.push(chunk)) this.socket.pause();
      return;
    }
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    const at = PREFACE_LENGTH + FRAME_HEADER_LENGTH;
    if (buf.length < at) {
      this.pending = buf;
      return;
    }
    // Not a SETTINGS frame first: the session itself rejects the connection (PROTOCOL_ERROR).
    const end = buf[PREFACE_LENGTH + 3] === FRAME_SETTINGS ? at + buf.readUIntBE(PREFACE_LENGTH, 3) : 0;
    if (buf.length < end) {
      this.pending = buf;
      return;
    }
    this.pending = null;
    this.inject = null;
    const out = end === 0 ? buf : Buffer.concat([buf.subarray(0, end), inject, buf.subarray(end)]);
    if (!this.push(out)) this.socket.pause();
  }

  override _read(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, encoding, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }
}
