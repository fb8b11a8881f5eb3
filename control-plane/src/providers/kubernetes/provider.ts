/**
 * The Kubernetes source: informers for Services, EndpointSlices, GatewayRoutes and TLS Secrets →
 * translateKube → an IR fragment for the control plane to merge with config.yaml's. A periodic
 * relist (resync) catches anything a watch could have missed and, because translation is pure and
 * sorted, lands on the same snapshot a cold start would. GatewayRoute status is written by the
 * Lease holder only; every replica translates and serves.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Logger } from "@agw/core";
import type { ComponentRead } from "../../xds/components.ts";
import { KubeApiError, KubeClient, loadKubeConfig } from "./client.ts";
import { pluginConfigMaps } from "./configmaps.ts";
import { addressPool, gatewayClassConditions, gatewayStatus, routeParents } from "./gateway-api.ts";
import { Informer } from "./informer.ts";
import { LeaderElector } from "./leader.ts";
import { reportKey } from "./merge.ts";
import type { ProgramState } from "./programmed.ts";
import { routeConditions } from "./status.ts";
import { type Condition, type KubeTranslation, type RouteReport, translateKube } from "./translate.ts";
import {
  CONTROLLER_NAME,
  type EndpointSlice,
  GATEWAY_API,
  GATEWAY_ROUTE,
  type Gateway,
  type GatewayClass,
  type GatewayRoute,
  type GrpcRoute,
  type HttpRoute,
  type Namespace,
  type ReferenceGrant,
  type Secret,
  type Service,
  type StatusCondition,
} from "./types.ts";

export interface KubernetesProviderOptions {
  /** kubeconfig file; omitted: KUBECONFIG, ~/.kube/config, then the in-cluster service account. */
  kubeconfig?: string;
  /** Watch one namespace only; omitted: all namespaces. */
  namespace?: string;
  /** Full relist period; default 5 minutes. */
  resyncMs?: number;
  leaderElection?: {
    /** Namespace of the Lease; default the watched namespace, else "default". */
    namespace?: string;
    /** Lease name; default "agw-control-plane". */
    name?: string;
    identity?: string;
    leaseDurationSeconds?: number;
    renewMs?: number;
  };
  /**
   * IPv4 CIDR (e.g. 127.0.20.0/24) each Gateway without spec.addresses gets its own address from
   * (docs/kubernetes.md); omitted: such Gateways bind the default address and show none.
   */
  gatewayAddressPool?: string;
  log: Logger;
  /**
   * A new translation, and the objects whose changes led to it ("GatewayRoute ns/name",
   * "EndpointSlice ns/name", …; at most MAX_NAMED_CHANGES, then "and N more objects").
   */
  onTranslation: (translation: KubeTranslation, changedObjects: string[]) => void;
  /** A ConfigMap holding plugin components changed (configmaps.ts). */
  onComponents?: () => void;
  /**
   * Whether data planes run a route (ProgramTracker). Without it Programmed says Pending: the
   * control plane cannot know.
   */
  program?: {
    state(listener: string, routeNames: string[]): ProgramState;
    /** Changes when a data plane connects, leaves, ACKs or NACKs. */
    fingerprint(): string;
  };
}

const DEBOUNCE_MS = 10;
/** Objects named per translation in the config history; past it they are counted. */
const MAX_NAMED_CHANGES = 20;
/** How often the leader looks for ACKs and NACKs that change a route's Programmed condition. */
const PROGRAM_POLL_MS = 250;

function sameConditions(
  current: NonNullable<GatewayRoute["status"]>["conditions"],
  wanted: Condition[],
  generation: number,
): boolean {
  if (!current || current.length !== wanted.length) return false;
  return wanted.every((w) => {
    const c = current.find((x) => x.type === w.type);
    return (
      c &&
      c.status === w.status &&
      c.reason === w.reason &&
      c.message === w.message &&
      c.observedGeneration === generation
    );
  });
}

/**
 * The namespace this process runs in, in a Pod: where its Lease goes when no namespace is watched
 * (deploy/ grants leases in the control plane's own namespace only).
 */
function podNamespace(): string | undefined {
  try {
    return (
      readFileSync("/var/run/secrets/kubernetes.io/serviceaccount/namespace", "utf8").trim() || undefined
    );
  } catch {
    return undefined;
  }
}

