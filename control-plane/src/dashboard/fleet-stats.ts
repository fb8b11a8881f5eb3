/**
 * The last 15 minutes of the fleet's traffic, from the data planes' stats reports (xds/stats-service.ts):
 * a ring of fixed slots (one per report interval). Reports add to the open slot; when it closes, each
 * series (the gateway, each data plane, route and cluster) is folded to four numbers: requests,
 * errors (5xx and aborted), p50 and p99 latency.
 *
 * A report is input from a possibly hostile data plane (docs/security.md, "Fleet stats"), so
 * everything it can make this process hold is bounded: routes, clusters and endpoints it names count
 * only when the current config has them (it cannot invent series), the nodes are capped, each closed
 * slot keeps the busiest `maxSeriesPerSlot` series, and the ring has a fixed length.
 */
import {
  CODE_CLASSES,
  ENDPOINT_HEALTH,
  type EndpointHealthName,
  ERROR_CLASSES,
  type Ir,
  LATENCY_BOUNDS,
  quantileSeconds,
} from "@agw/core";
import type { ReportStatsRequest } from "@agw/core/gen/agw/v1/stats_pb.js";

const BUCKETS = LATENCY_BOUNDS.length + 1;

export interface FleetStatsOptions {
  /** Slot length = the interval data planes are asked to report at (default 5 s, at least 1 s). */
  intervalMs?: number | undefined;
  /** How far back the ring reaches (default 15 min). */
  windowMs?: number;
  /** Series kept per closed slot besides the gateway and the data planes (default 1,000). */
  maxSeriesPerSlot?: number;
  /** Data planes tracked at once (default 1,000); reports from more are refused. */
  maxNodes?: number;
  /** The config now served: what a report may name. */
  ir(): Ir | undefined;
}

interface Accumulator {
  requests: number;
  errors: number;
  latency: number[];
}

/** A closed slot's numbers for one series. */
type Point = readonly [requests: number, errors: number, p50: number, p99: number];

interface Slot {
  /** Start, ms since the epoch. */
  readonly t: number;
  readonly points: ReadonlyMap<string, Point>;
}

export interface NodeStats {
  readonly nodeId: string;
  readonly transport: string;
  firstReportAt: number;
  lastReportAt: number;
  reports: number;
  /** Entries the data plane left out (its bounds) plus those this side ignored (unknown names). */
  dropped: number;
  /** "cluster address" → health, from the last complete set. */
  health: Map<string, EndpointHealthName>;
}

/** A series over the window, one entry per slot (oldest first). */
export interface SeriesJson {
  key: string;
  t0: number;
  interval_ms: number;
  rps: number[];
  error_ratio: number[];
  p50_ms: number[];
  p99_ms: number[];
}

/** One series' latest closed slot. */
export interface RowJson {
  key: string;
  rps: number;
  error_ratio: number;
  p50_ms: number;
  p99_ms: number;
}

interface Known {
  readonly ir: Ir | undefined;
  readonly routes: ReadonlySet<string>;
  readonly clusters: ReadonlySet<string>;
  readonly endpoints: ReadonlySet<string>;
}

export class FleetStats {
  readonly intervalMs: number;
  private readonly slotCount: number;
  private readonly maxSeriesPerSlot: number;
  private readonly maxNodes: number;
  private readonly ir: () => Ir | undefined;
  private readonly ring: Slot[] = [];
  private openSlot = -1;
  private open = new Map<string, Accumulator>();
  readonly nodes = new Map<string, NodeStats>();
  private known: Known = { ir: undefined, routes: new Set(), clusters: new Set(), endpoints: new Set() };

  constructor(options: FleetStatsOptions) {
    this.intervalMs = Math.max(1000, Math.round(options.intervalMs ?? 5000));
    this.slotCount = Math.max(1, Math.ceil((options.windowMs ?? 15 * 60_000) / this.intervalMs));
    this.maxSeriesPerSlot = options.maxSeriesPerSlot ?? 1000;
    this.maxNodes = options.maxNodes ?? 1000;
    this.ir = options.ir;
  }

  /** Whether a report from `nodeId` is taken (a known node, or room for one more). */
  admits(nodeId: string): boolean {
    this.expireNodes(Date.now());
    return this.nodes.has(nodeId) || this.nodes.size < this.maxNodes;
  }

  /** Adds one report of `nodeId` (authenticated by the stream as its xDS stream would be). */
  add(nodeId: string, transport: string, report: ReportStatsRequest, now = Date.now()): void {
    this.roll(now);
    let node = this.nodes.get(nodeId);
    if (node === undefined) {
      if (!this.admits(nodeId)) return;
      node = {
        nodeId,
        transport,
        firstReportAt: now,
        lastReportAt: now,
        reports: 0,
        dropped: 0,
        health: new Map(),
      };
      this.nodes.set(nodeId, node);
    }
    node.lastReportAt = now;
    node.reports++;
    node.dropped += report.dropped;
    const known = this.knownNames();
    const nodeKey = `node:${nodeId}`;
    for (const r of report.routes) {
      const name = `${r.listener}/${r.route}`;
      if (r.route !== "" && !known.routes.has(name)) {
        node.dropped++;
        continue;
      }
      const requests = counts(r.requests, CODE_CLASSES.length);
      const latency = counts(r.latency, BUCKETS);
      this.accumulate("gateway", requests, latency);
      this.accumulate(nodeKey, requests, latency);
      if (r.route !== "") this.accumulate(`route:${name}`, requests, latency);
    }
    for (const c of report.clusters) {
      if (!known.clusters.has(c.cluster)) {
        node.dropped++;
        continue;
      }
      const requests = counts(c.requests, CODE_CLASSES.length);
      if (c.requests.length > 0 || c.latency.length > 0)
        this.accumulate(`cluster:${c.cluster}`, requests, counts(c.latency, BUCKETS));
    }
    if (report.healthComplete) {
      const health = new Map<string, EndpointHealthName>();
      for (const c of report.clusters)
        for (const e of c.endpoints) {
          const key = `${c.cluster} ${e.address}`;
          const name = ENDPOINT_HEALTH[e.health];
          if (name !== undefined && known.endpoints.has(key)) health.set(key, name);
        }
      node.health = health;
    }
  }

