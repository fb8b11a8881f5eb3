/**
 * The data plane's runtime configuration: built once per xDS update, off the hot path, then never
 * mutated. The proxy engine reads one RuntimeConfig reference when a request starts and uses only
 * that reference until the request ends, so a swap can never tear a request between two configs.
 */

import type { Socket } from "node:net";
import type { PeerCertificate, SecureContext, TLSSocket } from "node:tls";
import type { AgwErrorCode } from "../engine/errors.ts";
import type { ClientAddressPolicy } from "../policies/client-address.ts";
import type { IpRules } from "../policies/ip-rules.ts";

/** What the router needs to know about a request; built by the engine from the parsed head. */
/** A route's refusal by an access policy (basic auth): status, error code, message, extra fields. */
export interface AuthRefusal {
  readonly status: number;
  readonly code: AgwErrorCode;
  readonly message: string;
  /** Fields the refusal carries: the 401's challenge. */
  readonly fields: ReadonlyArray<readonly [string, string]>;
}

/** A route's credential check (policies/basic-auth.ts): null lets the request through. */
export interface RouteAuth {
  check(req: RequestView): AuthRefusal | null | Promise<AuthRefusal | null>;
}

export interface RequestView {
  /** Upper-case method token as received. */
  readonly method: string;
  /** Host from the Host header (or :authority), lower-cased, without port. */
  readonly host: string;
  /** Path part of the request target, without the query string. */
  readonly path: string;
  /** Raw query string without the leading "?", "" when absent. */
  readonly query: string;
  /** Value of a request header; name must be lower-case; repeated headers joined with ", ". */
  header(name: string): string | undefined;
}

export interface HeaderOps {
  /** Appended after existing values. */
  readonly add: ReadonlyArray<readonly [name: string, value: string]>;
  /** Replace every existing value. */
  readonly set: ReadonlyArray<readonly [name: string, value: string]>;
  /** Lower-case names removed. */
  readonly remove: readonly string[];
}

export interface CompiledRoute {
  readonly name: string;
  /** Chooses the cluster for one request (weighted clusters pick at random by weight). */
  pickCluster(): string;
  /** Whole-request timeout in milliseconds; 0 means none. */
  readonly timeoutMs: number;
  readonly requestHeaders: HeaderOps;
  readonly responseHeaders: HeaderOps;
  /** The route's plugins in order (request_filter phase); null when it has none, so the engine skips the phase. */
  readonly plugins?: RoutePlugins | null;
  /** Retry policy (data-plane/src/cluster/retry.ts); null or absent: no retries. */
  readonly retry?: RetrySpec | null;
  /** Redirect, direct response, CORS (data-plane/src/traffic/local.ts); asked right after routing. */
  readonly local?: LocalResponder | null;
  /** Path and Host rewriting of the upstream request; null keeps them. */
  readonly rewrite?: RequestRewrite | null;
  /** Copies of the request to a shadow cluster. */
  readonly mirror?: RequestMirror | null;
  /** The route's requests are left out of the access log. */
  readonly accessLogOff?: boolean;
  /** Overrides the listener's maxRequestBodyBytes (0: unlimited); absent keeps the listener's. */
  readonly maxRequestBodyBytes?: number;
  /** CONNECT requests are tunnelled to the cluster's endpoint; without it they get 405. */
  readonly connect?: boolean;
  /** Local rate limits (data-plane/src/shaping); null or absent: none, and nothing is paid. */
  readonly rateLimit?: RateLimiter | null;
  /** Response compression (data-plane/src/shaping/compression.ts); null or absent: none. */
  readonly compression?: ResponseCompressor | null;
  /** IP allow/deny rules on the client address, judged right after routing; null: none. */
  readonly ipRules?: IpRules | null;
  /** Basic auth, judged after the IP rules (CORS preflights pass); null: none. */
  readonly basicAuth?: RouteAuth | null;
}

export interface Router {
  match(req: RequestView): CompiledRoute | undefined;
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
  /** "host:port", stable across configs: connection pools are keyed by it. */
  readonly key: string;
}

export interface ClusterRuntime {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  /**
   * Next endpoint by the cluster's load-balancing policy, skipping unhealthy endpoints; undefined when
   * it has none. `req` and `clientIp` feed hash keys and session affinity; `avoid` (the endpoint of a
   * failed attempt) is not chosen again when another one is usable.
   */
  pickEndpoint(req?: RequestView, clientIp?: string, avoid?: Endpoint | null): Endpoint | undefined;
  /** Health, outlier, circuit-breaker and retry state, kept across configs (data-plane/src/cluster). */
  readonly state?: ClusterTrafficState;
  readonly healthCheck?: HealthCheckSpec;
  readonly affinity?: AffinitySpec;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxIdlePerEndpoint: number;
  /** 0 means unlimited. */
  readonly maxRequestsPerConnection: number;
  /** Present when the endpoints are reached over TLS. */
  readonly tls?: UpstreamTlsRuntime;
  /** Endpoints speak HTTP/2 (engine/h2-upstream.ts): h2c, or h2 by ALPN with tls. */
  readonly http2?: boolean;
}

