/**
 * config.yaml's IR + the Kubernetes fragment → one IR. Precedence (docs/kubernetes.md): the file
 * wins. A Kubernetes listener whose name a file listener already has joins it (the file's address
 * and port hold; the GatewayRoute routes come after the file's routes). Kubernetes cluster names
 * start with "k8s/", which config.yaml names cannot contain, so clusters never collide.
 */
import type { Ir, IrListener } from "@agw/core/ir";

export function mergeIr(
  file: Ir | undefined,
  kube: Pick<Ir, "listeners" | "clusters" | "secrets"> | undefined,
): Ir {
  const listeners = new Map<string, IrListener>();
  for (const l of file?.listeners ?? []) listeners.set(l.name, { ...l, routes: [...l.routes] });
  for (const l of kube?.listeners ?? []) {
    const existing = listeners.get(l.name);
    if (!existing) {
      listeners.set(l.name, l);
      continue;
    }
    const offset = existing.routes.length;
    existing.routes.push(...l.routes.map((r, i) => ({ ...r, order: offset + i })));
  }
  const clusterNames = new Set((file?.clusters ?? []).map((c) => c.name));
  const secrets = [...(file?.secrets ?? []), ...(kube?.secrets ?? [])];
  return {
    listeners: [...listeners.values()],
    clusters: [...(file?.clusters ?? []), ...(kube?.clusters ?? []).filter((c) => !clusterNames.has(c.name))],
    ...(secrets.length ? { secrets } : {}),
    ...(file?.plugins ? { plugins: file.plugins } : {}),
  };
}
