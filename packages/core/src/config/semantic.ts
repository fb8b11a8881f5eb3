/** Checks that need the whole document: references, uniqueness, endpoint syntax. */
import type { ConfigPath } from "./loader.ts";
import type { GatewayConfig, ListenerConfig } from "./schema.ts";

export interface SemanticError {
  path: ConfigPath;
  message: string;
}

/**
 * Names of elements that exist in the file but were set aside because the schema rejected them
 * ("all": the whole list was rejected): a reference to one is not reported as unknown on top of the
 * schema error.
 */
export interface InvalidNames {
  clusters?: ReadonlySet<string> | "all";
  plugins?: ReadonlySet<string> | "all";
  secrets?: ReadonlySet<string> | "all";
}

const among = (names: ReadonlySet<string> | "all" | undefined, name: string) =>
  names === "all" || (names?.has(name) ?? false);

export interface HostPort {
  host: string;
  port: number;
}

/** "host:port" or "[v6]:port" → parts; undefined when malformed. */
export function parseHostPort(text: string): HostPort | undefined {
  const parsed = checkHostPort(text);
  return typeof parsed === "string" ? undefined : parsed;
}

/** "host:port" or "[v6]:port" → parts, or what is wrong with it (naming the bad part). */
export function checkHostPort(text: string): HostPort | string {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(text);
  if (!m && !text.includes(":")) return `missing port in "${text}": expected "host:port"`;
  if (!m) return `expected "host:port" or "[ipv6]:port", got "${text}"`;
  const host = m[1] ?? m[2] ?? "";
  const port = m[3] ?? "";
  if (m[1] !== undefined ? !/^[0-9a-fA-F:.]+$/.test(host) : !/^[^\s]+$/.test(host))
    return `bad host "${host}" in "${text}"`;
  if (!/^\d+$/.test(port)) return `bad port "${port}" in "${text}": expected a number 1-65535`;
  const n = Number(port);
  if (n < 1 || n > 65535) return `port ${port} in "${text}" is out of range (1-65535)`;
  return { host, port: n };
}

function duplicates<T>(
  items: readonly T[],
  key: (item: T) => string,
  at: (i: number) => ConfigPath,
  what: string,
) {
  const seen = new Map<string, number>();
  const errors: SemanticError[] = [];
  items.forEach((item, i) => {
    const k = key(item);
    const first = seen.get(k);
    if (first === undefined) seen.set(k, i);
    else errors.push({ path: at(i), message: `duplicate ${what} "${k}" (first at index ${first})` });
  });
  return errors;
}

