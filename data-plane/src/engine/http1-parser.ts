/**
 * Strict HTTP/1.1 (RFC 9112) head parsers and a streaming chunked-body decoder.
 *
 * Parsing is two-phase: HeadScanner walks the bytes once as they arrive (validating every byte and
 * recording line bounds) until CRLFCRLF; the parse functions then read the recorded lines. Heads are
 * decoded as latin1 so any obs-text byte round-trips unchanged when re-serialised.
 */
import type { RequestView } from "../runtime/types.ts";

/** A rejected message head or body: the status to answer with and a short reason for logs. */
export interface HeadError {
  readonly status: number;
  readonly message: string;
}

const err = (status: number, message: string): HeadError => Object.freeze({ status, message });

export const HEAD_ERRORS = {
  bareCR: err(400, "bare CR in head"),
  bareLF: err(400, "bare LF in head"),
  ctl: err(400, "control character in head"),
  headTooLarge: err(431, "request head too large"),
  tooManyHeaders: err(431, "too many header fields"),
  method: err(400, "invalid method"),
  target: err(400, "invalid request-target"),
  version: err(400, "invalid HTTP version"),
  versionUnsupported: err(505, "unsupported HTTP version"),
  connectTarget: err(400, "CONNECT needs an authority-form target (host:port)"),
  connectBody: err(400, "CONNECT request with content"),
  obsFold: err(400, "obsolete line folding"),
  fieldName: err(400, "invalid header field name"),
  spaceBeforeColon: err(400, "whitespace between header field name and colon"),
  noColon: err(400, "header field without colon"),
  contentLength: err(400, "invalid Content-Length"),
  contentLengthConflict: err(400, "conflicting Content-Length values"),
  clAndTe: err(400, "both Content-Length and Transfer-Encoding"),
  teInvalid: err(400, "invalid Transfer-Encoding"),
  teDuplicate: err(400, "duplicate Transfer-Encoding"),
  teUnknown: err(501, "unsupported transfer coding"),
  teHttp10: err(400, "Transfer-Encoding in an HTTP/1.0 request"),
  host: err(400, "invalid Host"),
  hostMissing: err(400, "missing Host"),
  hostDuplicate: err(400, "duplicate Host"),
  statusLine: err(502, "invalid status line"),
  chunkSize: err(400, "invalid chunk size"),
  chunkFraming: err(400, "invalid chunk framing"),
  chunkExtTooLong: err(400, "chunk extension too long"),
  trailerTooLarge: err(400, "trailer section too large"),
  trailer: err(400, "invalid trailer field"),
} as const;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;

function table(chars: string, ranges: ReadonlyArray<readonly [number, number]> = []): Uint8Array {
  const t = new Uint8Array(256);
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  for (const [lo, hi] of ranges) for (let c = lo; c <= hi; c++) t[c] = 1;
  return t;
}

/** tchar (RFC 9110 §5.6.2). */
const TCHAR = table("!#$%&'*+-.^_`|~", [
  [48, 57],
  [65, 90],
  [97, 122],
]);
/** Bytes allowed in a request-target: visible ASCII and obs-text (nginx accepts the latter too). */
const TARGET = table("", [
  [0x21, 0x7e],
  [0x80, 0xff],
]);
/** Bytes allowed in Host / an absolute-form authority (reg-name, IPv4, IP-literal, port). */
const HOST = table("-._~!$&'()*+,;=:[]%", [
  [48, 57],
  [65, 90],
  [97, 122],
]);
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

/**
 * Incremental head scanner. Feed it the same growing buffer (new bytes appended) until it returns
 * the head length; it never re-examines a byte. Every byte is checked: CTLs other than HTAB, bare CR
 * and bare LF are rejected wherever they appear in the head.
 */
export class HeadScanner {
  /** Pairs [start, endExclusive] of each non-empty line (start line first). */
  readonly bounds: number[] = [];
  error: HeadError | null = null;
  private pos = 0;
  private lineStart = 0;
  private cr = false;

  reset(): void {
    this.bounds.length = 0;
    this.error = null;
    this.pos = 0;
    this.lineStart = 0;
    this.cr = false;
  }

