/** config.yaml text → the data plane's RuntimeConfig, the way a push gets there (minus gRPC). */
import assert from "node:assert/strict";
import { translateConfig } from "@agw/control-plane/translator";
import { irToSnapshot } from "@agw/control-plane/xds/resources";
import { parseConfig } from "@agw/core/config/loader";
import { ClusterLoadAssignmentSchema, ClusterSchema } from "@agw/core/gen/agw/v1/cluster_pb.js";
import { ListenerSchema } from "@agw/core/gen/agw/v1/listener_pb.js";
import { RouteConfigSchema, RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { TYPE_URL, type TypeUrl } from "@agw/core/xds/types";
import { LISTENER } from "@agw/data-plane/engine/test-support";
import { buildRuntimeConfig } from "@agw/data-plane/runtime/build";
import type { RuntimeConfig } from "@agw/data-plane/runtime/types";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";

export function runtimeFromYaml(yaml: string): RuntimeConfig {
  const loaded = parseConfig(yaml, "test.yaml");
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  const snapshot = irToSnapshot(translateConfig(loaded.config));
  const unpack = <D extends DescMessage>(type: TypeUrl, schema: D) => {
    const out = new Map<string, MessageShape<D>>();
    for (const [name, r] of snapshot.get(type)?.resources ?? []) {
      const m = anyUnpack(r.resource, schema);
      if (m) out.set(name, m as MessageShape<D>);
    }
    return out;
  };
  const built = buildRuntimeConfig(
    {
      listeners: unpack(TYPE_URL.listener, ListenerSchema),
      routeConfigs: unpack(TYPE_URL.routeConfig, RouteConfigSchema),
      routes: unpack(TYPE_URL.route, RouteSchema),
      clusters: unpack(TYPE_URL.cluster, ClusterSchema),
      endpoints: unpack(TYPE_URL.endpoints, ClusterLoadAssignmentSchema),
    },
    "127.0.0.1",
    "v1",
  );
  // Tests address the listener by test-support's fixed name.
  const listener = [...built.listeners.values()][0];
  assert.ok(listener);
  return { ...built, listeners: new Map([[LISTENER, { ...listener, name: LISTENER }]]) };
}
