/** agw.v1 Route → the route's rewriting, local answers and mirror, compiled once per config. */
import type { Route } from "@agw/core/gen/agw/v1/route_pb.js";
import type { CompiledRoute, HeaderOps } from "../runtime/types.ts";
import { Cors, compileDirectResponse, compileRedirect, LocalAnswers } from "./local.ts";
import { Mirror } from "./mirror.ts";
import { compileRewrite } from "./rewrite.ts";

type RouteTraffic = Pick<CompiledRoute, "local" | "rewrite" | "mirror">;

/** Throws with a message naming the bad field (the caller NACKs the route). */
export function routeTraffic(route: Route, requestHeaders: HeaderOps): RouteTraffic {
  const action = route.action;
  if (action === undefined) return {};
  const path = route.match?.path;
  const matchedPrefix = path?.case === "prefix" ? path.value : path?.case === undefined ? "/" : "";
  const target = action.target;
  const fixed =
    target.case === "redirect"
      ? compileRedirect(target.value, matchedPrefix)
      : target.case === "directResponse"
        ? compileDirectResponse(target.value)
        : null;
  const cors = action.cors ? new Cors(action.cors) : null;
  const rewrite = action.rewrite ? compileRewrite(action.rewrite, matchedPrefix) : null;
  return {
    local: fixed !== null || cors !== null ? new LocalAnswers(cors, fixed) : null,
    rewrite,
    mirror: action.mirror ? new Mirror(action.mirror, requestHeaders, rewrite) : null,
  };
}
