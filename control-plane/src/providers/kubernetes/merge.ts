/**
 * config.yaml's IR + the Kubernetes fragment → one IR. Precedence (docs/kubernetes.md): the file
 * wins. A Kubernetes listener whose name a file listener already has joins it (the file's address
 * and port hold; the GatewayRoute routes come after the file's routes). Kubernetes cluster names
 * start with "k8s/", which config.yaml names cannot contain, so clusters never collide.
 *
 * A config.yaml listener may serve Kubernetes TLS Secrets, named "namespace/name" (config.yaml
 * secret names cannot contain "/"). A rotation to a bad PEM keeps the last good certificate (given
 * back in `servedSecrets` for the next merge) and is reported in secret_errors. While a Secret has
 * no good version (absent, not yet listed, or no Kubernetes source) the listener is left out and
 * reported: a data plane would refuse the whole snapshot over it, and the other listeners must keep
 * being served.
 */
import type { Ir, IrListener, IrSecret } from "@agw/core/ir";

export interface MergedIr {
  ir: Ir;
  /** "listener <name>: why" for each config.yaml listener left out. */
  listenerErrors: string[];
  /** The Kubernetes Secrets config.yaml listeners serve now, by name. */
  servedSecrets: Map<string, IrSecret>;
}

export function mergeIr(
  file: Ir | undefined,
  kube: (Pick<Ir, "listeners" | "clusters" | "secrets"> & { secretErrors?: string[] }) | undefined,
  previouslyServed: ReadonlyMap<string, IrSecret> = new Map(),
): MergedIr {
  const kubeSecrets = new Map((kube?.secrets ?? []).map((s) => [s.name, s]));
  const invalid = new Set((kube?.secretErrors ?? []).map((e) => e.slice(0, e.indexOf(": "))));
  const servedSecrets = new Map<string, IrSecret>();
  const kept: IrSecret[] = [];
  const serve = (name: string): boolean => {
    const current = kubeSecrets.get(name);
    const last = invalid.has(name) ? previouslyServed.get(name) : undefined;
    if (!current && last && !servedSecrets.has(name)) kept.push(last);
    const secret = current ?? last;
    if (secret) servedSecrets.set(name, secret);
    return secret !== undefined;
  };
  const listenerErrors: string[] = [];
  const listeners = new Map<string, IrListener>();
  for (const l of file?.listeners ?? []) {
    const missing = (l.tls?.certificates ?? []).filter((c) => c.includes("/") && !serve(c));
    if (missing.length > 0) {
      const why = kube
        ? "is not served (missing, not of type kubernetes.io/tls, or invalid: see secret_errors)"
        : "needs the Kubernetes source (agw run --kubeconfig)";
      listenerErrors.push(`listener ${l.name}: Kubernetes TLS Secret ${missing.join(", ")} ${why}`);
      continue;
    }
    listeners.set(l.name, { ...l, routes: [...l.routes] });
  }
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
  const secrets = [...(file?.secrets ?? []), ...(kube?.secrets ?? []), ...kept];
  const ir: Ir = {
    listeners: [...listeners.values()],
    clusters: [...(file?.clusters ?? []), ...(kube?.clusters ?? []).filter((c) => !clusterNames.has(c.name))],
    ...(secrets.length ? { secrets } : {}),
    ...(file?.plugins ? { plugins: file.plugins } : {}),
  };
  return { ir, listenerErrors, servedSecrets };
}
