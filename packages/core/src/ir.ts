/**
 * The internal representation every config source translates into (config.yaml today, Kubernetes
 * later). Defaults are filled in and units are normalised here, so the xDS layer maps fields 1:1.
 */
export type PathMatch = { kind: "exact" | "prefix" | "regex"; value: string };

export interface ValueMatch {
  name: string;
  kind: "exact" | "regex" | "present";
  value: string;
  invert: boolean;
}

export interface HeaderOps {
  add: Array<[string, string]>;
  set: Array<[string, string]>;
  remove: string[];
}

export type RouteTarget = { cluster: string } | { weighted: Array<{ name: string; weight: number }> };

export interface IrRoute {
  name: string;
  order: number;
  hosts: string[];
  path: PathMatch;
  methods: string[];
  headers: ValueMatch[];
  query: ValueMatch[];
  target: RouteTarget;
  timeoutMs: number;
  requestHeaders: HeaderOps;
  responseHeaders: HeaderOps;
  plugins: Array<{ name: string; config: Record<string, unknown> }>;
  retry?: IrRetry;
  /** Route-level rewriting and local answers (docs/traffic/); a redirect or direct response replaces the target. */
  rewrite?: IrRewrite;
  redirect?: IrRedirect;
  directResponse?: { status: number; body: string; contentType: string };
  cors?: IrCors;
  mirror?: { cluster: string; percent: number; maxBodyBytes: number };
  /** Local rate limits (docs/traffic/rate-limits.md). */
  rateLimit?: IrRateLimit;
  /** Response compression (docs/traffic/compression.md); levels 0: the data plane's default. */
  compression?: {
    codings: string[];
    minBytes: number;
    contentTypes: string[];
    eventStream: boolean;
    levels: { gzip: number; br: number; zstd: number };
  };
  /** The route's requests are left out of the access log. */
  accessLogOff?: boolean;
  /** Overrides the listener's body limit; 0 is unlimited. */
  maxRequestBodyBytes?: number;
  /** CONNECT requests are tunnelled to the cluster's endpoint. */
  connect?: boolean;
  ipRules?: IrIpRules;
  /** Basic auth against the htpasswd Secret `users` (docs/access-control.md). */
  basicAuth?: { users: string; realm: string };
}

/** IP allow and deny lists (CIDR prefixes) on the client address (docs/access-control.md). */
export interface IrIpRules {
  allow: string[];
  deny: string[];
}

/** Proxies trusted to name the client in X-Forwarded-For: hops (0: none) or prefixes. */
export interface IrClientAddress {
  xffNumTrustedHops: number;
  trustedProxies: string[];
}

export interface IrRewrite {
  /** "" keeps the path. */
  pathPrefix: string;
  pathRegex?: { pattern: string; substitution: string };
  /** "" keeps the Host. */
  host: string;
  autoHost: boolean;
}

/** "" / 0 keep the request's part. */
export interface IrRedirect {
  scheme: string;
  host: string;
  port: number;
  path: string;
  pathPrefix: string;
  stripQuery: boolean;
  status: number;
}

export type IrRateLimitKey = { kind: "clientAddress" } | { kind: "route" } | { kind: "header"; name: string };

export interface IrRateLimit {
  headers: boolean;
  limits: Array<{
    name: string;
    key: IrRateLimitKey[];
    requests: number;
    perMs: number;
    burst: number;
    ipv6Prefix: number;
  }>;
}

export interface IrCors {
  allowOrigins: string[];
  allowMethods: string[];
  allowHeaders: string[];
  exposeHeaders: string[];
  allowCredentials: boolean;
  maxAgeMs: number;
}

export interface IrListenerTls {
  /** Certificate secret names; the first is the default. */
  certificates: string[];
  minVersion: "TLSv1.2" | "TLSv1.3";
  /** OpenSSL cipher list; "" for the defaults. */
  ciphers: string;
  alpn: string[];
  clientCertificate?: {
    ca: string;
    required: boolean;
    subjectAltNames: string[];
    commonNames: string[];
  };
}

/** Downstream limits with every default filled in; 0 in a timeout disables it. */
export interface IrListenerLimits {
  maxRequestHeaderBytes: number;
  maxRequestHeaders: number;
  /** 0: unlimited. */
  maxRequestBodyBytes: number;
  headerTimeoutMs: number;
  bodyTimeoutMs: number;
  idleTimeoutMs: number;
  /** 0: unlimited. */
  maxRequestsPerConnection: number;
  http2: { maxConcurrentStreams: number; initialWindowSize: number; maxHeaderListBytes: number };
}

/** Request path normalisation before routing, every field filled in. */
export interface IrPathPolicy {
  normalize: boolean;
  mergeSlashes: boolean;
  escapedSlashes: "reject" | "keep" | "decode";
}

/** A tcp or tls-passthrough listener's targets and limits (docs/l4.md); 0 = the data plane's default. */
export interface IrL4 {
  /** "" for a tls-passthrough listener that refuses unmatched names. */
  cluster: string;
  sni: Array<{ serverNames: string[]; cluster: string }>;
  /** Absent: the default (1h); 0 disables. */
  idleTimeoutMs?: number;
  maxConnections: number;
  clientHelloTimeoutMs: number;
  maxClientHelloBytes: number;
  maxConnectAttempts: number;
}

export interface IrListener {
  name: string;
  address: string;
  port: number;
  protocol: "http" | "https" | "tcp" | "tls-passthrough";
  /** Present when protocol is tcp or tls-passthrough (routes then empty). */
  l4?: IrL4;
  tls?: IrListenerTls;
  /** Absent: the data plane defaults (the same values as LISTENER_LIMITS). */
  limits?: IrListenerLimits;
  /** Absent: every normalisation step on, escaped slashes refused (docs/routing.md). */
  paths?: IrPathPolicy;
  /** Connections start with a PROXY protocol header read within timeoutMs (0: the default). */
  proxyProtocol?: { timeoutMs: number };
  clientAddress?: IrClientAddress;
  ipRules?: IrIpRules;
  routes: IrRoute[];
}

