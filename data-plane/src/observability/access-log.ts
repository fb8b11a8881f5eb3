/**
 * JSON access log lines in Envoy's spirit, one per finished exchange. Profiling showed the cost was
 * per-line work (an object per exchange, JSON.stringify, toISOString) and one fs write per ~4 KiB
 * through sonic-boom; so each line is concatenated from pre-encoded keys and each field's JSON
 * fragment, the date string is cached per second, and lines are written in 64 KiB batches by one
 * asynchronous fs.write at a time, off the request path. Fields are chosen once, at start.
 */
import fs from "node:fs";
import path from "node:path";
import type { L4ConnectionView } from "./connection.ts";
import type { ExchangeView } from "./exchange.ts";

export interface AccessLogOptions {
  /** A file path, or "stdout"/"stderr". */
  readonly path: string;
  /** Fields to write, in order; default DEFAULT_ACCESS_LOG_FIELDS. */
  readonly fields?: readonly string[];
  /** Fraction of exchanges logged, 0…1; default 1. */
  readonly sampleRate?: number;
  /** Routes whose requests are never logged, besides those whose config turns the access log off. */
  readonly disabledRoutes?: readonly string[];
}

/** One exchange's facts that only the observer knows. */
export interface ExchangeFacts {
  readonly endedAtMs: number;
  readonly aborted: boolean;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly traceId: string;
}

/** Returns the field's value as a JSON fragment. */
type Field = (x: ExchangeView, f: ExchangeFacts) => string;

const NULL = "null";
const json = (s: string | null | undefined): string => (s == null ? NULL : JSON.stringify(s));

/** ISO-8601 UTC with milliseconds, the date and time part cached per second. */
let cachedSecond = -1;
let cachedPrefix = "";
function isoTime(epochMs: number): string {
  const whole = Math.floor(epochMs);
  const second = Math.floor(whole / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 20);
  }
  const ms = whole - second * 1000;
  return `"${cachedPrefix}${ms < 10 ? "00" : ms < 100 ? "0" : ""}${ms}Z"`;
}

const FIELDS: Record<string, Field> = {
  start_time: (x, f) => isoTime(performance.timeOrigin + (x.startedAt === 0 ? f.endedAtMs : x.startedAt)),
  method: (x) => json(x.head?.method),
  authority: (x) => json(x.head?.rawHost),
  path: (x) => (x.head === null ? NULL : json(x.head.originForm)),
  protocol: (x) =>
    x.protocol === "HTTP/1.1"
      ? '"HTTP/1.1"'
      : x.protocol === "HTTP/2"
        ? '"HTTP/2"'
        : x.protocol === ""
          ? NULL
          : json(x.protocol),
  status: (x) => String(x.status),
  response_flags: (x, f) => (x.errorCode !== "" ? json(x.errorCode) : f.aborted ? '"aborted"' : NULL),
  duration_ms: (x, f) =>
    x.startedAt === 0 ? "0" : String(Math.round((f.endedAtMs - x.startedAt) * 1000) / 1000),
  listener: (x) => json(x.proxy.listenerName),
  route: (x) => json(x.route?.name),
  upstream_cluster: (x) => json(x.cluster?.name),
  upstream_host: (x) => json(x.endpoint?.key),
  bytes_received: (_x, f) => String(f.bytesReceived),
  bytes_sent: (_x, f) => String(f.bytesSent),
  user_agent: (x) => json(x.head?.header("user-agent")),
  request_id: (x) => json(x.requestId),
  trace_id: (_x, f) => (f.traceId === "" ? NULL : json(f.traceId)),
  client_address: (x) => json(x.clientIp),
};

/** Batches this large are written at once; a partial batch waits at most FLUSH_MS. */
const BATCH_BYTES = 64 * 1024;
const FLUSH_MS = 100;

export const ACCESS_LOG_FIELDS: readonly string[] = Object.keys(FIELDS);
export const DEFAULT_ACCESS_LOG_FIELDS: readonly string[] = ACCESS_LOG_FIELDS;

export class AccessLog {
  /** `"key":` for each field, with `{` or `,` before it. */
  private readonly keys: readonly string[];
  private readonly getters: readonly Field[];
  private readonly sampleRate: number;
  private readonly disabledRoutes: ReadonlySet<string>;
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private pending: string[] = [];
  private pendingLength = 0;
  private writing = false;
  private timer: NodeJS.Timeout | null = null;
  private reportedError = false;
  private drained: (() => void) | null = null;

