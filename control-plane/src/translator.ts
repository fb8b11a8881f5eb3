/** config.yaml (already validated) → IR. */
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  type ClusterConfig,
  type GatewayConfig,
  type ListenerConfig,
  type PemSource,
  type PluginConfig,
  parseDuration,
  type RouteConfigEntry,
  type SecretConfig,
} from "@agw/core/config/schema";
import { parseHostPort } from "@agw/core/config/semantic";
import { parseHtpasswd } from "@agw/core/htpasswd";
import {
  DEFAULTS,
  type HeaderOps,
  type Ir,
  type IrCluster,
  type IrClusterPolicies,
  type IrIpRules,
  type IrL4,
  type IrListener,
  type IrListenerLimits,
  type IrListenerTls,
  type IrPathPolicy,
  type IrPlugin,
  type IrRetry,
  type IrRoute,
  type IrSecret,
  LISTENER_LIMITS,
  type ValueMatch,
} from "@agw/core/ir";
import { isConfigMapSource } from "@agw/core/xds/plugin-component";

type HeaderOpsInput = RouteConfigEntry["requestHeaders"];
type ValueMatchInput = {
  name: string;
  exact?: string | undefined;
  regex?: string | undefined;
  present?: boolean | undefined;
  invert?: boolean | undefined;
};

function durationMs(text: string | undefined, fallback: number): number {
  return text === undefined ? fallback : (parseDuration(text) ?? fallback);
}