/**
 * Downstream limits and timeouts of one listener (docs/proxy.md). A connection reads them when it is
 * accepted and again at each request, so a push applies to new connections and requests only.
 */
export interface ListenerLimits {
  readonly maxRequestHeaderBytes: number;
  readonly maxRequestHeaders: number;
  /** 0: unlimited. */
  readonly maxRequestBodyBytes: number;
  /** 0 disables each timeout. */
  readonly headerTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** 0: unlimited. */
  readonly maxRequestsPerConnection: number;
  readonly http2MaxConcurrentStreams: number;
  readonly http2InitialWindowSize: number;
  readonly http2MaxHeaderListBytes: number;
}

export interface ListenerRuntime {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** Undefined while the listener's RouteConfig has not arrived: every request gets 404. */
  readonly router: Router | undefined;
  /** Present on HTTPS listeners: certificates (SNI), policy, client verification. */
  readonly tls?: ListenerTlsRuntime;
  /** Absent: the engine's defaults (HttpProxyOptions, LISTENER_LIMITS). */
  readonly limits?: ListenerLimits;
  /** How request paths are normalised before routing; absent: DEFAULT_PATH_POLICY (engine/path.ts). */
  readonly paths?: PathPolicy;
  /** Present on TCP and TLS passthrough listeners (data-plane/src/l4), which have no router. */
  readonly l4?: L4ListenerRuntime;
  /** Connections start with a PROXY protocol header, read within this time (policies/proxy-protocol.ts). */
  readonly proxyProtocol?: { readonly timeoutMs: number };
  /** Proxies in front whose X-Forwarded-For entries are trusted; absent: the peer is the client. */
  readonly clientAddress?: ClientAddressPolicy;
  /** IP allow/deny rules on every request's client address, before routing. */
  readonly ipRules?: IpRules;
}

/** A TCP or TLS passthrough listener's targets and limits (docs/l4.md); 0 disables a timeout or limit. */
export interface L4ListenerRuntime {
  readonly kind: "tcp" | "tls-passthrough";
  /** TCP: the cluster; TLS passthrough: the cluster of unmatched or absent server names; "" refuses them. */
  readonly cluster: string;
  /** TLS passthrough: server name → cluster. */
  readonly sni: ServerNameTable<string>;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly clientHelloTimeoutMs: number;
  readonly maxClientHelloBytes: number;
  readonly maxConnectAttempts: number;
}

/** What happens to `%2F`, `%5C` (either case) and a raw `\` in a request path (docs/routing.md). */
export type EscapedSlashAction = "reject" | "keep" | "decode";

export interface PathPolicy {
  /** RFC 3986 §6.2.2: unreserved characters decoded, percent-encodings upper-cased, dot segments removed. */
  readonly normalize: boolean;
  /** Runs of "/" become one (nginx and Envoy merge_slashes). */
  readonly mergeSlashes: boolean;
  /** reject: 400; keep: passed on as received and matched literally; decode: each one is a "/". */
  readonly escapedSlashes: EscapedSlashAction;
}

export interface RuntimeConfig {
  /** Joined per-type versions, for logs and /config_dump. */
  readonly version: string;
  readonly listeners: ReadonlyMap<string, ListenerRuntime>;
  readonly clusters: ReadonlyMap<string, ClusterRuntime>;
}

/* Contracts of the route and cluster policies: the runtime holds them, cluster/ and traffic/
   implement them (and import them from here, never the reverse). */

/** Active health checking of a cluster's endpoints (cluster/health-check.ts). */
export interface HealthCheckSpec {
  readonly kind: "http" | "tcp";
  readonly intervalMs: number;
  /** Up to this much is added to each interval at random. */
  readonly jitterMs: number;
  readonly timeoutMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
  /** HTTP: request path and Host header ("" sends the endpoint address). */
  readonly path: string;
  readonly host: string;
  /** HTTP: accepted statuses as [from, to) ranges. */
  readonly expectedStatuses: ReadonlyArray<readonly [number, number]>;
}

