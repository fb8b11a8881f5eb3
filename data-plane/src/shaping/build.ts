/** agw.v1 Route → the route's shaping policies (rate limits, compression), compiled once per config. */
import type { Route } from "@agw/core/gen/agw/v1/route_pb.js";
import type { CompiledRoute } from "../runtime/types.ts";
import type { BucketTable } from "./bucket-table.ts";
import { RouteCompression } from "./compression.ts";
import { RouteRateLimit } from "./rate-limit.ts";

type RouteShaping = Pick<CompiledRoute, "rateLimit" | "compression">;

/** Throws with a message naming the bad field (the caller NACKs the route). */
export function routeShaping(route: Route, identity: string, buckets: () => BucketTable): RouteShaping {
  const limit = route.action?.localRateLimit;
  const compression = route.action?.compression;
  // Always both fields (null when absent): every compiled route keeps one shape for the engine.
  return {
    rateLimit: limit ? new RouteRateLimit(limit, identity, buckets()) : null,
    compression: compression ? new RouteCompression(compression, identity) : null,
  };
}
