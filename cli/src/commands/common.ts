/**
 * What several `agw` commands share: the usage error, address flags and the one-line listen
 * failure, graceful shutdown, config validation, and the flag groups (admin access, observability,
 * xDS mTLS, Kubernetes) with their checks, so each command module declares and reads only its own.
 */
import { hostname } from "node:os";
import type { ParseArgsOptionsConfig } from "node:util";
import { xdsTransportSecurity } from "@agw/control-plane/xds/transport-security";
import { loadConfigFile } from "@agw/core/config/loader";
import { checkHostPort } from "@agw/core/config/semantic";

/** A mistake on the command line: printed with a pointer to --help, exit 2. */
export class UsageError extends Error {}

/** One `agw` subcommand: its usage (which names every flag it takes) and its run. */
export interface Command {
  readonly usage: string;
  /** Its parseArgs table; absent when the command parses its arguments itself (plugin, top, …). */
  readonly options?: ParseArgsOptionsConfig;
  /** The exit code, or -1 to keep running (servers stop on SIGTERM/SIGINT). */
  run(argv: string[]): Promise<number>;
}

/** The flags a usage names: the command takes exactly those, so the help and the parser cannot disagree. */
export function usageFlags(usage: string): Set<string> {
  return new Set(["help", ...[...usage.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1] ?? "")]);
}

