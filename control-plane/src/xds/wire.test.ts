import assert from "node:assert/strict";
import { test } from "node:test";
import { RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import {
  DeltaDiscoveryResponseSchema,
  DiscoveryResponseSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
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

test("responses built from the pre-encoded resource bytes decode to the same messages", () => {
  const typeUrl = "type.googleapis.com/agw.v1.Route";
  const sotw = create(DiscoveryResponseSchema, { versionInfo: "v1", typeUrl, nonce: "3" });
  sotw.$unknown = resources.map((r) => ({ no: 2, wireType: WireType.LengthDelimited, data: r.sotwBytes }));
  const sotwBytes = toBinary(DiscoveryResponseSchema, sotw);
  assert.deepEqual(
    fromBinary(DiscoveryResponseSchema, sotwBytes).resources,
    resources.map((r) => r.resource),
  );
  assert.equal(sotwBytes.length, sotwResponseSize("v1", typeUrl, "3", resources));
  const delta = create(DeltaDiscoveryResponseSchema, { systemVersionInfo: "v2", typeUrl, nonce: "4" });
  delta.$unknown = resources.map((r) => ({ no: 2, wireType: WireType.LengthDelimited, data: r.deltaBytes }));
  const deltaBytes = toBinary(DeltaDiscoveryResponseSchema, delta);
  assert.deepEqual(
    fromBinary(DeltaDiscoveryResponseSchema, deltaBytes).resources.map((r) => [
      r.name,
      r.version,
      r.resource,
    ]),
    resources.map((r) => [r.name, r.version, r.resource]),
  );
  assert.equal(deltaBytes.length, deltaResponseSize("v2", typeUrl, "4", resources, []));
});
