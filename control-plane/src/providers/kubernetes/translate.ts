/**
 * Kubernetes objects (as the informers hold them) → an IR fragment plus what to report: each
 * GatewayRoute's conditions and each TLS Secret that could not be served. Pure and order-independent
 * (everything is sorted), so a resync or a cold start over the same objects gives the same IR.
 *
 * Only the TLS Secrets a GatewayRoute's listener references, in the route's own namespace, go into
 * the fragment's `secrets`; every usable one is offered in `tlsSecrets` for config.yaml listeners
 * (the operator's file may name any namespace), and mergeIr keeps only those a listener uses.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { clusterSchema, parseDuration, routeSchema } from "@agw/core/config/schema";
import {
  DEFAULTS,
  type HeaderOps,
  type IrCluster,
  type IrEndpoint,
  type IrListener,
  type IrRoute,
  type IrSecret,
  type ValueMatch,
} from "@agw/core/ir";
import { linearRegexError } from "@agw/core/regex";
import { clusterPolicies, listenerTls, routePolicies } from "../../translator.ts";
import { type GatewayApiTranslation, translateGatewayApi } from "./gateway-api.ts";
import type {
  EndpointSlice,
  Gateway,
  GatewayClass,
  GatewayRoute,
  GatewayRouteHeaderModifier,
  GatewayRouteValueMatch,
  GrpcRoute,
  HttpRoute,
  Namespace,
  ReferenceGrant,
  Secret,
  Service,
} from "./types.ts";

export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

export interface KubeObjects {
  services: Iterable<Service>;
  endpointSlices: Iterable<EndpointSlice>;
  gatewayRoutes: Iterable<GatewayRoute>;
  secrets: Iterable<Secret>;
  /** Gateway API objects; empty when its CRDs are not installed. */
  gatewayClasses?: Iterable<GatewayClass>;
  gateways?: Iterable<Gateway>;
  httpRoutes?: Iterable<HttpRoute>;
  grpcRoutes?: Iterable<GrpcRoute>;
  referenceGrants?: Iterable<ReferenceGrant>;
  namespaces?: Iterable<Namespace>;
}

export interface KubeTranslateOptions {
  /** IPv4 CIDR Gateways get their address from (gateway-api.ts). */
  gatewayAddressPool?: string | undefined;
}

export interface Condition {
  type: "Accepted" | "ResolvedRefs" | "Programmed";
  status: "True" | "False";
  reason: string;
  message: string;
}

export interface RouteReport {
  kind: "GatewayRoute" | "HTTPRoute" | "GRPCRoute";
  namespace: string;
  name: string;
  generation: number;
  /** Accepted and ResolvedRefs as the translation sees them (status.ts adds what came later). */
  conditions: Condition[];
  /** The AGW listener the route asks for. */
  listener: string;
  /** Names of the IR routes it became, on `listener` (none when not accepted). */
  routeNames: string[];
}

export interface KubeTranslation {
  listeners: IrListener[];
  clusters: IrCluster[];
  /** The TLS Secrets the fragment's listeners serve. */
  secrets: IrSecret[];
  /** Every usable TLS Secret, by "namespace/name", for config.yaml listeners that name one. */
  tlsSecrets: IrSecret[];
  routes: RouteReport[];
  /** "namespace/name: why" for each TLS Secret left out of the snapshot. */
  secretErrors: string[];
  /** GatewayClass, Gateway, HTTPRoute and GRPCRoute reports, for their status. */
  gatewayApi: Pick<GatewayApiTranslation, "classes" | "gateways" | "routes">;
}