  /** Returns the head length (> 0) once CRLFCRLF is seen, 0 for "need more", -1 on error (see `error`). */
  scan(buf: Buffer, maxBytes: number, maxFields: number): number {
    const bounds = this.bounds;
    const limit = Math.min(buf.length, maxBytes);
    let ls = this.lineStart;
    let cr = this.cr;
    let i = this.pos;
    for (; i < limit; i++) {
      const c = buf[i] as number;
      if (cr) {
        if (c !== LF) return this.fail(HEAD_ERRORS.bareCR);
        cr = false;
        const e = i - 1;
        if (e === ls) {
          // Empty line: ends the head, or (RFC 9112 §2.2) is ignored before the start line.
          if (bounds.length === 0) {
            ls = i + 1;
            continue;
          }
          this.pos = i + 1;
          return i + 1;
        }
        if (bounds.length >= (maxFields + 1) * 2) return this.fail(HEAD_ERRORS.tooManyHeaders);
        bounds.push(ls, e);
        ls = i + 1;
      } else if (c === CR) {
        cr = true;
      } else if (c < SP ? c !== HTAB : c === 0x7f) {
        return this.fail(c === LF ? HEAD_ERRORS.bareLF : HEAD_ERRORS.ctl);
      }
    }
    if (i >= maxBytes) return this.fail(HEAD_ERRORS.headTooLarge);
    this.pos = i;
    this.lineStart = ls;
    this.cr = cr;
    return 0;
  }

  private fail(e: HeadError): number {
    this.error = e;
    return -1;
  }
}

/** Fields and framing shared by request and response heads. Names are kept as received and lower-cased. */
class MessageHead {
  /** HTTP/1.x minor version: 0 or 1. */
  minor = 1;
  readonly rawNames: string[] = [];
  readonly names: string[] = [];
  readonly values: string[] = [];
  /** -1 when absent. */
  contentLength = -1;
  chunked = false;
  hasTE = false;
  connClose = false;
  connKeepAlive = false;
  /** Lower-case tokens of Connection other than close/keep-alive: these fields are hop-by-hop too. */
  connTokens: string[] | null = null;

  header(name: string): string | undefined {
    let out: string | undefined;
    const names = this.names;
    for (let i = 0; i < names.length; i++) {
      if (names[i] === name) out = out === undefined ? this.values[i] : `${out}, ${this.values[i]}`;
    }
    return out;
  }
}

export class RequestHead extends MessageHead implements RequestView {
  method = "";
  /** The request-target as received. */
  target = "";
  host = "";
  /** Host header value as received (with port), or the authority of an absolute-form target. */
  rawHost = "";
  path = "";
  query = "";
  /** path + ("?" + query): the origin-form target sent upstream. */
  originForm = "";
  /** First x-request-id value, "" when absent. */
  requestId = "";
  /** Upgrade field value ("websocket"), "" when absent; honoured only when Connection names it. */
  upgrade = "";
  /** Persistent connection after this request (RFC 9112 §9.3). */
  keepAlive = true;

  /** A field the gateway adds (a lower-case name). */
  add(name: string, value: string): void {
    this.rawNames.push(name);
    this.names.push(name);
    this.values.push(value);
  }

  /** The body was read whole (for plugins): it is sent on with this Content-Length, not chunked. */
  sized(length: number): void {
    if (this.contentLength === length) return;
    this.chunked = false;
    this.contentLength = length;
    this.add("content-length", String(length));
  }
}

export class ResponseHead extends MessageHead {
  status = 0;
  reason = "";
}

function isOWS(c: number): boolean {
  return c === SP || c === HTAB;
}

/** Parses "HTTP/1.x" at [s, s+8); returns the minor version, -1 for another HTTP/d.d, -2 if malformed. */
function parseVersion(buf: Buffer, s: number, e: number): number {
  if (
    e - s !== 8 ||
    buf[s] !== 72 ||
    buf[s + 1] !== 84 ||
    buf[s + 2] !== 84 ||
    buf[s + 3] !== 80 ||
    buf[s + 4] !== 47 ||
    buf[s + 6] !== 46
  ) {
    return -2;
  }
  const major = (buf[s + 5] as number) - 48;
  const minor = (buf[s + 7] as number) - 48;
  if (major < 0 || major > 9 || minor < 0 || minor > 9) return -2;
  return major === 1 && minor <= 1 ? minor : -1;
}

/** Content-Length: 1*DIGIT, at most 15 digits (safe integer). Returns -1 when invalid. */
function parseLength(v: string): number {
  const n = v.length;
  if (n === 0 || n > 15) return -1;
  let x = 0;
  for (let i = 0; i < n; i++) {
    const d = v.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    x = x * 10 + d;
  }
  return x;
}

