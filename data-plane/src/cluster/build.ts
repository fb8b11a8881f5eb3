/**
 * agw.v1 traffic policy fields → the data plane's policy objects. Runs when a config is built;
 * anything invalid throws (the caller names the resource and NACKs).
 */
import type { Cluster } from "@agw/core/gen/agw/v1/cluster_pb.js";
import type { RetryPolicy } from "@agw/core/gen/agw/v1/route_pb.js";
import { type Duration, durationMs } from "@bufbuild/protobuf/wkt";
import type { ClusterRuntime, Endpoint } from "../runtime/types.ts";
import type { HealthCheckSpec } from "./health-check.ts";
import { type AffinitySpec, type HashSource, type LbSpec, makePick, withAffinity } from "./load-balancer.ts";
import { RETRY_CONDITIONS, type RetryCondition, type RetrySpec } from "./retry.ts";
import type { ClusterState } from "./state.ts";

const POLICIES: Record<number, LbSpec["policy"]> = {
  0: "round_robin",
  1: "round_robin",
  2: "least_request",
  3: "ring_hash",
  4: "random",
};

function ms(d: Duration | undefined, fallback: number): number {
  return d ? durationMs(d) : fallback;
}

function hashSources(cluster: Cluster): HashSource[] {
  return (cluster.loadBalancing?.hashOn ?? []).map((h): HashSource => {
    const s = h.source;
    switch (s.case) {
      case "header":
        return { kind: "header", name: s.value.toLowerCase() };
      case "cookie":
        return { kind: "cookie", name: s.value };
      case "queryParameter":
        return { kind: "query", name: s.value };
      case "sourceIp":
        return { kind: "source_ip" };
      default:
        throw new Error("hash source without a source");
    }
  });
}

function healthCheck(cluster: Cluster): HealthCheckSpec | undefined {
  const h = cluster.health;
  if (h === undefined) return undefined;
  const intervalMs = ms(h.interval, 5000);
  if (intervalMs <= 0) throw new Error("health check interval must be positive");
  const statuses = h.expectedStatuses.length > 0 ? h.expectedStatuses : [200];
  for (const st of statuses)
    if (st < 100 || st > 599) throw new Error(`health check expected status ${st} out of range`);
  return {
    kind: h.tcp ? "tcp" : "http",
    intervalMs,
    jitterMs: ms(h.jitter, 0),
    timeoutMs: ms(h.timeout, 1000) || 1000,
    healthyThreshold: Math.max(1, h.healthyThreshold),
    unhealthyThreshold: Math.max(1, h.unhealthyThreshold),
    path: h.httpPath || "/",
    host: h.httpHost,
    expectedStatuses: statuses.map((st) => [st, st + 1] as const),
  };
}

/** The cluster's balancer over persistent endpoint states, and the policies the engine consults. */
export function clusterPolicies(
  cluster: Cluster,
  endpoints: readonly Endpoint[],
  weights: readonly number[],
  state: ClusterState,
): Pick<ClusterRuntime, "pickEndpoint" | "state" | "healthCheck" | "affinity"> {
  const lb = cluster.loadBalancing;
  const spec: LbSpec = {
    policy: POLICIES[cluster.lbPolicy] ?? "round_robin",
    hashOn: hashSources(cluster),
    ringPointsPerWeight: lb?.ringPointsPerWeight || 128,
    panicThresholdPercent: Math.min(100, lb?.panicThresholdPercent ?? 0),
  };
  const od = cluster.outlierDetection;
  state.outlier = od
    ? {
        consecutive5xx: od.consecutive5xx,
        consecutiveGatewayErrors: od.consecutiveGatewayErrors,
        baseEjectionMs: ms(od.baseEjectionTime, 30_000) || 30_000,
        maxEjectionMs: ms(od.maxEjectionTime, 300_000),
        maxEjectionPercent: Math.min(100, od.maxEjectionPercent),
      }
    : null;
  const cb = cluster.circuitBreakers;
  state.circuit = {
    maxConnections: cb?.maxConnections ?? 0,
    maxRequests: cb?.maxRequests ?? 0,
    maxRetries: cb?.maxRetries ?? 0,
  };
  const rb = cluster.retryBudget;
  state.budget = rb ? { percent: Math.min(100, rb.percent), minConcurrency: rb.minConcurrency } : null;
  const balanced = { endpoints, weights, states: state.sync(endpoints), spec };
  let pick = makePick(balanced);
  const sa = cluster.sessionAffinity;
  let affinity: AffinitySpec | undefined;
  if (sa !== undefined && sa.cookie !== "") {
    affinity = { cookie: sa.cookie, ttlSeconds: Math.round(ms(sa.ttl, 0) / 1000), path: sa.path || "/" };
    pick = withAffinity(pick, balanced, affinity);
  }
  const hc = healthCheck(cluster);
  return {
    pickEndpoint: (req, clientIp, avoid) => pick(req, clientIp ?? "", avoid ?? null),
    state,
    ...(hc && { healthCheck: hc }),
    ...(affinity && { affinity }),
  };
}

export function retrySpec(r: RetryPolicy, where: string): RetrySpec {
  const on = new Set<RetryCondition>();
  for (const c of r.retryOn) {
    if (!(RETRY_CONDITIONS as readonly string[]).includes(c))
      throw new Error(`${where}: unknown retry condition "${c}"`);
    on.add(c as RetryCondition);
  }
  const backoffBaseMs = ms(r.backoffBase, 25) || 25;
  return {
    retries: r.retries,
    retryOn: on,
    retriableStatusCodes: new Set(r.retriableStatusCodes),
    perTryTimeoutMs: ms(r.perTryTimeout, 0),
    backoffBaseMs,
    backoffMaxMs: Math.max(backoffBaseMs, ms(r.backoffMax, backoffBaseMs * 10)),
    retryNonIdempotent: r.retryNonIdempotent,
  };
}
