/**
 * agw.v1 resources → RuntimeConfig. Runs once per accepted xDS update, never per request; anything
 * invalid throws a ResourceError naming the resource, which the xDS client turns into a NACK.
 */
import { DEFAULTS, LISTENER_LIMITS } from "@agw/core";
import { SERVER_NAME_RULE } from "@agw/core/dns-name";
import type { IpRules as IpRulesSpec } from "@agw/core/gen/agw/v1/access_pb.js";
import {
  type Cluster,
  type ClusterLoadAssignment,
  UpstreamProtocol,
} from "@agw/core/gen/agw/v1/cluster_pb.js";
import {
  EscapedSlashes,
  type L4Listener,
  type Listener,
  type ListenerLimits as ListenerLimitsSpec,
  type PathNormalization,
  Protocol,
} from "@agw/core/gen/agw/v1/listener_pb.js";
import type { HeaderOperations, Route, RouteConfig } from "@agw/core/gen/agw/v1/route_pb.js";
import type { Secret } from "@agw/core/gen/agw/v1/secret_pb.js";
import { hashProblem } from "@agw/core/htpasswd";
import { runSliced, runToEnd, type Steps } from "@agw/core/slices";
import { routeProblems } from "@agw/core/xds/route-check";
import { type Duration, durationMs } from "@bufbuild/protobuf/wkt";
import { clusterPolicies, retrySpec } from "../cluster/build.ts";
import { ClusterStates } from "../cluster/state.ts";
import { PluginChain } from "../plugins/chain.ts";
import type { PluginRuntime } from "../plugins/host.ts";
import { BasicAuth, BasicAuthUsers } from "../policies/basic-auth.ts";
import { IpRules } from "../policies/ip-rules.ts";
import { IpSet } from "../policies/ip-set.ts";
import { PROXY_PROTOCOL_TIMEOUT_MS } from "../policies/proxy-protocol.ts";
import { BucketTable, bucketMemory } from "../shaping/bucket-table.ts";
import { routeShaping } from "../shaping/build.ts";
import { type ListenerTlsRuntime, type TlsBuild, TlsManager } from "../tls/manager.ts";
import type { SecretMaterial } from "../tls/secrets.ts";
import { addServerName } from "../tls/sni.ts";
import { routeTraffic } from "../traffic/build.ts";
import { type Candidate, compileCandidate, compileRouterSteps } from "./router.ts";
import type {
  ClusterRuntime,
  CompiledRoute,
  Endpoint,
  HeaderOps,
  L4ListenerRuntime,
  ListenerLimits,
  ListenerRuntime,
  PathPolicy,
  RuntimeConfig,
} from "./types.ts";

export interface ResourceSet {
  listeners: ReadonlyMap<string, Listener>;
  routeConfigs: ReadonlyMap<string, RouteConfig>;
  routes: ReadonlyMap<string, Route>;
  clusters: ReadonlyMap<string, Cluster>;
  endpoints: ReadonlyMap<string, ClusterLoadAssignment>;
  /** Loaded plugins by name (data-plane/src/plugins); routes may name only these. */
  plugins?: ReadonlyMap<string, PluginRuntime>;
  secrets?: ReadonlyMap<string, Secret>;
  /** Builds and caches secure contexts across configs; a private one when absent. */
  tls?: TlsManager;
  /** Endpoint health and counters kept across configs; a private one when absent. */
  clusterStates?: ClusterStates;
  /** Local rate-limit buckets shared by the worker threads; a private table when absent. */
  buckets?: BucketTable;
}

export class ResourceError extends Error {
  readonly resource: string;
  constructor(resource: string, message: string) {
    super(`${resource}: ${message}`);
    this.resource = resource;
  }
}

function ms(d: Duration | undefined, fallback: number): number {
  return d ? durationMs(d) : fallback;
}

/** Names and values were checked by routeProblems. */
function headerOps(ops: HeaderOperations | undefined): HeaderOps {
  return {
    add: (ops?.add ?? []).map((h) => [h.name.toLowerCase(), h.value] as const),
    set: (ops?.set ?? []).map((h) => [h.name.toLowerCase(), h.value] as const),
    remove: (ops?.remove ?? []).map((n) => n.toLowerCase()),
  };
}

