/**
 * The PROXY protocol (haproxy's proxy-protocol.txt, v1 text and v2 binary), read before anything
 * else on a connection of a listener that enables it: load balancers (haproxy, AWS NLB, GCP) send
 * the client's address this way. Strict: the header must come first and whole within the timeout,
 * byte for byte as the specification writes it; anything else closes the connection (a plain HTTP
 * listener first answers 400 invalid_proxy_protocol). On a listener that did not enable it, a PROXY
 * header is nothing but bytes: the HTTP parser refuses it (400) and no address is taken from it.
 */
import type net from "node:net";
import { ipText } from "@agw/core/cidr";

/** v2's 12-byte signature. */
const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ", "latin1");
/** v1's longest line, CRLF included (proxy-protocol.txt §2.1). */
const V1_MAX = 107;
/** How long a connection has for its whole header when the listener does not say. */
export const PROXY_PROTOCOL_TIMEOUT_MS = 10_000;
/** v2: the most bytes of addresses and TLVs accepted (AWS and GCP send well under 1 KiB). */
export const V2_MAX_PAYLOAD = 4096;

/** A complete header: its length, and the client's address (null: LOCAL or UNKNOWN, the peer stands). */
export interface ProxyHeader {
  readonly length: number;
  readonly source: string | null;
}

const PORT = /^(?:0|[1-9]\d{0,4})$/;

function v1(buf: Buffer): ProxyHeader | string | null {
  const end = buf.indexOf("\r\n", 0, "latin1");
  if (end < 0) return buf.length >= V1_MAX ? "PROXY v1 line longer than 107 bytes" : null;
  if (end + 2 > V1_MAX) return "PROXY v1 line longer than 107 bytes";
  const line = buf.toString("latin1", 0, end);
  const parts = line.split(" ");
  if (parts[1] === "UNKNOWN") return { length: end + 2, source: null };
  if (parts.length !== 6) return "PROXY v1: expected PROXY TCP4|TCP6 src dst sport dport";
  const [, family, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  if (family !== "TCP4" && family !== "TCP6") return `PROXY v1: unknown protocol ${JSON.stringify(family)}`;
  const v6 = family === "TCP6";
  for (const a of [src, dst])
    if (a.includes(":") !== v6 || ipText(a) === undefined)
      return `PROXY v1: ${JSON.stringify(a)} is not an ${v6 ? "IPv6" : "IPv4"} address`;
  for (const p of [sport, dport])
    if (!PORT.test(p) || Number(p) > 65535) return `PROXY v1: ${JSON.stringify(p)} is not a port`;
  return { length: end + 2, source: ipText(src) as string };
}

function v2(buf: Buffer): ProxyHeader | string | null {
  if (buf.length < 16) return null;
  const verCmd = buf[12] as number;
  if (verCmd >> 4 !== 2) return `PROXY v2: version ${verCmd >> 4}`;
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return `PROXY v2: unknown command ${cmd}`;
  const famProto = buf[13] as number;
  const len = buf.readUInt16BE(14);
  if (len > V2_MAX_PAYLOAD) return `PROXY v2: ${len} bytes of addresses and TLVs (at most ${V2_MAX_PAYLOAD})`;
  if (cmd === 1 && famProto !== 0x00 && famProto !== 0x11 && famProto !== 0x21)
    return `PROXY v2: unsupported address family/protocol 0x${famProto.toString(16).padStart(2, "0")}`;
  if (buf.length < 16 + len) return null;
  const length = 16 + len;
  if (cmd === 0) return { length, source: null }; // LOCAL: the proxy's own connection (health checks)
  switch (famProto) {
    case 0x00: // UNSPEC
      return { length, source: null };
    case 0x11: {
      // TCP over IPv4: 4 + 4 + 2 + 2
      if (len < 12) return "PROXY v2: TCP4 addresses need 12 bytes";
      return { length, source: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}` };
    }
    case 0x21: {
      // TCP over IPv6: 16 + 16 + 2 + 2
      if (len < 36) return "PROXY v2: TCP6 addresses need 36 bytes";
      const words: string[] = [];
      for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(16 + 2 * i).toString(16));
      return { length, source: ipText(words.join(":")) as string };
    }
    default:
      return `PROXY v2: unsupported address family/protocol 0x${famProto.toString(16).padStart(2, "0")}`;
  }
}

/**
 * The header at the start of `buf`: complete, null when more bytes are needed, or a string saying
 * why these bytes are not one (decided as early as the bytes allow).
 */
export function parseProxyHeader(buf: Buffer): ProxyHeader | string | null {
  if (buf.length === 0) return null;
  if (buf[0] === 0x0d) {
    const n = Math.min(buf.length, V2_SIG.length);
    if (buf.compare(V2_SIG, 0, n, 0, n) !== 0) return "not a PROXY protocol header";
    return buf.length < V2_SIG.length ? null : v2(buf);
  }
  const n = Math.min(buf.length, V1_PREFIX.length);
  if (buf.compare(V1_PREFIX, 0, n, 0, n) !== 0) return "not a PROXY protocol header";
  return buf.length < V1_PREFIX.length ? null : v1(buf);
}

/**
 * Reads the header from a just-accepted socket, then hands the socket on with the bytes that followed
 * it put back (`done`, with the source or null); `failed` when it is malformed or late. The socket is
 * paused when `done` runs; whoever takes it resumes it by reading.
 */
export function readProxyHeader(
  socket: net.Socket,
  timeoutMs: number,
  done: (source: string | null) => void,
  failed: (reason: string) => void,
): void {
  let buf: Buffer = Buffer.alloc(0);
  const finish = () => {
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("end", onEnd);
  };
  const onData = (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const h = parseProxyHeader(buf);
    if (h === null) return;
    finish();
    if (typeof h === "string") {
      failed(h);
      return;
    }
    socket.pause();
    if (h.length < buf.length) socket.unshift(buf.subarray(h.length));
    done(h.source);
  };
  const onEnd = () => {
    finish();
    failed("the connection ended before its PROXY protocol header");
  };
  const timer = setTimeout(() => {
    finish();
    failed(`no PROXY protocol header within ${timeoutMs} ms`);
  }, timeoutMs);
  socket.on("data", onData);
  socket.once("end", onEnd);
}
