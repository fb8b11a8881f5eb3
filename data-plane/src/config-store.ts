/**
 * Accepted resources per type and the RuntimeConfig built from them. An update for one type (a full
 * set in SotW, changes and removals in Delta) is decoded, validated and built into a complete new
 * RuntimeConfig together with the other types' accepted resources; anything invalid throws (NACK)
 * and changes nothing.
 *
 * Warming: a valid update whose config still references something not received yet (a listener's
 * RouteConfig, a route's cluster, a cluster's ClusterLoadAssignment) is accepted but not activated:
 * the previous config keeps serving until the missing resources arrive. `warming` names what waits
 * for what.
 */
import { type Logger, RESOURCE_TYPES, shortType, TYPE_URL, type TypeUrl } from "@agw/core";
import { ClusterLoadAssignmentSchema, ClusterSchema } from "@agw/core/gen/agw/v1/cluster_pb.js";
import { ListenerSchema } from "@agw/core/gen/agw/v1/listener_pb.js";
import { type Plugin, PluginSchema } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { RouteConfigSchema, RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { SecretSchema } from "@agw/core/gen/agw/v1/secret_pb.js";
import { runSliced, type Steps } from "@agw/core/slices";
import { type DescMessage, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Any, anyIs, anyUnpack } from "@bufbuild/protobuf/wkt";
import { HealthCheckers } from "./cluster/health-check.ts";
import { ClusterStates } from "./cluster/state.ts";
import type { ListenerManager } from "./listeners.ts";
import { type ComponentFetcher, PluginHost } from "./plugins/index.ts";
import { buildRuntimeConfigSliced, ResourceError, type ResourceSet } from "./runtime/build.ts";
import type { RuntimeConfig } from "./runtime/types.ts";
import { type BucketMemory, BucketTable, bucketMemory } from "./shaping/bucket-table.ts";
import type { TlsManager } from "./tls/manager.ts";
import type { DeltaResource } from "./xds-client.ts";

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
  /** Secure contexts and session ticket keys, kept across configs. */
  tls?: TlsManager;
  /**
   * False when this data plane talks xDS in plaintext TCP: the control plane then sends it no
   * Secret, and a listener's missing certificate is explained as such.
   */
  xdsAuthenticated?: boolean;
  /** Gets plugin components that are not inline (plugins/index.ts). */
  fetchComponent?: ComponentFetcher | undefined;
  /** The rate-limit buckets every worker thread shares (shaping/bucket-table.ts); a private table when absent. */
  bucketMemory?: BucketMemory | undefined;
}

/** Why a Secret named by a listener or cluster never arrives over plaintext xDS. */
export const SECRETS_WITHHELD =
  "not sent: this data plane's xDS is plaintext TCP (unauthenticated), and the control plane sends Secrets only over mTLS (--xds-cert/--xds-key/--xds-ca) or agw run's private Unix socket";

const EMPTY_CONFIG: RuntimeConfig = { version: "", listeners: new Map(), clusters: new Map() };

export class ConfigStore {
  private readonly resources = new Map<TypeUrl, Decoded>();
  private readonly versions = new Map<TypeUrl, string>();
  private readonly listeners: ListenerManager;
  private readonly log: Logger;
  private readonly options: ConfigStoreOptions;
  private config: RuntimeConfig = EMPTY_CONFIG;
  /** Loads Plugin resources (transpile, compile, first instance) before a config may use them. */
  readonly plugins: PluginHost;
  private waitingFor: string[] = [];
  /** The last update rejected (NACKed) and why, until an update of that type is accepted. */
  private rejected = new Map<TypeUrl, string>();
  /** Endpoint health, ejections and counters, kept across configs (data-plane/src/cluster). */
  readonly clusterStates = new ClusterStates();
  private readonly healthCheckers = new HealthCheckers(this.clusterStates);
  /** Local rate-limit buckets, kept across configs (a config change keeps what clients have used). */
  readonly buckets: BucketTable;

  constructor(listeners: ListenerManager, log: Logger, options: ConfigStoreOptions = {}) {
    this.listeners = listeners;
    this.log = log;
    this.options = options;
    this.plugins = new PluginHost(log, { fetch: options.fetchComponent });
    this.buckets = new BucketTable(options.bucketMemory ?? bucketMemory());
  }

