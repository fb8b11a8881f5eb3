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
  resources: ReadonlyMap<string, VersionedResource>;
}

export type Snapshot = ReadonlyMap<TypeUrl, TypeSnapshot>;

function hash(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex").slice(0, 16);
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

export function typeSnapshot(resources: VersionedResource[]): TypeSnapshot {
  const sorted = [...resources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const version = hash(sorted.map((r) => `${r.name}=${r.version}`).join("\n"));
  return { version, resources: new Map(sorted.map((r) => [r.name, r])) };
}

/** The Secret names a listener references: its certificates and its client CA. */
export function listenerSecrets(l: IrListener): string[] {
  if (!l.tls) return [];
  const ca = l.tls.clientCertificate?.ca;
  return [...l.tls.certificates, ...(ca ? [ca] : [])];
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
    },
  });
}

/** Builds a snapshot from scratch (tests, one-off conversions). */
export function irToSnapshot(ir: Ir): Snapshot {
  return new SnapshotBuilder().build(ir);
}

interface BuiltResource {
  /** JSON of the IR the resource was built from: equal content, same resource. */
  content: string;
  resource: VersionedResource;
}

/** IR → Snapshot, reusing the previous build's resources whose IR content did not change. */
/**
 * A plugin's component bytes by digest, for inlining (xds/components.ts); none: every component is
 * fetched by digest.
 */
export type InlineComponents = (digest: string) => Uint8Array | undefined;

export class SnapshotBuilder {
  private previous = new Map<string, BuiltResource>();
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

  private *steps(ir: Ir): Steps<Snapshot> {
    const next = new Map<string, BuiltResource>();
    const byType = new Map<TypeUrl, { list: VersionedResource[]; encoded: number }>(
      RESOURCE_TYPES.map((t) => [t, { list: [], encoded: 0 }]),
    );
    this.lastBuild.encoded = 0;
    this.lastBuild.reused = 0;
    const add = (type: TypeUrl, name: string, from: unknown, encode: () => VersionedResource) => {
      const key = `${type} ${name}`;
      const content = JSON.stringify(from);
      const old = this.previous.get(key);
      const entry = byType.get(type);
      let resource: VersionedResource;
      if (old && old.content === content) {
        resource = old.resource;
        this.lastBuild.reused++;
      } else {
        resource = encode();
        this.lastBuild.encoded++;
        if (entry) entry.encoded++;
      }
      next.set(key, { content, resource });
      entry?.list.push(resource);
    };

    for (const c of ir.clusters) {
      yield;
      const { endpoints, ...cluster } = c;
      add(TYPE_URL.cluster, c.name, cluster, () =>
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
      );
      add(TYPE_URL.endpoints, c.name, endpoints, () =>
        versioned(
          ClusterLoadAssignmentSchema,
          c.name,
          create(ClusterLoadAssignmentSchema, { clusterName: c.name, endpoints: c.endpoints }),
        ),
      );
    }
    // Only what some listener or cluster names: an unreferenced Secret (every TLS Secret of a
    // namespace, say) is never sent to any data plane.
    const referenced = new Set([
      ...ir.listeners.flatMap(listenerSecrets),
      ...ir.clusters.flatMap(clusterSecrets),
    ]);
    for (const s of ir.secrets ?? []) {
      if (!referenced.has(s.name)) continue;
      add(TYPE_URL.secret, s.name, s, () =>
        versioned(
          SecretSchema,
          s.name,
          create(SecretSchema, {
            name: s.name,
            kind:
              s.caPem !== undefined
                ? { case: "validationContext", value: { trustedCaPem: s.caPem } }
                : {
                    case: "tlsCertificate",
                    value: { certificateChainPem: s.certificateChainPem, privateKeyPem: s.privateKeyPem },
                  },
          }),
        ),
      );
    }
    for (const l of ir.listeners) {
      const { routes, ...listener } = l;
      add(TYPE_URL.listener, l.name, listener, () =>
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
          }),
          listenerSecrets(l),
        ),
      );
      if (l.l4) continue;
      add(TYPE_URL.routeConfig, l.name, null, () =>
        versioned(RouteConfigSchema, l.name, create(RouteConfigSchema, { name: l.name })),
      );
      for (const r of l.routes) {
        yield;
        const name = routeResourceName(l.name, r.name);
        add(TYPE_URL.route, name, r, () => versioned(RouteSchema, name, routeMessage(l.name, r)));
      }
    }
    for (const p of ir.plugins ?? []) {
      // Compared by the inline bytes' own digest: bytes that did not match a pinned digest and
      // then do (the file fixed) are a change.
      const bytes = p.size <= INLINE_COMPONENT_MAX_BYTES ? this.inline(p.digest) : undefined;
      add(TYPE_URL.plugin, p.name, { ...p, inline: bytes && componentDigest(bytes) }, () =>
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
      );
    }
    this.previous = next;
    const snapshot = new Map<TypeUrl, TypeSnapshot>();
    for (const [type, { list, encoded }] of byType) {
      // Nothing re-encoded and as many resources as before: the same resources, the same version.
      const before = this.previousTypes.get(type);
      const unchanged = before !== undefined && encoded === 0 && list.length === before.resources.size;
      snapshot.set(type, unchanged ? before : typeSnapshot(list));
    }
    this.previousTypes = snapshot;
    return snapshot;
  }
}
