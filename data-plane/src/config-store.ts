/**
 * Accepted resources per type and the RuntimeConfig built from them. An update for one type is
 * decoded, validated and built into a complete new RuntimeConfig together with the other types'
 * accepted resources; only if every step succeeds does it become current, in one assignment.
 */
import { type Logger, RESOURCE_TYPES, shortType, TYPE_URL, type TypeUrl } from "@agw/core";
import { ClusterLoadAssignmentSchema, ClusterSchema } from "@agw/core/gen/agw/v1/cluster_pb.js";
import { ListenerSchema } from "@agw/core/gen/agw/v1/listener_pb.js";
import { PluginSchema } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { RouteConfigSchema, RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { SecretSchema } from "@agw/core/gen/agw/v1/secret_pb.js";
import { type DescMessage, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Any, anyIs, anyUnpack } from "@bufbuild/protobuf/wkt";
import type { ListenerManager } from "./listeners.ts";
import { buildRuntimeConfig, ResourceError, type ResourceSet } from "./runtime/build.ts";
import type { RuntimeConfig } from "./runtime/types.ts";

type Decoded = ReadonlyMap<string, MessageShape<DescMessage>>;

interface TypeCodec {
  schema: DescMessage;
  nameOf(message: never): string;
}

const CODECS: Record<TypeUrl, TypeCodec> = {
  [TYPE_URL.cluster]: { schema: ClusterSchema, nameOf: (m: { name: string }) => m.name },
  [TYPE_URL.endpoints]: {
    schema: ClusterLoadAssignmentSchema,
    nameOf: (m: { clusterName: string }) => m.clusterName,
  },
  [TYPE_URL.secret]: { schema: SecretSchema, nameOf: (m: { name: string }) => m.name },
  [TYPE_URL.plugin]: { schema: PluginSchema, nameOf: (m: { name: string }) => m.name },
  [TYPE_URL.listener]: { schema: ListenerSchema, nameOf: (m: { name: string }) => m.name },
  [TYPE_URL.routeConfig]: { schema: RouteConfigSchema, nameOf: (m: { name: string }) => m.name },
  [TYPE_URL.route]: {
    schema: RouteSchema,
    nameOf: (m: { name: string; routeConfig: string }) => `${m.routeConfig}/${m.name}`,
  },
};

export interface ConfigStoreOptions {
  /** Binds every listener on this address instead of the configured one. */
  bindAddress?: string | undefined;
  /** Called after each swap, e.g. to let the connection pool drop endpoints that are gone. */
  onSwap?: (config: RuntimeConfig) => void;
}

const EMPTY_CONFIG: RuntimeConfig = { version: "", listeners: new Map(), clusters: new Map() };

export class ConfigStore {
  private readonly resources = new Map<TypeUrl, Decoded>();
  private readonly versions = new Map<TypeUrl, string>();
  private readonly listeners: ListenerManager;
  private readonly log: Logger;
  private readonly options: ConfigStoreOptions;
  private config: RuntimeConfig = EMPTY_CONFIG;

  constructor(listeners: ListenerManager, log: Logger, options: ConfigStoreOptions = {}) {
    this.listeners = listeners;
    this.log = log;
    this.options = options;
  }

  /** True once every resource type has been received and applied at least once. */
  get ready(): boolean {
    return this.versions.size === RESOURCE_TYPES.length;
  }

  /** The hot path's only read of config: one reference, captured per request. */
  readonly current = (): RuntimeConfig => this.config;

  async apply(typeUrl: TypeUrl, anys: Any[], version: string): Promise<void> {
    const codec = CODECS[typeUrl];
    const decoded = new Map<string, MessageShape<DescMessage>>();
    for (const any of anys) {
      if (!anyIs(any, codec.schema))
        throw new ResourceError(shortType(typeUrl), `unexpected resource ${any.typeUrl}`);
      const message = anyUnpack(any, codec.schema);
      if (!message) throw new ResourceError(shortType(typeUrl), "undecodable resource");
      const name = codec.nameOf(message as never);
      if (!name) throw new ResourceError(shortType(typeUrl), "resource without a name");
      if (decoded.has(name))
        throw new ResourceError(`${shortType(typeUrl)} ${name}`, "duplicate resource name");
      decoded.set(name, message);
    }
    const nextResources = new Map(this.resources).set(typeUrl, decoded);
    const nextVersions = new Map(this.versions).set(typeUrl, version);
    const next = buildRuntimeConfig(
      resourceSet(nextResources),
      this.options.bindAddress,
      [...nextVersions].map(([t, v]) => `${shortType(t).split(".").pop()}=${v}`).join(","),
    );
    await this.listeners.prepare(next);
    this.config = next;
    this.resources.set(typeUrl, decoded);
    this.versions.set(typeUrl, version);
    this.listeners.commit(next);
    this.options.onSwap?.(next);
    this.log.info({ type: shortType(typeUrl), version, resources: decoded.size }, "config applied");
  }

  /** Accepted resources as JSON, secrets redacted. */
  dump(): Record<string, JsonValue> {
    const out: Record<string, JsonValue> = {};
    for (const [typeUrl, decoded] of this.resources) {
      const schema = CODECS[typeUrl].schema;
      out[shortType(typeUrl)] = {
        version: this.versions.get(typeUrl) ?? "",
        resources:
          typeUrl === TYPE_URL.secret
            ? [...decoded.keys()].map((name) => ({ name, redacted: true }))
            : [...decoded.values()].map((m) => toJson(schema, m)),
      };
    }
    return out;
  }
}

function typed<T>(map: Decoded | undefined): ReadonlyMap<string, T> {
  return (map ?? new Map()) as ReadonlyMap<string, T>;
}

function resourceSet(resources: ReadonlyMap<TypeUrl, Decoded>): ResourceSet {
  return {
    listeners: typed(resources.get(TYPE_URL.listener)),
    routeConfigs: typed(resources.get(TYPE_URL.routeConfig)),
    routes: typed(resources.get(TYPE_URL.route)),
    clusters: typed(resources.get(TYPE_URL.cluster)),
    endpoints: typed(resources.get(TYPE_URL.endpoints)),
  };
}