/** Whether v is a comma-separated list of tokens (with optional parameters), i.e. syntactically a valid TE. */
function isCodingList(v: string): boolean {
  for (const part of v.split(",")) {
    const tok = part.split(";")[0]?.trim() ?? "";
    if (tok.length === 0) return false;
    for (let i = 0; i < tok.length; i++) if (TCHAR[tok.charCodeAt(i)] !== 1) return false;
  }
  return true;
}

function validHost(v: string): boolean {
  for (let i = 0; i < v.length; i++) if (HOST[v.charCodeAt(i)] !== 1) return false;
  return true;
}

/** Lower-cased host without port; "" if the authority is malformed. */
function hostOnly(v: string): string {
  if (v.charCodeAt(0) === 91) {
    const close = v.indexOf("]");
    return close < 0 ? "" : v.slice(0, close + 1).toLowerCase();
  }
  const colon = v.indexOf(":");
  return (colon < 0 ? v : v.slice(0, colon)).toLowerCase();
}

/**
 * The head's bytes as one latin1 string: fields are then cut from it with String#slice. With a
 * buf.toString() per name and per value, the native latin1Slice was ~40% of the parse; one string per
 * head made a browser-like 9-field request head 2.72 → 1.63 µs and nginx's 5-field response head
 * 1.47 → 0.94 µs (fastest of 15 alternating rounds, Node 24, 2026-11-25; bench/parser.ts).
 */
function headText(buf: Buffer, bounds: readonly number[]): string {
  return buf.toString("latin1", bounds[0] as number, bounds[bounds.length - 1] as number);
}

/**
 * Header fields (lines 1..n). Shared by requests and responses; request-only rules are applied by the
 * caller. `text` is headText(buf, bounds): offset `base` in buf is index 0 in text.
 */
function parseFields(
  buf: Buffer,
  text: string,
  bounds: readonly number[],
  head: MessageHead,
  req: RequestHead | null,
): HeadError | null {
  const base = bounds[0] as number;
  let teValue: string | null = null;
  let sawHost = false;
  for (let k = 2; k < bounds.length; k += 2) {
    const s = bounds[k] as number;
    const e = bounds[k + 1] as number;
    const first = buf[s] as number;
    if (isOWS(first)) return HEAD_ERRORS.obsFold;
    let c = s;
    while (c < e && TCHAR[buf[c] as number] === 1) c++;
    if (c === e) return HEAD_ERRORS.noColon;
    const b = buf[c] as number;
    if (b !== COLON) return isOWS(b) ? HEAD_ERRORS.spaceBeforeColon : HEAD_ERRORS.fieldName;
    if (c === s) return HEAD_ERRORS.fieldName;
    let vs = c + 1;
    let ve = e;
    while (vs < ve && isOWS(buf[vs] as number)) vs++;
    while (ve > vs && isOWS(buf[ve - 1] as number)) ve--;
    const rawName = text.slice(s - base, c - base);
    const name = rawName.toLowerCase();
    const value = text.slice(vs - base, ve - base);
    switch (name) {
      case "content-length": {
        const n = parseLength(value);
        if (n < 0) return HEAD_ERRORS.contentLength;
        if (head.contentLength >= 0) {
          if (n !== head.contentLength) return HEAD_ERRORS.contentLengthConflict;
          continue; // identical duplicate: merged
        }
        head.contentLength = n;
        break;
      }
      case "transfer-encoding":
        if (teValue !== null) {
          if (req !== null) return HEAD_ERRORS.teDuplicate;
          teValue = `${teValue}, ${value}`;
        } else {
          teValue = value;
        }
        break;
      case "connection":
        for (const part of value.split(",")) {
          const tok = part.trim().toLowerCase();
          if (tok === "close") head.connClose = true;
          else if (tok === "keep-alive") head.connKeepAlive = true;
          else if (tok.length > 0) {
            if (head.connTokens === null) head.connTokens = [];
            head.connTokens.push(tok);
          }
        }
        break;
      case "host":
        if (req !== null) {
          // Counted by field, not by value: an empty Host followed by another is still two Hosts.
          if (sawHost) return HEAD_ERRORS.hostDuplicate;
          sawHost = true;
          if (!validHost(value)) return HEAD_ERRORS.host;
          req.rawHost = value;
        }
        break;
      case "x-request-id":
        if (req !== null && req.requestId === "") req.requestId = value;
        break;
      case "upgrade":
        if (req !== null) req.upgrade = req.upgrade === "" ? value : `${req.upgrade}, ${value}`;
        break;
    }
    head.rawNames.push(rawName);
    head.names.push(name);
    head.values.push(value);
  }
  if (teValue !== null) {
    head.hasTE = true;
    if (!isCodingList(teValue)) return HEAD_ERRORS.teInvalid;
    // Like nginx, only exactly "chunked" is accepted; any other (valid) coding list is 501 (502 upstream).
    if (teValue.trim().toLowerCase() !== "chunked") return HEAD_ERRORS.teUnknown;
    head.chunked = true;
    if (head.contentLength >= 0) return HEAD_ERRORS.clAndTe;
  }
  return null;
}

