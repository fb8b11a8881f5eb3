import assert from "node:assert/strict";
import { test } from "node:test";
import { RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import {
  DeltaDiscoveryResponseSchema,
  DiscoveryResponseSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { versioned } from "./resources.ts";
import { deltaResponseSize, sotwResponseSize } from "./wire.ts";

const resources = [1, 200, 5000].map((n) =>
  versioned(
    RouteSchema,
    `web/r${n}`,
    create(RouteSchema, { name: `r${n}`, routeConfig: "web", match: { hosts: ["x".repeat(n)] } }),
  ),
);

test("computed response sizes equal the real encodings", () => {
  const typeUrl = "type.googleapis.com/agw.v1.Route";
  const sotw = create(DiscoveryResponseSchema, {
    versionInfo: "v1",
    typeUrl,
    nonce: "17",
    resources: resources.map((r) => r.resource),
  });
  assert.equal(
    sotwResponseSize("v1", typeUrl, "17", resources),
    toBinary(DiscoveryResponseSchema, sotw).length,
  );
  const delta = create(DeltaDiscoveryResponseSchema, {
    systemVersionInfo: "v2",
    typeUrl,
    nonce: "18",
    resources: resources.map((r) => ({ name: r.name, version: r.version, resource: r.resource })),
    removedResources: ["web/gone", ""],
  });
  assert.equal(
    deltaResponseSize("v2", typeUrl, "18", resources, ["web/gone", ""]),
    toBinary(DeltaDiscoveryResponseSchema, delta).length,
  );
});
