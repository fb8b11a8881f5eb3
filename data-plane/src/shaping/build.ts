/** agw.v1 Route → the route's shaping policies (rate limits), compiled once per config. */
import type { Route } from "@agw/core/gen/agw/v1/route_pb.js";
import type { CompiledRoute } from "../runtime/types.ts";
import type { BucketTable } from "./bucket-table.ts";
import { RouteRateLimit } from "./rate-limit.ts";

type RouteShaping = Pick<CompiledRoute, "rateLimit">;

/** Throws with a message naming the bad field (the caller NACKs the route). */
export function routeShaping(route: Route, identity: string, buckets: () => BucketTable): RouteShaping {
  const limit = route.action?.localRateLimit;
  return limit ? { rateLimit: new RouteRateLimit(limit, identity, buckets()) } : {};
}