/** Cookie-based session affinity (as Envoy's stateful_session cookie): the cookie names the endpoint. */
export interface AffinitySpec {
  readonly cookie: string;
  /** Max-Age of the cookie; 0 makes it a session cookie. */
  readonly ttlSeconds: number;
  readonly path: string;
}

/** What a rewrite reads of the request; RequestHead (HTTP/1.1 and HTTP/2) has it. */
export interface RewriteInput {
  readonly path: string;
  readonly query: string;
  readonly originForm: string;
  /** Host as received, with its port. */
  readonly rawHost: string;
}

/** Path and Host rewriting of the upstream request (traffic/rewrite.ts compiles it). */
export interface RequestRewrite {
  /** The origin-form target sent upstream. */
  target(req: RewriteInput): string;
  /** The Host sent upstream. */
  host(req: RewriteInput, ep: Endpoint): string;
}

/** A redirect, direct response or CORS preflight answer (traffic/local.ts). */
export interface LocalReply {
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Uint8Array;
}

export interface LocalRequest extends RequestView {
  /** Host as received, with its port. */
  readonly rawHost: string;
}

/** Receives the CORS fields for a response that is proxied (RequestTraffic does). */
export interface ResponseHeaderSink {
  responseFields: ReadonlyArray<readonly [string, string]>;
}

/** The answers a route gives without an upstream (traffic/local.ts LocalAnswers). */
export interface LocalResponder {
  /**
   * The local answer to `req`, or undefined to proxy it; `sink` (the request's traffic state, on
   * HTTP/1.1 and HTTP/2 alike) gets the CORS fields of a proxied response to a cross-origin request.
   */
  reply(req: LocalRequest, secure: boolean, sink: ResponseHeaderSink): LocalReply | undefined;
  /** A CORS preflight this route answers: authentication lets it through (browsers send no credentials). */
  isPreflight(req: RequestView): boolean;
}

/** What the mirror reads of the request; the engine's RequestHead has it. */
export interface MirrorInput extends RequestView {
  readonly originForm: string;
  readonly rawHost: string;
  readonly names: readonly string[];
  readonly values: readonly string[];
  readonly contentLength: number;
  readonly chunked: boolean;
}

/** Copies of a route's requests to a shadow cluster (traffic/mirror.ts Mirror). */
export interface RequestMirror {
  readonly cluster: string;
  /**
   * Maybe sends a copy of `req`; `received` holds the bytes that followed the head (the body start).
   * Returns at once; nothing it does can fail or delay the caller.
   */
  copy(
    req: MirrorInput,
    received: Buffer | null,
    clientIp: string,
    clusters: ReadonlyMap<string, ClusterRuntime>,
  ): void;
}

/** What the exchange needs to answer: the fields the route adds, and whether the request passes. */
export interface ShapingTarget {
  shapingFields: string[] | null;
}

/** A route's local rate limits (shaping/rate-limit.ts RouteRateLimit). */
export interface RateLimiter {
  /** Whether the request passes; sets `x.shapingFields` to the RateLimit fields the route adds. */
  admit(x: ShapingTarget, head: RequestView, clientIp: string): boolean;
}

/** Where a response body encoder sends what it makes (the Exchange). */
export interface EncodingTarget {
  head: unknown;
  readonly active: boolean;
  encoder: BodyEncoder | null;
  toClient(chunk: Buffer): boolean;
  responseComplete(): void;
  abortResponse(): void;
  /** zlib took what it held: the upstream may send more. */
  resumeUpstream(): void;
}

/** One response body being compressed (shaping/compression.ts ResponseEncoder). */
export interface BodyEncoder {
  /** Body bytes in; false when the upstream should pause. */
  write(chunk: Buffer): boolean;
  /** The body is complete; the encoder completes the response once its last bytes are out. */
  finish(): void;
  /** The response was cut short or the client left. */
  destroy(): void;
}

/** A response head being sent (the engine's FieldList). */
export interface ResponseFields {
  status: number;
  readonly rawNames: string[];
  readonly names: string[];
  readonly values: string[];
  add(name: string, value: string): void;
}

/** A route's response compression (shaping/compression.ts RouteCompression). */
export interface ResponseCompressor {
  /** When `f` is to be compressed: edits it and returns the encoder the body goes through; else null. */
  begin(
    x: EncodingTarget,
    req: RequestView,
    f: ResponseFields,
    bodyless: boolean,
    grpc: boolean,
  ): BodyEncoder | null;
}

/* Contracts of the cluster state, plugin chain and TLS runtimes: cluster/, plugins/ and tls/
   implement them and re-export them from here (test/import-circles.test.ts keeps this file free of
   imports from cluster/, traffic/, plugins/ and tls/). */

