/**
 * The data plane's runtime configuration: built once per xDS update, off the hot path, then never
 * mutated. The proxy engine reads one RuntimeConfig reference when a request starts and uses only
 * that reference until the request ends, so a swap can never tear a request between two configs.
 */

import type { HealthCheckSpec } from "../cluster/health-check.ts";
import type { AffinitySpec } from "../cluster/load-balancer.ts";
import type { RetrySpec } from "../cluster/retry.ts";
import type { ClusterState } from "../cluster/state.ts";
import type { PluginChain } from "../plugins/chain.ts";
import type { RouteRateLimit } from "../shaping/rate-limit.ts";
import type { ListenerTlsRuntime, UpstreamTlsRuntime } from "../tls/manager.ts";
import type { ServerNameTable } from "../tls/sni.ts";
import type { LocalAnswers } from "../traffic/local.ts";
import type { Mirror } from "../traffic/mirror.ts";
import type { RequestRewrite } from "../traffic/rewrite.ts";

/** What the router needs to know about a request; built by the engine from the parsed head. */
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
  readonly plugins?: PluginChain | null;
  /** Retry policy (data-plane/src/cluster/retry.ts); null or absent: no retries. */
  readonly retry?: RetrySpec | null;
  /** Redirect, direct response, CORS (data-plane/src/traffic/local.ts); asked right after routing. */
  readonly local?: LocalAnswers | null;
  /** Path and Host rewriting of the upstream request; null keeps them. */
  readonly rewrite?: RequestRewrite | null;
  /** Copies of the request to a shadow cluster. */
  readonly mirror?: Mirror | null;
  /** The route's requests are left out of the access log. */
  readonly accessLogOff?: boolean;
  /** Overrides the listener's maxRequestBodyBytes (0: unlimited); absent keeps the listener's. */
  readonly maxRequestBodyBytes?: number;
  /** CONNECT requests are tunnelled to the cluster's endpoint; without it they get 405. */
  readonly connect?: boolean;
  /** Local rate limits (data-plane/src/shaping); null or absent: none, and nothing is paid. */
  readonly rateLimit?: RouteRateLimit | null;
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
  readonly state?: ClusterState;
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
