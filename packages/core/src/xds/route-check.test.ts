import assert from "node:assert/strict";
import { test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type RouteActionSchema, RouteSchema } from "../gen/agw/v1/route_pb.js";
import { routeProblems } from "./route-check.ts";

const route = (action: MessageInitShape<typeof RouteActionSchema>) =>
  create(RouteSchema, { name: "r", routeConfig: "l", action });

test("what a data plane refuses in a Route: unknown plugin, no target, zero weights, bad headers, unknown cluster", () => {
  const none = { plugins: new Set<string>() };
  assert.deepEqual(
    routeProblems(route({ target: { case: "cluster", value: "c" }, plugins: [{ name: "api-key" }] }), none),
    ['unknown plugin "api-key"'],
  );
  assert.deepEqual(
    routeProblems(route({ target: { case: "cluster", value: "c" }, plugins: [{ name: "api-key" }] }), {
      plugins: new Set(["api-key"]),
    }),
    [],
  );
  assert.deepEqual(routeProblems(route({}), none), ["route has no cluster"]);
  assert.deepEqual(routeProblems(route({ target: { case: "cluster", value: "" } }), none), [
    "route has no cluster",
  ]);
  assert.deepEqual(
    routeProblems(
      route({
        target: { case: "weightedClusters", value: { clusters: [{ name: "a", weight: 0 }] } },
      }),
      none,
    ),
    ["weighted clusters need a positive total weight"],
  );
  assert.deepEqual(
    routeProblems(
      route({
        target: { case: "cluster", value: "c" },
        requestHeaders: { set: [{ name: "bad name", value: "v" }] },
        responseHeaders: { add: [{ name: "x", value: "a\r\nb" }] },
      }),
      none,
    ),
    ['invalid header name "bad name"', 'invalid value for header "x"'],
  );
  // A data plane passes no clusters (a missing one is warming); the control plane passes its own.
  const mirrored = route({
    target: { case: "cluster", value: "c" },
    mirror: { cluster: "shadow", percent: 1 },
  });
  assert.deepEqual(routeProblems(mirrored, none), []);
  assert.deepEqual(routeProblems(mirrored, { ...none, clusters: new Set(["c"]) }), [
    'unknown cluster "shadow"',
  ]);
});