export const RETRY_CONDITIONS = [
  "connect-failure",
  "refused-stream",
  "reset",
  "5xx",
  "gateway-error",
  "retriable-status-codes",
] as const;
export type RetryCondition = (typeof RETRY_CONDITIONS)[number];

export interface RetrySpec {
  /** Retries after the first attempt. */
  readonly retries: number;
  readonly retryOn: ReadonlySet<RetryCondition>;
  readonly retriableStatusCodes: ReadonlySet<number>;
  /** Each attempt's time to the response head; 0: only the route timeout applies. */
  readonly perTryTimeoutMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** POST, PATCH, CONNECT and unknown methods are retried only with this set. */
  readonly retryNonIdempotent: boolean;
}

/** Passive outlier detection; Envoy's `outlier_detection` semantics (see docs/traffic/health.md). */
export interface OutlierSpec {
  /** Consecutive 5xx answers (gateway errors included) that eject an endpoint; 0 disables. */
  readonly consecutive5xx: number;
  /** Consecutive gateway errors (502/503/504, connect failures, resets, timeouts) that eject; 0 disables. */
  readonly consecutiveGatewayErrors: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  /** At most this share of the cluster is ejected at once (at least one endpoint always may be). */
  readonly maxEjectionPercent: number;
}

/** Limits per cluster; 0 means unlimited. Overflow is answered 503 `overflow`. */
export interface CircuitSpec {
  readonly maxConnections: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
}

/** Retries in flight may be at most `percent` of the requests in flight, but always `minConcurrency`. */
export interface RetryBudgetSpec {
  readonly percent: number;
  readonly minConcurrency: number;
}

/** How an attempt ended, as the outlier detector and the retry policy see it. */
export type AttemptOutcome =
  | { readonly kind: "status"; readonly status: number }
  | { readonly kind: "connect_failure" | "reset" | "timeout" };

export interface ClusterCounters {
  /** Requests answered 503 `overflow` by the circuit breaker. */
  overflows: number;
  /** Retries refused by the budget or the max-retries limit. */
  retriesRefused: number;
  retries: number;
  ejections: number;
}

/** The request as the engine has parsed it; the chain edits it in place. */
export interface FilterableRequest {
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly query: string;
  readonly rawNames: string[];
  readonly names: string[];
  readonly values: string[];
  /** The target sent upstream (path and query). */
  originForm: string;
}

/** The upstream response head (framing fields included); the chain edits it in place. */
export interface FilterableResponse {
  status: number;
  readonly rawNames: string[];
  readonly names: string[];
  readonly values: string[];
}

/** A response the engine sends instead of proxying (or instead of the upstream's response). */
export interface PluginReply {
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Uint8Array;
  /** Set when the gateway, not the guest, wrote the body: the `x-agw-error` code. */
  readonly error?: AgwErrorCode;
  readonly message?: string;
}

export type FilterResult = PluginReply | undefined;

/** What the chain needs from the engine; null = not needed. Computed once when the config is built. */
export interface BodyNeed {
  /** Buffer at most this many bytes (the largest limit among the chain's plugins that want a body). */
  readonly limit: number;
}

/** Passed instead of the bytes when the body exceeded the chain's `BodyNeed.limit`. */
export const OVER_LIMIT: unique symbol = Symbol("over limit");
export type BufferedBody = Uint8Array | typeof OVER_LIMIT;

export interface ListenerTlsRuntime {
  /** Runs the handshakes of this TLS version of the listener. */
  readonly acceptor: DownstreamTlsAcceptor;
  readonly exact: ReadonlyMap<string, SecureContext>;
  /** "example.com" → the context of "*.example.com". */
  readonly wildcard: ReadonlyMap<string, SecureContext>;
  /** Serves SNI names no certificate carries (clients without SNI get the acceptor's own context). */
  readonly defaultContext: SecureContext;
  /** Why a verified client certificate is refused by the SAN / CN rules, or undefined to accept. */
  checkClient(cert: PeerCertificate): string | undefined;
  /** Certificate secret names and digests, for logs and dumps. */
  readonly certificates: ReadonlyArray<{ name: string; digest: string; serverNames: readonly string[] }>;
}

export interface UpstreamTlsRuntime {
  readonly secureContext: SecureContext;
  /** "" derives the server name from the endpoint host. */
  readonly sni: string;
  readonly alpn: readonly string[];
  /** Extra SAN rule from the CA secret; empty accepts any name the host check accepts. */
  readonly matchSubjectAltNames: readonly string[];
  /** Distinguishes pooled connections made with different TLS settings. */
  readonly digest: string;
}

