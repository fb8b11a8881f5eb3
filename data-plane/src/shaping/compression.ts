/**
 * Response compression (agw.v1 CompressionPolicy; docs/traffic/compression.md): gzip, brotli and
 * zstd from node:zlib, negotiated from Accept-Encoding. The exchange asks `begin` when the response
 * head is final (after the on-response plugins), for every protocol; the body then goes through a
 * ResponseEncoder instead of straight to the client. zlib runs on libuv's thread pool, off the event
 * loop; what it holds is bounded by the backpressure: the upstream pauses while the client or zlib
 * is backed up.
 */
import zlib from "node:zlib";
import type { CompressionPolicy } from "@agw/core/gen/agw/v1/shaping_pb.js";
import type {
  BodyEncoder,
  EncodingTarget,
  RequestView,
  ResponseCompressor,
  ResponseFields,
} from "../runtime/types.ts";

export type Coding = "gzip" | "br" | "zstd";
const CODINGS: readonly Coding[] = ["gzip", "br", "zstd"];

/** Envoy's compressor default content types. */
export const DEFAULT_CONTENT_TYPES: readonly string[] = [
  "application/javascript",
  "application/json",
  "application/xhtml+xml",
  "image/svg+xml",
  "text/css",
  "text/html",
  "text/plain",
  "text/xml",
];
export const DEFAULT_LEVELS: Readonly<Record<Coding, number>> = { gzip: 6, br: 4, zstd: 3 };
export const DEFAULT_MIN_BYTES = 1024;

/** Bytes in and out per route and coding, this thread's (agw_compression_*_bytes_total). */
export const compressionCounts = new Map<string, { responses: number; bytesIn: number; bytesOut: number }>();

export class RouteCompression implements ResponseCompressor {
  /** Codings in the configured preference order (ties in Accept-Encoding go to the first). */
  private readonly codings: readonly Coding[];
  private readonly levels: Readonly<Record<Coding, number>>;
  private readonly minBytes: number;
  /** Exact types, and "type/" prefixes for "type/*". */
  private readonly types: ReadonlySet<string>;
  private readonly typePrefixes: readonly string[];
  private readonly eventStream: boolean;
  private readonly route: string;

  /** Throws naming the bad field (the route is NACKed). */
  constructor(spec: CompressionPolicy, route: string) {
    const codings = spec.codings.length === 0 ? (["br", "zstd", "gzip"] as Coding[]) : spec.codings;
    for (const c of codings)
      if (!CODINGS.includes(c as Coding)) throw new Error(`compression: unknown coding "${c}"`);
    if (new Set(codings).size !== codings.length) throw new Error("compression: a coding is listed twice");
    this.codings = codings as Coding[];
    const level = (c: Coding, given: number, max: number) => {
      if (given === 0) return DEFAULT_LEVELS[c];
      if (given > max) throw new Error(`compression: ${c} level ${given} is above ${max}`);
      return given;
    };
    this.levels = {
      gzip: level("gzip", spec.gzipLevel, 9),
      br: level("br", spec.brotliLevel, 11),
      zstd: level("zstd", spec.zstdLevel, 22),
    };
    this.minBytes = spec.minBytes === undefined ? DEFAULT_MIN_BYTES : Number(spec.minBytes);
    const types = spec.contentTypes.length === 0 ? DEFAULT_CONTENT_TYPES : spec.contentTypes;
    this.types = new Set(types.filter((t) => !t.endsWith("/*")).map((t) => t.toLowerCase()));
    this.typePrefixes = types.filter((t) => t.endsWith("/*")).map((t) => t.slice(0, -1).toLowerCase());
    this.eventStream = spec.eventStream;
    this.route = route;
  }

  /**
   * The response head `f` is final: when it is to be compressed, edits it (Content-Encoding, no
   * Content-Length, Vary, a weak ETag) and returns the encoder the body goes through; else null.
   * `bodyless`: HEAD, 204, 304 (nothing to compress).
   */
  begin(
    x: EncodingTarget,
    req: RequestView,
    f: ResponseFields,
    bodyless: boolean,
    grpc: boolean,
  ): ResponseEncoder | null {
    if (bodyless || grpc || f.status === 206 || f.status < 200) return null;
    let type = "";
    let length = -1;
    let encoded = false;
    let noTransform = false;
    let vary = -1;
    const names = f.names;
    const values = f.values;
    for (let i = 0; i < names.length; i++) {
      const n = names[i] as string;
      const v = values[i] as string;
      if (n === "content-type") type = v;
      else if (n === "content-length") length = Number(v);
      else if (n === "content-encoding") encoded = v.trim().toLowerCase() !== "identity";
      else if (n === "cache-control") noTransform ||= /(^|[\s,])no-transform([\s,;]|$)/i.test(v);
      else if (n === "vary") vary = i;
    }
    if (encoded || noTransform || !this.compressible(type)) return null;
    if (length === 0 || (length > 0 && length < this.minBytes)) return null;
    // From here the representation depends on Accept-Encoding, whether or not this client gets it.
    if (vary < 0) f.add("vary", "accept-encoding");
    else {
      const v = values[vary] as string;
      if (!/(^|,)\s*(accept-encoding|\*)\s*(,|$)/i.test(v)) values[vary] = `${v}, accept-encoding`;
    }
    const coding = negotiate(req.header("accept-encoding"), this.codings);
    if (coding === null) return null;
    let kept = 0;
    for (let i = 0; i < names.length; i++) {
      const n = names[i] as string;
      if (n === "content-length" || n === "accept-ranges") continue;
      let v = values[i] as string;
      // The compressed bytes are not the upstream's: a strong validator becomes weak (as nginx does).
      if (n === "etag" && v.startsWith('"')) v = `W/${v}`;
      f.rawNames[kept] = f.rawNames[i] as string;
      names[kept] = n;
      values[kept] = v;
      kept++;
    }
    f.rawNames.length = kept;
    names.length = kept;
    values.length = kept;
    f.add("content-encoding", coding);
    const flush = this.eventStream && mediaType(type) === "text/event-stream";
    let counts = compressionCounts.get(`${this.route}\n${coding}`);
    if (counts === undefined) {
      counts = { responses: 0, bytesIn: 0, bytesOut: 0 };
      compressionCounts.set(`${this.route}\n${coding}`, counts);
    }
    counts.responses++;
    return new ResponseEncoder(x, createEncoder(coding, this.levels[coding]), coding, flush, counts);
  }