function headerOps(ops: HeaderOpsInput): HeaderOps {
  return {
    add: Object.entries(ops?.add ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    set: Object.entries(ops?.set ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    remove: (ops?.remove ?? []).map((k) => k.toLowerCase()),
  };
}

function valueMatch(m: ValueMatchInput, lowerName: boolean): ValueMatch {
  const name = lowerName ? m.name.toLowerCase() : m.name;
  const invert = m.invert ?? false;
  if (m.exact !== undefined) return { name, kind: "exact", value: m.exact, invert };
  if (m.regex !== undefined) return { name, kind: "regex", value: m.regex, invert };
  return { name, kind: "present", value: "", invert: m.present === false ? !invert : invert };
}

function route(r: RouteConfigEntry, order: number): IrRoute {
  const p = r.match?.path;
  const path: IrRoute["path"] =
    p?.exact !== undefined
      ? { kind: "exact", value: p.exact }
      : p?.regex !== undefined
        ? { kind: "regex", value: p.regex }
        : { kind: "prefix", value: p?.prefix ?? "/" };
  return {
    name: r.name,
    order,
    hosts: r.match?.hosts ?? [],
    path,
    methods: r.match?.methods ?? [],
    headers: (r.match?.headers ?? []).map((h) => valueMatch(h, true)),
    query: (r.match?.query ?? []).map((q) => valueMatch(q, false)),
    target: r.clusters ? { weighted: r.clusters.map((c) => ({ ...c })) } : { cluster: r.cluster ?? "" },
    timeoutMs: durationMs(r.timeout, DEFAULTS.routeTimeoutMs),
    requestHeaders: headerOps(r.requestHeaders),
    responseHeaders: headerOps(r.responseHeaders),
    plugins: (r.plugins ?? []).map((pl) => ({ name: pl.name, config: pl.config ?? {} })),
    ...routePolicies(r),
    ...(r.accessLog === false && { accessLogOff: true }),
    ...(r.maxRequestBodyBytes !== undefined && { maxRequestBodyBytes: r.maxRequestBodyBytes }),
    ...(r.connect === true && { connect: true }),
    ...(r.basicAuth && { basicAuth: { users: r.basicAuth.users, realm: r.basicAuth.realm ?? "" } }),
  };
}

/** The route-level policies, as config.yaml and a GatewayRoute rule both spell them. */
export type RoutePolicyInput = Pick<
  RouteConfigEntry,
  | "retry"
  | "rewrite"
  | "redirect"
  | "directResponse"
  | "cors"
  | "mirror"
  | "rateLimit"
  | "compression"
  | "ipRules"
>;

/**
 * Retries, rewrites, redirects, direct responses, CORS and mirroring with defaults filled in
 * (docs/traffic/). Shared with the Kubernetes provider so both sources mean the same thing.
 */
export function routePolicies(r: RoutePolicyInput): Partial<IrRoute> {
  const out: Partial<IrRoute> = {};
  if (r.ipRules) out.ipRules = ipRules(r.ipRules);
  if (r.retry) out.retry = retry(r.retry);
  const rw = r.rewrite;
  if (rw)
    out.rewrite = {
      pathPrefix: rw.pathPrefix ?? "",
      ...(rw.pathRegex && { pathRegex: { ...rw.pathRegex } }),
      host: rw.host ?? "",
      autoHost: rw.autoHost ?? false,
    };
  const rd = r.redirect;
  if (rd)
    out.redirect = {
      scheme: rd.scheme ?? "",
      host: rd.host ?? "",
      port: rd.port ?? 0,
      path: rd.path ?? "",
      pathPrefix: rd.pathPrefix ?? "",
      stripQuery: rd.stripQuery ?? false,
      status: rd.status ?? 301,
    };
  const dr = r.directResponse;
  if (dr)
    out.directResponse = {
      status: dr.status,
      body: dr.body ?? "",
      contentType: dr.contentType ?? (dr.body ? "text/plain; charset=utf-8" : ""),
    };
  const c = r.cors;
  if (c)
    out.cors = {
      allowOrigins: c.allowOrigins,
      allowMethods: c.allowMethods ?? ["GET", "HEAD", "POST"],
      allowHeaders: (c.allowHeaders ?? []).map((h) => h.toLowerCase()),
      exposeHeaders: (c.exposeHeaders ?? []).map((h) => h.toLowerCase()),
      allowCredentials: c.allowCredentials ?? false,
      maxAgeMs: durationMs(c.maxAge, 0),
    };
  const m = r.mirror;
  if (m)
    out.mirror = { cluster: m.cluster, percent: m.percent ?? 100, maxBodyBytes: m.maxBodyBytes ?? 65536 };
  const rl = r.rateLimit;
  if (rl)
    out.rateLimit = {
      headers: rl.headers ?? true,
      limits: rl.limits.map((l, i) => ({
        name: l.name ?? `limit-${i}`,
        key: (l.key ?? ["route"]).map((k) =>
          typeof k === "string" ? { kind: k } : { kind: "header" as const, name: k.header.toLowerCase() },
        ),
        requests: l.requests,
        perMs: durationMs(l.per, 1000),
        burst: l.burst ?? l.requests,
        ipv6Prefix: l.ipv6Prefix ?? 64,
      })),
    };
  const cz = r.compression;
  if (cz)
    out.compression = {
      codings: cz.codings ?? ["br", "zstd", "gzip"],
      minBytes: cz.minBytes ?? 1024,
      contentTypes: cz.contentTypes ?? [],
      eventStream: cz.eventStream ?? false,
      levels: { gzip: cz.levels?.gzip ?? 0, br: cz.levels?.br ?? 0, zstd: cz.levels?.zstd ?? 0 },
    };
  return out;
}

function retry(r: NonNullable<RouteConfigEntry["retry"]>): IrRetry {
  const backoffBaseMs = durationMs(r.backoffBase, 25);
  return {
    retries: r.retries ?? 1,
    retryOn: r.retryOn ?? ["connect-failure", "reset", "gateway-error"],
    retriableStatusCodes: r.retriableStatusCodes ?? [],
    perTryTimeoutMs: durationMs(r.perTryTimeout, 0),
    backoffBaseMs,
    backoffMaxMs: durationMs(r.backoffMax, backoffBaseMs * 10),
    retryNonIdempotent: r.retryNonIdempotent ?? false,
  };
}

/** A cluster's policies, as config.yaml and a GatewayRoute rule's backendPolicy both spell them. */
export type ClusterPolicyInput = Omit<ClusterConfig, "name" | "endpoints" | "tls">;

/** The cluster's connection settings and traffic policies with defaults filled in (Envoy's where it has one). */
export function clusterPolicies(
  c: ClusterPolicyInput,
): IrClusterPolicies &
  Pick<
    IrCluster,
    | "protocol"
    | "lb"
    | "connectTimeoutMs"
    | "idleTimeoutMs"
    | "maxIdlePerEndpoint"
    | "maxRequestsPerConnection"
  > {
  const hc = c.healthCheck;
  const od = c.outlierDetection;
  const cb = c.circuitBreakers;
  const sa = c.sessionAffinity;
  return {
    protocol: c.protocol ?? "http1",
    lb: c.lb ?? "round_robin",
    connectTimeoutMs: durationMs(c.connectTimeout, DEFAULTS.connectTimeoutMs),
    idleTimeoutMs: durationMs(c.idleTimeout, DEFAULTS.idleTimeoutMs),
    maxIdlePerEndpoint: c.maxIdlePerEndpoint ?? DEFAULTS.maxIdlePerEndpoint,
    maxRequestsPerConnection: c.maxRequestsPerConnection ?? 0,
    hashOn: (c.hashOn ?? []).map((h) =>
      h.header !== undefined
        ? { kind: "header", name: h.header.toLowerCase() }
        : h.cookie !== undefined
          ? { kind: "cookie", name: h.cookie }
          : h.queryParameter !== undefined
            ? { kind: "query", name: h.queryParameter }
            : { kind: "source_ip", name: "" },
    ),
    ringPointsPerWeight: c.ringPointsPerWeight ?? 128,
    panicThresholdPercent: c.panicThreshold ?? 50,
    ...(sa && { sessionAffinity: { cookie: sa.cookie, ttlMs: durationMs(sa.ttl, 0), path: sa.path ?? "/" } }),
    ...(hc && {
      healthCheck: {
        type: hc.type ?? "http",
        path: hc.path ?? "/",
        host: hc.host ?? "",
        expectedStatuses: hc.expectedStatuses ?? [200],
        intervalMs: durationMs(hc.interval, 5000),
        jitterMs: durationMs(hc.jitter, 0),
        timeoutMs: durationMs(hc.timeout, 1000),
        healthyThreshold: hc.healthyThreshold ?? 2,
        unhealthyThreshold: hc.unhealthyThreshold ?? 3,
      },
    }),
    ...(od && {
      outlierDetection: {
        consecutive5xx: od.consecutive5xx ?? 5,
        consecutiveGatewayErrors: od.consecutiveGatewayErrors ?? 0,
        baseEjectionMs: durationMs(od.baseEjectionTime, 30_000),
        maxEjectionMs: durationMs(od.maxEjectionTime, 300_000),
        maxEjectionPercent: od.maxEjectionPercent ?? 10,
      },
    }),
    circuitBreakers: {
      maxConnections: cb?.maxConnections ?? 0,
      maxRequests: cb?.maxRequests ?? 0,
      maxRetries: cb?.maxRetries ?? 3,
    },
    ...(c.retryBudget && {
      retryBudget: {
        percent: c.retryBudget.percent ?? 20,
        minConcurrency: c.retryBudget.minConcurrency ?? 3,
      },
    }),
  };
}

function pemOf(source: PemSource | undefined, what: string): string {
  if (source?.pem === undefined) throw new Error(`${what} passed validation but its PEM was not read`);
  return source.pem;
}

function secret(s: SecretConfig): IrSecret {
  if (s.htpasswd !== undefined) {
    const text = s.htpasswd.text;
    if (text === undefined) throw new Error(`${s.name} passed validation but its htpasswd was not read`);
    return { name: s.name, certificateChainPem: "", privateKeyPem: "", htpasswd: parseHtpasswd(text) };
  }
  if (s.ca !== undefined)
    return { name: s.name, certificateChainPem: "", privateKeyPem: "", caPem: pemOf(s.ca, s.name) };
  return {
    name: s.name,
    certificateChainPem: pemOf(s.certificate, s.name),
    privateKeyPem: pemOf(s.key, s.name),
  };
}

function listenerLimits(l: ListenerConfig["limits"]): IrListenerLimits | undefined {
  if (l === undefined) return undefined;
  const d = LISTENER_LIMITS;
  const headerBytes = l.maxRequestHeaderBytes ?? d.maxRequestHeaderBytes;
  return {
    maxRequestHeaderBytes: headerBytes,
    maxRequestHeaders: l.maxRequestHeaders ?? d.maxRequestHeaders,
    maxRequestBodyBytes: l.maxRequestBodyBytes ?? d.maxRequestBodyBytes,
    headerTimeoutMs: durationMs(l.headerTimeout, d.headerTimeoutMs),
    bodyTimeoutMs: durationMs(l.bodyTimeout, d.bodyTimeoutMs),
    idleTimeoutMs: durationMs(l.idleTimeout, d.idleTimeoutMs),
    maxRequestsPerConnection: l.maxRequestsPerConnection ?? d.maxRequestsPerConnection,
    http2: {
      maxConcurrentStreams: l.http2?.maxConcurrentStreams ?? d.http2.maxConcurrentStreams,
      initialWindowSize: l.http2?.initialWindowSize ?? d.http2.initialWindowSize,
      maxHeaderListBytes: l.http2?.maxHeaderListBytes ?? headerBytes,
    },
  };
}

function listenerPaths(p: ListenerConfig["paths"]): IrPathPolicy | undefined {
  if (p === undefined) return undefined;
  return {
    normalize: p.normalize ?? true,
    mergeSlashes: p.mergeSlashes ?? true,
    escapedSlashes: p.escapedSlashes ?? "reject",
  };
}

/** IP rules as config.yaml spells them (also a GatewayRoute rule's, validated by the same schema). */
export function ipRules(r: { allow?: string[] | undefined; deny?: string[] | undefined }): IrIpRules {
  return { allow: r.allow ?? [], deny: r.deny ?? [] };
}

function listenerAccess(l: ListenerConfig): Pick<IrListener, "proxyProtocol" | "clientAddress" | "ipRules"> {
  const c = l.clientAddress;
  return {
    ...(l.proxyProtocol && { proxyProtocol: { timeoutMs: durationMs(l.proxyProtocol.timeout, 0) } }),
    ...(c && {
      clientAddress: { xffNumTrustedHops: c.xffNumTrustedHops ?? 0, trustedProxies: c.trustedProxies ?? [] },
    }),
    ...(l.ipRules && { ipRules: ipRules(l.ipRules) }),
  };
}

function listenerL4(l: ListenerConfig): IrL4 | undefined {
  if (l.protocol !== "tcp" && l.protocol !== "tls-passthrough") return undefined;
  const o = l.l4;
  return {
    cluster: l.cluster ?? "",
    sni: (l.sni ?? []).map((r) => ({ serverNames: r.serverNames, cluster: r.cluster })),
    ...(o?.idleTimeout !== undefined && { idleTimeoutMs: durationMs(o.idleTimeout, 0) }),
    maxConnections: o?.maxConnections ?? 0,
    clientHelloTimeoutMs: durationMs(o?.clientHelloTimeout, 0),
    maxClientHelloBytes: o?.maxClientHelloBytes ?? 0,
    maxConnectAttempts: o?.maxConnectAttempts ?? 0,
  };
}

export function listenerTls(tls: ListenerConfig["tls"]): IrListenerTls | undefined {
  if (tls === undefined) return undefined;
  const client = tls.clientCertificate;
  return {
    certificates: tls.certificates,
    minVersion: tls.minVersion ?? "TLSv1.2",
    ciphers: tls.ciphers ?? "",
    alpn: tls.alpn ?? ["http/1.1"],
    ...(client && {
      clientCertificate: {
        ca: client.ca,
        required: client.required ?? true,
        subjectAltNames: client.subjectAltNames ?? [],
        commonNames: client.commonNames ?? [],
      },
    }),
  };
}

/**
 * The component's bytes are the control plane's to read (xds/components.ts, when publishing): the
 * IR names where they are and the digest config.yaml pins, or "" to take the bytes' own.
 */
function plugin(p: PluginConfig): IrPlugin {
  const source = isConfigMapSource(p.source)
    ? p.source
    : pathToFileURL(p.source.startsWith("file://") ? fileURLToPath(p.source) : resolve(p.source)).href;
  return {
    name: p.name,
    source,
    digest: p.digest ?? "",
    size: 0,
    config: p.config ?? {},
    redisUrl: p.redis ?? "",
    redisTimeoutMs: durationMs(p.redisTimeout, 0),
    httpAllowHosts: p.httpAllowHosts ?? [],
    httpTimeoutMs: durationMs(p.httpTimeout, 0),
    fuel: p.fuel ?? 0,
    memoryMaxBytes: p.memoryLimit ?? 0,
    maxInstances: p.maxInstances ?? 0,
    failOpen: p.failOpen ?? false,
    failureStatus: p.failureStatus ?? 0,
    onResponse: p.onResponse ?? false,
    requestBody: p.requestBody ?? false,
    responseBody: p.responseBody ?? false,
    bodyLimit: p.bodyLimit ?? 0,
    overLimit: p.overLimit ?? "",
    crypto: p.crypto ?? false,
  };
}

export function translateConfig(config: GatewayConfig): Ir {
  return {
    plugins: (config.plugins ?? []).map(plugin),
    secrets: (config.secrets ?? []).map(secret),
    listeners: (config.listeners ?? []).map((l) => {
      const tls = listenerTls(l.tls);
      const limits = listenerLimits(l.limits);
      const paths = listenerPaths(l.paths);
      const l4 = listenerL4(l);
      return {
        name: l.name,
        address: l.address ?? DEFAULTS.listenerAddress,
        port: l.port,
        protocol: l.protocol ?? "http",
        ...(tls && { tls }),
        ...(limits && { limits }),
        ...(paths && { paths }),
        ...(l4 && { l4 }),
        ...listenerAccess(l),
        routes: (l.routes ?? []).map(route),
      };
    }),
    clusters: (config.clusters ?? []).map((c) => ({
      name: c.name,
      ...clusterPolicies(c),
      endpoints: c.endpoints.map((e) => {
        if (typeof e !== "string") return { address: e.address, port: e.port, weight: e.weight ?? 1 };
        const hp = parseHostPort(e);
        if (!hp) throw new Error(`endpoint "${e}" passed validation but does not parse`);
        return { address: hp.host, port: hp.port, weight: 1 };
      }),
      ...(c.tls && {
        tls: {
          sni: c.tls.sni ?? "",
          ca: c.tls.ca ?? "",
          certificate: c.tls.certificate ?? "",
          // An HTTP/2 cluster asks for h2 alone: it has no HTTP/1.1 to fall back to.
          alpn: c.tls.alpn ?? (c.protocol === "http2" ? ["h2"] : ["http/1.1"]),
        },
      }),
    })),
  };
}