/**
 * Parses a complete request head already validated by `sc.scan` into `out`. Returns null on success.
 * The request-target is checked for its form; CONNECT takes an authority-form target ("host:port"),
 * which becomes its Host for routing (path "/"), and no content.
 */
export function parseRequestHead(buf: Buffer, sc: HeadScanner, out: RequestHead): HeadError | null {
  const b = sc.bounds;
  const s = b[0] as number;
  const e = b[1] as number;
  let i = s;
  while (i < e && TCHAR[buf[i] as number] === 1) i++;
  if (i === s || i === e || buf[i] !== SP) return HEAD_ERRORS.method;
  const text = headText(buf, b);
  out.method = text.slice(0, i - s);
  const ts = ++i;
  while (i < e && TARGET[buf[i] as number] === 1) i++;
  if (i === ts || i === e || buf[i] !== SP) return HEAD_ERRORS.target;
  const te = i;
  const minor = parseVersion(buf, i + 1, e);
  if (minor === -2) return HEAD_ERRORS.version;
  if (minor === -1) return HEAD_ERRORS.versionUnsupported;
  out.minor = minor;
  const target = text.slice(ts - s, te - s);
  out.target = target;
  const e1 = parseFields(buf, text, b, out, out);
  if (e1 !== null) return e1;
  if (out.method === "CONNECT") return connectTarget(out, target);

  let pathStart = 0;
  const first = target.charCodeAt(0);
  if (first === 47 /* / */) {
    pathStart = 0;
  } else if (first === 42 /* * */) {
    if (target.length !== 1 || out.method !== "OPTIONS") return HEAD_ERRORS.target;
  } else {
    // absolute-form: its authority replaces Host (RFC 9112 §3.2.2).
    const lower = target.slice(0, 8).toLowerCase();
    const schemeEnd = lower.startsWith("http://") ? 7 : lower.startsWith("https://") ? 8 : -1;
    if (schemeEnd < 0) return HEAD_ERRORS.target;
    let a = schemeEnd;
    while (a < target.length) {
      const c = target.charCodeAt(a);
      if (c === 47 || c === 63) break;
      a++;
    }
    const authority = target.slice(schemeEnd, a);
    if (authority.length === 0 || !validHost(authority) || authority.includes("@")) return HEAD_ERRORS.target;
    out.rawHost = authority;
    pathStart = a;
  }
  if (first === 42) {
    out.path = "*";
    out.originForm = "*";
  } else {
    const q = target.indexOf("?", pathStart);
    const path = q < 0 ? target.slice(pathStart) : target.slice(pathStart, q);
    out.path = path.length === 0 ? "/" : path;
    out.query = q < 0 ? "" : target.slice(q + 1);
    out.originForm = q < 0 ? out.path : `${out.path}?${out.query}`;
  }

  if (out.rawHost === "") {
    if (minor === 1) return HEAD_ERRORS.hostMissing;
  } else {
    out.host = hostOnly(out.rawHost);
    if (out.host === "") return HEAD_ERRORS.host;
  }
  if (out.hasTE && minor === 0) return HEAD_ERRORS.teHttp10;
  out.keepAlive = minor === 1 ? !out.connClose : out.connKeepAlive && !out.connClose;
  return null;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const AUTHORITY = /^[-._~!$&'()*+,;=:[\]%0-9A-Za-z]+$/;

/** An HTTP/2 request's method, :scheme, authority and :path (h2.ts) checked into `out`: "" or why not. */
export function h2Target(out: RequestHead, scheme: string, rawHost: string, path: string): string {
  if (!TOKEN.test(out.method) || scheme === "" || rawHost === "" || !AUTHORITY.test(rawHost))
    return "invalid pseudo-header fields";
  if (path === "*" && out.method === "OPTIONS") {
    out.path = "*";
    out.originForm = "*";
  } else {
    if (path.charCodeAt(0) !== 47 || !visibleAscii(path)) return "invalid :path";
    const q = path.indexOf("?");
    out.path = q < 0 ? path : path.slice(0, q);
    out.query = q < 0 ? "" : path.slice(q + 1);
    out.originForm = path;
  }
  out.target = path;
  out.rawHost = rawHost;
  const close = rawHost.charCodeAt(0) === 91 ? rawHost.indexOf("]") + 1 : rawHost.indexOf(":");
  out.host = (close <= 0 ? rawHost : rawHost.slice(0, close)).toLowerCase();
  return "";
}

/** Whether `v` has only visible ASCII or obs-text (what a request-target may hold). */
function visibleAscii(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c > 0xff) return false;
  }
  return true;
}