/**
 * The one server name lookup of the data plane: an exact name, then a "*.example.com" wildcard that
 * matches exactly one label (as Envoy's filter_chain_match server_names and the HTTPS listener's
 * certificate choice). Wildcards are kept under the name after "*.", so a lookup is two Map reads.
 */
export interface ServerNameTable<T> {
  readonly exact: ReadonlyMap<string, T>;
  /** "example.com" → the value of "*.example.com". */
  readonly wildcard: ReadonlyMap<string, T>;
}

/** What an acceptor asks of its listener's TLS settings (tls/manager.ts ListenerTlsRuntime has it). */
export interface ClientCertificateCheck {
  /** Why a verified client certificate is refused, or undefined to accept. */
  checkClient(cert: PeerCertificate): string | undefined;
}

/** What the engine and plugins may know about a downstream TLS connection. */
export interface DownstreamTlsInfo {
  /** Server name the client sent (SNI), "" when none. */
  readonly serverName: string;
  /** Negotiated application protocol; "http/1.1" when the client offered none. */
  readonly alpn: string;
  /** "TLSv1.3", "TLSv1.2". */
  readonly version: string;
  readonly cipher: string;
  /** The verified client certificate (downstream mTLS), undefined when none was presented or it was refused. */
  readonly client: ClientIdentity | undefined;
  /**
   * Why the listener's client certificate rules refuse this connection, "" when they do not. The engine
   * answers every request on such a connection 403 client_certificate_rejected in its own protocol
   * (HTTP/1.1 or HTTP/2) and closes it (engine/admission.ts).
   */
  readonly clientRejected: string;
}

export interface ClientIdentity {
  /** Subject as "CN=...,O=...". */
  readonly subject: string;
  readonly commonName: string;
  /** Subject alternative names as "DNS:x", "URI:y", "email:z", "IP Address:w". */
  readonly subjectAltNames: readonly string[];
  /** SHA-256 fingerprint of the certificate, lower-case hex without colons. */
  readonly sha256: string;
  /** The X-Forwarded-Client-Cert value sent upstream (Envoy's format). */
  readonly forwardedHeader: string;
}

export type SecureConnectionHandler = (socket: TLSSocket, info: DownstreamTlsInfo) => void;

/** A listener's TLS handshakes (tls/acceptor.ts TlsAcceptor): the listener hands it raw sockets. */
export interface DownstreamTlsAcceptor {
  /** Receives each connection whose handshake completed. */
  onSecure: SecureConnectionHandler | null;
  accept(raw: Socket): void;
}

/** One endpoint's health, ejection and in-flight state (cluster/state.ts EndpointState). */
export interface EndpointTrafficState {
  readonly key: string;
  active: number;
  checkHealthy: boolean;
  checkSuccesses: number;
  checkFailures: number;
  consecutive5xx: number;
  consecutiveGateway: number;
  ejectedUntil: number;
  ejections: number;
  lastEjectedAt: number;
  ejected(now: number): boolean;
  available(now: number): boolean;
}

/** A cluster's circuit breaker, outlier and retry state, kept across configs (cluster/state.ts ClusterState). */
export interface ClusterTrafficState {
  readonly name: string;
  readonly endpoints: ReadonlyMap<string, EndpointTrafficState>;
  readonly outlier: OutlierSpec | null;
  /** Requests admitted and not finished. */
  activeRequests: number;
  activeAttempts: number;
  activeRetries: number;
  readonly counters: ClusterCounters;
  /** Circuit breaker admission of a new request. */
  admit(): boolean;
  /** Whether one more retry may start now. */
  admitRetry(): boolean;
  /** Records an attempt's outcome; may eject the endpoint (outlier detection). */
  record(ep: EndpointTrafficState, outcome: AttemptOutcome, now: number): void;
}

/** A route's plugins in order, run in two phases (plugins/chain.ts PluginChain). */
export interface RoutePlugins {
  /** Some plugin's on-request wants the request body. */
  readonly requestBody: BodyNeed | null;
  /** Some plugin has on-response enabled. */
  readonly responsePhase: boolean;
  /** Some plugin's on-response wants the response body. */
  readonly responseBody: BodyNeed | null;
  requestFilter(
    req: FilterableRequest,
    clientIp: string,
    route: string,
    requestId: string,
    body?: BufferedBody,
  ): FilterResult | Promise<FilterResult>;
  responseFilter(
    resp: FilterableResponse,
    clientIp: string,
    route: string,
    requestId: string,
    body?: BufferedBody,
  ): FilterResult | Promise<FilterResult>;
}