/** JSON with sorted keys: two statuses compare equal whatever order the API server keeps. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

function sameStatus(current: unknown, wanted: unknown): boolean {
  return canonical(current ?? {}) === canonical(wanted);
}

const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

/**
 * Conditions as written: with observedGeneration, and the lastTransitionTime kept from the
 * current condition of the same type while its status is unchanged.
 */
function timed(
  wanted: Array<Omit<StatusCondition, "observedGeneration" | "lastTransitionTime">>,
  current: StatusCondition[] | undefined,
  generation: number,
): StatusCondition[] {
  return wanted.map((c) => {
    const before = current?.find((x) => x.type === c.type);
    return {
      ...c,
      observedGeneration: generation,
      lastTransitionTime:
        before && before.status === c.status && before.lastTransitionTime ? before.lastTransitionTime : now(),
    };
  });
}

export class KubernetesProvider {
  readonly client: KubeClient;
  readonly identity: string;
  private readonly options: KubernetesProviderOptions;
  private readonly services: Informer<Service>;
  private readonly endpointSlices: Informer<EndpointSlice>;
  private readonly gatewayRoutes: Informer<GatewayRoute>;
  private readonly secrets: Informer<Secret>;
  private readonly gateways: Informer<Gateway>;
  private readonly httpRoutes: Informer<HttpRoute>;
  private readonly grpcRoutes: Informer<GrpcRoute>;
  private readonly gatewayClasses: Informer<GatewayClass>;
  private readonly referenceGrants: Informer<ReferenceGrant>;
  private readonly namespaces: Informer<Namespace>;
  private readonly configMaps: ReturnType<typeof pluginConfigMaps>;
  private readonly elector: LeaderElector;
  private synced = false;
  private debounce: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private lastHash = "";
  /** Objects changed since the last translation, named for the config history (bounded). */
  private readonly changed = new Set<string>();
  private changedUnnamed = 0;
  private last: KubeTranslation | undefined;
  private statusWrites: Promise<void> = Promise.resolve();
  private statusPending = false;
  /** mergeIr's verdict on each route report (reportKey): what data planes would refuse. */
  private rejected: ReadonlyMap<string, string[]> = new Map();
  private programTimer: NodeJS.Timeout | undefined;
  private programFingerprint = "";
  /** Count of status writes this replica made (tests check that followers make none). */
  statusWriteCount = 0;

  constructor(options: KubernetesProviderOptions) {
    this.options = options;
    // A bad pool is the operator's error, said at start rather than at the first Gateway.
    if (options.gatewayAddressPool !== undefined) addressPool(options.gatewayAddressPool);
    this.client = new KubeClient(loadKubeConfig(options.kubeconfig));
    const ns = options.namespace;
    const scoped = (prefix: string, plural: string) =>
      ns ? `${prefix}/namespaces/${encodeURIComponent(ns)}/${plural}` : `${prefix}/${plural}`;
    const informer = <
      T extends
        | Service
        | EndpointSlice
        | GatewayRoute
        | Secret
        | Gateway
        | HttpRoute
        | GrpcRoute
        | GatewayClass
        | ReferenceGrant
        | Namespace,
    >(
      kind: string,
      path: string,
      fieldSelector?: string,
      forbiddenIsEmpty = false,
    ) =>
      new Informer<T>({
        client: this.client,
        path,
        forbiddenIsEmpty,
        ...(fieldSelector ? { fieldSelector } : {}),
        log: options.log,
        onChange: (keys) => {
          for (const key of keys) this.noteChange(`${kind} ${key.startsWith("/") ? key.slice(1) : key}`);
          this.schedule();
        },
      });
    this.services = informer<Service>("Service", scoped("/api/v1", "services"));
    this.endpointSlices = informer<EndpointSlice>(
      "EndpointSlice",
      scoped("/apis/discovery.k8s.io/v1", "endpointslices"),
    );
    this.gatewayRoutes = informer<GatewayRoute>(
      "GatewayRoute",

      scoped(`/apis/${GATEWAY_ROUTE.group}/${GATEWAY_ROUTE.version}`, GATEWAY_ROUTE.plural),
    );
    this.secrets = informer<Secret>("Secret", scoped("/api/v1", "secrets"), "type=kubernetes.io/tls");
    // Served only when the Gateway API CRDs are installed; until then these stay empty.
    const gatewayApi = `/apis/${GATEWAY_API.group}/${GATEWAY_API.version}`;
    this.gateways = informer<Gateway>("Gateway", scoped(gatewayApi, "gateways"));
    this.httpRoutes = informer<HttpRoute>("HTTPRoute", scoped(gatewayApi, "httproutes"));
    this.grpcRoutes = informer<GrpcRoute>("GRPCRoute", scoped(gatewayApi, "grpcroutes"));
    // Cluster-scoped: GatewayClasses (which are ours), and Namespaces (allowedRoutes selectors).
    // A control plane bound to one namespace (a RoleBinding) may not read them: then no Gateway
    // is ours and selectors match nothing, and it serves the rest (docs/kubernetes.md).
    this.gatewayClasses = informer<GatewayClass>(
      "GatewayClass",
      `${gatewayApi}/gatewayclasses`,
      undefined,
      true,
    );
    this.namespaces = informer<Namespace>("Namespace", "/api/v1/namespaces", undefined, true);
    this.referenceGrants = informer<ReferenceGrant>(
      "ReferenceGrant",

      scoped(`/apis/${GATEWAY_API.group}/v1beta1`, "referencegrants"),
    );
    this.configMaps = pluginConfigMaps(this.client, scoped("/api/v1", "configmaps"), options.log, () =>
      options.onComponents?.(),
    );
    const le = options.leaderElection ?? {};
    this.identity = le.identity ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.elector = new LeaderElector({
      client: this.client,
      namespace: le.namespace ?? ns ?? podNamespace() ?? "default",
      name: le.name ?? "agw-control-plane",
      identity: this.identity,
      leaseDurationSeconds: le.leaseDurationSeconds ?? 15,
      renewMs: le.renewMs ?? 2_000,
      log: options.log,
      onChange: (leading) => {
        if (leading) this.writeStatuses();
      },
    });
  }

