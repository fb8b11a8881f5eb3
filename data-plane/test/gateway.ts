/**
 * The real gateway in-process, for engine tests: agw.v1 resources (as the control plane pushes them)
 * → the data plane's serving unit (serving.ts: ConfigStore → buildRuntimeConfig → swap → listeners →
 * engine, its router, cluster picking, health checks and upstream pool). A push is the real swap.
 * Only the xDS stream is left out; test/xds*.test.ts and the end-to-end tests run that.
 */
import { createLogger, RESOURCE_SCHEMAS, RESOURCE_TYPES, type TypeUrl } from "@agw/core";
import {
  type Cluster,
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
  ClusterSchema,
  ConnectionSettingsSchema,
  UpstreamProtocol,
} from "@agw/core/gen/agw/v1/cluster_pb.js";
import {
  type Listener,
  ListenerLimitsSchema,
  type ListenerLimits as ListenerLimitsSpec,
  ListenerSchema,
} from "@agw/core/gen/agw/v1/listener_pb.js";
import {
  type HeaderOperations,
  HeaderOperationsSchema,
  type Route,
  type RouteConfig,
  RouteConfigSchema,
  RouteSchema,
} from "@agw/core/gen/agw/v1/route_pb.js";
import {
  create,
  type DescMessage,
  equals,
  type Message,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { anyPack, durationFromMs } from "@bufbuild/protobuf/wkt";
import { freePort } from "../../test/helpers.ts";
import type { HttpProxyOptions } from "../src/engine/proxy.ts";
import type { UpstreamPool } from "../src/engine/upstream-pool.ts";
import type { ObservabilityOptions } from "../src/observability/index.ts";
import { buildRuntimeConfig } from "../src/runtime/build.ts";
import type { ClusterRuntime, ListenerLimits } from "../src/runtime/types.ts";
import { ServingUnit } from "../src/serving.ts";

/** The listener of configs made by config(); a pushed listener with port 0 gets a free port. */
export const LISTENER = "test-listener";
const ROUTE_CONFIG = "test-routes";

/** One pushed state: agw.v1 messages per resource type. */
export interface GatewayConfig {
  readonly version: string;
  readonly resources: ReadonlyMap<TypeUrl, readonly Message[]>;
}

export interface EndpointSpec {
  readonly host: string;
  readonly port: number;
  readonly weight?: number;
}

export function endpoint(port: number, host = "127.0.0.1"): EndpointSpec {
  return { host, port };
}

export interface ClusterOptions {
  readonly http2?: boolean;
  readonly connectTimeoutMs?: number;
  readonly idleTimeoutMs?: number;
  readonly maxIdlePerEndpoint?: number;
  readonly maxRequestsPerConnection?: number;
  /** Any other agw.v1.Cluster field (health, lbPolicy, outlierDetection, circuitBreakers...). */
  readonly proto?: MessageInitShape<typeof ClusterSchema>;
}

export interface ClusterSpec {
  readonly cluster: Cluster;
  readonly assignment: ClusterLoadAssignment;
}

export function cluster(name: string, endpoints: EndpointSpec[], over: ClusterOptions = {}): ClusterSpec {
  const c = create(ClusterSchema, over.proto ?? {});
  c.name = name;
  if (over.http2 === true) c.protocol = UpstreamProtocol.HTTP2;
  c.connection ??= create(ConnectionSettingsSchema);
  if (over.connectTimeoutMs !== undefined)
    c.connection.connectTimeout = durationFromMs(over.connectTimeoutMs);
  if (over.idleTimeoutMs !== undefined) c.connection.idleTimeout = durationFromMs(over.idleTimeoutMs);
  c.connection.maxIdlePerEndpoint = over.maxIdlePerEndpoint ?? c.connection.maxIdlePerEndpoint;
  c.connection.maxRequestsPerConnection =
    over.maxRequestsPerConnection ?? c.connection.maxRequestsPerConnection;
  return {
    cluster: c,
    assignment: create(ClusterLoadAssignmentSchema, {
      clusterName: name,
      endpoints: endpoints.map((e) => ({ address: e.host, port: e.port, weight: e.weight ?? 1 })),
    }),
  };
}

/** Header operations in the engine's shape: `[name, value]` pairs. */
export interface HeaderOpsSpec {
  readonly add?: ReadonlyArray<readonly [string, string]>;
  readonly set?: ReadonlyArray<readonly [string, string]>;
  readonly remove?: readonly string[];
}

export interface RouteSpec {
  readonly prefix: string;
  readonly cluster: string;
  /** 0: no timeout. Default: the data plane's default route timeout. */
  readonly timeoutMs?: number;
  readonly requestHeaders?: HeaderOpsSpec;
  readonly responseHeaders?: HeaderOpsSpec;
  readonly maxRequestBodyBytes?: number;
  readonly connect?: boolean;
  /** Any other agw.v1.RouteAction field (retry, rewrite, plugins...). */
  readonly action?: MessageInitShape<typeof RouteSchema>["action"];
}

function headerOps(h: HeaderOpsSpec | undefined): HeaderOperations | undefined {
  if (h === undefined) return undefined;
  const pairs = (l: HeaderOpsSpec["add"]) => (l ?? []).map(([name, value]) => ({ name, value }));
  return create(HeaderOperationsSchema, {
    add: pairs(h.add),
    set: pairs(h.set),
    remove: [...(h.remove ?? [])],
  });
}

/** A listener on LISTENER with `routes` in order (first match wins) over `clusters`. */
export function config(version: string, routes: RouteSpec[], clusters: ClusterSpec[]): GatewayConfig {
  const listener = create(ListenerSchema, {
    name: LISTENER,
    address: "127.0.0.1",
    routeConfig: ROUTE_CONFIG,
  });
  const routeConfig: RouteConfig = create(RouteConfigSchema, { name: ROUTE_CONFIG });
  const pushed: Route[] = routes.map((r, i) =>
    create(RouteSchema, {
      name: `r${i}`,
      routeConfig: ROUTE_CONFIG,
      order: i,
      match: { path: { case: "prefix", value: r.prefix } },
      action: {
        ...r.action,
        target: { case: "cluster", value: r.cluster },
        ...(r.timeoutMs !== undefined && { timeout: durationFromMs(r.timeoutMs) }),
        requestHeaders: headerOps(r.requestHeaders),
        responseHeaders: headerOps(r.responseHeaders),
        ...(r.maxRequestBodyBytes !== undefined && { maxRequestBodyBytes: BigInt(r.maxRequestBodyBytes) }),
        ...(r.connect !== undefined && { connect: r.connect }),
      },
    }),
  );
  return {
    version,
    resources: new Map<TypeUrl, Message[]>([
      [typeUrl(ClusterSchema), clusters.map((c) => c.cluster)],
      [typeUrl(ClusterLoadAssignmentSchema), clusters.map((c) => c.assignment)],
      [typeUrl(ListenerSchema), [listener]],
      [typeUrl(RouteConfigSchema), [routeConfig]],
      [typeUrl(RouteSchema), pushed],
    ]),
  };
}

/** The ClusterRuntime a push of `spec` builds (runtime/build.ts), for tests of the pool alone. */
export function runtimeCluster(spec: ClusterSpec): ClusterRuntime {
  const built = buildRuntimeConfig(
    {
      listeners: new Map(),
      routeConfigs: new Map(),
      routes: new Map(),
      clusters: new Map([[spec.cluster.name, spec.cluster]]),
      endpoints: new Map([[spec.cluster.name, spec.assignment]]),
    },
    undefined,
    "test",
  );
  return built.clusters.get(spec.cluster.name) as ClusterRuntime;
}

/** The listener limits a config carries, in the engine's terms (unset: the data plane's defaults). */
export function limits(over: Partial<ListenerLimits> = {}): ListenerLimitsSpec {
  const ms = (v: number | undefined) => (v === undefined ? undefined : durationFromMs(v));
  return create(ListenerLimitsSchema, {
    maxRequestHeaderBytes: over.maxRequestHeaderBytes ?? 0,
    maxRequestHeaders: over.maxRequestHeaders ?? 0,
    maxRequestBodyBytes: BigInt(over.maxRequestBodyBytes ?? 0),
    headerTimeout: ms(over.headerTimeoutMs),
    bodyTimeout: ms(over.bodyTimeoutMs),
    idleTimeout: ms(over.idleTimeoutMs),
    maxRequestsPerConnection: over.maxRequestsPerConnection ?? 0,
    http2: {
      maxConcurrentStreams: over.http2MaxConcurrentStreams ?? 0,
      initialWindowSize: over.http2InitialWindowSize ?? 0,
      maxHeaderListBytes: over.http2MaxHeaderListBytes ?? 0,
    },
  });
}

/** `c` with every listener carrying `l`. */
export function withLimits(c: GatewayConfig, l: ListenerLimitsSpec): GatewayConfig {
  return mapResources(c, ListenerSchema, (listener) => create(ListenerSchema, { ...listener, limits: l }));
}

/** `c` with `edit` applied to each resource of `schema`'s type. */
export function mapResources<D extends DescMessage>(
  c: GatewayConfig,
  schema: D,
  edit: (m: MessageShape<D>) => MessageShape<D>,
): GatewayConfig {
  const resources = new Map(c.resources);
  const type = typeUrl(schema);
  resources.set(
    type,
    (resources.get(type) ?? []).map((m) => edit(m as MessageShape<D>)),
  );
  return { version: c.version, resources };
}

function typeUrl(schema: DescMessage): TypeUrl {
  return `type.googleapis.com/${schema.typeName}` as TypeUrl;
}

function schemaOf(type: TypeUrl): DescMessage {
  const schema = RESOURCE_SCHEMAS.find((s) => typeUrl(s) === type);
  if (schema === undefined) throw new Error(`no agw.v1 schema for ${type}`);
  return schema;
}

export interface GatewayOptions {
  /** Engine settings no resource carries (HttpProxyOptions: e.g. lingerTimeoutMs). */
  readonly proxy?: HttpProxyOptions;
  readonly observability?: ObservabilityOptions;
}

export interface Gateway {
  /** The port of LISTENER (or of the only listener). */
  readonly port: number;
  readonly serving: ServingUnit;
  readonly pool: UpstreamPool;
  /** The port a pushed listener got. */
  portOf(listener: string): number;
  /**
   * Pushes `next` as the control plane would: each resource type that changed, in make-before-break
   * order, through the real validate → build → swap. Rejects with the NACK reason.
   */
  push(next: GatewayConfig): Promise<void>;
  close(): Promise<void>;
}

/** Starts a serving unit in-process and pushes `initial` into it. */
export async function startGateway(initial: GatewayConfig, options: GatewayOptions = {}): Promise<Gateway> {
  const log = createLogger("data-plane");
  log.level = process.env.AGW_LOG_LEVEL ?? "warn";
  const serving = await ServingUnit.start({
    log,
    ...(options.proxy && { proxy: options.proxy }),
    ...(options.observability && { observability: options.observability }),
  });
  const ports = new Map<string, number>();
  let pushed = new Map<TypeUrl, readonly Message[]>();
  const push = async (next: GatewayConfig): Promise<void> => {
    const resources = new Map(next.resources);
    const listeners = (resources.get(typeUrl(ListenerSchema)) ?? []) as Listener[];
    for (const l of listeners) if (l.port === 0 && !ports.has(l.name)) ports.set(l.name, await freePort());
    resources.set(
      typeUrl(ListenerSchema),
      listeners.map((l) =>
        l.port === 0 ? create(ListenerSchema, { ...l, port: ports.get(l.name) ?? 0 }) : l,
      ),
    );
    for (const type of RESOURCE_TYPES) {
      const list = resources.get(type) ?? [];
      const before = pushed.get(type);
      const schema = schemaOf(type);
      if (
        before !== undefined &&
        before.length === list.length &&
        before.every((m, i) => equals(schema, m as never, list[i] as never))
      )
        continue;
      await serving.apply(
        type,
        list.map((m) => anyPack(schema, m as never)),
        next.version,
      );
    }
    pushed = resources;
  };
  // freePort() is free only a moment: another process may take it before the listener binds.
  for (let attempt = 1; ; attempt++) {
    try {
      await push(initial);
      break;
    } catch (e) {
      const taken = /EADDRINUSE/.test((e as Error).message);
      if (!taken || attempt === 3) {
        await serving.close();
        throw e;
      }
      ports.clear();
      pushed = new Map();
    }
  }
  if (!serving.store.ready) throw new Error(`config not active: ${serving.store.warming.join("; ")}`);
  const port = ports.get(LISTENER) ?? [...ports.values()][0] ?? 0;
  return {
    port,
    serving,
    pool: serving.pool,
    portOf(listener) {
      const p = ports.get(listener);
      if (p === undefined) throw new Error(`no listener ${listener}`);
      return p;
    },
    push,
    close: () => serving.close(),
  };
}