export function semanticErrors(config: GatewayConfig, invalid: InvalidNames = {}): SemanticError[] {
  const listeners = config.listeners ?? [];
  const clusters = config.clusters ?? [];
  const definedClusters = new Set(clusters.map((c) => c.name));
  const definedPlugins = new Set((config.plugins ?? []).map((p) => p.name));
  const clusterNames = { has: (name: string) => definedClusters.has(name) || among(invalid.clusters, name) };
  const pluginNames = { has: (name: string) => definedPlugins.has(name) || among(invalid.plugins, name) };
  const errors: SemanticError[] = [
    ...duplicates(
      listeners,
      (l) => l.name,
      (i) => ["listeners", i, "name"],
      "listener name",
    ),
    ...duplicates(
      listeners,
      (l) => `${l.address ?? "0.0.0.0"}:${l.port}`,
      (i) => ["listeners", i, "port"],
      "listener address",
    ),
    ...duplicates(
      clusters,
      (c) => c.name,
      (i) => ["clusters", i, "name"],
      "cluster name",
    ),
  ];
  listeners.forEach((listener, li) => {
    errors.push(...l4Errors(listener, li, clusterNames, clusters));
  });
  listeners.forEach((listener, li) => {
    const routes = listener.routes ?? [];
    errors.push(
      ...duplicates(
        routes,
        (r) => r.name,
        (i) => ["listeners", li, "routes", i, "name"],
        "route name",
      ),
    );
    routes.forEach((route, ri) => {
      const at: ConfigPath = ["listeners", li, "routes", ri];
      const targets = [route.cluster, route.clusters, route.redirect, route.directResponse];
      if (targets.filter((t) => t !== undefined).length !== 1) {
        errors.push({
          path: at,
          message: "a route needs exactly one of cluster, clusters, redirect or directResponse",
        });
      }
      if (route.mirror !== undefined && !clusterNames.has(route.mirror.cluster)) {
        errors.push({
          path: [...at, "mirror", "cluster"],
          message: `unknown cluster "${route.mirror.cluster}"`,
        });
      }
      const byPrefix = route.match?.path === undefined || route.match.path.prefix !== undefined;
      for (const key of ["rewrite", "redirect"] as const) {
        if (route[key]?.pathPrefix !== undefined && !byPrefix)
          errors.push({
            path: [...at, key, "pathPrefix"],
            message: "pathPrefix needs a route that matches by path prefix",
          });
      }
      if (route.cluster !== undefined && !clusterNames.has(route.cluster)) {
        errors.push({ path: [...at, "cluster"], message: `unknown cluster "${route.cluster}"` });
      }
      route.clusters?.forEach((wc, wi) => {
        if (!clusterNames.has(wc.name)) {
          errors.push({ path: [...at, "clusters", wi, "name"], message: `unknown cluster "${wc.name}"` });
        }
      });
      if (route.clusters?.every((wc) => wc.weight === 0)) {
        errors.push({ path: [...at, "clusters"], message: "weights must not all be zero" });
      }
      route.plugins?.forEach((p, pi) => {
        if (!pluginNames.has(p.name))
          errors.push({ path: [...at, "plugins", pi, "name"], message: `unknown plugin "${p.name}"` });
      });
    });
  });
  errors.push(...secretErrors(config, invalid));
  errors.push(
    ...duplicates(
      config.plugins ?? [],
      (p) => p.name,
      (i) => ["plugins", i, "name"],
      "plugin name",
    ),
  );
  clusters.forEach((cluster, ci) => {
    cluster.endpoints.forEach((endpoint, ei) => {
      const checked = typeof endpoint === "string" ? checkHostPort(endpoint) : undefined;
      if (typeof checked === "string")
        errors.push({ path: ["clusters", ci, "endpoints", ei], message: checked });
    });
  });
  return errors;
}

const L4_ONLY = ["cluster", "sni", "l4"] as const;
const HTTP_ONLY = ["routes", "tls", "limits", "paths", "clientAddress", "ipRules"] as const;

/** What a tcp or tls-passthrough listener may and must have, and what an HTTP listener may not. */
function l4Errors(
  listener: ListenerConfig,
  li: number,
  clusterNames: { has(name: string): boolean },
  clusters: GatewayConfig["clusters"] & object,
): SemanticError[] {
  const at: ConfigPath = ["listeners", li];
  const protocol = listener.protocol ?? "http";
  const errors: SemanticError[] = [];
  if (protocol === "http" || protocol === "https") {
    for (const key of L4_ONLY)
      if (listener[key] !== undefined)
        errors.push({ path: [...at, key], message: `${key} needs protocol: tcp or tls-passthrough` });
    return errors;
  }
  for (const key of HTTP_ONLY)
    if (listener[key] !== undefined)
      errors.push({
        path: [...at, key],
        message:
          key === "tls"
            ? `a ${protocol} listener terminates no TLS (the endpoints do); tls needs protocol: https`
            : `a ${protocol} listener has no ${key}: it forwards bytes to cluster${protocol === "tls-passthrough" ? " or by sni" : ""}`,
      });
  if (protocol === "tcp" && listener.sni !== undefined)
    errors.push({ path: [...at, "sni"], message: "sni needs protocol: tls-passthrough" });
  if (protocol === "tcp" && listener.cluster === undefined)
    errors.push({ path: [...at, "protocol"], message: "a tcp listener needs cluster" });
  if (protocol === "tls-passthrough" && listener.cluster === undefined && (listener.sni ?? []).length === 0)
    errors.push({ path: [...at, "protocol"], message: "a tls-passthrough listener needs sni or cluster" });
  const target = (name: string, path: ConfigPath) => {
    const c = clusters.find((c) => c.name === name);
    if (!clusterNames.has(name)) errors.push({ path, message: `unknown cluster "${name}"` });
    else if (c?.tls !== undefined || c?.protocol === "http2")
      errors.push({
        path,
        message: `cluster "${name}" has ${c.tls !== undefined ? "tls" : "protocol: http2"}: a ${protocol} listener forwards the client's bytes as they are`,
      });
  };
  if (listener.cluster !== undefined) target(listener.cluster, [...at, "cluster"]);
  const seen = new Map<string, string>();
  listener.sni?.forEach((r, ri) => {
    target(r.cluster, [...at, "sni", ri, "cluster"]);
    r.serverNames.forEach((name, ni) => {
      const first = seen.get(name);
      if (first !== undefined)
        errors.push({
          path: [...at, "sni", ri, "serverNames", ni],
          message: `server name "${name}" is routed twice (first at ${first})`,
        });
      else seen.set(name, `sni[${ri}]`);
    });
  });
  return errors;
}