/**
 * RFC 9110 §9.3.6: the target is host:port (the port is required) and the request has no content.
 * Also HTTP/2's CONNECT :authority (h2.ts).
 */
export function connectTarget(out: RequestHead, target: string): HeadError | null {
  const colon = target.lastIndexOf(":");
  const port = Number(target.slice(colon + 1));
  if (
    colon <= 0 ||
    !validHost(target) ||
    !/^\d{1,5}$/.test(target.slice(colon + 1)) ||
    port < 1 ||
    port > 65535 ||
    (target.charCodeAt(0) !== 91 && target.indexOf(":") !== colon)
  )
    return HEAD_ERRORS.connectTarget;
  if (out.hasTE || out.contentLength > 0) return HEAD_ERRORS.connectBody;
  out.rawHost = target;
  out.host = hostOnly(target);
  if (out.host === "") return HEAD_ERRORS.connectTarget;
  out.path = "/";
  out.originForm = target;
  out.keepAlive = false;
  return null;
}

/** Parses a complete response head validated by `sc.scan`. Errors are reported with status 502. */
export function parseResponseHead(buf: Buffer, sc: HeadScanner, out: ResponseHead): HeadError | null {
  const b = sc.bounds;
  const s = b[0] as number;
  const e = b[1] as number;
  // "HTTP/1.x SSS" [SP reason]; a missing reason with its SP is tolerated as many servers omit it.
  if (e - s < 12 || buf[s + 8] !== SP || (e - s > 12 && buf[s + 12] !== SP)) return HEAD_ERRORS.statusLine;
  const minor = parseVersion(buf, s, s + 8);
  if (minor < 0) return HEAD_ERRORS.statusLine;
  let status = 0;
  for (let i = s + 9; i < s + 12; i++) {
    const d = (buf[i] as number) - 48;
    if (d < 0 || d > 9) return HEAD_ERRORS.statusLine;
    status = status * 10 + d;
  }
  if (status < 100) return HEAD_ERRORS.statusLine;
  out.minor = minor;
  out.status = status;
  const text = headText(buf, b);
  out.reason = e - s > 13 ? text.slice(13, e - s) : "";
  const fe = parseFields(buf, text, b, out, null);
  if (fe !== null) return { status: 502, message: `upstream: ${fe.message}` };
  return null;
}

// Chunked decoder states.
const C_SIZE_START = 0;
const C_SIZE = 1;
const C_SIZE_WS = 2;
const C_EXT = 3;
const C_SIZE_LF = 4;
const C_DATA = 5;
const C_DATA_CR = 6;
const C_DATA_LF = 7;
const C_TRAILER_START = 8;
const C_TRAILER_NAME = 9;
const C_TRAILER_VALUE = 10;
const C_TRAILER_LF = 11;
const C_FINAL_LF = 12;
const C_DONE = 13;

/** Largest chunk size accepted before the next hex digit would leave the safe-integer range. */
const CHUNK_SIZE_MAX_BEFORE_SHIFT = Math.floor((Number.MAX_SAFE_INTEGER - 15) / 16);

/**
 * Streaming decoder for a chunked body (RFC 9112 §7.1). Validates framing byte by byte except inside
 * chunk data, which it slices out without copying. Chunk extensions and trailer fields are checked and
 * bounded but never returned. It stops exactly at the end of the body so following bytes (a pipelined
 * request, or extra upstream bytes) are left to the caller.
 */
export class ChunkedDecoder {
  /** Data slices decoded by the last `decode` call (only when `collect` is set); the caller empties it. */
  readonly pieces: Buffer[] = [];
  /** Total bytes in `pieces`. */
  pieceBytes = 0;
  error: HeadError | null = null;
  private collect = false;
  private state = C_SIZE_START;
  private remaining = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  private readonly maxExtBytes: number;
  private readonly maxTrailerBytes: number;