function pluginChain(
  route: Route,
  plugins: ReadonlyMap<string, PluginRuntime> | undefined,
  where: string,
): PluginChain | null {
  const refs = route.action?.plugins ?? [];
  if (refs.length === 0) return null;
  return new PluginChain(
    refs.map((ref) => {
      const plugin = plugins?.get(ref.name);
      // routeProblems has refused unknown plugins; this only narrows the type.
      if (plugin === undefined) throw new ResourceError(where, `unknown plugin "${ref.name}"`);
      return { plugin, configJson: JSON.stringify({ ...plugin.spec.config, ...(ref.config ?? {}) }) };
    }),
  );
}

function compileRoute(
  route: Route,
  name: string,
  plugins: ReadonlyMap<string, PluginRuntime> | undefined,
  buckets: () => BucketTable,
  users: ReadonlyMap<string, BasicAuthUsers>,
): CompiledRoute {
  const where = `agw.v1.Route ${name}`;
  // The check the control plane also runs on Kubernetes routes before they reach a snapshot.
  const problems = routeProblems(route, { plugins: plugins ?? new Map() });
  if (problems.length > 0) throw new ResourceError(where, problems.join("; "));
  const action = route.action;
  const target = action?.target;
  let pickCluster: () => string;
  if (target?.case === "cluster") {
    const name = target.value;
    pickCluster = () => name;
  } else if (target?.case === "weightedClusters") {
    const choices = target.value.clusters.filter((c) => c.weight > 0);
    const total = choices.reduce((sum, c) => sum + c.weight, 0);
    pickCluster = () => {
      let r = Math.random() * total;
      for (const c of choices) {
        r -= c.weight;
        if (r < 0) return c.name;
      }
      return choices[choices.length - 1]?.name ?? "";
    };
  } else {
    pickCluster = () => "";
  }
  const basic = action?.basicAuth;
  let basicAuth: BasicAuth | null = null;
  let requestHeaders = headerOps(action?.requestHeaders);
  if (basic !== undefined) {
    const u = users?.get(basic.usersSecret);
    if (u === undefined)
      throw new ResourceError(where, `basic auth users secret "${basic.usersSecret}" does not exist`);
    basicAuth = new BasicAuth(u, basic.realm || "agw");
    // The client's credentials are the gateway's to check, never the upstream's to read.
    if (!requestHeaders.remove.includes("authorization"))
      requestHeaders = { ...requestHeaders, remove: [...requestHeaders.remove, "authorization"] };
  }
  return {
    name: route.name,
    pickCluster,
    timeoutMs: ms(action?.timeout, DEFAULTS.routeTimeoutMs),
    requestHeaders,
    responseHeaders: headerOps(action?.responseHeaders),
    plugins: pluginChain(route, plugins, where),
    retry: action?.retry ? retrySpec(action.retry, where) : null,
    ...routeTraffic(route, requestHeaders),
    ...routeShaping(route, name, buckets),
    accessLogOff: action?.accessLogOff ?? false,
    ...(action?.maxRequestBodyBytes !== undefined && {
      maxRequestBodyBytes: Number(action.maxRequestBodyBytes),
    }),
    ...(action?.ipRules && { ipRules: ipRules(where, "ip_rules", action.ipRules) }),
    basicAuth,
    ...(action?.connect === true && { connect: true }),
  };
}