export interface IrUpstreamTls {
  /** "" sends the endpoint host (when it is a name). */
  sni: string;
  /** CA secret name; "" for the system store. */
  ca: string;
  /** Client certificate secret name; "" for none. */
  certificate: string;
  alpn: string[];
}

export interface IrEndpoint {
  address: string;
  port: number;
  weight: number;
}

export interface IrHashSource {
  kind: "header" | "cookie" | "query" | "source_ip";
  /** Header (lower-case), cookie or query parameter name; "" for source_ip. */
  name: string;
}

/** Traffic policies of a cluster (docs/traffic/); absent parts use the data plane's defaults. */
export interface IrClusterPolicies {
  hashOn?: IrHashSource[];
  ringPointsPerWeight?: number;
  panicThresholdPercent?: number;
  sessionAffinity?: { cookie: string; ttlMs: number; path: string };
  healthCheck?: {
    type: "http" | "tcp";
    path: string;
    host: string;
    expectedStatuses: number[];
    intervalMs: number;
    jitterMs: number;
    timeoutMs: number;
    healthyThreshold: number;
    unhealthyThreshold: number;
  };
  outlierDetection?: {
    consecutive5xx: number;
    consecutiveGatewayErrors: number;
    baseEjectionMs: number;
    maxEjectionMs: number;
    maxEjectionPercent: number;
  };
  circuitBreakers?: { maxConnections: number; maxRequests: number; maxRetries: number };
  retryBudget?: { percent: number; minConcurrency: number };
}

export interface IrRetry {
  retries: number;
  retryOn: string[];
  retriableStatusCodes: number[];
  perTryTimeoutMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  retryNonIdempotent: boolean;
}

export interface IrCluster extends IrClusterPolicies {
  name: string;
  /** Absent means http1. */
  protocol?: "http1" | "http2";
  lb: "round_robin" | "least_request" | "ring_hash" | "random";
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxIdlePerEndpoint: number;
  maxRequestsPerConnection: number;
  endpoints: IrEndpoint[];
  tls?: IrUpstreamTls;
}

/** A certificate and its key, named "namespace/name" when it comes from a Kubernetes Secret. */
export interface IrSecret {
  name: string;
  certificateChainPem: string;
  privateKeyPem: string;
  /** Set instead of the certificate and key (left "") when the secret is a CA bundle for verifying peers. */
  caPem?: string;
  /** Set instead of the certificate and key (left "") when the secret holds basic auth users. */
  htpasswd?: Array<{ user: string; hash: string }>;
}

/** A WebAssembly component plugin (docs/plugins.md); durations in ms, 0 = the data plane's default. */
export interface IrPlugin {
  name: string;
  /** Where the control plane reads the component: a file:// URL or "configmap:NAMESPACE/NAME/KEY". */
  source: string;
  /** "sha256:<hex>", or "" when the component could not be read (the data plane then refuses the plugin). */
  digest: string;
  /** The component's size in bytes; 0 until the control plane has read it (xds/components.ts). */
  size: number;
  config: Record<string, unknown>;
  redisUrl: string;
  redisTimeoutMs: number;
  httpAllowHosts: string[];
  httpTimeoutMs: number;
  fuel: number;
  memoryMaxBytes: number;
  maxInstances: number;
  failOpen: boolean;
  failureStatus: number;
  /** Phases and bodies (docs/plugins.md); bodyLimit 0 = the default; overLimit "" = "reject". */
  onResponse: boolean;
  requestBody: boolean;
  responseBody: boolean;
  bodyLimit: number;
  overLimit: "" | "reject" | "skip";
  crypto: boolean;
}

export interface Ir {
  plugins?: IrPlugin[];
  listeners: IrListener[];
  clusters: IrCluster[];
  /** Absent when no source supplies secrets. */
  secrets?: IrSecret[];
}

/**
 * Plugin bodies (docs/plugins.md): the default and the largest `bodyLimit`, shared by the config
 * schema and the data plane. The engine buffers up to a chain's largest limit per exchange.
 */
export const PLUGIN_BODY_LIMITS = { default: 64 << 10, max: 16 << 20 } as const;

export const DEFAULTS = {
  listenerAddress: "0.0.0.0",
  routeTimeoutMs: 15_000,
  connectTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxIdlePerEndpoint: 64,
} as const;

/**
 * Downstream limit defaults (docs/proxy.md), shared by the translator and the data plane. Heads of 64 KiB
 * (Envoy: 60 KiB) and 100 fields (Envoy's max_headers_count), 128 HTTP/2 streams (nginx), 60s idle
 * and body timeouts (nginx's keepalive and client_body timeouts are 75s and 60s); like Envoy, bodies and requests per connection
 * are unlimited unless configured: the engine streams bodies and never buffers them whole.
 */
export const LISTENER_LIMITS: Readonly<Omit<IrListenerLimits, "http2">> & {
  readonly http2: Readonly<IrListenerLimits["http2"]>;
} = {
  maxRequestHeaderBytes: 65536,
  maxRequestHeaders: 100,
  maxRequestBodyBytes: 0,
  headerTimeoutMs: 30_000,
  bodyTimeoutMs: 60_000,
  idleTimeoutMs: 60_000,
  maxRequestsPerConnection: 0,
  http2: { maxConcurrentStreams: 128, initialWindowSize: 65535, maxHeaderListBytes: 65536 },
};