export const HELP_OPTION = {
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

export const ADMIN_OPTIONS = {
  "admin-token": { type: "string" },
  "admin-allow-host": { type: "string", multiple: true },
} as const satisfies ParseArgsOptionsConfig;

/** The admin access flags' help, as every command with an admin prints it. */
export const ADMIN_USAGE = `  --admin-token TOKEN      let remote admin clients in with Authorization: Bearer TOKEN (or
                           ?token=); without it the admin answers loopback clients only
                           (also AGW_ADMIN_TOKEN)
  --admin-allow-host NAME  also answer admin requests whose Host is NAME (repeatable); IP addresses
                           and localhost always are, other names are refused (DNS rebinding)`;

export const OBSERVABILITY_USAGE = `  --access-log FILE        JSON access log lines to FILE (or stdout)
  --access-log-fields LIST comma-separated fields (default all; docs/operability.md)
  --access-log-sample R    fraction of requests logged, 0..1 (default 1)
  --access-log-off ROUTES  comma-separated route names never logged
  --no-request-metrics     keep no per-request metrics (counts, latencies); to measure what they cost
  --otlp-endpoint URL      export traces over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces
  --trace-sample R         fraction of new traces sampled, 0..1 (default 1)`;

export const OBSERVABILITY_OPTIONS = {
  "access-log": { type: "string" },
  "access-log-fields": { type: "string" },
  "access-log-sample": { type: "string" },
  "access-log-off": { type: "string" },
  "no-request-metrics": { type: "boolean" },
  "otlp-endpoint": { type: "string" },
  "trace-sample": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

export const XDS_TLS_OPTIONS = {
  "xds-cert": { type: "string" },
  "xds-key": { type: "string" },
  "xds-ca": { type: "string" },
  "xds-plaintext": { type: "boolean" },
} as const satisfies ParseArgsOptionsConfig;

export const KUBE_OPTIONS = {
  kube: { type: "boolean" },
  kubeconfig: { type: "string" },
  namespace: { type: "string" },
  "gateway-addresses": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

/** The flag each address we listen on came from, to name it when the port cannot be had. */
const listenFlags: Array<{ flag: string; port: number }> = [];

export function hostPort(
  text: string | undefined,
  fallback: string,
  flag: string,
): { host: string; port: number } {
  const value = text ?? fallback;
  const hp = value.endsWith(":0")
    ? { host: value.slice(0, -2).replace(/^\[|\]$/g, ""), port: 0 }
    : checkHostPort(value);
  if (typeof hp === "string") throw new UsageError(`${flag}: ${hp}`);
  if (flag !== "--xds") listenFlags.push({ flag, port: hp.port });
  return hp;
}

/** Remembers that `port` comes from `flag` (for addresses not read by hostPort). */
export function listensOn(flag: string, port: number): void {
  listenFlags.push({ flag, port });
}

const LISTEN_FAILURES: Record<string, string> = {
  EADDRINUSE: "the address is already in use (another agw, or another program, listens there)",
  EACCES: "permission denied (ports below 1024 need privileges)",
  EADDRNOTAVAIL: "no interface of this machine has that address",
};

/** One line for a port we could not listen on (admin, metrics, xDS, demo upstream), or undefined. */
export function listenFailure(e: unknown): string | undefined {
  const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
  if (err?.syscall !== "listen" || !err.code || !(err.code in LISTEN_FAILURES)) return undefined;
  const at = err.port !== undefined ? `${err.address}:${err.port}` : String(err.address ?? "");
  const flag = listenFlags.find((f) => f.port !== 0 && f.port === err.port)?.flag;
  return `cannot listen on ${at}${flag ? ` (${flag})` : ""}: ${LISTEN_FAILURES[err.code]}${flag ? `; choose another address with ${flag}` : ""}`;
}

export function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

export async function validate(file: string): Promise<boolean> {
  const result = await loadConfigFile(file);
  if (result.ok) return true;
  for (const e of result.errors) console.error(String(e));
  console.error(`${result.errors.length} error${result.errors.length === 1 ? "" : "s"} in ${file}`);
  return false;
}

export function needConfig(values: { config?: string | undefined }): string {
  if (!values.config) throw new UsageError("-c/--config FILE is required");
  return values.config;
}

type Values<T extends ParseArgsOptionsConfig> = {
  [K in keyof T]?: T[K] extends { type: "boolean" }
    ? boolean
    : T[K] extends { multiple: true }
      ? string[]
      : string;
};

export function adminAccess(values: Values<typeof ADMIN_OPTIONS>) {
  return {
    adminToken: values["admin-token"] ?? process.env.AGW_ADMIN_TOKEN,
    adminHosts: values["admin-allow-host"],
  };
}

const list = (text: string | undefined) =>
  text
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);

function fraction(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!(n >= 0 && n <= 1)) throw new UsageError(`${flag}: expected a number within 0..1, got "${text}"`);
  return n;
}

export function observabilityOptions(values: Values<typeof OBSERVABILITY_OPTIONS>) {
  return {
    requestMetrics: !values["no-request-metrics"],
    accessLog: values["access-log"]
      ? {
          path: values["access-log"],
          ...(values["access-log-fields"] ? { fields: list(values["access-log-fields"]) ?? [] } : {}),
          sampleRate: fraction(values["access-log-sample"], "--access-log-sample") ?? 1,
          disabledRoutes: list(values["access-log-off"]) ?? [],
        }
      : undefined,
    tracing: values["otlp-endpoint"]
      ? {
          otlpEndpoint: values["otlp-endpoint"],
          sampleRate: fraction(values["trace-sample"], "--trace-sample") ?? 1,
        }
      : undefined,
  };
}

export function kubernetesOptions(values: Values<typeof KUBE_OPTIONS>) {
  return values.kube || values.kubeconfig
    ? {
        ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
        ...(values.namespace ? { namespace: values.namespace } : {}),
        ...(values["gateway-addresses"] ? { gatewayAddressPool: values["gateway-addresses"] } : {}),
      }
    : undefined;
}

/** -c FILE, which --kube makes optional. */
export function configOrKube(
  values: { config?: string | undefined },
  kubernetes: object | undefined,
): string | undefined {
  return kubernetes && !values.config ? undefined : needConfig(values);
}

export function xdsCertificates(
  values: Values<typeof XDS_TLS_OPTIONS>,
  hosts: string[],
  role: "control plane" | "data plane",
) {
  try {
    return xdsTransportSecurity(
      { cert: values["xds-cert"], key: values["xds-key"], ca: values["xds-ca"] },
      values["xds-plaintext"] ?? false,
      hosts,
      role,
    );
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function defaultNodeId(values: { "node-id"?: string | undefined }): string {
  return values["node-id"] ?? hostname();
}

export function workersOption(values: { workers?: string | undefined }): { workers?: number } {
  if (values.workers === undefined) return {};
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1)
    throw new UsageError(`--workers: expected a whole number ≥ 1, got "${values.workers}"`);
  return { workers };
}

export function statsIntervalOption(values: { "stats-interval"?: string | undefined }): {
  statsIntervalMs?: number;
} {
  const text = values["stats-interval"];
  if (text === undefined) return {};
  const ms = Number(text);
  if (!(Number.isInteger(ms) && ms >= 1000))
    throw new UsageError(`--stats-interval: expected milliseconds ≥ 1000, got "${text}"`);
  return { statsIntervalMs: ms };
}

export function statsReportOption(values: { "no-stats-report"?: boolean | undefined }): {
  statsReport?: false;
} {
  return values["no-stats-report"] ? { statsReport: false } : {};
}

export function drainTimeoutMs(values: { "drain-timeout"?: string | undefined }): number {
  const ms = Number(values["drain-timeout"] ?? 30) * 1000;
  if (!Number.isFinite(ms) || ms < 0)
    throw new UsageError(`--drain-timeout: expected seconds ≥ 0, got "${values["drain-timeout"]}"`);
  return ms;
}

export function pluginComponentsOption(values: { "plugin-components"?: string | undefined }) {
  const p = values["plugin-components"] ?? "any";
  if (p !== "any" && p !== "authenticated")
    throw new UsageError(`--plugin-components: expected any or authenticated, got "${p}"`);
  return p;
}
