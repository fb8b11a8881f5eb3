/** IR traffic policies → the agw.v1 Cluster and RouteAction fields that carry them (docs/traffic/). */
import { type ClusterSchema, LbPolicy } from "@agw/core/gen/agw/v1/cluster_pb.js";
import type { RetryPolicySchema, RouteActionSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import type { IrCluster, IrRetry, IrRoute } from "@agw/core/ir";
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

type ActionInit = MessageInitShape<typeof RouteActionSchema>;

/** The route's target: a redirect or direct response replaces the cluster(s). */
export function routeTarget(r: IrRoute): NonNullable<ActionInit["target"]> {
  const rd = r.redirect;
  if (rd)
    return {
      case: "redirect",
      value: {
        scheme: rd.scheme,
        host: rd.host,
        port: rd.port,
        path:
          rd.path !== ""
            ? { case: "pathValue", value: rd.path }
            : rd.pathPrefix !== ""
              ? { case: "prefix", value: rd.pathPrefix }
              : { case: undefined },
        stripQuery: rd.stripQuery,
        status: rd.status,
      },
    };
  if (r.directResponse) return { case: "directResponse", value: r.directResponse };
  return "cluster" in r.target
    ? { case: "cluster", value: r.target.cluster }
    : { case: "weightedClusters", value: { clusters: r.target.weighted } };
}

/** Rewrite, CORS and mirror fields of a RouteAction. */
export function routeTrafficFields(
  r: IrRoute,
): Pick<ActionInit, "rewrite" | "cors" | "mirror" | "localRateLimit" | "compression"> {
  const rw = r.rewrite;
  return {
    ...(rw && {
      rewrite: {
        path: rw.pathRegex
          ? { case: "regex" as const, value: rw.pathRegex }
          : rw.pathPrefix !== ""
            ? { case: "prefix" as const, value: rw.pathPrefix }
            : { case: undefined },
        host: rw.autoHost
          ? { case: "autoHost" as const, value: true }
          : rw.host !== ""
            ? { case: "hostValue" as const, value: rw.host }
            : { case: undefined },
      },
    }),
    ...(r.cors && {
      cors: {
        allowOrigins: r.cors.allowOrigins,
        allowMethods: r.cors.allowMethods,
        allowHeaders: r.cors.allowHeaders,
        exposeHeaders: r.cors.exposeHeaders,
        allowCredentials: r.cors.allowCredentials,
        ...(r.cors.maxAgeMs > 0 && { maxAge: durationFromMs(r.cors.maxAgeMs) }),
      },
    }),
    ...(r.mirror && { mirror: r.mirror }),
    ...(r.rateLimit && {
      localRateLimit: {
        headersOff: !r.rateLimit.headers,
        limits: r.rateLimit.limits.map((l) => ({
          name: l.name,
          key: l.key.map((k) => ({
            source:
              k.kind === "header"
                ? { case: "header" as const, value: k.name }
                : k.kind === "clientAddress"
                  ? { case: "clientAddress" as const, value: true }
                  : { case: "route" as const, value: true },
          })),
          requests: l.requests,
          per: durationFromMs(l.perMs),
          burst: l.burst,
          ipv6Prefix: l.ipv6Prefix,
        })),
      },
    }),
    ...(r.compression && {
      compression: {
        codings: r.compression.codings,
        minBytes: BigInt(r.compression.minBytes),
        contentTypes: r.compression.contentTypes,
        eventStream: r.compression.eventStream,
        gzipLevel: r.compression.levels.gzip,
        brotliLevel: r.compression.levels.br,
        zstdLevel: r.compression.levels.zstd,
      },
    }),
  };
}
