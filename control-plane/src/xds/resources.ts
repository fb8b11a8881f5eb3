/**
 * IR → agw.v1 resources, one resource per listener, route config, route, cluster and endpoint set.
 *
 * A `SnapshotBuilder` keeps the resources of its previous build keyed by the content of the IR
 * object they came from: an edit to one of 10,000 routes re-encodes and re-hashes one route, and a
 * type none of whose resources changed keeps its `TypeSnapshot` object, so streams can tell "no
 * change" by identity. Each resource also carries its bytes as they appear in a discovery response,
 * encoded once and shared by every stream.
 */

import { createHash } from "node:crypto";
import {
  ClusterLoadAssignmentSchema,
  ClusterSchema,
  UpstreamProtocol,
} from "@agw/core/gen/agw/v1/cluster_pb.js";
import { EscapedSlashes, ListenerSchema, Protocol } from "@agw/core/gen/agw/v1/listener_pb.js";
import { PluginSchema } from "@agw/core/gen/agw/v1/plugin_pb.js";
import {
  type HeaderOperations,
  HeaderOperationsSchema,
  type Route,
  RouteConfigSchema,
  type RouteMatch,
  RouteMatchSchema,
  RouteSchema,
} from "@agw/core/gen/agw/v1/route_pb.js";
import { SecretSchema } from "@agw/core/gen/agw/v1/secret_pb.js";
import { ResourceSchema } from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import type {
  HeaderOps,
  Ir,
  IrCluster,
  IrL4,
  IrListener,
  IrListenerLimits,
  IrPathPolicy,
  IrRoute,
  ValueMatch,
} from "@agw/core/ir";
import { runSliced, runToEnd, type Steps } from "@agw/core/slices";
import { componentDigest, INLINE_COMPONENT_MAX_BYTES } from "@agw/core/xds/plugin-component";
import { RESOURCE_TYPES, TYPE_URL, type TypeUrl } from "@agw/core/xds/types";
import { create, type DescMessage, type JsonObject, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { type Any, AnySchema, anyPack, durationFromMs } from "@bufbuild/protobuf/wkt";
import { clusterPolicyFields, retryPolicy, routeTarget, routeTrafficFields } from "./traffic-resources.ts";

export interface VersionedResource {
  name: string;
  /** Content hash of the encoded resource: equal bytes, equal version. */
  version: string;
  resource: Any;
  /** Encoded size of `resource` (the Any), for wire accounting without encoding twice. */
  size: number;
  /** The Any, length-prefixed: one entry of a SotW response's `resources`. */
  sotwBytes: Uint8Array;
  /** The envoy Resource {name, version, resource}, length-prefixed: one entry of a Delta response's `resources`. */
  deltaBytes: Uint8Array;
  /** Listeners and clusters: the Secret resources they name (certificates, CA bundles). */
  secrets?: readonly string[];
}

export interface TypeSnapshot {
  /** Hash over the type's resource names and versions; changes iff some resource changed. */
  version: string;
  /** By name, in name order. */
  resources: ReadonlyMap<string, VersionedResource>;
  /**
   * Set by an incremental build that only replaced resources: what changed since `from` (held
   * weakly: a snapshot never keeps its predecessors alive). The cache takes it instead of comparing
   * every resource.
   */
  changedFrom?: { from: WeakRef<TypeSnapshot>; updated: readonly VersionedResource[] };
}

export type Snapshot = ReadonlyMap<TypeUrl, TypeSnapshot>;

function hash(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex").slice(0, 16);
}

const MOD = 1n << 128n;
const digests = new WeakMap<VersionedResource, bigint>();
const sums = new WeakMap<TypeSnapshot, bigint>();

/** 128 bits of sha256("name=version"), once per resource object. */
function digest(r: VersionedResource): bigint {
  let d = digests.get(r);
  if (d === undefined) {
    d = BigInt(`0x${createHash("sha256").update(`${r.name}=${r.version}`).digest("hex").slice(0, 32)}`);
    digests.set(r, d);
  }
  return d;
}

/**
 * A type's version from the sum (mod 2^128) of its resources' digests: order-free, so replacing k
 * of 10,000 resources updates it in O(k), and equal to the version a build from scratch computes.
 */
function typeVersion(sum: bigint, count: number): string {
  return hash(`${count}:${sum.toString(16)}`);
}

export function typeSnapshot(resources: VersionedResource[]): TypeSnapshot {
  const sorted = [...resources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const map = new Map(sorted.map((r) => [r.name, r]));
  let sum = 0n;
  for (const r of map.values()) sum += digest(r);
  sum %= MOD;
  const snap: TypeSnapshot = { version: typeVersion(sum, map.size), resources: map };
  sums.set(snap, sum);
  return snap;
}

/**
 * A type's resources as the previous build's map plus the few replaced since it was last
 * flattened: replacing k of 10,000 resources copies k entries, not 10,000. Same names, same order
 * as `base`. Flattened into a plain Map once the replacements reach 1/8 of the base.
 */
class Overlay implements ReadonlyMap<string, VersionedResource> {
  readonly base: ReadonlyMap<string, VersionedResource>;
  readonly over: ReadonlyMap<string, VersionedResource>;

  constructor(base: ReadonlyMap<string, VersionedResource>, over: ReadonlyMap<string, VersionedResource>) {
    this.base = base;
    this.over = over;
  }

  get size(): number {
    return this.base.size;
  }
  get(name: string): VersionedResource | undefined {
    return this.over.get(name) ?? this.base.get(name);
  }
  has(name: string): boolean {
    return this.base.has(name);
  }
  *entries(): MapIterator<[string, VersionedResource]> {
    for (const [name, r] of this.base) yield [name, this.over.get(name) ?? r];
  }
  keys(): MapIterator<string> {
    return this.base.keys();
  }
  *values(): MapIterator<VersionedResource> {
    for (const [name, r] of this.base) yield this.over.get(name) ?? r;
  }
  [Symbol.iterator](): MapIterator<[string, VersionedResource]> {
    return this.entries();
  }
  forEach(
    f: (r: VersionedResource, name: string, map: ReadonlyMap<string, VersionedResource>) => void,
  ): void {
    for (const [name, r] of this.entries()) f(r, name, this);
  }
}

/** `base` with some resources (of names it has) replaced: same order, version updated in O(k). */
function replaced(base: TypeSnapshot, updated: VersionedResource[]): TypeSnapshot {
  const previous = base.resources;
  const under = previous instanceof Overlay ? previous.base : previous;
  const over = new Map(previous instanceof Overlay ? previous.over : []);
  let sum = sums.get(base) ?? [...previous.values()].reduce((a, r) => a + digest(r), 0n);
  for (const r of updated) {
    const old = previous.get(r.name);
    if (old) sum -= digest(old);
    sum += digest(r);
    over.set(r.name, r);
  }
  sum = ((sum % MOD) + MOD) % MOD;
  const resources =
    over.size * 8 >= under.size
      ? new Map([...under].map(([name, r]) => [name, over.get(name) ?? r]))
      : new Overlay(under, over);
  const sortedUpdates = [...updated].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const snap: TypeSnapshot = {
    version: typeVersion(sum, resources.size),
    resources,
    changedFrom: { from: new WeakRef(base), updated: sortedUpdates },
  };
  sums.set(snap, sum);
  return snap;
}

function headerOperations(ops: HeaderOps): HeaderOperations {
  return create(HeaderOperationsSchema, {
    add: ops.add.map(([name, value]) => ({ name, value })),
    set: ops.set.map(([name, value]) => ({ name, value })),
    remove: ops.remove,
  });
}

function listenerLimits(l: IrListenerLimits) {
  return {
    maxRequestHeaderBytes: l.maxRequestHeaderBytes,
    maxRequestHeaders: l.maxRequestHeaders,
    maxRequestBodyBytes: BigInt(l.maxRequestBodyBytes),
    headerTimeout: durationFromMs(l.headerTimeoutMs),
    bodyTimeout: durationFromMs(l.bodyTimeoutMs),
    idleTimeout: durationFromMs(l.idleTimeoutMs),
    maxRequestsPerConnection: l.maxRequestsPerConnection,
    http2: { ...l.http2 },
  };
}

const PROTOCOLS = {
  http: Protocol.HTTP,
  https: Protocol.HTTPS,
  tcp: Protocol.TCP,
  "tls-passthrough": Protocol.TLS_PASSTHROUGH,
} as const;

function l4Listener(l: IrL4) {
  return {
    cluster: l.cluster,
    sniRoutes: l.sni.map((r) => ({ serverNames: r.serverNames, cluster: r.cluster })),
    ...(l.idleTimeoutMs !== undefined && { idleTimeout: durationFromMs(l.idleTimeoutMs) }),
    maxConnections: l.maxConnections,
    ...(l.clientHelloTimeoutMs > 0 && { clientHelloTimeout: durationFromMs(l.clientHelloTimeoutMs) }),
    maxClientHelloBytes: l.maxClientHelloBytes,
    maxConnectAttempts: l.maxConnectAttempts,
  };
}

const ESCAPED_SLASHES = {
  reject: EscapedSlashes.REJECT,
  keep: EscapedSlashes.KEEP,
  decode: EscapedSlashes.DECODE,
} as const;

function pathNormalization(p: IrPathPolicy) {
  return {
    normalize: p.normalize,
    mergeSlashes: p.mergeSlashes,
    escapedSlashes: ESCAPED_SLASHES[p.escapedSlashes],
  };
}

function valueOneof(m: ValueMatch) {
  switch (m.kind) {
    case "exact":
      return { case: "exact" as const, value: m.value };
    case "regex":
      return { case: "regex" as const, value: m.value };
    case "present":
      return { case: "present" as const, value: true };
  }
}

function routeMatch(r: IrRoute): RouteMatch {
  return create(RouteMatchSchema, {
    hosts: r.hosts,
    path: { case: r.path.kind, value: r.path.value },
    methods: r.methods,
    headers: r.headers.map((h) => ({ name: h.name, value: valueOneof(h), invert: h.invert })),
    query: r.query.map((q) => ({ name: q.name, value: valueOneof(q), invert: q.invert })),
  });
}

/** Builds one versioned Any-packed resource. */
export function versioned<D extends DescMessage>(
  schema: D,
  name: string,
  message: MessageShape<D>,
  secrets?: readonly string[],
): VersionedResource {
  const bytes = toBinary(schema, message);
  const resource = anyPack(schema, message);
  const version = hash(bytes);
  const anyBytes = toBinary(AnySchema, resource);
  const deltaResource = toBinary(ResourceSchema, create(ResourceSchema, { name, version, resource }));
  return {
    name,
    version,
    resource,
    size: anyBytes.length,
    sotwBytes: new BinaryWriter().bytes(anyBytes).finish(),
    deltaBytes: new BinaryWriter().bytes(deltaResource).finish(),
    ...(secrets && secrets.length > 0 && { secrets }),
  };
}

/** The Secret names a listener references: its certificates and its client CA. */
export function listenerSecrets(l: IrListener): string[] {
  // A route's basic auth users go where its listener goes: routes are received with their listener.
  const users = [...new Set(l.routes.flatMap((r) => (r.basicAuth ? [r.basicAuth.users] : [])))];
  if (!l.tls) return users;
  const ca = l.tls.clientCertificate?.ca;
  return [...l.tls.certificates, ...(ca ? [ca] : []), ...users];
}

/** The Secret names a cluster references: the upstream CA and the client certificate. */
export function clusterSecrets(c: IrCluster): string[] {
  return [c.tls?.ca, c.tls?.certificate].filter((n): n is string => !!n);
}

/** Resource name of a route: routes are scoped by their parent route config. */
export function routeResourceName(routeConfig: string, route: string): string {
  return `${routeConfig}/${route}`;
}

/** An IR route → the agw.v1.Route a data plane receives (also checked with routeProblems before). */
export function routeMessage(routeConfig: string, r: IrRoute): Route {
  return create(RouteSchema, {
    name: r.name,
    routeConfig,
    order: r.order,
    match: routeMatch(r),
    action: {
      target: routeTarget(r),
      timeout: durationFromMs(r.timeoutMs),
      requestHeaders: headerOperations(r.requestHeaders),
      responseHeaders: headerOperations(r.responseHeaders),
      plugins: r.plugins.map((p) => ({
        name: p.name,
        config: p.config as JsonObject,
      })),
      ...(r.retry && { retry: retryPolicy(r.retry) }),
      ...routeTrafficFields(r),
      ...(r.accessLogOff && { accessLogOff: true }),
      ...(r.maxRequestBodyBytes !== undefined && {
        maxRequestBodyBytes: BigInt(r.maxRequestBodyBytes),
      }),
      ...(r.connect && { connect: true }),
      ...(r.ipRules && { ipRules: { ...r.ipRules } }),
      ...(r.basicAuth && { basicAuth: { usersSecret: r.basicAuth.users, realm: r.basicAuth.realm } }),
    },
  });
}

/** Builds a snapshot from scratch (tests, one-off conversions). */
export function irToSnapshot(ir: Ir): Snapshot {
  return new SnapshotBuilder().build(ir);
}

/** One resource of a build and the IR object it came from. */
interface Slot {
  name: string;
  /** The IR object (identity): the same object again is the same resource, with no work at all. */
  id: unknown;
  /** What besides the object the resource depends on: a route's listener; else its name. */
  scope: string;
  /** JSON of what the resource is built from, computed once per IR object: equal content, same resource. */
  content: string;
  resource: VersionedResource;
}

/** One type's slots, in IR order, and a build's progress over them. */
class TypeBuild {
  prev: Slot[] = [];
  private prevByName: Map<string, Slot> | undefined;
  slots: Slot[] = [];
  /** Resources whose version differs from the previous build's resource of that name. */
  updated: VersionedResource[] = [];
  /** Slots sit at the same index under the same name as in the previous build. */
  aligned = true;
  encoded = 0;

  start(): void {
    this.prevByName = undefined;
    this.slots = [];
    this.updated = [];
    this.aligned = true;
    this.encoded = 0;
  }

  private byName(name: string): Slot | undefined {
    this.prevByName ??= new Map(this.prev.map((s) => [s.name, s]));
    return this.prevByName.get(name);
  }

  /**
   * Takes the previous build's slot at this place if it came from the same IR object under the same
   * scope (the listener of a route; the name otherwise): no name to build, no closure, no JSON.
   */
  same(id: object, scope: string, counts: { reused: number }): boolean {
    const at = this.prev[this.slots.length];
    if (at === undefined || at.id !== id || at.scope !== scope) return false;
    this.slots.push(at);
    counts.reused++;
    return true;
  }

  /**
   * The resource for `name` built from IR object `id`: the previous slot when `id` is the same
   * object (no JSON, no hash) or has the same content, else encoded. Returns whether it did any work.
   */
  add(
    name: string,
    scope: string,
    id: unknown,
    content: () => unknown,
    encode: () => VersionedResource,
    counts: { encoded: number; reused: number },
  ): boolean {
    const i = this.slots.length;
    const at = this.prev[i];
    if (at?.name !== name) this.aligned = false;
    const old = at?.name === name ? at : this.byName(name);
    if (old && id !== undefined && old.id === id && old.scope === scope) {
      this.slots.push(old);
      counts.reused++;
      return false;
    }
    const json = JSON.stringify(content());
    if (old && old.content === json) {
      this.slots.push({ ...old, id, scope });
      counts.reused++;
      return true;
    }
    const resource = encode();
    this.slots.push({ name, scope, id, content: json, resource });
    if (!old || old.resource.version !== resource.version) this.updated.push(resource);
    this.encoded++;
    counts.encoded++;
    return true;
  }

  /** This build's TypeSnapshot, `before` (the previous one) kept or updated when the names did not change. */
  finish(before: TypeSnapshot | undefined): TypeSnapshot {
    const aligned = this.aligned && this.slots.length === this.prev.length && before !== undefined;
    this.prev = this.slots;
    if (aligned && this.updated.length === 0) return before;
    // Aligned: the same names at the same places as the build that made `before`.
    if (aligned) return replaced(before, this.updated);
    return typeSnapshot(this.slots.map((s) => s.resource));
  }
}

/** IR → Snapshot, reusing the previous build's resources whose IR content did not change. */
/**
 * A plugin's component bytes by digest, for inlining (xds/components.ts); none: every component is
 * fetched by digest.
 */
export type InlineComponents = (digest: string) => Uint8Array | undefined;

export class SnapshotBuilder {
  private readonly types = new Map<TypeUrl, TypeBuild>(RESOURCE_TYPES.map((t) => [t, new TypeBuild()]));
  private previousTypes: Snapshot = new Map();
  private readonly inline: InlineComponents;
  /** Resources encoded vs reused by the last build. */
  readonly lastBuild = { encoded: 0, reused: 0 };

  constructor(inline: InlineComponents = () => undefined) {
    this.inline = inline;
  }

  /** Builds at once (tests, one-off conversions). */
  build(ir: Ir): Snapshot {
    return runToEnd(this.steps(ir));
  }

  /**
   * Builds in slices with the event loop free in between: a process that also serves (`agw run`,
   * a control plane answering data planes) keeps serving while 20,000 routes are encoded. One
   * build at a time: the caller waits for one before it starts the next.
   */
  buildSliced(ir: Ir): Promise<Snapshot> {
    return runSliced(this.steps(ir));
  }

  /**
   * IR objects are immutable: an edit is a new object (translators and mergeIr make new ones), so
   * an IR object seen in the previous build under the same name is the same resource, taken without
   * JSON or hashing. A new object is compared by content (JSON) and encoded only if that changed: a
   * one-route edit of 10,000 routes stringifies and encodes one route, and the rest is pointer
   * comparisons.
   */
  private *steps(ir: Ir): Steps<Snapshot> {
    const counts = this.lastBuild;
    counts.encoded = 0;
    counts.reused = 0;
    for (const t of this.types.values()) t.start();
    const type = (t: TypeUrl) => this.types.get(t) as TypeBuild;
    const clusters = type(TYPE_URL.cluster);
    const endpoints = type(TYPE_URL.endpoints);
    const secrets = type(TYPE_URL.secret);
    const listeners = type(TYPE_URL.listener);
    const routeConfigs = type(TYPE_URL.routeConfig);
    const routes = type(TYPE_URL.route);
    const plugins = type(TYPE_URL.plugin);

    for (const c of ir.clusters) {
      if (clusters.same(c, c.name, counts) && endpoints.same(c.endpoints, c.name, counts)) continue;
      const worked = clusters.add(
        c.name,
        c.name,
        c,
        () => {
          const { endpoints: _, ...cluster } = c;
          return cluster;
        },
        () =>
          versioned(
            ClusterSchema,
            c.name,
            create(ClusterSchema, {
              name: c.name,
              protocol: c.protocol === "http2" ? UpstreamProtocol.HTTP2 : UpstreamProtocol.UNSPECIFIED,
              ...clusterPolicyFields(c),
              connection: {
                connectTimeout: durationFromMs(c.connectTimeoutMs),
                idleTimeout: durationFromMs(c.idleTimeoutMs),
                maxIdlePerEndpoint: c.maxIdlePerEndpoint,
                maxRequestsPerConnection: c.maxRequestsPerConnection,
              },
              ...(c.tls && {
                tls: {
                  sni: c.tls.sni,
                  caSecret: c.tls.ca,
                  clientCertificateSecret: c.tls.certificate,
                  alpn: c.tls.alpn,
                },
              }),
            }),
            clusterSecrets(c),
          ),
        counts,
      );
      const endpointsWorked = endpoints.add(
        c.name,
        c.name,
        c.endpoints,
        () => c.endpoints,
        () =>
          versioned(
            ClusterLoadAssignmentSchema,
            c.name,
            create(ClusterLoadAssignmentSchema, { clusterName: c.name, endpoints: c.endpoints }),
          ),
        counts,
      );
      if (worked || endpointsWorked) yield;
    }
    // Only what some listener or cluster names: an unreferenced Secret (every TLS Secret of a
    // namespace, say) is never sent to any data plane.
    const referenced = new Set([
      ...ir.listeners.flatMap(listenerSecrets),
      ...ir.clusters.flatMap(clusterSecrets),
    ]);
    for (const s of ir.secrets ?? []) {
      if (!referenced.has(s.name)) continue;
      secrets.add(
        s.name,
        s.name,
        s,
        () => s,
        () =>
          versioned(
            SecretSchema,
            s.name,
            create(SecretSchema, {
              name: s.name,
              kind:
                s.htpasswd !== undefined
                  ? {
                      case: "basicAuthUsers",
                      value: { users: s.htpasswd.map((u) => ({ name: u.user, bcryptHash: u.hash })) },
                    }
                  : s.caPem !== undefined
                    ? { case: "validationContext", value: { trustedCaPem: s.caPem } }
                    : {
                        case: "tlsCertificate",
                        value: { certificateChainPem: s.certificateChainPem, privateKeyPem: s.privateKeyPem },
                      },
            }),
          ),
        counts,
      );
    }
    for (const l of ir.listeners) {
      listeners.add(
        l.name,
        l.name,
        // The listener object holds its routes, so it is new whenever a route is: compared by content.
        undefined,
        () => {
          const { routes: _, ...listener } = l;
          // The Secrets its routes name are the listener resource's too (listenerSecrets).
          return { ...listener, secrets: listenerSecrets(l) };
        },
        () =>
          versioned(
            ListenerSchema,
            l.name,
            create(ListenerSchema, {
              name: l.name,
              address: l.address,
              port: l.port,
              protocol: PROTOCOLS[l.protocol],
              routeConfig: l.l4 ? "" : l.name,
              ...(l.l4 && { l4: l4Listener(l.l4) }),
              ...(l.tls && {
                tls: {
                  certificateSecrets: l.tls.certificates,
                  minVersion: l.tls.minVersion,
                  alpn: l.tls.alpn,
                  cipherSuites: l.tls.ciphers,
                  clientCaSecret: l.tls.clientCertificate?.ca ?? "",
                  requireClientCertificate: l.tls.clientCertificate?.required ?? false,
                  matchClientSubjectAltNames: l.tls.clientCertificate?.subjectAltNames ?? [],
                  matchClientCommonNames: l.tls.clientCertificate?.commonNames ?? [],
                },
              }),
              ...(l.limits && { limits: listenerLimits(l.limits) }),
              ...(l.paths && { paths: pathNormalization(l.paths) }),
              ...(l.proxyProtocol && {
                proxyProtocol: {
                  ...(l.proxyProtocol.timeoutMs > 0 && {
                    timeout: durationFromMs(l.proxyProtocol.timeoutMs),
                  }),
                },
              }),
              ...(l.clientAddress && { clientAddress: { ...l.clientAddress } }),
              ...(l.ipRules && { ipRules: { ...l.ipRules } }),
            }),
            listenerSecrets(l),
          ),
        counts,
      );
      if (l.l4) continue;
      routeConfigs.add(
        l.name,
        l.name,
        null,
        () => null,
        () => versioned(RouteConfigSchema, l.name, create(RouteConfigSchema, { name: l.name })),
        counts,
      );
      for (const r of l.routes) {
        if (routes.same(r, l.name, counts)) continue;
        const name = routeResourceName(l.name, r.name);
        if (
          routes.add(
            name,
            l.name,
            r,
            () => r,
            () => versioned(RouteSchema, name, routeMessage(l.name, r)),
            counts,
          )
        )
          yield;
      }
    }
    for (const p of ir.plugins ?? []) {
      // Compared by the inline bytes' own digest: bytes that did not match a pinned digest and
      // then do (the file fixed) are a change. So never by identity: the bytes are not in `p`.
      const bytes = p.size <= INLINE_COMPONENT_MAX_BYTES ? this.inline(p.digest) : undefined;
      plugins.add(
        p.name,
        p.name,
        undefined,
        () => ({ ...p, inline: bytes && componentDigest(bytes) }),
        () =>
          versioned(
            PluginSchema,
            p.name,
            create(PluginSchema, {
              name: p.name,
              source: p.source,
              digest: p.digest,
              config: p.config as JsonObject,
              capabilities: {
                redisUrl: p.redisUrl,
                redisTimeout: durationFromMs(p.redisTimeoutMs),
                httpAllowHosts: p.httpAllowHosts,
                httpTimeout: durationFromMs(p.httpTimeoutMs),
                crypto: p.crypto,
              },
              limits: {
                fuel: BigInt(p.fuel),
                memoryMaxBytes: BigInt(p.memoryMaxBytes),
                maxInstances: p.maxInstances,
              },
              failure: { failOpen: p.failOpen, status: p.failureStatus },
              phases: {
                onResponse: p.onResponse,
                requestBody: p.requestBody,
                responseBody: p.responseBody,
                bodyLimitBytes: BigInt(p.bodyLimit),
                overLimit: p.overLimit,
              },
              component: { size: BigInt(p.size), ...(bytes && { inline: bytes }) },
            }),
          ),
        counts,
      );
    }
    const snapshot = new Map<TypeUrl, TypeSnapshot>();
    for (const [t, build] of this.types) snapshot.set(t, build.finish(this.previousTypes.get(t)));
    this.previousTypes = snapshot;
    return snapshot;
  }
}
