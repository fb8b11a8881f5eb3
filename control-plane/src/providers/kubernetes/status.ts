/**
 * A route object's conditions, from three stages that know different things: the translation
 * (Accepted, ResolvedRefs), the merge with config.yaml (what a data plane would refuse: mergeIr's
 * `rejected`), and the data planes' ACKs and NACKs (Programmed, from programmed.ts).
 */
import type { ProgramState } from "./programmed.ts";
import type { Condition, RouteReport } from "./translate.ts";

export function routeConditions(
  report: RouteReport,
  rejected: readonly string[] | undefined,
  programmed: (listener: string, routeNames: string[]) => ProgramState,
): Condition[] {
  const translated = report.conditions.filter((c) => c.type !== "Programmed");
  const accepted = translated.find((c) => c.type === "Accepted");
  const notServed: Condition = {
    type: "Programmed",
    status: "False",
    reason: "Invalid",
    message: "Route is not served.",
  };
  if (accepted?.status !== "True") return [...translated, notServed];
  if (rejected && rejected.length > 0)
    return [
      {
        type: "Accepted",
        status: "False",
        reason: "Invalid",
        message: `${rejected.join("; ")} (data planes would refuse it; the route is left out, other routes are served)`,
      },
      ...translated.filter((c) => c.type !== "Accepted"),
      notServed,
    ];
  return [...translated, { type: "Programmed", ...programmed(report.listener, report.routeNames) }];
}
