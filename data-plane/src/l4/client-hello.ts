/**
 * Reads the server name (SNI) of a TLS ClientHello without terminating TLS: a strict, incremental
 * parser of the records (RFC 8446 §5.1), the handshake header and the ClientHello (§4.1.2) with its
 * extensions (server_name: RFC 6066 §3). It is fed the bytes as they arrive and keeps them for the
 * replay to the backend. Anything that is not a well-formed ClientHello is refused, not guessed at:
 * a record that is not a handshake, a zero-length or oversized record, a handshake length beyond the
 * limit (refused as soon as it is declared, before waiting for the bytes), lengths that disagree with
 * their container, a duplicate extension, more than one host name, a name that is not a DNS name,
 * bytes after the hello in its last record. The caller bounds the time the bytes may take.
 */
import { DNS_NAME } from "@agw/core/dns-name";

/** Largest TLSPlaintext fragment (RFC 8446 §5.1). */
const MAX_RECORD = 16384;
const RECORD_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const NAME_TYPE_HOST = 0;

export type HelloResult =
  | { readonly state: "more" }
  /** `serverName` is "" when the client sent none; lower-case otherwise. */
  | { readonly state: "done"; readonly serverName: string }
  | {
      readonly state: "error";
      readonly code: "client_hello_invalid" | "client_hello_too_large";
      readonly reason: string;
    };

class Invalid extends Error {}
class TooLarge extends Error {}

/^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** A queue of received chunks read from the front without copying until a read needs it. */
class Chunks {
  private list: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    this.list.push(b);
    this.length += b.length;
  }

  /** The first `n` bytes as one buffer (n <= length); joins chunks only when the first is too short. */
  peek(n: number): Buffer {
    let first = this.list[0] as Buffer;
    if (first.length < n) {
      first = Buffer.concat(this.list);
      this.list = [first];
    }
    return first.subarray(0, n);
  }

  skip(n: number): void {
    this.length -= n;
    while (n > 0) {
      const first = this.list[0] as Buffer;
      if (first.length <= n) {
        n -= first.length;
        this.list.shift();
      } else {
        this.list[0] = first.subarray(n);
        n = 0;
      }
    }
  }
}

export class ClientHelloReader {
  /** Every byte received, for the replay. */
  readonly received: Buffer[] = [];
  receivedBytes = 0;
  private readonly maxBytes: number;
  /** Bytes not yet taken as records. */
  private readonly pending = new Chunks();
  /** Handshake bytes (record payloads) gathered so far. */
  private readonly handshake = new Chunks();
  private result: HelloResult = { state: "more" };

  /** `maxBytes`: the largest ClientHello accepted, record headers included. */
  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  push(chunk: Buffer): HelloResult {
    if (this.result.state !== "more") return this.result;
    this.received.push(chunk);
    this.receivedBytes += chunk.length;
    this.pending.push(chunk);
    try {
      this.result = this.parse();
    } catch (e) {
      const reason = (e as Error).message;
      this.result =
        e instanceof TooLarge
          ? { state: "error", code: "client_hello_too_large", reason }
          : { state: "error", code: "client_hello_invalid", reason };
    }
    return this.result;
  }

  private parse(): HelloResult {
    for (;;) {
      if (this.pending.length < 5) return { state: "more" };
      const header = this.pending.peek(5);
      const type = header[0] as number;
      if (type !== RECORD_HANDSHAKE)
        throw new Invalid(
          type >= 0x80 ? "an SSLv2 record, not TLS" : `record type ${type}, expected a handshake (22)`,
        );
      if (header[1] !== 3) throw new Invalid(`record version ${header[1]}.${header[2]}, expected 3.x`);
      const length = header.readUInt16BE(3);
      if (length === 0) throw new Invalid("an empty handshake record");
      if (length > MAX_RECORD) throw new Invalid(`a record of ${length} bytes, more than ${MAX_RECORD}`);
      if (this.receivedBytes - this.pending.length + 5 + length > this.maxBytes)
        throw new TooLarge(`the ClientHello's records exceed ${this.maxBytes} bytes`);
      if (this.pending.length < 5 + length) return { state: "more" };
      const fragment = Buffer.from(this.pending.peek(5 + length).subarray(5));
      this.pending.skip(5 + length);
      this.handshake.push(fragment);
      if (this.handshake.length < 4) continue;
      const hs = this.handshake.peek(4);
      if (hs[0] !== HANDSHAKE_CLIENT_HELLO)
        throw new Invalid(`handshake type ${hs[0]}, expected ClientHello (1)`);
      const bodyLength = hs.readUIntBE(1, 3);
      if (bodyLength + 4 > this.maxBytes)
        throw new TooLarge(`a ClientHello of ${bodyLength + 4} bytes, more than ${this.maxBytes}`);
      if (this.handshake.length < 4 + bodyLength) continue;
      if (this.handshake.length > 4 + bodyLength)
        throw new Invalid("bytes after the ClientHello in its record");
      return { state: "done", serverName: serverName(this.handshake.peek(4 + bodyLength).subarray(4)) };
    }
  }
}