const key = (namespace: string | undefined, name: string | undefined) => `${namespace ?? ""}/${name ?? ""}`;
const byKey = <T>(a: [string, T], b: [string, T]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** Cluster name for a Service port: unique per namespace, Service and port number. */
export function clusterName(namespace: string, service: string, port: number): string {
  return `k8s/${namespace}/${service}/${port}`;
}

interface ServicePortRef {
  port: number;
  name: string | undefined;
  /** The port's appProtocol asks for HTTP/2 (h2c): "kubernetes.io/h2c" or "grpc". */
  http2: boolean;
}

const HTTP2_APP_PROTOCOLS = new Set(["kubernetes.io/h2c", "grpc"]);

/** A backendRef's port (number or name) → the Service port it means. */
function servicePort(svc: Service, port: number | string): ServicePortRef | undefined {
  const p = (svc.spec?.ports ?? []).find((sp) =>
    typeof port === "number" ? sp.port === port : sp.name === port,
  );
  return p
    ? { port: p.port, name: p.name || undefined, http2: HTTP2_APP_PROTOCOLS.has(p.appProtocol ?? "") }
    : undefined;
}

/**
 * Endpoints of one Service port, merged over every EndpointSlice of the Service. The slice port is
 * matched by the Service port's name (that is how the EndpointSlice controller writes it), which
 * also resolves a named targetPort to each Pod's number. Ready endpoints are used; when none is
 * ready, serving-but-terminating ones are (as kube-proxy does), so a rollout never drops to zero.
 */
function endpointsFor(slices: EndpointSlice[], port: ServicePortRef): IrEndpoint[] {
  const ready = new Map<string, IrEndpoint>();
  const terminating = new Map<string, IrEndpoint>();
  for (const slice of slices) {
    if (slice.addressType !== "IPv4" && slice.addressType !== "IPv6") continue;
    const slicePort = (slice.ports ?? []).find((p) => (p.name || undefined) === port.name);
    const number = slicePort?.port;
    if (number === undefined || number === null) continue;
    for (const ep of slice.endpoints ?? []) {
      const c = ep.conditions ?? {};
      const isReady = c.ready !== false;
      const isServingTerminating = c.ready === false && c.serving === true && c.terminating === true;
      for (const address of ep.addresses ?? []) {
        const endpoint = { address, port: number, weight: 1 };
        const id = `${address}|${number}`;
        if (isReady) ready.set(id, endpoint);
        else if (isServingTerminating) terminating.set(id, endpoint);
      }
    }
  }
  const chosen = ready.size > 0 ? ready : terminating;
  return [...chosen].sort(byKey).map(([, e]) => e);
}

function headerOps(m: GatewayRouteHeaderModifier | undefined): HeaderOps {
  return {
    add: (m?.add ?? []).map((h) => [h.name.toLowerCase(), h.value]),
    set: (m?.set ?? []).map((h) => [h.name.toLowerCase(), h.value]),
    remove: (m?.remove ?? []).map((h) => h.toLowerCase()),
  };
}

function valueMatch(m: GatewayRouteValueMatch, lowerName: boolean): ValueMatch {
  const name = lowerName ? m.name.toLowerCase() : m.name;
  const invert = m.invert ?? false;
  switch (m.type ?? "Exact") {
    case "RegularExpression":
      return { name, kind: "regex", value: m.value ?? "", invert };
    case "Present":
      return { name, kind: "present", value: "", invert };
    default:
      return { name, kind: "exact", value: m.value ?? "", invert };
  }
}

function checkRegex(source: string, what: string, problems: string[]): void {
  const error = linearRegexError(source);
  if (error !== undefined) problems.push(`${what}: ${error}`);
}

/** config.yaml's own schemas, so a GatewayRoute policy is held to exactly the same rules. */
const rulePolicySchema = routeSchema.pick({
  retry: true,
  rewrite: true,
  redirect: true,
  directResponse: true,
  cors: true,
  rateLimit: true,
  compression: true,
  ipRules: true,
});
const backendPolicySchema = clusterSchema.omit({ name: true, endpoints: true, tls: true });

function checkSchema(
  schema: {
    safeParse(value: unknown): {
      success: boolean;
      error?: { issues: ReadonlyArray<{ path: PropertyKey[]; message: string }> };
    };
  },
  value: unknown,
  where: string,
  problems: string[],
): void {
  const result = schema.safeParse(value);
  for (const issue of result.error?.issues ?? [])
    problems.push(`${[where, ...issue.path.map(String)].join(".")}: ${issue.message}`);
}

/** A TLS Secret → IR, or why it cannot be served. */
function tlsSecret(secret: Secret): IrSecret | string {
  const cert = Buffer.from(secret.data?.["tls.crt"] ?? "", "base64").toString("utf8");
  const keyPem = Buffer.from(secret.data?.["tls.key"] ?? "", "base64").toString("utf8");
  if (!cert.trim()) return "tls.crt is empty";
  if (!keyPem.trim()) return "tls.key is empty";
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    return `tls.crt is not a PEM certificate: ${(e as Error).message}`;
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(keyPem)))
      return "tls.key does not match the certificate in tls.crt";
  } catch (e) {
    return `tls.key is not a PEM private key: ${(e as Error).message}`;
  }
  return {
    name: key(secret.metadata?.namespace, secret.metadata?.name),
    certificateChainPem: cert,
    privateKeyPem: keyPem,
  };
}

