/**
 * What a data plane refuses in one agw.v1.Route, by itself or for what it names. One check, run on
 * both sides: the data plane runs it when it builds a config (a problem is a NACK of the whole
 * update), and the control plane runs it on every route it takes from Kubernetes before the route
 * reaches a snapshot, so a route a data plane would refuse is left out and reported on its object
 * instead of costing every data plane the update that carries it (docs/kubernetes.md).
 */
import type { HeaderOperations, Route } from "../gen/agw/v1/route_pb.js";

/** RFC 9110 token: a header name. */
export const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A header value: visible ASCII, space, tab and obs-text; no CR, LF or NUL. */
export const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export interface RouteReferences {
  /** Names of the plugins the route may use (the Plugin resources). */
  plugins: { has(name: string): boolean };
  /**
   * Names of the clusters there are. The control plane passes its whole snapshot's; a data plane
   * passes none, because a cluster it has not received yet is a reason to wait (warming), not to
   * refuse.
   */
  clusters?: { has(name: string): boolean };
}

function headerProblems(ops: HeaderOperations | undefined, problems: string[]): void {
  const check = (name: string, value: string) => {
    if (!HEADER_NAME.test(name)) problems.push(`invalid header name "${name}"`);
    else if (!HEADER_VALUE.test(value)) problems.push(`invalid value for header "${name}"`);
  };
  for (const h of ops?.add ?? []) check(h.name, h.value);
  for (const h of ops?.set ?? []) check(h.name, h.value);
  for (const name of ops?.remove ?? []) check(name, "");
}

/** Every reason the route cannot be served; empty when it can. */
export function routeProblems(route: Route, refs: RouteReferences): string[] {
  const problems: string[] = [];
  const action = route.action;
  const target = action?.target;
  const clusters: string[] = [];
  if (target?.case === "cluster") {
    if (target.value === "") problems.push("route has no cluster");
    else clusters.push(target.value);
  } else if (target?.case === "weightedClusters") {
    const total = target.value.clusters.reduce((sum, c) => sum + Math.max(0, c.weight), 0);
    if (total === 0) problems.push("weighted clusters need a positive total weight");
    clusters.push(...target.value.clusters.map((c) => c.name));
  } else if (target?.case !== "redirect" && target?.case !== "directResponse") {
    problems.push("route has no cluster");
  }
  if (action?.mirror?.cluster) clusters.push(action.mirror.cluster);
  if (refs.clusters)
    for (const name of new Set(clusters))
      if (!refs.clusters.has(name)) problems.push(`unknown cluster "${name}"`);
  headerProblems(action?.requestHeaders, problems);
  headerProblems(action?.responseHeaders, problems);
  for (const p of action?.plugins ?? [])
    if (!refs.plugins.has(p.name)) problems.push(`unknown plugin "${p.name}"`);
  return problems;
}
