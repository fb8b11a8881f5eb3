/**
 * The control plane's operability: Prometheus metrics about data planes and config, and the dashboard,
 * one read-only page (no framework, no build step, charts drawn as SVG) that polls /dashboard/state,
 * which `agw top` reads too.
 */
import { readFileSync } from "node:fs";
import { type AdminRoutes, type ConfigError, type Ir, shortType, type TypeUrl } from "@agw/core";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { SnapshotCache } from "../xds/cache.ts";
import type { DataPlaneRegistry } from "../xds/dataplanes.ts";
import type { Snapshot } from "../xds/resources.ts";
import type { FleetStats } from "./fleet-stats.ts";
import type { ConfigHistory } from "./history.ts";

const PAGE = readFileSync(new URL("./page.html", import.meta.url), "utf8");

export interface DashboardSources {
  cache: SnapshotCache;
  dataPlanes: DataPlaneRegistry;
  ir(): Ir | undefined;
  configErrors(): readonly ConfigError[];
  /** The data planes' stats reports (agw.v1.StatsService): rates, latencies, endpoint health. */
  fleet: FleetStats;
  history: ConfigHistory;
}

/** Series sent with each state: the busiest of each kind get a sparkline. */
const SPARKLINES = 30;

export class ControlPlaneObservability {
  readonly registry = new Registry();
  private readonly sources: DashboardSources;
  private readonly pushDuration: Histogram<string>;
  private readonly nacks: Counter<string>;
  /** When each version of each type was handed to the cache (push latency starts there). */
  private readonly publishedAt = new Map<string, number>();
  private readonly seenAcks = new Map<string, string>();
  private readonly seenNacks = new Map<string, number>();