  private compressible(contentType: string): boolean {
    const t = mediaType(contentType);
    if (t === "") return false;
    // gRPC frames are never compressed by the gateway (gRPC has its own per-message compression);
    // an event stream only when the route asks (each event is flushed).
    if (t.startsWith("application/grpc")) return false;
    if (t === "text/event-stream") return this.eventStream;
    if (this.types.has(t)) return true;
    for (const p of this.typePrefixes) if (t.startsWith(p)) return true;
    return false;
  }
}

function mediaType(contentType: string): string {
  const semi = contentType.indexOf(";");
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/**
 * RFC 9110 §12.5.3: the acceptable coding with the highest q; ties go to the configured order. "*"
 * covers codings not named; q=0 refuses. null: none (identity).
 */
export function negotiate(acceptEncoding: string | undefined, preference: readonly Coding[]): Coding | null {
  if (acceptEncoding === undefined || acceptEncoding === "") return null;
  let star = -1;
  const q: Partial<Record<Coding, number>> = {};
  for (const item of acceptEncoding.split(",")) {
    const parts = item.split(";");
    let name = (parts[0] as string).trim().toLowerCase();
    if (name === "x-gzip") name = "gzip";
    let weight = 1;
    for (let i = 1; i < parts.length; i++) {
      const p = (parts[i] as string).trim();
      if (p.length > 2 && (p[0] === "q" || p[0] === "Q") && p[1] === "=") {
        const n = Number(p.slice(2));
        weight = Number.isFinite(n) && n >= 0 && n <= 1 ? n : 0;
      }
    }
    if (name === "*") star = weight;
    else if (name === "gzip" || name === "br" || name === "zstd") q[name] = Math.max(q[name] ?? 0, weight);
  }
  let best: Coding | null = null;
  let bestQ = 0;
  for (const c of preference) {
    const w = q[c] ?? Math.max(star, 0);
    if (w > bestQ) {
      best = c;
      bestQ = w;
    }
  }
  return best;
}

function createEncoder(coding: Coding, level: number): zlib.Gzip | zlib.BrotliCompress | zlib.ZstdCompress {
  switch (coding) {
    case "gzip":
      return zlib.createGzip({ level });
    case "br":
      return zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: level } });
    case "zstd":
      return zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
  }
}

/** One response body through zlib: what comes out goes to the client, in order. */
export class ResponseEncoder implements BodyEncoder {
  private readonly x: EncodingTarget;
  private readonly head: unknown;
  private readonly z: zlib.Gzip | zlib.BrotliCompress | zlib.ZstdCompress;
  private readonly flushEach: boolean;
  private readonly counts: { bytesIn: number; bytesOut: number };
  readonly coding: Coding;
  /** The client took the last bytes without backing up. */
  private clientOk = true;

  constructor(
    x: EncodingTarget,
    z: zlib.Gzip | zlib.BrotliCompress | zlib.ZstdCompress,
    coding: Coding,
    flushEach: boolean,
    counts: { bytesIn: number; bytesOut: number },
  ) {
    this.x = x;
    this.head = x.head;
    this.z = z;
    this.coding = coding;
    this.flushEach = flushEach;
    this.counts = counts;
    z.on("data", (out: Buffer) => {
      if (!this.current()) return;
      this.counts.bytesOut += out.length;
      this.clientOk = x.toClient(out);
    });
    z.on("drain", () => {
      if (this.current()) x.resumeUpstream();
    });
    z.on("error", () => {
      // A zlib failure (memory) after the head: the client must not see a complete response.
      if (!this.current()) return;
      x.encoder = null;
      x.abortResponse();
    });
    z.once("end", () => {
      if (!this.current()) return;
      x.encoder = null;
      x.responseComplete();
    });
  }

  private current(): boolean {
    return this.x.head === this.head && this.x.active && this.x.encoder === this;
  }

  /** Body bytes in; false when the upstream should pause (zlib or the client backed up). */
  write(chunk: Buffer): boolean {
    this.counts.bytesIn += chunk.length;
    const ok = this.z.write(chunk);
    if (this.flushEach) this.z.flush(this.coding === "gzip" ? zlib.constants.Z_SYNC_FLUSH : undefined);
    return ok && this.clientOk;
  }

  /** The body is complete: the last bytes, then the response is complete. */
  finish(): void {
    this.z.end();
  }

  /** The response was cut short or the client left: zlib's memory goes now. */
  destroy(): void {
    this.z.destroy();
  }
}