  private informers() {
    return [
      this.services,
      this.endpointSlices,
      this.gatewayRoutes,
      this.secrets,
      this.gateways,
      this.httpRoutes,
      this.grpcRoutes,
      this.gatewayClasses,
      this.referenceGrants,
      this.namespaces,
      this.configMaps.informer,
    ];
  }

  /** A "configmap:" plugin source's bytes (xds/components.ts). */
  readonly configMapComponent = (source: string): ComponentRead => this.configMaps.read(source);

  get leading(): boolean {
    return this.elector.leading;
  }

  /** The latest translation (undefined until every informer has listed once). */
  get translation(): KubeTranslation | undefined {
    return this.last;
  }

  informerStats() {
    return Object.fromEntries(this.informers().map((i) => [i.path, { ...i.stats }]));
  }

  /** Resolves once every informer has listed; the first translation is delivered before that. */
  async start(): Promise<void> {
    await Promise.all(this.informers().map((i) => i.start()));
    this.synced = true;
    this.translate();
    this.elector.start();
    this.scheduleResync();
    const program = this.options.program;
    if (program) {
      this.programTimer = setInterval(() => {
        const now = program.fingerprint();
        if (now === this.programFingerprint) return;
        this.programFingerprint = now;
        if (this.leading) this.writeStatuses();
      }, PROGRAM_POLL_MS);
      this.programTimer.unref();
    }
  }

  /**
   * What the merge with config.yaml refused (mergeIr's `rejected`), after each publication: the
   * objects' status tells it, and Programmed follows the publication.
   */
  published(rejected: ReadonlyMap<string, string[]>): void {
    this.rejected = rejected;
    if (this.leading) this.writeStatuses();
  }

  /** Each route report with the conditions its object's status gets. */
  reports(): RouteReport[] {
    return (this.last?.routes ?? []).map((r) => ({ ...r, conditions: this.conditionsOf(r) }));
  }

  private conditionsOf(report: RouteReport): Condition[] {
    const program = this.options.program;
    return routeConditions(report, this.rejected.get(reportKey(report)), (listener, routeNames) =>
      program
        ? program.state(listener, routeNames)
        : { status: "False", reason: "Pending", message: "Data plane acknowledgements are not tracked." },
    );
  }

  async stop(): Promise<void> {
    clearTimeout(this.debounce);
    clearTimeout(this.resyncTimer);
    clearInterval(this.programTimer);
    for (const i of this.informers()) i.stop();
    await this.statusWrites;
    await this.elector.stop();
  }

  /** Relists every resource now (what the periodic resync does). */
  async resync(): Promise<void> {
    await Promise.all(
      this.informers().map((i) =>
        i
          .relist()
          .catch((err) => this.options.log.warn({ err: String(err), path: i.path }, "resync list failed")),
      ),
    );
  }