/**
 * A GatewayRoute listener's certificateRefs → the Secret names it serves, or why not. A Secret is
 * looked up in the route's own namespace only: a tenant of namespace A cannot serve (or read
 * through a data plane) a Secret of namespace B.
 */
function certificateSecrets(
  refs: Array<{ name: string; namespace?: string }>,
  namespace: string,
  usable: ReadonlyMap<string, IrSecret>,
  invalid: ReadonlyMap<string, string>,
): { names: string[]; notPermitted: string[]; invalid: string[] } {
  const names: string[] = [];
  const notPermitted: string[] = [];
  const bad: string[] = [];
  for (const [i, ref] of refs.entries()) {
    const at = `spec.listener.tls.certificateRefs[${i}]`;
    if ((ref.namespace ?? namespace) !== namespace) {
      notPermitted.push(
        `${at}: Secret ${ref.namespace}/${ref.name} is in another namespace; a route may use only Secrets of its own namespace (${namespace})`,
      );
      continue;
    }
    const name = key(namespace, ref.name);
    if (usable.has(name)) names.push(name);
    else
      bad.push(
        `${at}: Secret ${name} ${invalid.get(name) ?? "not found (or not of type kubernetes.io/tls)"}`,
      );
  }
  return { names, notPermitted, invalid: bad };
}

/** One route object as the translation loop sees it: a GatewayRoute, or an HTTPRoute on one listener. */
export interface RouteSource {
  key: string;
  kind: RouteReport["kind"];
  namespace: string;
  name: string;
  generation: number;
  /** Prefix of the IR route names: unique per route object (and parent listener). */
  routePrefix: string;
  spec: GatewayRoute["spec"];
  /** Problems found while converting an HTTPRoute: they make it not Accepted. */
  problems: string[];
  unresolved: string[];
  /** ResolvedRefs' reason when `unresolved` is not empty (default BackendNotFound). */
  unresolvedReason?: string;
  /** An HTTPRoute's: the Gateway's AGW listener (gateway-api.ts made it) its routes join. */
  gatewayListener?: string;
}