/**
 * A listener certificate named "namespace/name" is a Kubernetes TLS Secret (config.yaml names cannot
 * contain "/"); the control plane resolves it, or reports it in /config_dump and leaves the listener out.
 */
const KUBERNETES_SECRET = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$/;

/** Secrets are well-formed and every reference names one of the right kind. */
function secretErrors(config: GatewayConfig, invalid: InvalidNames): SemanticError[] {
  const secrets = config.secrets ?? [];
  const kinds = new Map<string, "certificate" | "ca" | "htpasswd">();
  const errors: SemanticError[] = duplicates(
    secrets,
    (s) => s.name,
    (i) => ["secrets", i, "name"],
    "secret name",
  );
  secrets.forEach((s, i) => {
    const hasPair = s.certificate !== undefined || s.key !== undefined;
    if (s.htpasswd !== undefined) {
      if (hasPair || s.ca !== undefined)
        errors.push({ path: ["secrets", i], message: "a secret with htpasswd holds nothing else" });
      kinds.set(s.name, "htpasswd");
      return;
    }
    if (hasPair && s.ca !== undefined) {
      errors.push({ path: ["secrets", i], message: "a secret holds either certificate and key, or ca" });
    } else if (hasPair && (s.certificate === undefined || s.key === undefined)) {
      errors.push({ path: ["secrets", i], message: "certificate and key go together" });
    } else if (!hasPair && s.ca === undefined) {
      errors.push({ path: ["secrets", i], message: "a secret needs certificate and key, ca, or htpasswd" });
    }
    kinds.set(s.name, s.ca !== undefined ? "ca" : "certificate");
  });
  const what = { ca: "a CA bundle", certificate: "a certificate and key", htpasswd: "htpasswd users" };
  const ref = (name: string, kind: "certificate" | "ca" | "htpasswd", path: ConfigPath) => {
    const actual = kinds.get(name);
    if (actual === undefined) {
      if (!among(invalid.secrets, name)) errors.push({ path, message: `unknown secret "${name}"` });
    } else if (actual !== kind)
      errors.push({
        path,
        message: `secret "${name}" holds ${what[actual]}, expected ${what[kind]}`,
      });
  };
  (config.listeners ?? []).forEach((l, li) => {
    const at: ConfigPath = ["listeners", li];
    if ((l.protocol ?? "http") === "https" && l.tls === undefined)
      errors.push({ path: [...at, "protocol"], message: "an https listener needs tls.certificates" });
    if ((l.protocol ?? "http") === "http" && l.tls !== undefined)
      errors.push({ path: [...at, "tls"], message: "tls needs protocol: https" });
    l.tls?.certificates.forEach((name, ci) => {
      const path: ConfigPath = [...at, "tls", "certificates", ci];
      if (!name.includes("/")) ref(name, "certificate", path);
      else if (!KUBERNETES_SECRET.test(name))
        errors.push({ path, message: `expected a Kubernetes TLS Secret as "namespace/name", got "${name}"` });
    });
    const client = l.tls?.clientCertificate;
    if (client) ref(client.ca, "ca", [...at, "tls", "clientCertificate", "ca"]);
    (l.routes ?? []).forEach((r, ri) => {
      if (r.basicAuth !== undefined)
        ref(r.basicAuth.users, "htpasswd", [...at, "routes", ri, "basicAuth", "users"]);
    });
  });
  (config.clusters ?? []).forEach((c, ci) => {
    const at: ConfigPath = ["clusters", ci, "tls"];
    if (c.tls?.ca !== undefined) ref(c.tls.ca, "ca", [...at, "ca"]);
    if (c.tls?.certificate !== undefined) ref(c.tls.certificate, "certificate", [...at, "certificate"]);
    if (c.protocol === "http2" && c.tls?.alpn !== undefined && !c.tls.alpn.includes("h2"))
      errors.push({ path: [...at, "alpn"], message: "protocol: http2 over tls needs h2 in alpn" });
  });
  return errors;
}