  /** Endpoint health over the fleet: the worst any data plane reports ("cluster address" → health). */
  health(): Map<string, EndpointHealthName> {
    const rank: Record<EndpointHealthName, number> = { unchecked: 0, healthy: 1, unhealthy: 2, ejected: 3 };
    const out = new Map<string, EndpointHealthName>();
    this.expireNodes(Date.now());
    for (const node of this.nodes.values())
      for (const [key, h] of node.health) {
        const before = out.get(key);
        if (before === undefined || rank[h] > rank[before]) out.set(key, h);
      }
    return out;
  }

  /** One series over the window (zeros where it had no traffic). */
  series(key: string, now = Date.now()): SeriesJson {
    this.roll(now);
    const seconds = this.intervalMs / 1000;
    const out: SeriesJson = {
      key,
      t0: this.ring[0]?.t ?? now,
      interval_ms: this.intervalMs,
      rps: [],
      error_ratio: [],
      p50_ms: [],
      p99_ms: [],
    };
    for (const slot of this.ring) {
      const p = slot.points.get(key);
      out.rps.push(p ? round(p[0] / seconds) : 0);
      out.error_ratio.push(p && p[0] > 0 ? round(p[1] / p[0]) : 0);
      out.p50_ms.push(p ? round(p[2] * 1000) : 0);
      out.p99_ms.push(p ? round(p[3] * 1000) : 0);
    }
    return out;
  }

  /** The latest closed slot's numbers of every series it holds whose key starts with `prefix`. */
  rows(prefix: string, now = Date.now()): RowJson[] {
    this.roll(now);
    const last = this.ring[this.ring.length - 1];
    const seconds = this.intervalMs / 1000;
    const out: RowJson[] = [];
    for (const [key, p] of last?.points ?? [])
      if (key.startsWith(prefix))
        out.push({
          key,
          rps: round(p[0] / seconds),
          error_ratio: p[0] > 0 ? round(p[1] / p[0]) : 0,
          p50_ms: round(p[2] * 1000),
          p99_ms: round(p[3] * 1000),
        });
    return out;
  }

  private accumulate(key: string, requests: number[], latency: number[]): void {
    let a = this.open.get(key);
    if (a === undefined) {
      a = { requests: 0, errors: 0, latency: new Array<number>(BUCKETS).fill(0) };
      this.open.set(key, a);
    }
    for (let i = 0; i < requests.length; i++) a.requests += requests[i] as number;
    for (const i of ERROR_CLASSES) a.errors += requests[i] as number;
    for (let i = 0; i < BUCKETS; i++) a.latency[i] = (a.latency[i] as number) + (latency[i] as number);
  }

  /** Closes the open slot once time has moved past it; slots without reports are kept empty. */
  private roll(now: number): void {
    const slot = Math.floor(now / this.intervalMs);
    if (this.openSlot === -1) this.openSlot = slot;
    if (slot <= this.openSlot) return;
    this.ring.push({ t: this.openSlot * this.intervalMs, points: this.fold(this.open) });
    this.open = new Map();
    const gap = Math.min(slot - this.openSlot - 1, this.slotCount);
    for (let i = gap; i > 0; i--) this.ring.push({ t: (slot - i) * this.intervalMs, points: new Map() });
    this.openSlot = slot;
    if (this.ring.length > this.slotCount) this.ring.splice(0, this.ring.length - this.slotCount);
  }

  private fold(open: Map<string, Accumulator>): Map<string, Point> {
    const points = new Map<string, Point>();
    const rest: [string, Accumulator][] = [];
    for (const entry of open) {
      if (entry[0] === "gateway" || entry[0].startsWith("node:")) points.set(entry[0], point(entry[1]));
      else rest.push(entry);
    }
    rest.sort((a, b) => b[1].requests - a[1].requests);
    for (const [key, a] of rest.slice(0, this.maxSeriesPerSlot)) points.set(key, point(a));
    return points;
  }

  /** Data planes silent for longer than the window are forgotten. */
  private expireNodes(now: number): void {
    for (const [id, node] of this.nodes)
      if (now - node.lastReportAt > this.slotCount * this.intervalMs) this.nodes.delete(id);
  }

  private knownNames(): Known {
    const ir = this.ir();
    if (this.known.ir === ir) return this.known;
    const routes = new Set<string>();
    const clusters = new Set<string>();
    const endpoints = new Set<string>();
    for (const l of ir?.listeners ?? []) for (const r of l.routes) routes.add(`${l.name}/${r.name}`);
    for (const c of ir?.clusters ?? []) {
      clusters.add(c.name);
      for (const e of c.endpoints) endpoints.add(`${c.name} ${e.address}:${e.port}`);
    }
    this.known = { ir, routes, clusters, endpoints };
    return this.known;
  }
}

function point(a: Accumulator): Point {
  return [a.requests, a.errors, quantileSeconds(a.latency, 0.5), quantileSeconds(a.latency, 0.99)];
}

/** A report's repeated uint32 as `length` numbers (missing entries 0, extra ones ignored). */
function counts(values: readonly number[], length: number): number[] {
  const out = new Array<number>(length).fill(0);
  for (let i = 0; i < length && i < values.length; i++) out[i] = values[i] as number;
  return out;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