export function translateKube(objects: KubeObjects, options: KubeTranslateOptions = {}): KubeTranslation {
  const usableSecrets = new Map<string, IrSecret>();
  const invalidSecrets = new Map<string, string>();
  const secretErrors: string[] = [];
  const tls = [...objects.secrets]
    .filter((s) => s.type === "kubernetes.io/tls")
    .map((s) => [key(s.metadata?.namespace, s.metadata?.name), s] as [string, Secret])
    .sort(byKey);
  for (const [secretKey, s] of tls) {
    const result = tlsSecret(s);
    if (typeof result === "string") {
      secretErrors.push(`${secretKey}: ${result}`);
      invalidSecrets.set(secretKey, `is not usable: ${result}`);
    } else usableSecrets.set(secretKey, result);
  }
  const servedSecrets = new Set<string>();

  const services = new Map<string, Service>();
  for (const s of objects.services) services.set(key(s.metadata?.namespace, s.metadata?.name), s);
  const slicesByService = new Map<string, EndpointSlice[]>();
  for (const slice of objects.endpointSlices) {
    const svc = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!svc) continue;
    const k = key(slice.metadata?.namespace, svc);
    slicesByService.set(k, [...(slicesByService.get(k) ?? []), slice]);
  }
  for (const list of slicesByService.values())
    list.sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""));

  const clusters = new Map<string, IrCluster>();
  const listeners = new Map<string, IrListener & { owner: string; spec: string }>();
  const reports: RouteReport[] = [];
  const gatewayApi = translateGatewayApi(
    {
      gatewayClasses: objects.gatewayClasses ?? [],
      gateways: objects.gateways ?? [],
      httpRoutes: objects.httpRoutes ?? [],
      grpcRoutes: objects.grpcRoutes ?? [],
      referenceGrants: objects.referenceGrants ?? [],
      namespaces: objects.namespaces ?? [],
    },
    {
      services,
      usableSecrets,
      invalidSecrets,
      addressPool: options.gatewayAddressPool,
      defaultAddress: DEFAULTS.listenerAddress,
    },
  );
  for (const l of gatewayApi.listeners)
    listeners.set(l.name, {
      ...l,
      routes: [],
      owner: "a Gateway",
      spec: `Gateway listener ${l.address}:${l.port}`,
    });
  for (const name of gatewayApi.servedSecrets) servedSecrets.add(name);
  const sources: RouteSource[] = [
    ...[...objects.gatewayRoutes].map((gr) => ({
      key: key(gr.metadata?.namespace, gr.metadata?.name),
      kind: "GatewayRoute" as const,
      namespace: gr.metadata?.namespace ?? "default",
      name: gr.metadata?.name ?? "",
      generation: gr.metadata?.generation ?? 0,
      routePrefix: `k8s/${gr.metadata?.namespace ?? "default"}/${gr.metadata?.name}`,
      spec: gr.spec,
      problems: [],
      unresolved: [],
    })),
    // HTTPRoutes after GatewayRoutes.
    ...gatewayApi.sources,
  ];
  // GatewayRoutes by key; HTTPRoutes stay in gateway-api.ts's order (oldest first, as Gateway API
  // breaks ties between routes).
  sources.sort((a, b) =>
    a.kind !== b.kind
      ? a.kind === "GatewayRoute"
        ? -1
        : 1
      : a.kind === "GatewayRoute"
        ? byKey([a.key, a], [b.key, b])
        : 0,
  );

  for (const source of sources) {
    const routeKey = source.key;
    const namespace = source.namespace;
    const spec = source.spec;
    const problems: string[] = [...source.problems];
    const unresolved: string[] = [...source.unresolved];
    const irRoutes: IrRoute[] = [];
    const wanted = new Map<string, IrCluster>();

    (spec?.rules ?? []).forEach((rule, ruleIndex) => {
      const where = `rules[${ruleIndex}]`;
      const { retry, rewrite, redirect, directResponse, cors, rateLimit, compression, ipRules } = rule;
      checkSchema(
        rulePolicySchema,
        { retry, rewrite, redirect, directResponse, cors, rateLimit, compression, ipRules },
        where,
        problems,
      );
      if (rule.backendPolicy !== undefined)
        checkSchema(backendPolicySchema, rule.backendPolicy, `${where}.backendPolicy`, problems);
      const targets = [rule.backendRefs?.length, rule.redirect, rule.directResponse].filter(Boolean);
      if (source.kind === "GatewayRoute" && targets.length !== 1)
        problems.push(`${where}: a rule needs exactly one of backendRefs, redirect or directResponse`);
      /**
       * A Service port → its cluster. With a backendPolicy the cluster belongs to this rule alone,
       * so routes that reach one Service with different policies never fight over it.
       */
      const backend = (
        ref: { name: string; port: number | string; namespace?: string },
        policy: typeof rule.backendPolicy,
      ) => {
        // Only a Gateway API route's conversion names another namespace (after its ReferenceGrant check).
        const svcNs = source.kind !== "GatewayRoute" ? (ref.namespace ?? namespace) : namespace;
        const svc = services.get(key(svcNs, ref.name));
        const port = svc ? servicePort(svc, ref.port) : undefined;
        if (!svc) unresolved.push(`Service ${svcNs}/${ref.name} not found`);
        else if (!port) unresolved.push(`Service ${svcNs}/${ref.name} has no port ${ref.port}`);
        // An unresolved backend still gets a cluster, an empty one: its share of traffic fails
        // with 503 rather than silently moving to the other backends.
        // A GRPCRoute's backends speak HTTP/2 whatever the port's appProtocol says; such a port
        // without an HTTP/2 appProtocol gets a cluster of its own beside the HTTP/1.1 one.
        const grpcOnly = source.kind === "GRPCRoute" && !port?.http2;
        const shared = port
          ? `${clusterName(svcNs, ref.name, port.port)}${grpcOnly ? "/h2" : ""}`
          : `k8s/${svcNs}/${ref.name}/${ref.port}`;
        const name = policy
          ? `${source.routePrefix}/${ruleIndex}/${ref.name}/${port?.port ?? ref.port}`
          : shared;
        if (!wanted.has(name)) {
          const endpoints = port ? endpointsFor(slicesByService.get(key(svcNs, ref.name)) ?? [], port) : [];
          // A backendPolicy's protocol wins over the Service port's appProtocol.
          const protocol = port?.http2 || source.kind === "GRPCRoute" ? "http2" : "http1";
          wanted.set(
            name,
            policy
              ? { name, ...clusterPolicies({ protocol, ...policy }), endpoints }
              : {
                  name,
                  protocol,
                  lb: "round_robin",
                  connectTimeoutMs: DEFAULTS.connectTimeoutMs,
                  idleTimeoutMs: DEFAULTS.idleTimeoutMs,
                  maxIdlePerEndpoint: DEFAULTS.maxIdlePerEndpoint,
                  maxRequestsPerConnection: 0,
                  endpoints,
                },
          );
        }
        return name;
      };
      const weighted = (rule.backendRefs ?? []).map((ref) => ({
        name: backend(ref, rule.backendPolicy),
        weight: ref.weight ?? 1,
      }));
      const { mirror, ...configShaped } = rule;
      const policies = routePolicies({
        ...configShaped,
        ...(mirror && {
          mirror: {
            cluster: backend(mirror.backendRef, undefined),
            ...(mirror.percent !== undefined && { percent: mirror.percent }),
            ...(mirror.maxBodyBytes !== undefined && { maxBodyBytes: mirror.maxBodyBytes }),
          },
        }),
      });
      const timeoutMs = rule.timeout === undefined ? DEFAULTS.routeTimeoutMs : parseDuration(rule.timeout);
      if (timeoutMs === undefined)
        problems.push(`rules[${ruleIndex}].timeout: "${rule.timeout}" is not a duration`);
      const matches = rule.matches?.length ? rule.matches : [{}];
      matches.forEach((m, matchIndex) => {
        const at = `${where}.matches[${matchIndex}]`;
        const pathType = m.path?.type ?? "PathPrefix";
        for (const policy of ["rewrite", "redirect"] as const)
          if (rule[policy]?.pathPrefix !== undefined && pathType !== "PathPrefix")
            problems.push(
              `${where}.${policy}.pathPrefix: needs a rule whose matches are all PathPrefix (${at} is not)`,
            );
        const pathValue = m.path?.value ?? "/";
        if (pathType === "RegularExpression") checkRegex(pathValue, `${at}.path`, problems);
        for (const [i, h] of (m.headers ?? []).entries())
          if (h.type === "RegularExpression") checkRegex(h.value ?? "", `${at}.headers[${i}]`, problems);
        for (const [i, q] of (m.queryParams ?? []).entries())
          if (q.type === "RegularExpression") checkRegex(q.value ?? "", `${at}.queryParams[${i}]`, problems);
        irRoutes.push({
          name: `${source.routePrefix}/${ruleIndex}/${matchIndex}`,
          order: 0,
          hosts: spec?.hostnames ?? [],
          path: {
            kind: pathType === "Exact" ? "exact" : pathType === "RegularExpression" ? "regex" : "prefix",
            value: pathValue,
          },
          methods: m.method ? [m.method] : [],
          headers: (m.headers ?? []).map((h) => valueMatch(h, true)),
          query: (m.queryParams ?? []).map((q) => valueMatch(q, false)),
          target:
            weighted.length === 0
              ? { cluster: "" }
              : weighted.length === 1 && weighted[0]
                ? { cluster: weighted[0].name }
                : { weighted },
          timeoutMs: timeoutMs ?? DEFAULTS.routeTimeoutMs,
          requestHeaders: headerOps(rule.filters?.requestHeaderModifier),
          responseHeaders: headerOps(rule.filters?.responseHeaderModifier),
          plugins: (rule.plugins ?? []).map((p) => ({ name: p.name, config: p.config ?? {} })),
          ...policies,
        });
      });
    });

    const listenerSpec = spec?.listener;
    const gatewayListener = source.gatewayListener;
    const listenerName = gatewayListener ?? listenerSpec?.name ?? "";
    const address = listenerSpec?.address ?? DEFAULTS.listenerAddress;
    const certs = certificateSecrets(
      listenerSpec?.tls?.certificateRefs ?? [],
      namespace,
      usableSecrets,
      invalidSecrets,
    );
    // A certificate that cannot be used leaves the listener unable to start: not served.
    problems.push(...certs.notPermitted, ...certs.invalid);
    const protocol = listenerSpec?.tls ? ("https" as const) : ("http" as const);
    // Everything routes sharing a listener must agree on, as one comparable string.
    const listenerShape = `${address}:${listenerSpec?.port}${protocol === "https" ? ` (HTTPS: ${certs.names.join(", ")})` : ""}`;
    const existing = listeners.get(listenerName);
    if (gatewayListener !== undefined) {
      // The Gateway's listener, made by gateway-api.ts: an HTTPRoute's routes join it.
    } else if (!listenerSpec || !listenerName) problems.push("spec.listener is required");
    else if (listenerSpec.tls && (listenerSpec.tls.certificateRefs ?? []).length === 0)
      problems.push("spec.listener.tls: needs at least one certificateRef");
    else if (existing && existing.spec !== listenerShape)
      problems.push(
        `listener "${listenerName}" is already ${existing.spec} (${existing.owner}); this route asks for ${listenerShape}`,
      );

    const accepted = problems.length === 0;
    if (accepted && gatewayListener !== undefined && existing) {
      existing.routes.push(...irRoutes);
      for (const [name, c] of wanted) clusters.set(name, c);
    } else if (accepted && listenerSpec) {
      const ir = listenerTls(listenerSpec.tls ? { certificates: certs.names } : undefined);
      const listener = existing ?? {
        name: listenerName,
        address,
        port: listenerSpec.port,
        protocol,
        ...(ir && { tls: ir }),
        routes: [],
        owner: `${source.kind} ${routeKey.replace(/#.*$/, "")}`,
        spec: listenerShape,
      };
      listener.routes.push(...irRoutes);
      listeners.set(listenerName, listener);
      for (const [name, c] of wanted) clusters.set(name, c);
      for (const name of certs.names) servedSecrets.add(name);
    }
    const refReason =
      certs.notPermitted.length > 0
        ? "RefNotPermitted"
        : certs.invalid.length > 0
          ? "InvalidCertificateRef"
          : (source.unresolvedReason ?? "BackendNotFound");
    const unresolvedAll = [...certs.notPermitted, ...certs.invalid, ...unresolved];
    reports.push({
      kind: source.kind,
      namespace,
      name: source.name,
      generation: source.generation,
      listener: listenerName,
      routeNames: accepted ? irRoutes.map((r) => r.name) : [],
      conditions: [
        accepted
          ? { type: "Accepted", status: "True", reason: "Accepted", message: "Route is valid." }
          : { type: "Accepted", status: "False", reason: "Invalid", message: problems.join("; ") },
        unresolvedAll.length === 0
          ? {
              type: "ResolvedRefs",
              status: "True",
              reason: "ResolvedRefs",
              message: "All references resolved.",
            }
          : {
              type: "ResolvedRefs",
              status: "False",
              reason: refReason,
              message: unresolvedAll.join("; "),
            },
      ],
    });
  }

  // Gateway listeners sharing an AGW listener: each hostname's requests end at its own routes.
  for (const [name, hosts] of gatewayApi.fences)
    listeners.get(name)?.routes.push(...hosts.map((host) => hostFence(name, host)));
  return {
    listeners: [...listeners.values()].map(({ owner: _owner, spec: _spec, ...l }) => ({
      ...l,
      routes: l.routes.map((r, i) => ({ ...r, order: i })),
    })),
    clusters: [...clusters.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    secrets: [...usableSecrets.values()].filter((s) => servedSecrets.has(s.name)),
    tlsSecrets: [...usableSecrets.values()],
    routes: reports,
    secretErrors,
    gatewayApi: {
      classes: gatewayApi.classes,
      gateways: gatewayApi.gateways,
      routes: gatewayApi.routes,
    },
  };
}

/**
 * A last route for `host` (any host when undefined) on a listener: 404 for what none of that
 * hostname's routes matched.
 */
function hostFence(listener: string, host: string | undefined): IrRoute {
  return {
    name: `${listener}/fence/${host ?? "*"}`,
    order: 0,
    hosts: host === undefined ? [] : [host],
    path: { kind: "prefix", value: "/" },
    methods: [],
    headers: [],
    query: [],
    target: { cluster: "" },
    directResponse: { status: 404, body: "", contentType: "" },
    timeoutMs: DEFAULTS.routeTimeoutMs,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [], remove: [] },
    plugins: [],
  };
}