  private scheduleResync(): void {
    this.resyncTimer = setTimeout(async () => {
      await this.resync();
      this.scheduleResync();
    }, this.options.resyncMs ?? 300_000);
    this.resyncTimer.unref();
  }

  private noteChange(name: string): void {
    if (this.changed.size < MAX_NAMED_CHANGES || this.changed.has(name)) this.changed.add(name);
    else this.changedUnnamed++;
  }

  private schedule(): void {
    if (!this.synced) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.translate(), DEBOUNCE_MS);
  }

  private translate(): void {
    const translation = translateKube(
      {
        services: this.services.values(),
        endpointSlices: this.endpointSlices.values(),
        gatewayRoutes: this.gatewayRoutes.values(),
        secrets: this.secrets.values(),
        gatewayClasses: this.gatewayClasses.values(),
        gateways: this.gateways.values(),
        httpRoutes: this.httpRoutes.values(),
        grpcRoutes: this.grpcRoutes.values(),
        referenceGrants: this.referenceGrants.values(),
        namespaces: this.namespaces.values(),
      },
      { gatewayAddressPool: this.options.gatewayAddressPool },
    );
    const { routes: _routes, gatewayApi: _gatewayApi, ...served } = translation;
    const hash = createHash("sha256").update(JSON.stringify(served)).digest("hex");
    const secretErrorsChanged =
      JSON.stringify(translation.secretErrors) !== JSON.stringify(this.last?.secretErrors);
    this.last = translation;
    if (secretErrorsChanged)
      for (const e of translation.secretErrors)
        this.options.log.error({ secret: e }, "TLS Secret not served");
    if (hash !== this.lastHash) {
      // The first translation is the initial list: every object, which names nothing in particular.
      const initial = this.lastHash === "";
      this.lastHash = hash;
      const more = this.changedUnnamed;
      this.options.onTranslation(
        translation,
        initial
          ? []
          : [...this.changed, ...(more > 0 ? [`and ${more} more object${more === 1 ? "" : "s"}`] : [])],
      );
    }
    this.changed.clear();
    this.changedUnnamed = 0;
    if (this.leading) this.writeStatuses();
  }

  /**
   * Writes every GatewayRoute's status that changed. Calls while a round runs coalesce into one
   * more round, which computes the conditions afresh (ACKs may have come meanwhile).
   */
  private writeStatuses(): void {
    if (this.statusPending) return;
    this.statusPending = true;
    this.statusWrites = this.statusWrites.then(async () => {
      this.statusPending = false;
      const reports = this.reports();
      const guard = (what: string) => (err: unknown) => {
        if (err instanceof KubeApiError && (err.status === 404 || err.status === 409)) return;
        this.options.log.warn({ err: String(err), object: what }, "status write failed");
      };
      for (const report of reports.filter((r) => r.kind === "GatewayRoute")) {
        if (!this.leading) return;
        await this.writeStatus(report).catch(guard(`${report.namespace}/${report.name}`));
      }
      for (const write of this.gatewayApiWrites(reports)) {
        if (!this.leading) return;
        await write.run().catch(guard(write.what));
      }
    });
  }

  /** The status writes the Gateway API objects need (none for those already as wanted). */
  private gatewayApiWrites(reports: RouteReport[]): Array<{ what: string; run: () => Promise<void> }> {
    const api = this.last?.gatewayApi;
    if (!api) return [];
    const program = this.options.program;
    const programmed = (listener: string) =>
      program
        ? program.state(listener, [])
        : {
            status: "False" as const,
            reason: "Pending",
            message: "Data plane acknowledgements are not tracked.",
          };
    const find = <T extends { metadata?: { namespace?: string; name?: string } }>(
      list: T[],
      namespace: string | undefined,
      name: string,
    ) => list.find((o) => (o.metadata?.namespace ?? undefined) === namespace && o.metadata?.name === name);
    const base = `/apis/${GATEWAY_API.group}/${GATEWAY_API.version}`;
    const nsPath = (ns: string, plural: string, name: string) =>
      `${base}/namespaces/${encodeURIComponent(ns)}/${plural}/${encodeURIComponent(name)}/status`;
    const writes: Array<{ what: string; run: () => Promise<void> }> = [];
    const classes = this.gatewayClasses.values();
    for (const c of api.classes) {
      const current = find(classes, undefined, c.name);
      if (!current) continue;
      const generation = current.metadata?.generation ?? c.generation;
      const status = {
        conditions: timed(gatewayClassConditions(), current.status?.conditions, generation),
      };
      if (sameStatus(current.status, status)) continue;
      writes.push({
        what: `GatewayClass ${c.name}`,
        run: () =>
          this.patchStatus(`${base}/gatewayclasses/${encodeURIComponent(c.name)}/status`, current, status),
      });
    }
    const gateways = this.gateways.values();
    for (const g of api.gateways) {
      const current = find(gateways, g.namespace, g.name);
      if (!current) continue;
      const generation = current.metadata?.generation ?? g.generation;
      const wanted = gatewayStatus(g, programmed);
      const status = {
        ...(wanted.addresses && { addresses: wanted.addresses }),
        conditions: timed(wanted.conditions, current.status?.conditions, generation),
        listeners: wanted.listeners.map((l) => ({
          ...l,
          conditions: timed(
            l.conditions,
            current.status?.listeners?.find((x) => x.name === l.name)?.conditions,
            generation,
          ),
        })),
      };
      if (sameStatus(current.status, status)) continue;
      writes.push({
        what: `Gateway ${g.namespace}/${g.name}`,
        // No address now: null removes the one a merge patch would otherwise leave.
        run: () =>
          this.patchStatus(
            nsPath(g.namespace, "gateways", g.name),
            current,
            wanted.addresses ? status : { ...status, addresses: null },
          ),
      });
    }
    const routes: Record<string, Array<HttpRoute | GrpcRoute>> = {
      HTTPRoute: this.httpRoutes.values(),
      GRPCRoute: this.grpcRoutes.values(),
    };
    for (const r of api.routes) {
      const current = find(routes[r.kind] ?? [], r.namespace, r.name);
      if (!current) continue;
      const generation = current.metadata?.generation ?? r.generation;
      const ours = routeParents(r, (listener) =>
        reports.find(
          (x) =>
            x.kind === r.kind && x.namespace === r.namespace && x.name === r.name && x.listener === listener,
        ),
      );
      const before = current.status?.parents ?? [];
      const parents = [
        // Other controllers' entries stay as they are.
        ...before.filter((p) => p.controllerName !== CONTROLLER_NAME),
        ...ours.map((p) => ({
          ...p,
          conditions: timed(
            p.conditions,
            before.find(
              (b) =>
                b.controllerName === CONTROLLER_NAME && canonical(b.parentRef) === canonical(p.parentRef),
            )?.conditions,
            generation,
          ),
        })),
      ];
      const status = { parents };
      if (sameStatus(current.status ?? { parents: [] }, status)) continue;
      writes.push({
        what: `${r.kind} ${r.namespace}/${r.name}`,
        run: () => this.patchStatus(nsPath(r.namespace, `${r.kind.toLowerCase()}s`, r.name), current, status),
      });
    }
    return writes;
  }

  /** A merge patch of `status`, conditional on the resourceVersion the status was computed from. */
  private async patchStatus(
    path: string,
    current: { metadata?: { resourceVersion?: string } },
    status: object,
  ): Promise<void> {
    await this.client.request(
      "PATCH",
      path,
      { metadata: { resourceVersion: current.metadata?.resourceVersion }, status },
      "application/merge-patch+json",
    );
    this.statusWriteCount++;
  }

  private async writeStatus(report: RouteReport): Promise<void> {
    const current = this.gatewayRoutes
      .values()
      .find((r) => r.metadata?.namespace === report.namespace && r.metadata?.name === report.name);
    if (!current) return;
    const generation = current.metadata?.generation ?? report.generation;
    if (
      sameConditions(current.status?.conditions, report.conditions, generation) &&
      current.status?.observedGeneration === generation
    )
      return;
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const conditions = report.conditions.map((c) => {
      const before = current.status?.conditions?.find((x) => x.type === c.type);
      return {
        ...c,
        observedGeneration: generation,
        lastTransitionTime: before && before.status === c.status ? before.lastTransitionTime : now,
      };
    });
    const path = `/apis/${GATEWAY_ROUTE.group}/${GATEWAY_ROUTE.version}/namespaces/${encodeURIComponent(report.namespace)}/${GATEWAY_ROUTE.plural}/${encodeURIComponent(report.name)}/status`;
    // The resourceVersion makes the write conditional: a route edited meanwhile gets a 409 and
    // its own MODIFIED event brings a fresh translation.
    await this.client.request(
      "PATCH",
      path,
      {
        metadata: { resourceVersion: current.metadata?.resourceVersion },
        status: { observedGeneration: generation, conditions },
      },
      "application/merge-patch+json",
    );
    this.statusWriteCount++;
  }
}