function buildCluster(
  cluster: Cluster,
  assignment: ClusterLoadAssignment | undefined,
  tls: () => TlsContexts,
  states: ClusterStates,
): ClusterRuntime {
  const spec = cluster.tls;
  const http2 = cluster.protocol === UpstreamProtocol.HTTP2;
  if (
    cluster.protocol !== UpstreamProtocol.UNSPECIFIED &&
    cluster.protocol !== UpstreamProtocol.HTTP1 &&
    !http2
  )
    throw new ResourceError(`agw.v1.Cluster ${cluster.name}`, `unsupported protocol ${cluster.protocol}`);
  const upstreamTls = spec
    ? tlsStep(`agw.v1.Cluster ${cluster.name}`, () => tls().build.upstreamTls(spec, tls().secrets, http2))
    : undefined;
  // TLS and plaintext connections to one host:port must never share a pool.
  const keySuffix = upstreamTls ? `+tls:${upstreamTls.digest}` : "";
  const where = `agw.v1.ClusterLoadAssignment ${cluster.name}`;
  const endpoints: Endpoint[] = [];
  const weights: number[] = [];
  for (const e of assignment?.endpoints ?? []) {
    if (!e.address) throw new ResourceError(where, "endpoint without an address");
    if (e.port < 1 || e.port > 65535) throw new ResourceError(where, `endpoint port ${e.port} out of range`);
    const host = e.address;
    endpoints.push({
      host,
      port: e.port,
      key: `${host.includes(":") ? `[${host}]:${e.port}` : `${host}:${e.port}`}${keySuffix}`,
    });
    weights.push(Math.max(1, e.weight));
  }
  const c = cluster.connection;
  return {
    name: cluster.name,
    endpoints,
    ...tlsStep(`agw.v1.Cluster ${cluster.name}`, () =>
      clusterPolicies(cluster, endpoints, weights, states.get(cluster.name)),
    ),
    connectTimeoutMs: ms(c?.connectTimeout, DEFAULTS.connectTimeoutMs),
    idleTimeoutMs: ms(c?.idleTimeout, DEFAULTS.idleTimeoutMs),
    maxIdlePerEndpoint: c?.maxIdlePerEndpoint || DEFAULTS.maxIdlePerEndpoint,
    maxRequestsPerConnection: c?.maxRequestsPerConnection ?? 0,
    ...(upstreamTls && { tls: upstreamTls }),
    ...(http2 && { http2 }),
  };
}

interface TlsContexts {
  readonly build: TlsBuild;
  readonly secrets: ReadonlyMap<string, SecretMaterial>;
}

let sharedTlsManager: TlsManager | undefined;

/** Every Secret checked (a bad one NACKs even when unused) and a TLS build to make contexts with. */
function tlsContexts(set: ResourceSet): TlsContexts {
  sharedTlsManager ??= set.tls === undefined ? new TlsManager() : undefined;
  const build = (set.tls ?? (sharedTlsManager as TlsManager)).build();
  const secrets = new Map<string, SecretMaterial>();
  for (const [name, secret] of set.secrets ?? [])
    if (secret.kind.case !== "basicAuthUsers")
      secrets.set(
        name,
        tlsStep(`agw.v1.Secret ${name}`, () => build.secret(secret)),
      );
  return { build, secrets };
}

function tlsStep<T>(where: string, step: () => T): T {
  try {
    return step();
  } catch (e) {
    if (e instanceof ResourceError) throw e;
    throw new ResourceError(where, (e as Error).message);
  }
}

/** Zero sizes and counts take the defaults; an absent timeout takes its default, a zero one disables it. */
export function listenerLimits(l: ListenerLimitsSpec | undefined): ListenerLimits {
  const d = LISTENER_LIMITS;
  const headerBytes = l?.maxRequestHeaderBytes || d.maxRequestHeaderBytes;
  return {
    maxRequestHeaderBytes: headerBytes,
    maxRequestHeaders: l?.maxRequestHeaders || d.maxRequestHeaders,
    maxRequestBodyBytes: Number(l?.maxRequestBodyBytes ?? 0),
    headerTimeoutMs: ms(l?.headerTimeout, d.headerTimeoutMs),
    bodyTimeoutMs: ms(l?.bodyTimeout, d.bodyTimeoutMs),
    idleTimeoutMs: ms(l?.idleTimeout, d.idleTimeoutMs),
    maxRequestsPerConnection: l?.maxRequestsPerConnection ?? 0,
    http2MaxConcurrentStreams: l?.http2?.maxConcurrentStreams || d.http2.maxConcurrentStreams,
    http2InitialWindowSize: l?.http2?.initialWindowSize || d.http2.initialWindowSize,
    http2MaxHeaderListBytes: l?.http2?.maxHeaderListBytes || headerBytes,
  };
}

