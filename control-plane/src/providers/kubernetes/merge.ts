/**
 * config.yaml's IR + the Kubernetes fragment → one IR. Precedence (docs/kubernetes.md): the file
 * wins. A Kubernetes listener whose name a file listener already has joins it (the file's address
 * and port hold; the GatewayRoute routes come after the file's routes). Kubernetes cluster names
 * start with "k8s/", which config.yaml names cannot contain, so clusters never collide.
 *
 * What a data plane would refuse is kept out here, where it can be pinned on the object it came
 * from, instead of reaching data planes that would refuse the whole update carrying it (and keep
 * serving nothing new, or nothing at all at start):
 * - every Kubernetes route is checked with routeProblems, the check data planes run (an unknown
 *   plugin, a cluster that is not in the snapshot, ...); a route object with one refused route is
 *   left out whole, and the other objects are served;
 * - a Kubernetes listener on an address and port that another listener already has is left out
 *   with its routes.
 * Both are returned in `rejected`, by route report (reportKey), for the object's status.
 *
 * TLS Secrets: only those a served listener references are in the IR. A config.yaml listener may
 * serve a Kubernetes TLS Secret, named "namespace/name" (config.yaml secret names cannot contain
 * "/"). A rotation to a bad PEM keeps the last good certificate (given back in `servedSecrets` for
 * the next merge) and is reported in secret_errors. While a Secret has no good version (absent, not
 * yet listed, or no Kubernetes source) the listener is left out and reported.
 */
import type { Ir, IrListener, IrRoute, IrSecret } from "@agw/core/ir";
import { routeProblems } from "@agw/core/xds/route-check";
import { routeMessage } from "../../xds/resources.ts";
import type { KubeTranslation, RouteReport } from "./translate.ts";

export interface MergedIr {
  ir: Ir;
  /** "listener <name>: why" for each config.yaml listener left out. */
  listenerErrors: string[];
  /** The Kubernetes Secrets config.yaml listeners serve now, by name. */
  servedSecrets: Map<string, IrSecret>;
  /** Why each left-out Kubernetes route object was left out, by reportKey. */
  rejected: Map<string, string[]>;
}

/** Identifies one route report: an object, on one listener (an HTTPRoute may have several). */
export function reportKey(r: Pick<RouteReport, "kind" | "namespace" | "name" | "listener">): string {
  return `${r.kind} ${r.namespace}/${r.name} on ${r.listener}`;
}

export type KubeFragment = Pick<KubeTranslation, "listeners" | "clusters" | "secrets"> &
  Partial<Pick<KubeTranslation, "tlsSecrets" | "routes" | "secretErrors">>;

/** "k8s/ns/name/2/0" → "rules[2]". */
function ruleOf(routeName: string): string {
  const parts = routeName.split("/");
  return `rules[${parts[parts.length - 2] ?? "?"}]`;
}

export function mergeIr(
  file: Ir | undefined,
  kube: KubeFragment | undefined,
  previouslyServed: ReadonlyMap<string, IrSecret> = new Map(),
): MergedIr {
  const kubeSecrets = new Map(
    [...(kube?.tlsSecrets ?? []), ...(kube?.secrets ?? [])].map((s) => [s.name, s] as const),
  );
  const invalid = new Set((kube?.secretErrors ?? []).map((e) => e.slice(0, e.indexOf(": "))));
  const servedSecrets = new Map<string, IrSecret>();
  const serve = (name: string): boolean => {
    const current = kubeSecrets.get(name);
    const last = invalid.has(name) ? previouslyServed.get(name) : undefined;
    const secret = current ?? last;
    if (secret) servedSecrets.set(name, secret);
    return secret !== undefined;
  };
  const listenerErrors: string[] = [];
  const listeners = new Map<string, IrListener>();
  const addresses = new Map<string, string>();
  const addressOf = (l: IrListener) => `${l.address}:${l.port}`;
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
    addresses.set(addressOf(l), l.name);
  }

  // Which report each Kubernetes route came from, and what was refused, by report.
  const owners = new Map<string, string>();
  for (const r of kube?.routes ?? [])
    for (const name of r.routeNames) owners.set(`${r.listener}\u0000${name}`, reportKey(r));
  const rejected = new Map<string, string[]>();
  const reject = (listener: string, route: IrRoute, why: string) => {
    const owner = owners.get(`${listener}\u0000${route.name}`) ?? route.name;
    const list = rejected.get(owner) ?? [];
    if (!list.includes(why)) list.push(why);
    rejected.set(owner, list);
  };

  const kubeRoutes: Array<{ listener: string; route: IrRoute }> = [];
  for (const l of kube?.listeners ?? []) {
    const existing = listeners.get(l.name);
    if (existing) {
      const offset = existing.routes.length;
      const joined = l.routes.map((r, i) => ({ ...r, order: offset + i }));
      existing.routes.push(...joined);
      for (const route of joined) kubeRoutes.push({ listener: l.name, route });
      continue;
    }
    const other = addresses.get(addressOf(l));
    if (other !== undefined) {
      for (const route of l.routes)
        reject(
          l.name,
          route,
          `listener "${l.name}" asks for ${addressOf(l)}, which listener "${other}" already has`,
        );
      continue;
    }
    addresses.set(addressOf(l), l.name);
    listeners.set(l.name, { ...l, routes: [...l.routes] });
    for (const route of l.routes) kubeRoutes.push({ listener: l.name, route });
  }

  const fileClusters = file?.clusters ?? [];
  const clusterNames = new Set(fileClusters.map((c) => c.name));
  const clusters = [...fileClusters, ...(kube?.clusters ?? []).filter((c) => !clusterNames.has(c.name))];
  const references = {
    plugins: new Set((file?.plugins ?? []).map((p) => p.name)),
    clusters: new Set(clusters.map((c) => c.name)),
  };
  for (const { listener, route } of kubeRoutes)
    for (const problem of routeProblems(routeMessage(listener, route), references))
      reject(listener, route, `${ruleOf(route.name)}: ${problem}`);

  // A route object with a refused route is left out whole; a Kubernetes listener left with no
  // route goes too (as one whose routes were all refused at translation).
  if (rejected.size > 0) {
    const kubeOnly = new Set((kube?.listeners ?? []).map((l) => l.name));
    for (const l of file?.listeners ?? []) kubeOnly.delete(l.name);
    for (const [name, l] of listeners) {
      l.routes = l.routes.filter((r) => {
        const owner = owners.get(`${name}\u0000${r.name}`);
        return owner === undefined || !rejected.has(owner);
      });
      if (kubeOnly.has(name) && l.routes.length === 0) listeners.delete(name);
    }
  }

  const kubeReferenced = new Set<string>();
  for (const l of listeners.values())
    for (const c of l.tls?.certificates ?? []) if (c.includes("/")) kubeReferenced.add(c);
  // The file's Secrets (their names have no "/"), then the Kubernetes ones a listener serves.
  const fromKube = new Map<string, IrSecret>();
  for (const s of [...(kube?.secrets ?? []), ...servedSecrets.values()])
    if (kubeReferenced.has(s.name)) fromKube.set(s.name, s);
  const secrets = [...(file?.secrets ?? []), ...fromKube.values()];
  const ir: Ir = {
    listeners: [...listeners.values()],
    clusters,
    ...(secrets.length ? { secrets } : {}),
    ...(file?.plugins ? { plugins: file.plugins } : {}),
  };
  return { ir, listenerErrors, servedSecrets, rejected };
}