  constructor(sources: DashboardSources) {
    this.sources = sources;
    const registers = [this.registry];
    this.pushDuration = new Histogram({
      name: "agw_xds_push_duration_seconds",
      help: "From a config version entering the snapshot cache to a data plane's ACK of it",
      labelNames: ["type"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.nacks = new Counter({
      name: "agw_xds_nacks_total",
      help: "NACKs received from data planes, by node and resource type",
      labelNames: ["node", "type"],
      registers,
    });
    const self = this;
    new Gauge({
      name: "agw_xds_connected_dataplanes",
      help: "Data plane xDS streams open now",
      registers,
      collect() {
        self.observeAcks();
        this.set(sources.dataPlanes.list().length);
      },
    });
    new Gauge({
      name: "agw_xds_dataplane_config_info",
      help: "Version each connected data plane ACKed, per type (1), and whether it is in sync",
      labelNames: ["node", "type", "version", "in_sync"],
      registers,
      collect() {
        this.reset();
        for (const dp of sources.dataPlanes.list())
          for (const [type, t] of dp.types)
            this.set(
              {
                node: dp.nodeId,
                type: shortType(type),
                version: t.ackedVersion,
                in_sync: String(t.sentNonce !== "" && t.ackedVersion === t.sentVersion),
              },
              1,
            );
      },
    });
    new Gauge({
      name: "agw_xds_snapshot_info",
      help: "The current snapshot version per type (1)",
      labelNames: ["type", "version"],
      registers,
      collect() {
        this.reset();
        for (const [type, s] of sources.cache.snapshot ?? [])
          this.set({ type: shortType(type), version: s.version }, 1);
      },
    });
    new Gauge({
      name: "agw_config_errors",
      help: "Errors in the latest config source that was rejected (0 when the latest one is in use)",
      registers,
      collect() {
        this.set(sources.configErrors().length);
      },
    });
  }

  /** `snapshot` was just handed to the snapshot cache. */
  published(snapshot: Snapshot): void {
    const now = Date.now();
    for (const [type, s] of snapshot) {
      const key = `${type}\n${s.version}`;
      if (!this.publishedAt.has(key)) this.publishedAt.set(key, now);
    }
  }

  /** Turns ACKs and NACKs recorded by the ADS server since the last look into metric observations. */
  private observeAcks(): void {
    for (const dp of this.sources.dataPlanes.list()) {
      for (const [type, t] of dp.types) {
        const key = `${dp.streamId}\n${type}`;
        const nacksBefore = this.seenNacks.get(key) ?? 0;
        if (t.nacks > nacksBefore)
          this.nacks.inc({ node: dp.nodeId, type: shortType(type) }, t.nacks - nacksBefore);
        this.seenNacks.set(key, t.nacks);
        if (t.ackedAt === undefined || this.seenAcks.get(key) === t.ackedVersion) continue;
        this.seenAcks.set(key, t.ackedVersion);
        const published = this.publishedAt.get(`${type}\n${t.ackedVersion}`);
        // Versions a data plane already had when it connected were not pushed by this process.
        if (published !== undefined && Date.parse(dp.connectedSince) <= published)
          this.pushDuration.observe(
            { type: shortType(type) },
            Math.max(0, Date.parse(t.ackedAt) - published) / 1000,
          );
      }
    }
  }

  private state(): unknown {
    this.observeAcks();
    const ir = this.sources.ir();
    const fleet = this.sources.fleet;
    const health = fleet.health();
    const snapshot = this.sources.cache.snapshot;
    const rows = (prefix: string) => {
      const list = fleet.rows(prefix).sort((a, b) => b.rps - a.rps);
      return list.map((r, i) => ({ ...r, ...(i < SPARKLINES && { rps_series: fleet.series(r.key).rps }) }));
    };
    return {
      at: Date.now(),
      interval_ms: fleet.intervalMs,
      gateway: fleet.series("gateway"),
      stats: { routes: rows("route:"), clusters: rows("cluster:"), nodes: rows("node:") },
      listeners: (ir?.listeners ?? []).map((l) => ({
        name: l.name,
        port: l.port,
        routes: l.routes.map((r) => ({
          route: r.name,
          key: `route:${l.name}/${r.name}`,
          hosts: r.hosts,
          path: `${r.path.kind} ${r.path.value}`,
          methods: r.methods,
          clusters: "cluster" in r.target ? [r.target.cluster] : r.target.weighted.map((w) => w.name),
          target:
            "cluster" in r.target
              ? r.target.cluster
              : r.target.weighted.map((w) => `${w.name} (${w.weight})`).join(", "),
        })),
      })),
      clusters: (ir?.clusters ?? []).map((c) => ({
        name: c.name,
        key: `cluster:${c.name}`,
        lb: c.lb,
        outlier_detection: c.outlierDetection !== undefined,
        health_check: c.healthCheck !== undefined,
        // The worst health any reporting data plane sees; "unknown" when none reported it.
        endpoints: c.endpoints.map((e) => {
          const address = `${e.address}:${e.port}`;
          return { address, health: health.get(`${c.name} ${address}`) ?? "unknown" };
        }),
      })),
      snapshot: Object.fromEntries([...(snapshot ?? [])].map(([t, s]) => [shortType(t), s.version])),
      data_planes: this.sources.dataPlanes.list().map((dp) => {
        const types = [...dp.types].map(([type, t]) => ({
          type: shortType(type),
          acked: t.ackedVersion,
          sent: t.sentVersion,
          latest: snapshot?.get(type as TypeUrl)?.version ?? "",
        }));
        const nack = [...dp.types]
          .flatMap(([type, t]) => (t.lastNack ? [{ type: shortType(type), ...t.lastNack }] : []))
          .sort((a, b) => b.at.localeCompare(a.at))[0];
        const stats = fleet.nodes.get(dp.nodeId);
        return {
          node: dp.nodeId,
          key: `node:${dp.nodeId}`,
          peer: dp.peer,
          transport: dp.transport,
          protocol: dp.protocol,
          connected_since: dp.connectedSince,
          in_sync: types.every((t) => t.acked === t.latest),
          behind: types.filter((t) => t.acked !== t.latest).map((t) => t.type),
          types,
          last_nack: nack ?? null,
          last_report_at: stats ? new Date(stats.lastReportAt).toISOString() : null,
        };
      }),
      history: this.sources.history.list(),
      config_errors: this.sources.configErrors().map(String),
    };
  }

  /** Admin routes: /stats/prometheus, /snapshot, /dashboard, /dashboard/state. */
  routes(): AdminRoutes {
    return {
      "/stats/prometheus": async () => ({
        body: await this.registry.metrics(),
        contentType: this.registry.contentType,
      }),
      "/snapshot": () => ({
        body: Object.fromEntries(
          [...(this.sources.cache.snapshot ?? [])].map(([t, s]) => [
            t,
            { version: s.version, resources: [...s.resources.keys()] },
          ]),
        ),
      }),
      "/dashboard": () => ({ body: PAGE, contentType: "text/html; charset=utf-8" }),
      "/dashboard/state": () => ({ body: this.state() }),
      // One series over the window: key = gateway, route:LISTENER/ROUTE, cluster:NAME or node:ID.
      "/dashboard/series": (url) => ({
        body: this.sources.fleet.series(url.searchParams.get("key") ?? "gateway"),
      }),
    };
  }
}
