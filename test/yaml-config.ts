/**
 * config.yaml text → the agw.v1 resources the control plane pushes for it (validation, translator,
 * snapshot), ready for the in-process gateway (data-plane/test/gateway.ts) to push through the data
 * plane's real build and swap. Listener ports become 0, so the gateway binds free ones.
 */
import { translateConfig } from "@agw/control-plane/translator";
import { irToSnapshot } from "@agw/control-plane/xds/resources";
import { parseConfig } from "@agw/core/config/loader";
import { type Listener, ListenerSchema } from "@agw/core/gen/agw/v1/listener_pb.js";
import { RESOURCE_SCHEMAS, TYPE_PREFIX, type TypeUrl } from "@agw/core/xds/types";
import type { Message } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { GatewayConfig } from "../data-plane/test/gateway.ts";

export function configFromYaml(yaml: string, version = "v1"): GatewayConfig {
  const loaded = parseConfig(yaml, "test.yaml");
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  const snapshot = irToSnapshot(translateConfig(loaded.config));
  const resources = new Map<TypeUrl, Message[]>();
  for (const schema of RESOURCE_SCHEMAS) {
    const type = `${TYPE_PREFIX}${schema.typeName}` as TypeUrl;
    const list: Message[] = [];
    for (const r of snapshot.get(type)?.resources.values() ?? []) {
      const m = anyUnpack(r.resource, schema);
      if (m === undefined) throw new Error(`undecodable ${type}`);
      list.push(m);
    }
    resources.set(type, list);
  }
  for (const l of resources.get(`${TYPE_PREFIX}${ListenerSchema.typeName}` as TypeUrl) ?? []) {
    (l as Listener).port = 0;
  }
  return { version, resources };
}
