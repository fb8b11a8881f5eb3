/**
 * JSON access log lines in Envoy's spirit, one per finished exchange, through pino's asynchronous
 * destination (sonic-boom: buffered, written off the request path). Lines carry only the chosen
 * fields (no pino level/time keys), so a line is one JSON.stringify. Fields are chosen once, at start.
 */
import pino from "pino";
import type { ExchangeView } from "./exchange.ts";

export interface AccessLogOptions {
  /** A file path, or "stdout"/"stderr". */
  readonly path: string;
  /** Fields to write, in order; default DEFAULT_ACCESS_LOG_FIELDS. */
  readonly fields?: readonly string[];
  /** Fraction of exchanges logged, 0…1; default 1. */
  readonly sampleRate?: number;
  /** Routes whose requests are never logged. */
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

type Field = (x: ExchangeView, f: ExchangeFacts) => string | number | null;

const FIELDS: Record<string, Field> = {
  start_time: (x, f) =>
    new Date(performance.timeOrigin + (x.startedAt === 0 ? f.endedAtMs : x.startedAt)).toISOString(),
  method: (x) => x.head?.method ?? null,
  authority: (x) => x.head?.rawHost ?? null,
  path: (x) => (x.head === null ? null : x.head.originForm),
  protocol: (x) => (x.head === null ? null : `HTTP/1.${x.head.minor}`),
  status: (x) => x.status,
  response_flags: (x, f) => (x.errorCode !== "" ? x.errorCode : f.aborted ? "aborted" : null),
  duration_ms: (x, f) => (x.startedAt === 0 ? 0 : Math.round((f.endedAtMs - x.startedAt) * 1000) / 1000),
  listener: (x) => x.proxy.listenerName,
  route: (x) => x.route?.name ?? null,
  upstream_cluster: (x) => x.cluster?.name ?? null,
  upstream_host: (x) => x.endpoint?.key ?? null,
  bytes_received: (_x, f) => f.bytesReceived,
  bytes_sent: (_x, f) => f.bytesSent,
  user_agent: (x) => x.head?.header("user-agent") ?? null,
  request_id: (x) => x.requestId,
  trace_id: (_x, f) => (f.traceId === "" ? null : f.traceId),
  client_address: (x) => x.clientIp,
};

export const ACCESS_LOG_FIELDS: readonly string[] = Object.keys(FIELDS);
export const DEFAULT_ACCESS_LOG_FIELDS: readonly string[] = ACCESS_LOG_FIELDS;

export class AccessLog {
  private readonly names: readonly string[];
  private readonly getters: readonly Field[];
  private readonly sampleRate: number;
  private readonly disabledRoutes: ReadonlySet<string>;
  private readonly destination: ReturnType<typeof pino.destination>;

  constructor(options: AccessLogOptions) {
    const names = options.fields ?? DEFAULT_ACCESS_LOG_FIELDS;
    const unknown = names.filter((n) => !(n in FIELDS));
    if (unknown.length > 0)
      throw new Error(
        `unknown access log field(s) ${unknown.join(", ")}; known: ${ACCESS_LOG_FIELDS.join(", ")}`,
      );
    const rate = options.sampleRate ?? 1;
    if (!(rate >= 0 && rate <= 1)) throw new Error(`access log sample rate must be within 0…1, got ${rate}`);
    this.names = names;
    this.getters = names.map((n) => FIELDS[n] as Field);
    this.sampleRate = rate;
    this.disabledRoutes = new Set(options.disabledRoutes ?? []);
    const dest = options.path === "stdout" ? 1 : options.path === "stderr" ? 2 : options.path;
    this.destination = pino.destination({ dest, sync: false, minLength: 4096, mkdir: true });
  }

  /** Whether this exchange is logged (route switch, then sampling); cheap, checked before any field work. */
  wants(x: ExchangeView): boolean {
    const route = x.route;
    if (route !== null && this.disabledRoutes.size > 0 && this.disabledRoutes.has(route.name)) return false;
    return this.sampleRate >= 1 || Math.random() < this.sampleRate;
  }

  write(x: ExchangeView, facts: ExchangeFacts): void {
    const line: Record<string, string | number | null> = {};
    for (let i = 0; i < this.getters.length; i++)
      line[this.names[i] as string] = (this.getters[i] as Field)(x, facts);
    this.destination.write(`${JSON.stringify(line)}\n`);
  }

  /** Writes what is buffered (at shutdown). */
  close(): void {
    try {
      this.destination.flushSync();
    } catch {
      // not yet open (nothing written): nothing to flush
    }
    this.destination.end();
  }
}