  constructor(maxExtBytes = 4096, maxTrailerBytes = 16384) {
    this.maxExtBytes = maxExtBytes;
    this.maxTrailerBytes = maxTrailerBytes;
  }

  get done(): boolean {
    return this.state === C_DONE;
  }

  /** Ready for a new body; `collect` makes `decode` fill `pieces` with the data slices. */
  reset(collect: boolean): void {
    this.collect = collect;
    this.state = C_SIZE_START;
    this.remaining = 0;
    this.lineBytes = 0;
    this.trailerBytes = 0;
    this.error = null;
    this.pieces.length = 0;
    this.pieceBytes = 0;
  }

  /** Consumes buf[start..]; returns the number of bytes that belong to the body, or -1 on error. */
  decode(buf: Buffer, start: number): number {
    const len = buf.length;
    let state = this.state;
    let i = start;
    while (i < len && state !== C_DONE) {
      if (state === C_DATA) {
        const avail = len - i;
        const n = Math.min(avail, this.remaining);
        if (this.collect) {
          this.pieces.push(buf.subarray(i, i + n));
          this.pieceBytes += n;
        }
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) state = C_DATA_CR;
        continue;
      }
      const c = buf[i++] as number;
      switch (state) {
        case C_SIZE_START: {
          const h = HEX[c] as number;
          if (h < 0) return this.fail(HEAD_ERRORS.chunkSize);
          this.remaining = h;
          state = C_SIZE;
          break;
        }
        case C_SIZE: {
          const h = HEX[c] as number;
          if (h >= 0) {
            if (this.remaining > CHUNK_SIZE_MAX_BEFORE_SHIFT) return this.fail(HEAD_ERRORS.chunkSize);
            this.remaining = this.remaining * 16 + h;
          } else if (c === CR) state = C_SIZE_LF;
          else if (c === 59 /* ; */) {
            this.lineBytes = 0;
            state = C_EXT;
          } else if (isOWS(c)) state = C_SIZE_WS;
          else return this.fail(HEAD_ERRORS.chunkSize);
          break;
        }
        case C_SIZE_WS:
          if (c === 59) {
            this.lineBytes = 0;
            state = C_EXT;
          } else if (!isOWS(c)) return this.fail(HEAD_ERRORS.chunkSize);
          break;
        case C_EXT:
          if (c === CR) state = C_SIZE_LF;
          else if ((c < SP && c !== HTAB) || c === 0x7f) return this.fail(HEAD_ERRORS.chunkFraming);
          else if (++this.lineBytes > this.maxExtBytes) return this.fail(HEAD_ERRORS.chunkExtTooLong);
          break;
        case C_SIZE_LF:
          if (c !== LF) return this.fail(HEAD_ERRORS.chunkFraming);
          state = this.remaining === 0 ? C_TRAILER_START : C_DATA;
          break;
        case C_DATA_CR:
          if (c !== CR) return this.fail(HEAD_ERRORS.chunkFraming);
          state = C_DATA_LF;
          break;
        case C_DATA_LF:
          if (c !== LF) return this.fail(HEAD_ERRORS.chunkFraming);
          state = C_SIZE_START;
          break;
        case C_TRAILER_START:
          if (c === CR) state = C_FINAL_LF;
          else if (TCHAR[c] !== 1) return this.fail(HEAD_ERRORS.trailer);
          else state = C_TRAILER_NAME;
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail(HEAD_ERRORS.trailerTooLarge);
          break;
        case C_TRAILER_NAME:
          if (c === COLON) state = C_TRAILER_VALUE;
          else if (TCHAR[c] !== 1) return this.fail(HEAD_ERRORS.trailer);
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail(HEAD_ERRORS.trailerTooLarge);
          break;
        case C_TRAILER_VALUE:
          if (c === CR) state = C_TRAILER_LF;
          else if ((c < SP && c !== HTAB) || c === 0x7f) return this.fail(HEAD_ERRORS.trailer);
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail(HEAD_ERRORS.trailerTooLarge);
          break;
        case C_TRAILER_LF:
          if (c !== LF) return this.fail(HEAD_ERRORS.trailer);
          state = C_TRAILER_START;
          break;
        case C_FINAL_LF:
          if (c !== LF) return this.fail(HEAD_ERRORS.chunkFraming);
          state = C_DONE;
          break;
      }
    }
    this.state = state;
    return i - start;
  }

  private fail(e: HeadError): number {
    this.error = e;
    return -1;
  }
}