/** Bounds-checked reads over one buffer; every length is checked against what contains it. */
class Reader {
  private readonly b: Buffer;
  private at: number;
  private readonly end: number;

  constructor(b: Buffer, at = 0, end = b.length) {
    this.b = b;
    this.at = at;
    this.end = end;
  }

  get left(): number {
    return this.end - this.at;
  }

  private need(n: number, what: string): void {
    if (n > this.left) throw new Invalid(`${what}: ${n} bytes announced, ${this.left} left`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.b[this.at++] as number;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.b.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }

  skip(n: number, what: string): void {
    this.need(n, what);
    this.at += n;
  }

  /** A sub-reader over the next `n` bytes, which this one skips. */
  sub(n: number, what: string): Reader {
    this.need(n, what);
    const r = new Reader(this.b, this.at, this.at + n);
    this.at += n;
    return r;
  }

  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const v = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
}

/** The host name of a ClientHello body (after the handshake header); "" when it has none. */
function serverName(body: Buffer): string {
  const r = new Reader(body);
  const major = r.u8("legacy_version");
  const minor = r.u8("legacy_version");
  if (major !== 3 || minor < 1 || minor > 3)
    throw new Invalid(`client version ${major}.${minor}, expected TLS 1.0 to 1.2 (3.1-3.3)`);
  r.skip(32, "random");
  const sessionId = r.u8("legacy_session_id length");
  if (sessionId > 32) throw new Invalid(`a session id of ${sessionId} bytes, more than 32`);
  r.skip(sessionId, "legacy_session_id");
  const suites = r.u16("cipher_suites length");
  if (suites < 2 || suites % 2 !== 0) throw new Invalid(`cipher_suites of ${suites} bytes`);
  r.skip(suites, "cipher_suites");
  const compression = r.u8("legacy_compression_methods length");
  if (compression < 1) throw new Invalid("no compression method");
  r.skip(compression, "legacy_compression_methods");
  if (r.left === 0) return "";
  const extensionsLength = r.u16("extensions length");
  if (extensionsLength !== r.left)
    throw new Invalid(`extensions of ${extensionsLength} bytes in ${r.left} bytes left`);
  const extensions = r.sub(extensionsLength, "extensions");
  const seen = new Set<number>();
  let name = "";
  while (extensions.left > 0) {
    const type = extensions.u16("extension type");
    if (seen.has(type)) throw new Invalid(`extension ${type} twice`);
    seen.add(type);
    const data = extensions.sub(extensions.u16("extension length"), `extension ${type}`);
    if (type === EXT_SERVER_NAME) name = hostName(data);
  }
  return name;
}

function hostName(ext: Reader): string {
  const listLength = ext.u16("server_name_list length");
  if (listLength !== ext.left || listLength === 0)
    throw new Invalid(`a server_name_list of ${listLength} bytes in an extension of ${ext.left}`);
  let name = "";
  while (ext.left > 0) {
    const type = ext.u8("name_type");
    const length = ext.u16("server name length");
    const value = ext.bytes(length, "server name");
    if (type !== NAME_TYPE_HOST) continue;
    if (name !== "") throw new Invalid("more than one host_name");
    const text = value.toString("latin1").toLowerCase();
    if (!DNS_NAME.test(text))
      throw new Invalid(`server name ${JSON.stringify(text.slice(0, 80))} is not a DNS name`);
    name = text;
  }
  return name;
}

/** A fatal TLS alert record, sent before closing: the client learns why (RFC 8446 §6). */
export function tlsAlert(description: number): Buffer {
  return Buffer.from([21, 3, 3, 0, 2, 2, description]);
}

export const ALERT_DECODE_ERROR = 50;
export const ALERT_UNRECOGNIZED_NAME = 112;
