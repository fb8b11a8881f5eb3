/**
 * Plugin components kept in ConfigMaps: config.yaml names `source: configmap:NAMESPACE/NAME/KEY`,
 * and the component is that key of the ConfigMap's binaryData. Only ConfigMaps labelled
 * `agw.dev/plugin-component` are listed and watched (the control plane holds no other ConfigMap in
 * memory); a change to one republishes, and data planes load the new digest.
 */
import type { Logger } from "@agw/core";
import { configMapSource } from "@agw/core/xds/plugin-component";
import type { V1ConfigMap } from "@kubernetes/client-node";
import type { ComponentRead } from "../../xds/components.ts";
import type { KubeClient } from "./client.ts";
import { Informer } from "./informer.ts";

export const PLUGIN_COMPONENT_LABEL = "agw.dev/plugin-component";

export function pluginConfigMaps(
  client: KubeClient,
  path: string,
  log: Logger,
  onChange: () => void,
): { informer: Informer<V1ConfigMap>; read(source: string): ComponentRead } {
  const informer = new Informer<V1ConfigMap>({
    client,
    path,
    labelSelector: PLUGIN_COMPONENT_LABEL,
    log,
    onChange,
  });
  return {
    informer,
    read(source) {
      const ref = configMapSource(source);
      if (!ref) return { error: `not a configmap:NAMESPACE/NAME/KEY source: ${source}` };
      const cm = informer
        .values()
        .find((c) => c.metadata?.namespace === ref.namespace && c.metadata?.name === ref.name);
      if (!cm)
        return {
          error: `no ConfigMap ${ref.namespace}/${ref.name} labelled ${PLUGIN_COMPONENT_LABEL} (only those are read)`,
        };
      const data = cm.binaryData?.[ref.key];
      if (data === undefined)
        return {
          error:
            cm.data?.[ref.key] !== undefined
              ? `ConfigMap ${ref.namespace}/${ref.name}: key ${ref.key} is in data (text); a component goes in binaryData`
              : `ConfigMap ${ref.namespace}/${ref.name} has no binaryData key ${ref.key}`,
        };
      return { bytes: new Uint8Array(Buffer.from(data, "base64")) };
    },
  };
}