  /** True once every resource type has been received and nothing waits for a missing resource. */
  get ready(): boolean {
    return this.versions.size === RESOURCE_TYPES.length && this.waitingFor.length === 0;
  }

  /** The hot path's only read of config: one reference, captured per request. */
  readonly current = (): RuntimeConfig => this.config;

  /** State of the world: `anys` is the type's complete resource set. */
  async apply(typeUrl: TypeUrl, anys: Any[], version: string): Promise<void> {
    await this.stage(typeUrl, await runSliced(decodeAll(typeUrl, anys)), version);
  }

  /** Incremental: `updated` replaces or adds resources by name, `removed` drops them. */
  async applyDelta(
    typeUrl: TypeUrl,
    updated: DeltaResource[],
    removed: string[],
    version: string,
  ): Promise<void> {
    if (updated.length === 0 && removed.length === 0 && this.resources.has(typeUrl)) {
      // Nothing changed (e.g. the answer to a reconnect whose versions all match): no rebuild.
      this.versions.set(typeUrl, version);
      return;
    }
    const decoded = await runSliced(decodeChanges(typeUrl, this.resources.get(typeUrl), updated, removed));
    await this.stage(typeUrl, decoded, version);
  }

  /** What is accepted but not active, and what it waits for. */
  get warming(): string[] {
    return this.waitingFor;
  }

  /** Updates rejected (NACKed) and not yet replaced by an accepted one: type → reason. */
  get rejections(): Record<string, string> {
    return Object.fromEntries([...this.rejected].map(([t, m]) => [shortType(t), m]));
  }

  private async stage(typeUrl: TypeUrl, decoded: Decoded, version: string): Promise<void> {
    const nextResources = new Map(this.resources).set(typeUrl, decoded);
    const nextVersions = new Map(this.versions).set(typeUrl, version);
    const set = resourceSet(nextResources);
    if (this.options.tls) set.tls = this.options.tls;
    set.clusterStates = this.clusterStates;
    set.buckets = this.buckets;
    let next: RuntimeConfig;
    let plugins: Awaited<ReturnType<PluginHost["prepare"]>>;
    try {
      plugins = await this.plugins.prepare(typed<Plugin>(nextResources.get(TYPE_URL.plugin)));
      set.plugins = new Map([...plugins].map(([name, p]) => [name, p.runtime]));
      // In slices, as decoding: the serving thread keeps answering while 20,000 routes compile.
      next = await buildRuntimeConfigSliced(
        set,
        this.options.bindAddress,
        [...nextVersions].map(([t, v]) => `${shortType(t).split(".").pop()}=${v}`).join(","),
      );
    } catch (e) {
      const error =
        this.options.xdsAuthenticated === false &&
        e instanceof ResourceError &&
        /secret "[^"]*" does not exist/.test(e.message)
          ? new ResourceError(e.resource, `${e.message.slice(e.resource.length + 2)}: ${SECRETS_WITHHELD}`)
          : e;
      this.rejected.set(typeUrl, (error as Error).message);
      throw error;
    }
    this.rejected.delete(typeUrl);
    const missing = missingReferences(set);
    if (missing.length > 0) {
      this.resources.set(typeUrl, decoded);
      this.versions.set(typeUrl, version);
      this.waitingFor = missing;
      this.log.info(
        { type: shortType(typeUrl), version, waiting_for: missing.slice(0, 10), count: missing.length },
        "config warming: keeping the previous config until referenced resources arrive",
      );
      return;
    }
    await this.listeners.prepare(next);
    this.config = next;
    this.resources.set(typeUrl, decoded);
    this.versions.set(typeUrl, version);
    this.waitingFor = [];
    this.listeners.commit(next);
    this.plugins.commit(plugins);
    this.clusterStates.retain(next.clusters);
    this.healthCheckers.activate(next.clusters.values());
    this.options.onSwap?.(next);
    this.log.info({ type: shortType(typeUrl), version, resources: decoded.size }, "config applied");
  }

  /** Stops active health checking. */
  close(): void {
    this.healthCheckers.close();
  }

  /** Accepted resources as JSON, Secrets by name only (the admin server redacts the rest: redact.ts). */
  dump(): Record<string, JsonValue> {
    const out: Record<string, JsonValue> = {};
    for (const [typeUrl, decoded] of this.resources) {
      const schema = CODECS[typeUrl].schema;
      out[shortType(typeUrl)] = {
        version: this.versions.get(typeUrl) ?? "",
        resources:
          typeUrl === TYPE_URL.secret
            ? [...decoded.keys()].map((name) => ({ name, redacted: true }))
            : [...decoded.values()].map((m) => inlineAsSize(toJson(schema, m))),
      };
    }
    return out;
  }
}