/** The L4 defaults (docs/l4.md): Envoy tcp_proxy's 1 h idle timeout; a ClientHello fits one record. */
export const L4_DEFAULTS = {
  idleTimeoutMs: 3_600_000,
  clientHelloTimeoutMs: 10_000,
  maxClientHelloBytes: 16_384,
  /** The most a listener may raise it to (Envoy's tls_inspector cap). */
  maxClientHelloBytesLimit: 65_536,
} as const;

/^(\*\.)?[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** A TCP or TLS passthrough listener's settings; clusters are looked up per connection (warming waits for them). */
function l4Listener(
  where: string,
  kind: L4ListenerRuntime["kind"],
  spec: L4Listener | undefined,
  clusters: ReadonlyMap<string, ClusterRuntime>,
): L4ListenerRuntime {
  if (spec === undefined) throw new ResourceError(where, `a ${kind} listener needs l4`);
  const sni = { exact: new Map<string, string>(), wildcard: new Map<string, string>() };
  if (kind === "tcp" && spec.sniRoutes.length > 0)
    throw new ResourceError(where, "sni_routes need protocol TLS_PASSTHROUGH");
  if (kind === "tcp" && spec.cluster === "")
    throw new ResourceError(where, "a TCP listener needs l4.cluster");
  if (kind === "tls-passthrough" && spec.cluster === "" && spec.sniRoutes.length === 0)
    throw new ResourceError(where, "a TLS passthrough listener needs sni_routes or a cluster");
  const seen = new Set<string>();
  for (const r of spec.sniRoutes) {
    if (r.cluster === "") throw new ResourceError(where, "an SNI route without a cluster");
    if (r.serverNames.length === 0)
      throw new ResourceError(where, `the SNI route to ${r.cluster} names no server`);
    for (const name of r.serverNames) {
      if (!SERVER_NAME_RULE.test(name))
        throw new ResourceError(
          where,
          `server name ${JSON.stringify(name)}: expected a lower-case DNS name or "*." and one`,
        );
      if (seen.has(name)) throw new ResourceError(where, `server name ${name} is routed twice`);
      seen.add(name);
      addServerName(sni, name, r.cluster);
    }
  }
  for (const name of [spec.cluster, ...spec.sniRoutes.map((r) => r.cluster)]) {
    const c = clusters.get(name);
    if (c?.tls !== undefined)
      throw new ResourceError(
        where,
        `cluster ${name} has tls: an L4 listener forwards the client's bytes as they are (TLS passthrough: the endpoint terminates TLS)`,
      );
    if (c?.http2 === true)
      throw new ResourceError(where, `cluster ${name} speaks HTTP/2; an L4 listener forwards bytes`);
  }
  const maxHello = spec.maxClientHelloBytes || L4_DEFAULTS.maxClientHelloBytes;
  if (maxHello < 512 || maxHello > L4_DEFAULTS.maxClientHelloBytesLimit)
    throw new ResourceError(
      where,
      `max_client_hello_bytes ${maxHello} out of range (512-${L4_DEFAULTS.maxClientHelloBytesLimit})`,
    );
  return {
    kind,
    cluster: spec.cluster,
    sni,
    idleTimeoutMs: ms(spec.idleTimeout, L4_DEFAULTS.idleTimeoutMs),
    maxConnections: spec.maxConnections,
    clientHelloTimeoutMs: ms(spec.clientHelloTimeout, 0) || L4_DEFAULTS.clientHelloTimeoutMs,
    maxClientHelloBytes: maxHello,
    maxConnectAttempts: Math.max(1, spec.maxConnectAttempts),
  };
}

/** A listener's path normalisation; absent fields are on, and an unset escaped-slash action refuses. */
export function pathPolicy(where: string, p: PathNormalization | undefined): PathPolicy {
  const e = p?.escapedSlashes ?? EscapedSlashes.UNSPECIFIED;
  let escapedSlashes: PathPolicy["escapedSlashes"];
  if (e === EscapedSlashes.UNSPECIFIED || e === EscapedSlashes.REJECT) escapedSlashes = "reject";
  else if (e === EscapedSlashes.KEEP) escapedSlashes = "keep";
  else if (e === EscapedSlashes.DECODE) escapedSlashes = "decode";
  else throw new ResourceError(where, `unknown escaped_slashes action ${e}`);
  return { normalize: p?.normalize ?? true, mergeSlashes: p?.mergeSlashes ?? true, escapedSlashes };
}

/** The basic auth users of each BasicAuthUsers Secret; every hash checked (packages/core/src/htpasswd.ts). */
function basicAuthUsers(set: ResourceSet): Map<string, BasicAuthUsers> {
  const out = new Map<string, BasicAuthUsers>();
  for (const [name, secret] of set.secrets ?? []) {
    if (secret.kind.case !== "basicAuthUsers") continue;
    const users = secret.kind.value.users;
    if (users.length === 0)
      throw new ResourceError(`agw.v1.Secret ${name}`, "basic_auth_users lists no user");
    for (const u of users) {
      const problem = hashProblem(u.bcryptHash);
      // The message names the user, never the hash.
      if (problem !== "") throw new ResourceError(`agw.v1.Secret ${name}`, `user ${u.name}: ${problem}`);
    }
    out.set(name, new BasicAuthUsers(users.map((u) => ({ name: u.name, hash: u.bcryptHash }))));
  }
  return out;
}

function ipRules(where: string, field: string, r: IpRulesSpec): IpRules {
  try {
    return new IpRules(r.allow, r.deny);
  } catch (e) {
    throw new ResourceError(where, `${field}: ${(e as Error).message}`);
  }
}

/** PROXY protocol, trusted proxies and IP rules of an HTTP listener (docs/access-control.md). */
function listenerAccess(
  where: string,
  l: Listener,
): Pick<ListenerRuntime, "proxyProtocol" | "clientAddress" | "ipRules"> {
  const c = l.clientAddress;
  if (c !== undefined && c.xffNumTrustedHops > 0 && c.trustedProxies.length > 0)
    throw new ResourceError(where, "client_address: xff_num_trusted_hops and trusted_proxies are exclusive");
  let trustedProxies: IpSet | null = null;
  if (c !== undefined && c.trustedProxies.length > 0)
    try {
      trustedProxies = new IpSet(c.trustedProxies);
    } catch (e) {
      throw new ResourceError(where, `client_address.trusted_proxies: ${(e as Error).message}`);
    }
  return {
    ...(l.proxyProtocol && {
      proxyProtocol: { timeoutMs: ms(l.proxyProtocol.timeout, 0) || PROXY_PROTOCOL_TIMEOUT_MS },
    }),
    ...(c && { clientAddress: { xffNumTrustedHops: c.xffNumTrustedHops, trustedProxies } }),
    ...(l.ipRules && { ipRules: ipRules(where, "ip_rules", l.ipRules) }),
  };
}

/** `bindAddress`, when given, replaces every listener's address (a data plane bootstrap option). */
export function buildRuntimeConfig(
  set: ResourceSet,
  bindAddress: string | undefined,
  version: string,
): RuntimeConfig {
  return runToEnd(buildSteps(set, bindAddress, version));
}

/** buildRuntimeConfig in slices, the event loop free in between (packages/core/src/slices.ts). */
export function buildRuntimeConfigSliced(
  set: ResourceSet,
  bindAddress: string | undefined,
  version: string,
): Promise<RuntimeConfig> {
  return runSliced(buildSteps(set, bindAddress, version));
}

function* buildSteps(
  set: ResourceSet,
  bindAddress: string | undefined,
  version: string,
): Steps<RuntimeConfig> {
  let contexts: TlsContexts | undefined;
  const tls = () => {
    contexts ??= tlsContexts(set);
    return contexts;
  };
  if ((set.secrets?.size ?? 0) > 0) tls();
  const clusterStates = set.clusterStates ?? new ClusterStates();
  const clusters = new Map<string, ClusterRuntime>();
  for (const [name, cluster] of set.clusters) {
    yield;
    clusters.set(name, buildCluster(cluster, set.endpoints.get(name), tls, clusterStates));
  }

  let privateBuckets: BucketTable | undefined;
  const buckets = () => {
    if (set.buckets !== undefined) return set.buckets;
    privateBuckets ??= new BucketTable(bucketMemory(1 << 12));
    return privateBuckets;
  };
  const users = basicAuthUsers(set);
  const routesByConfig = new Map<string, Candidate[]>();
  for (const [name, route] of set.routes) {
    yield;
    const where = `agw.v1.Route ${name}`;
    let candidate: Candidate;
    try {
      candidate = compileCandidate(route, compileRoute(route, name, set.plugins, buckets, users));
    } catch (e) {
      if (e instanceof ResourceError) throw e;
      throw new ResourceError(where, (e as Error).message);
    }
    const list = routesByConfig.get(route.routeConfig) ?? [];
    list.push(candidate);
    routesByConfig.set(route.routeConfig, list);
  }

  const listeners = new Map<string, ListenerRuntime>();
  const bound = new Map<string, string>();
  for (const [name, l] of set.listeners) {
    const where = `agw.v1.Listener ${name}`;
    if (l.port < 1 || l.port > 65535) throw new ResourceError(where, `port ${l.port} out of range`);
    const address = bindAddress ?? (l.address || DEFAULTS.listenerAddress);
    const other = bound.get(`${address}:${l.port}`);
    if (other)
      throw new ResourceError(where, `address ${address}:${l.port} is also used by listener ${other}`);
    bound.set(`${address}:${l.port}`, name);
    const l4Kind =
      l.protocol === Protocol.TCP
        ? "tcp"
        : l.protocol === Protocol.TLS_PASSTHROUGH
          ? "tls-passthrough"
          : undefined;
    if (l4Kind !== undefined) {
      if (l.routeConfig !== "") throw new ResourceError(where, `a ${l4Kind} listener has no route_config`);
      if (l.tls !== undefined)
        throw new ResourceError(where, `a ${l4Kind} listener terminates no TLS: tls needs protocol HTTPS`);
      if (l.clientAddress !== undefined || l.ipRules !== undefined)
        throw new ResourceError(
          where,
          `a ${l4Kind} listener has no client_address or ip_rules: it reads no request`,
        );
      listeners.set(name, {
        name,
        address,
        port: l.port,
        router: undefined,
        l4: l4Listener(where, l4Kind, l.l4, clusters),
        ...listenerAccess(where, l),
      });
      continue;
    }
    if (l.l4 !== undefined) throw new ResourceError(where, "l4 needs protocol TCP or TLS_PASSTHROUGH");
    const router = set.routeConfigs.has(l.routeConfig)
      ? yield* compileRouterSteps(routesByConfig.get(l.routeConfig) ?? [])
      : undefined;
    let listenerTls: ListenerTlsRuntime | undefined;
    if (l.protocol === Protocol.HTTPS) {
      if (!l.tls) throw new ResourceError(where, "an HTTPS listener needs tls");
      const spec = l.tls;
      listenerTls = tlsStep(where, () => tls().build.listenerTls(name, spec, tls().secrets));
    } else if (l.protocol !== Protocol.HTTP && l.protocol !== Protocol.UNSPECIFIED) {
      throw new ResourceError(where, `unsupported protocol ${l.protocol}`);
    }
    listeners.set(name, {
      name,
      address,
      port: l.port,
      router,
      ...(listenerTls && { tls: listenerTls }),
      limits: listenerLimits(l.limits),
      paths: pathPolicy(where, l.paths),
      ...listenerAccess(where, l),
    });
  }
  contexts?.build.finish();
  return { version, listeners, clusters };
}
