/**
 * Per-endpoint and per-cluster state that outlives a RuntimeConfig: health (active checks), outlier
 * ejection, in-flight counts (least request, circuit breaking) and retry accounting. A config push
 * rebuilds the policies but looks the state up by cluster name and endpoint key, so an endpoint that
 * stays in the config keeps its health, its ejection and its counters.
 */
import type {
  AttemptOutcome,
  CircuitSpec,
  ClusterCounters,
  ClusterTrafficState,
  EndpointTrafficState,
  OutlierSpec,
  RetryBudgetSpec,
} from "../runtime/types.ts";

export type {
  AttemptOutcome,
  CircuitSpec,
  ClusterCounters,
  OutlierSpec,
  RetryBudgetSpec,
} from "../runtime/types.ts";

export function isGatewayError(o: AttemptOutcome): boolean {
  return o.kind !== "status" || o.status === 502 || o.status === 503 || o.status === 504;
}

export class EndpointState implements EndpointTrafficState {
  readonly key: string;
  /** Attempts in flight to this endpoint (least request). */
  active = 0;
  /** Verdict of active health checking; true until a check says otherwise. */
  checkHealthy = true;
  checkSuccesses = 0;
  checkFailures = 0;
  consecutive5xx = 0;
  consecutiveGateway = 0;
  /** Ejected by outlier detection until this time (Date.now() ms); 0 when not ejected. */
  ejectedUntil = 0;
  /** Times ejected; the ejection time is base × this (capped), and it decays while healthy. */
  ejections = 0;
  lastEjectedAt = 0;

  constructor(key: string) {
    this.key = key;
  }

  ejected(now: number): boolean {
    return this.ejectedUntil > now;
  }

  available(now: number): boolean {
    return this.checkHealthy && this.ejectedUntil <= now;
  }
}

export class ClusterState implements ClusterTrafficState {
  readonly name: string;
  readonly endpoints = new Map<string, EndpointState>();
  outlier: OutlierSpec | null = null;
  circuit: CircuitSpec = { maxConnections: 0, maxRequests: 0, maxRetries: 0 };
  budget: RetryBudgetSpec | null = null;
  /** Requests admitted and not finished. */
  activeRequests = 0;
  /** Attempts in flight (each holds one upstream connection: the engine speaks HTTP/1.1 upstream). */
  activeAttempts = 0;
  activeRetries = 0;
  readonly counters: ClusterCounters = { overflows: 0, retriesRefused: 0, retries: 0, ejections: 0 };

  constructor(name: string) {
    this.name = name;
  }

  /** The states of `endpoints`, reusing those already known (state survives config pushes). */
  sync<E extends { readonly key: string }>(endpoints: readonly E[]): EndpointState[] {
    return endpoints.map((e) => {
      let s = this.endpoints.get(e.key);
      if (s === undefined) {
        s = new EndpointState(e.key);
        this.endpoints.set(e.key, s);
      }
      return s;
    });
  }

  /** Drops the state of endpoints not in `keys` (after a swap). */
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.endpoints.keys()) if (!keys.has(key)) this.endpoints.delete(key);
  }

  /** Circuit breaker admission of a new request. */
  admit(): boolean {
    const c = this.circuit;
    if (
      (c.maxRequests > 0 && this.activeRequests >= c.maxRequests) ||
      (c.maxConnections > 0 && this.activeAttempts >= c.maxConnections)
    ) {
      this.counters.overflows++;
      return false;
    }
    this.activeRequests++;
    return true;
  }

  /** Whether one more retry may start now: the max-retries breaker and the retry budget. */
  admitRetry(): boolean {
    const max = this.circuit.maxRetries;
    let ok = max === 0 || this.activeRetries < max;
    const b = this.budget;
    if (ok && b !== null) {
      const allowed = Math.max(b.minConcurrency, Math.floor((this.activeRequests * b.percent) / 100));
      ok = this.activeRetries < allowed;
    }
    if (ok && this.circuit.maxConnections > 0 && this.activeAttempts >= this.circuit.maxConnections)
      ok = false;
    if (!ok) this.counters.retriesRefused++;
    return ok;
  }

  /** Records an attempt's outcome; may eject the endpoint (outlier detection). */
  record(ep: EndpointState, outcome: AttemptOutcome, now: number): void {
    const o = this.outlier;
    const is5xx = outcome.kind !== "status" || outcome.status >= 500;
    if (!is5xx) {
      ep.consecutive5xx = 0;
      ep.consecutiveGateway = 0;
      return;
    }
    ep.consecutive5xx++;
    if (isGatewayError(outcome)) ep.consecutiveGateway++;
    else ep.consecutiveGateway = 0;
    if (o === null || ep.ejected(now)) return;
    const trip =
      (o.consecutive5xx > 0 && ep.consecutive5xx >= o.consecutive5xx) ||
      (o.consecutiveGatewayErrors > 0 && ep.consecutiveGateway >= o.consecutiveGatewayErrors);
    if (trip && this.mayEject(now)) this.eject(ep, o, now);
  }

  private mayEject(now: number): boolean {
    const o = this.outlier as OutlierSpec;
    let ejected = 0;
    for (const s of this.endpoints.values()) if (s.ejected(now)) ejected++;
    const cap = Math.max(1, Math.floor((this.endpoints.size * o.maxEjectionPercent) / 100));
    return ejected < cap;
  }

  private eject(ep: EndpointState, o: OutlierSpec, now: number): void {
    // Like Envoy, the multiplier decays by one per base ejection time spent healthy since the last ejection.
    if (ep.ejections > 0 && ep.lastEjectedAt > 0) {
      const healthyFor = now - ep.ejectedUntil;
      if (healthyFor > 0)
        ep.ejections = Math.max(0, ep.ejections - Math.floor(healthyFor / o.baseEjectionMs));
    }
    ep.ejections++;
    const time = Math.min(o.baseEjectionMs * ep.ejections, Math.max(o.maxEjectionMs, o.baseEjectionMs));
    ep.ejectedUntil = now + time;
    ep.lastEjectedAt = now;
    ep.consecutive5xx = 0;
    ep.consecutiveGateway = 0;
    this.counters.ejections++;
  }
}

/** Every cluster's state in one data plane, kept across configs. */
export class ClusterStates {
  private readonly clusters = new Map<string, ClusterState>();

  get(name: string): ClusterState {
    let s = this.clusters.get(name);
    if (s === undefined) {
      s = new ClusterState(name);
      this.clusters.set(name, s);
    }
    return s;
  }

  find(name: string): ClusterState | undefined {
    return this.clusters.get(name);
  }

  /** Keeps only the clusters (and their endpoints) of the active config. */
  retain(clusters: ReadonlyMap<string, { readonly endpoints: readonly { readonly key: string }[] }>): void {
    for (const name of this.clusters.keys()) if (!clusters.has(name)) this.clusters.delete(name);
    for (const [name, c] of clusters) this.clusters.get(name)?.retain(new Set(c.endpoints.map((e) => e.key)));
  }
}