  constructor(options: AccessLogOptions) {
    const names = options.fields ?? DEFAULT_ACCESS_LOG_FIELDS;
    const unknown = names.filter((n) => !(n in FIELDS));
    if (unknown.length > 0)
      throw new Error(
        `unknown access log field(s) ${unknown.join(", ")}; known: ${ACCESS_LOG_FIELDS.join(", ")}`,
      );
    const rate = options.sampleRate ?? 1;
    if (!(rate >= 0 && rate <= 1)) throw new Error(`access log sample rate must be within 0…1, got ${rate}`);
    this.keys = names.map((n, i) => `${i === 0 ? "{" : ","}${JSON.stringify(n)}:`);
    this.getters = names.map((n) => FIELDS[n] as Field);
    this.sampleRate = rate;
    this.disabledRoutes = new Set(options.disabledRoutes ?? []);
    if (options.path === "stdout" || options.path === "stderr") {
      this.fd = options.path === "stdout" ? 1 : 2;
      this.ownsFd = false;
    } else {
      fs.mkdirSync(path.dirname(options.path), { recursive: true });
      this.fd = fs.openSync(options.path, "a");
      this.ownsFd = true;
    }
  }

  /** Whether this exchange is logged (route switch, then sampling); cheap, checked before any field work. */
  wants(x: ExchangeView): boolean {
    const route = x.route;
    if (route !== null) {
      if (route.accessLogOff === true) return false;
      if (this.disabledRoutes.size > 0 && this.disabledRoutes.has(route.name)) return false;
    }
    return this.sampleRate >= 1 || Math.random() < this.sampleRate;
  }

  write(x: ExchangeView, facts: ExchangeFacts): void {
    const keys = this.keys;
    const getters = this.getters;
    let line = "";
    for (let i = 0; i < getters.length; i++) line += (keys[i] as string) + (getters[i] as Field)(x, facts);
    this.push(`${line}}\n`);
  }

  /**
   * One line per L4 connection (docs/l4.md), sampled like exchanges. Its fields are fixed: an L4
   * connection has no method, path or status, and the fields it has (sni, upstream_host, bytes both
   * ways) are always wanted; one line per connection, not per request, so plain JSON.stringify.
   */
  writeL4(c: L4ConnectionView, endedAtMs: number): void {
    if (this.sampleRate < 1 && Math.random() >= this.sampleRate) return;
    const line = JSON.stringify({
      start_time: JSON.parse(isoTime(performance.timeOrigin + c.startedAt)),
      protocol: c.protocol,
      listener: c.listener,
      sni: c.serverName === "" ? null : c.serverName,
      upstream_cluster: c.cluster === "" ? null : c.cluster,
      upstream_host: c.endpoint === "" ? null : c.endpoint,
      response_flags: c.outcome === "" ? null : c.outcome,
      duration_ms: Math.round((endedAtMs - c.startedAt) * 1000) / 1000,
      bytes_received: c.bytesReceived,
      bytes_sent: c.bytesSent,
      client_address: c.clientIp,
    });
    this.push(`${line}\n`);
  }

  private push(line: string): void {
    this.pending.push(line);
    this.pendingLength += line.length;
    if (this.pendingLength >= BATCH_BYTES) this.flush();
    else if (this.timer === null) this.timer = setTimeout(() => this.flush(), FLUSH_MS).unref();
  }

  /** Starts writing what is pending, unless a write is under way (its completion flushes again). */
  private flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.writing) return;
    if (this.pendingLength === 0) {
      this.drained?.();
      return;
    }
    const batch = Buffer.from(this.pending.join(""), "utf8");
    this.pending = [];
    this.pendingLength = 0;
    this.writing = true;
    this.writeAll(batch, 0);
  }

  private writeAll(batch: Buffer, offset: number): void {
    fs.write(this.fd, batch, offset, batch.length - offset, null, (err, written) => {
      if (err === null && offset + written < batch.length) return this.writeAll(batch, offset + written);
      if (err !== null && !this.reportedError) {
        this.reportedError = true;
        process.emitWarning(`access log write failed, lines dropped: ${err.message}`);
      }
      this.writing = false;
      if (this.pendingLength >= BATCH_BYTES || this.drained !== null) this.flush();
      else if (this.pendingLength > 0 && this.timer === null)
        this.timer = setTimeout(() => this.flush(), FLUSH_MS).unref();
    });
  }

  /** Writes what is pending (at shutdown). */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.drained = resolve;
      this.flush();
    });
    this.drained = null;
    if (this.ownsFd) fs.closeSync(this.fd);
  }
}
