/**
 * The AGW resource types carried over Envoy's aggregated discovery service, packed as `Any`.
 * The order of RESOURCE_TYPES is the push order (make-before-break): what others reference
 * (secrets, clusters, endpoints, plugins) goes before what references it (listeners, routes).
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { ClusterLoadAssignmentSchema, ClusterSchema } from "../gen/agw/v1/cluster_pb.js";
import { ListenerSchema } from "../gen/agw/v1/listener_pb.js";
import { PluginSchema } from "../gen/agw/v1/plugin_pb.js";
import { RouteConfigSchema, RouteSchema } from "../gen/agw/v1/route_pb.js";
import { SecretSchema } from "../gen/agw/v1/secret_pb.js";

export const TYPE_PREFIX = "type.googleapis.com/";

export const RESOURCE_SCHEMAS = [
  // Secrets first: clusters (upstream TLS) and listeners name them, they name nothing.
  SecretSchema,
  ClusterSchema,
  ClusterLoadAssignmentSchema,
  PluginSchema,
  ListenerSchema,
  RouteConfigSchema,
  RouteSchema,
] as const satisfies readonly DescMessage[];

export const TYPE_URL = {
  cluster: `${TYPE_PREFIX}${ClusterSchema.typeName}`,
  endpoints: `${TYPE_PREFIX}${ClusterLoadAssignmentSchema.typeName}`,
  secret: `${TYPE_PREFIX}${SecretSchema.typeName}`,
  plugin: `${TYPE_PREFIX}${PluginSchema.typeName}`,
  listener: `${TYPE_PREFIX}${ListenerSchema.typeName}`,
  routeConfig: `${TYPE_PREFIX}${RouteConfigSchema.typeName}`,
  route: `${TYPE_PREFIX}${RouteSchema.typeName}`,
} as const;

export type TypeUrl = (typeof TYPE_URL)[keyof typeof TYPE_URL];

/** Every AGW type URL in push order. */
export const RESOURCE_TYPES: readonly TypeUrl[] = RESOURCE_SCHEMAS.map(
  (s) => `${TYPE_PREFIX}${s.typeName}` as TypeUrl,
);

/** Short names for logs and admin output. */
export function shortType(typeUrl: string): string {
  return typeUrl.startsWith(TYPE_PREFIX) ? typeUrl.slice(TYPE_PREFIX.length) : typeUrl;
}