/** A dumped Plugin's inline component as its size, not up to 256 KiB of base64 (the digest names it). */
function inlineAsSize(json: JsonValue): JsonValue {
  const component = (json as { component?: { inline?: string } } | null)?.component;
  if (typeof component?.inline === "string")
    component.inline = `${Buffer.from(component.inline, "base64").byteLength} bytes`;
  return json;
}

/** A type's complete set (SotW), one resource a step. */
function* decodeAll(typeUrl: TypeUrl, anys: Any[]): Steps<Decoded> {
  const decoded = new Map<string, MessageShape<DescMessage>>();
  for (const any of anys) {
    yield;
    const [name, message] = decode(typeUrl, any);
    if (decoded.has(name))
      throw new ResourceError(`${shortType(typeUrl)} ${name}`, "duplicate resource name");
    decoded.set(name, message);
  }
  return decoded;
}

/** The accepted set with a Delta update's changes, one resource a step. */
function* decodeChanges(
  typeUrl: TypeUrl,
  accepted: Decoded | undefined,
  updated: DeltaResource[],
  removed: string[],
): Steps<Decoded> {
  const decoded = new Map(accepted);
  for (const name of removed) decoded.delete(name);
  for (const r of updated) {
    yield;
    const [name, message] = decode(typeUrl, r.resource);
    if (name !== r.name)
      throw new ResourceError(`${shortType(typeUrl)} ${r.name}`, `resource is named "${name}" inside`);
    decoded.set(name, message);
  }
  return decoded;
}

function decode(typeUrl: TypeUrl, any: Any): [string, MessageShape<DescMessage>] {
  const codec = CODECS[typeUrl];
  if (!anyIs(any, codec.schema))
    throw new ResourceError(shortType(typeUrl), `unexpected resource ${any.typeUrl}`);
  const message = anyUnpack(any, codec.schema);
  if (!message) throw new ResourceError(shortType(typeUrl), "undecodable resource");
  const name = codec.nameOf(message as never);
  if (!name) throw new ResourceError(shortType(typeUrl), "resource without a name");
  return [name, message];
}

/** References that do not resolve yet, as "agw.v1.Kind name -> agw.v1.Kind missing". */
function missingReferences(set: ResourceSet): string[] {
  const missing: string[] = [];
  for (const [name, l] of set.listeners) {
    if (l.routeConfig && !set.routeConfigs.has(l.routeConfig))
      missing.push(`agw.v1.Listener ${name} -> agw.v1.RouteConfig ${l.routeConfig}`);
    const l4 = l.l4;
    for (const cluster of l4 ? [l4.cluster, ...l4.sniRoutes.map((r) => r.cluster)] : [])
      if (cluster !== "" && !set.clusters.has(cluster))
        missing.push(`agw.v1.Listener ${name} -> agw.v1.Cluster ${cluster}`);
  }
  for (const [name, r] of set.routes) {
    const target = r.action?.target;
    const clusters =
      target?.case === "cluster"
        ? [target.value]
        : target?.case === "weightedClusters"
          ? target.value.clusters.map((c) => c.name)
          : [];
    for (const cluster of clusters)
      if (!set.clusters.has(cluster)) missing.push(`agw.v1.Route ${name} -> agw.v1.Cluster ${cluster}`);
  }
  for (const name of set.clusters.keys())
    if (!set.endpoints.has(name))
      missing.push(`agw.v1.Cluster ${name} -> agw.v1.ClusterLoadAssignment ${name}`);
  return missing;
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
    secrets: typed(resources.get(TYPE_URL.secret)),
  };
}
