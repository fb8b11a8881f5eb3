/** IR → agw.v1 resources, one resource per listener, route config, route, cluster and endpoint set. */

import { createHash } from "node:crypto";
import { ClusterLoadAssignmentSchema, ClusterSchema, LbPolicy } from "@agw/core/gen/agw/v1/cluster_pb.js";
import { ListenerSchema, Protocol } from "@agw/core/gen/agw/v1/listener_pb.js";
import { PluginSchema } from "@agw/core/gen/agw/v1/plugin_pb.js";
import {
  type HeaderOperations,
  HeaderOperationsSchema,
  RouteConfigSchema,
  type RouteMatch,
  RouteMatchSchema,
  RouteSchema,
} from "@agw/core/gen/agw/v1/route_pb.js";
import { SecretSchema } from "@agw/core/gen/agw/v1/secret_pb.js";
import type { HeaderOps, Ir, IrRoute, ValueMatch } from "@agw/core/ir";
import { RESOURCE_TYPES, TYPE_URL, type TypeUrl } from "@agw/core/xds/types";
import { create, type DescMessage, type JsonObject, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, anyPack, durationFromMs } from "@bufbuild/protobuf/wkt";

export interface VersionedResource {
  name: string;
  /** Content hash of the encoded resource: equal bytes, equal version. */
  version: string;
  resource: Any;
  /** Encoded size of `resource` (the Any), for wire accounting without encoding twice. */
  size: number;
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
): VersionedResource {
  const bytes = toBinary(schema, message);
  const resource = anyPack(schema, message);
  return { name, version: hash(bytes), resource, size: toBinary(AnySchema, resource).length };
}

export function typeSnapshot(resources: VersionedResource[]): TypeSnapshot {
  const sorted = [...resources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const version = hash(sorted.map((r) => `${r.name}=${r.version}`).join("\n"));
  return { version, resources: new Map(sorted.map((r) => [r.name, r])) };
}

/** Resource name of a route: routes are scoped by their parent route config. */
export function routeResourceName(routeConfig: string, route: string): string {
  return `${routeConfig}/${route}`;
}

export function irToSnapshot(ir: Ir): Snapshot {
  const byType = new Map<TypeUrl, VersionedResource[]>(RESOURCE_TYPES.map((t) => [t, []]));
  const add = (type: TypeUrl, r: VersionedResource) => byType.get(type)?.push(r);

  for (const c of ir.clusters) {
    add(
      TYPE_URL.cluster,
      versioned(
        ClusterSchema,
        c.name,
        create(ClusterSchema, {
          name: c.name,
          lbPolicy: LbPolicy.ROUND_ROBIN,
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
      ),
    );
    add(
      TYPE_URL.endpoints,
      versioned(
        ClusterLoadAssignmentSchema,
        c.name,
        create(ClusterLoadAssignmentSchema, { clusterName: c.name, endpoints: c.endpoints }),
      ),
    );
  }
  for (const s of ir.secrets ?? []) {
    add(
      TYPE_URL.secret,
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
    add(
      TYPE_URL.listener,
      versioned(
        ListenerSchema,
        l.name,
        create(ListenerSchema, {
          name: l.name,
          address: l.address,
          port: l.port,
          protocol: l.protocol === "https" ? Protocol.HTTPS : Protocol.HTTP,
          routeConfig: l.name,
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
        }),
      ),
    );
    add(
      TYPE_URL.routeConfig,
      versioned(RouteConfigSchema, l.name, create(RouteConfigSchema, { name: l.name })),
    );
    for (const r of l.routes) {
      const action =
        "cluster" in r.target
          ? { case: "cluster" as const, value: r.target.cluster }
          : { case: "weightedClusters" as const, value: { clusters: r.target.weighted } };
      add(
        TYPE_URL.route,
        versioned(
          RouteSchema,
          routeResourceName(l.name, r.name),
          create(RouteSchema, {
            name: r.name,
            routeConfig: l.name,
            order: r.order,
            match: routeMatch(r),
            action: {
              target: action,
              timeout: durationFromMs(r.timeoutMs),
              requestHeaders: headerOperations(r.requestHeaders),
              responseHeaders: headerOperations(r.responseHeaders),
              plugins: r.plugins.map((p) => ({
                name: p.name,
                config: p.config as JsonObject,
              })),
            },
          }),
        ),
      );
    }
  }
  for (const p of ir.plugins ?? []) {
    add(
      TYPE_URL.plugin,
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
          },
          limits: {
            fuel: BigInt(p.fuel),
            memoryMaxBytes: BigInt(p.memoryMaxBytes),
            maxInstances: p.maxInstances,
          },
          failure: { failOpen: p.failOpen, status: p.failureStatus },
        }),
      ),
    );
  }
  return new Map([...byType].map(([type, list]) => [type, typeSnapshot(list)]));
}
