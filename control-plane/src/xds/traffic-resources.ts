/** IR traffic policies → the agw.v1 Cluster and RouteAction fields that carry them (docs/traffic/). */
import { type ClusterSchema, LbPolicy } from "@agw/core/gen/agw/v1/cluster_pb.js";
import type { RetryPolicySchema } from "@agw/core/gen/agw/v1/route_pb.js";
import type { IrCluster, IrRetry } from "@agw/core/ir";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

const LB: Record<IrCluster["lb"], LbPolicy> = {
  round_robin: LbPolicy.ROUND_ROBIN,
  least_request: LbPolicy.LEAST_REQUEST,
  ring_hash: LbPolicy.RING_HASH,
  random: LbPolicy.RANDOM,
};

type ClusterInit = Pick<
  MessageInitShape<typeof ClusterSchema>,
  | "lbPolicy"
  | "loadBalancing"
  | "sessionAffinity"
  | "health"
  | "outlierDetection"
  | "circuitBreakers"
  | "retryBudget"
>;

export function clusterPolicyFields(c: IrCluster): ClusterInit {
  const hc = c.healthCheck;
  const od = c.outlierDetection;
  const sa = c.sessionAffinity;
  return {
    lbPolicy: LB[c.lb],
    loadBalancing: {
      hashOn: (c.hashOn ?? []).map((h) => ({
        source:
          h.kind === "header"
            ? { case: "header" as const, value: h.name }
            : h.kind === "cookie"
              ? { case: "cookie" as const, value: h.name }
              : h.kind === "query"
                ? { case: "queryParameter" as const, value: h.name }
                : { case: "sourceIp" as const, value: true },
      })),
      ringPointsPerWeight: c.ringPointsPerWeight ?? 0,
      panicThresholdPercent: c.panicThresholdPercent ?? 0,
    },
    ...(sa && { sessionAffinity: { cookie: sa.cookie, ttl: durationFromMs(sa.ttlMs), path: sa.path } }),
    ...(hc && {
      health: {
        interval: durationFromMs(hc.intervalMs),
        timeout: durationFromMs(hc.timeoutMs),
        healthyThreshold: hc.healthyThreshold,
        unhealthyThreshold: hc.unhealthyThreshold,
        httpPath: hc.path,
        expectedStatuses: hc.expectedStatuses,
        tcp: hc.type === "tcp",
        jitter: durationFromMs(hc.jitterMs),
        httpHost: hc.host,
      },
    }),
    ...(od && {
      outlierDetection: {
        consecutive5xx: od.consecutive5xx,
        consecutiveGatewayErrors: od.consecutiveGatewayErrors,
        baseEjectionTime: durationFromMs(od.baseEjectionMs),
        maxEjectionTime: durationFromMs(od.maxEjectionMs),
        maxEjectionPercent: od.maxEjectionPercent,
      },
    }),
    ...(c.circuitBreakers && { circuitBreakers: c.circuitBreakers }),
    ...(c.retryBudget && { retryBudget: c.retryBudget }),
  };
}

export function retryPolicy(r: IrRetry): MessageInitShape<typeof RetryPolicySchema> {
  return {
    retries: r.retries,
    retryOn: r.retryOn,
    retriableStatusCodes: r.retriableStatusCodes,
    perTryTimeout: durationFromMs(r.perTryTimeoutMs),
    backoffBase: durationFromMs(r.backoffBaseMs),
    backoffMax: durationFromMs(r.backoffMaxMs),
    retryNonIdempotent: r.retryNonIdempotent,
  };
}
