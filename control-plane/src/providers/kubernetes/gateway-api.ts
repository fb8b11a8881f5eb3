/**
 * Gateway API (gateway.networking.k8s.io) → what translateKube serves and what the status of each
 * object says. Pure: the same objects give the same result.
 *
 * - GatewayClasses whose controllerName is CONTROLLER_NAME are ours, and so are their Gateways.
 * - Each Gateway gets an address: its `spec.addresses` IPAddress, else one from the provider's
 *   address pool (chosen by a hash of its namespace/name, so the same on every replica and after
 *   restarts), else none
 *   (its listeners bind the default address). Two Gateways never share an address:port; the later
 *   one (by creation) gets `PortUnavailable`.
 * - The HTTP and HTTPS listeners of one Gateway on one port are one AGW listener,
 *   `gateway/NAMESPACE/GATEWAY/PORT` (HTTPS: every listener's certificates, picked by SNI).
 * - A GRPCRoute is the HTTPRoute it routes like (grpcAsHttpRoute): its method matches are matches
 *   on the request path (/SERVICE/METHOD), its backends speak HTTP/2 (h2c).
 * - An HTTPRoute or GRPCRoute attaches to a Gateway listener when the parentRef's sectionName/port select it,
 *   its allowedRoutes admit the route's namespace and kind, and the hostnames intersect; its
 *   routes get the intersection as their hosts. A listener with a hostname that shares its AGW
 *   listener with others gets a last 404 route for that hostname (a "fence"), so a request for it
 *   never falls through to another listener's routes (the data plane tries less specific hosts next).
 * - References across namespaces (a route's backends and mirrors, a listener's certificates) need a
 *   ReferenceGrant in the target namespace.
 */
import { createHash } from "node:crypto";
import type { IrListener, IrSecret } from "@agw/core/ir";
import type { ProgramState } from "./programmed.ts";
import type { Condition, RouteReport, RouteSource } from "./translate.ts";
import {
  CONTROLLER_NAME,
  GATEWAY_API,
  type Gateway,
  type GatewayClass,
  type GatewayListenerSpec,
  type GatewayRouteRule,
  type GatewayStatus,
  type GrpcRoute,
  type HttpRoute,
  type HttpRouteRule,
  type LabelSelector,
  type Namespace,
  type ReferenceGrant,
  type RouteParentRef,
  type RouteParentStatus,
  type Service,
  type StatusCondition,
} from "./types.ts";

export interface GatewayApiObjects {
  gatewayClasses: Iterable<GatewayClass>;
  gateways: Iterable<Gateway>;
  httpRoutes: Iterable<HttpRoute>;
  grpcRoutes?: Iterable<GrpcRoute>;
  referenceGrants: Iterable<ReferenceGrant>;
  namespaces: Iterable<Namespace>;
}

export interface GatewayApiContext {
  services: ReadonlyMap<string, Service>;
  usableSecrets: ReadonlyMap<string, IrSecret>;
  invalidSecrets: ReadonlyMap<string, string>;
  /** IPv4 CIDR the Gateways without spec.addresses get their address from. */
  addressPool?: string | undefined;
  defaultAddress: string;
}

type Cond = Omit<StatusCondition, "observedGeneration" | "lastTransitionTime">;

export interface ListenerReport {
  name: string;
  supportedKinds: Array<{ group: string; kind: string }>;
  attachedRoutes: number;
  /** Accepted, ResolvedRefs, Conflicted; Programmed follows `agwListener`'s ACKs. */
  conditions: Cond[];
  /** The AGW listener serving it, when it is served. */
  agwListener?: string;
}

export interface GatewayReport {
  namespace: string;
  name: string;
  generation: number;
  address?: string;
  /** The address pool had none left for it. */
  noAddress?: boolean;
  accepted: Cond;
  listeners: ListenerReport[];
}

export type RouteKind = "HTTPRoute" | "GRPCRoute";

export interface RouteParentReport {
  parentRef: RouteParentRef;
  /** Accepted=False from the attachment; undefined when it attached. */
  notAttached?: Cond;
  /** The AGW listeners it attached to through this parentRef. */
  agwListeners: string[];
}

/** An HTTPRoute's or GRPCRoute's attachment and references, for its status. */
export interface XRouteReport {
  kind: RouteKind;
  namespace: string;
  name: string;
  generation: number;
  /** Whether its backendRefs (and mirrors) resolve, whatever it attached to. */
  resolvedRefs: Cond;
  parents: RouteParentReport[];
}

export interface GatewayApiTranslation {
  listeners: IrListener[];
  /**
   * The last 404 routes of each AGW listener: one per listener hostname when listeners share it,
   * and one for any host (undefined), last of all.
   */
  fences: Map<string, Array<string | undefined>>;
  sources: RouteSource[];
  servedSecrets: string[];
  classes: Array<{ name: string; generation: number }>;
  gateways: GatewayReport[];
  /** HTTPRoutes and GRPCRoutes. */
  routes: XRouteReport[];
}

const key = (namespace: string | undefined, name: string | undefined) => `${namespace ?? ""}/${name ?? ""}`;
/** The route kinds an HTTP or HTTPS listener serves. */
const ROUTE_KINDS: Array<{ group: string; kind: RouteKind }> = [
  { group: GATEWAY_API.group, kind: "HTTPRoute" },
  { group: GATEWAY_API.group, kind: "GRPCRoute" },
];

const cond = (type: string, status: boolean, reason: string, message: string): Cond => ({
  type,
  status: status ? "True" : "False",
  reason,
  message,
});

/** Creation order, then name: who keeps an address or port when two want it. */
function byAge<
  T extends { metadata?: { creationTimestamp?: Date | string; namespace?: string; name?: string } },
>(a: T, b: T): number {
  const ta = String(a.metadata?.creationTimestamp ?? "");
  const tb = String(b.metadata?.creationTimestamp ?? "");
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = key(a.metadata?.namespace, a.metadata?.name);
  const kb = key(b.metadata?.namespace, b.metadata?.name);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key] ?? "";
    const values = e.values ?? [];
    if (e.operator === "In" && !(has && values.includes(value))) return false;
    if (e.operator === "NotIn" && has && values.includes(value)) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

/**
 * A route hostname against a listener hostname (Gateway API: a wildcard matches one or more
 * labels) → the hostname requests must have to match both, or undefined.
 */
export function intersectHostname(route: string, listener: string): string | undefined {
  const r = route.toLowerCase();
  const l = listener.toLowerCase();
  const covers = (wild: string, name: string) => wild.startsWith("*.") && name.endsWith(wild.slice(1));
  if (r === l) return r;
  if (covers(l, r)) return r;
  if (covers(r, l)) return l;
  return undefined;
}

/** The hosts a route gets on a listener: [] is any host; undefined is no match. */
function routeHosts(routeHostnames: string[], listenerHostname: string | undefined): string[] | undefined {
  if (!listenerHostname) return routeHostnames;
  if (routeHostnames.length === 0) return [listenerHostname];
  const hosts = routeHostnames
    .map((h) => intersectHostname(h, listenerHostname))
    .filter((h) => h !== undefined);
  return hosts.length > 0 ? [...new Set(hosts)] : undefined;
}

function ipv4(address: string): number | undefined {
  const parts = address.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}
const ipv4String = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");

/** "127.0.20.0/24" → its host addresses (network and broadcast left out when the block has them). */
export function addressPool(cidr: string): { has(a: string): boolean; all(): Generator<string> } {
  const [base = "", bitsText = ""] = cidr.split("/");
  const start = ipv4(base);
  const bits = Number(bitsText);
  if (start === undefined || !Number.isInteger(bits) || bits < 8 || bits > 32)
    throw new Error(`Gateway address pool "${cidr}" is not an IPv4 CIDR (e.g. 127.0.20.0/24)`);
  const size = 2 ** (32 - bits);
  const first = Math.floor(start / size) * size;
  const lo = size > 2 ? first + 1 : first;
  const hi = size > 2 ? first + size - 2 : first + size - 1;
  return {
    has: (a) => {
      const n = ipv4(a);
      return n !== undefined && n >= lo && n <= hi;
    },
    *all() {
      for (let n = lo; n <= hi; n++) yield ipv4String(n);
    },
  };
}

/** Does a ReferenceGrant in `toNamespace` let a `fromKind` of `fromNamespace` refer to `toKind` `toName`? */
function granted(
  grants: ReferenceGrant[],
  from: { group: string; kind: string; namespace: string },
  to: { group: string; kind: string; namespace: string; name: string },
): boolean {
  if (from.namespace === to.namespace) return true;
  return grants.some(
    (g) =>
      g.metadata?.namespace === to.namespace &&
      (g.spec?.from ?? []).some(
        (f) => f.group === from.group && f.kind === from.kind && f.namespace === from.namespace,
      ) &&
      (g.spec?.to ?? []).some(
        (t) => t.group === to.group && t.kind === to.kind && (t.name === undefined || t.name === to.name),
      ),
  );
}

interface PlannedListener {
  gateway: Gateway;
  spec: GatewayListenerSpec;
  report: ListenerReport;
  /** Accepted for routes (valid protocol, no conflict). */
  attachable: boolean;
}

export function translateGatewayApi(
  objects: GatewayApiObjects,
  ctx: GatewayApiContext,
): GatewayApiTranslation {
  const grants = [...objects.referenceGrants];
  const namespaceLabels = new Map<string, Record<string, string>>();
  for (const n of objects.namespaces) namespaceLabels.set(n.metadata?.name ?? "", n.metadata?.labels ?? {});
  const ourClasses = [...objects.gatewayClasses]
    .filter((c) => c.spec?.controllerName === CONTROLLER_NAME)
    .sort(byAge);
  const classNames = new Set(ourClasses.map((c) => c.metadata?.name ?? ""));
  const gateways = [...objects.gateways]
    .filter((g) => classNames.has(g.spec?.gatewayClassName ?? ""))
    .sort(byAge);

  // Addresses: spec.addresses, else the one the status already shows (if still in the pool and
  // free), else the lowest free one of the pool.
  const pool = ctx.addressPool ? addressPool(ctx.addressPool) : undefined;
  const addresses = new Map<Gateway, string | undefined>();
  const taken = new Set<string>();
  const unsupportedAddress = new Map<Gateway, string>();
  for (const g of gateways) {
    const wanted = g.spec?.addresses ?? [];
    const bad = wanted.find((a) => (a.type ?? "IPAddress") !== "IPAddress" || ipv4(a.value) === undefined);
    if (bad)
      unsupportedAddress.set(
        g,
        `address ${bad.type ?? "IPAddress"} ${bad.value} is not supported (IPv4 IPAddress only)`,
      );
    else if (wanted[0]) {
      addresses.set(g, wanted[0].value);
      taken.add(wanted[0].value);
    }
  }
  if (pool) {
    // From the Gateway's own namespace/name (hashed into the pool, the next free one on a
    // collision, older Gateways first): the same objects always give the same addresses, with no
    // feedback through status that could race the status writes, and a new Gateway never moves
    // an older one.
    const all = [...pool.all()];
    for (const g of gateways) {
      if (addresses.has(g) || unsupportedAddress.has(g)) continue;
      const start = createHash("sha256")
        .update(key(g.metadata?.namespace, g.metadata?.name))
        .digest()
        .readUInt32BE(0);
      for (let i = 0; i < all.length; i++) {
        const a = all[(start + i) % all.length] as string;
        if (!taken.has(a)) {
          addresses.set(g, a);
          taken.add(a);
          break;
        }
      }
    }
  }

  // Listeners, grouped by AGW listener (Gateway + port).
  const bound = new Map<string, string>(); // address:port → Gateway key
  const planned: PlannedListener[] = [];
  const gatewayReports: GatewayReport[] = [];
  const agw = new Map<string, { listener: IrListener; members: PlannedListener[] }>();
  const servedSecrets = new Set<string>();
  for (const g of gateways) {
    const gNs = g.metadata?.namespace ?? "default";
    const gName = g.metadata?.name ?? "";
    const address = addresses.get(g);
    const bindAddress = address ?? ctx.defaultAddress;
    const report: GatewayReport = {
      namespace: gNs,
      name: gName,
      generation: g.metadata?.generation ?? 0,
      ...(address !== undefined && { address }),
      accepted: cond("Accepted", true, "Accepted", "Gateway is accepted."),
      listeners: [],
    };
    gatewayReports.push(report);
    const unsupported = unsupportedAddress.get(g);
    if (unsupported) {
      report.accepted = cond("Accepted", false, "UnsupportedAddress", unsupported);
      continue;
    }
    if (pool && address === undefined) {
      // Bound on the default address it would clash with the others: not served.
      report.noAddress = true;
      for (const spec of g.spec?.listeners ?? [])
        report.listeners.push({
          name: spec.name,
          supportedKinds: [],
          attachedRoutes: 0,
          conditions: [cond("Accepted", false, "PortUnavailable", `No address left in ${ctx.addressPool}.`)],
        });
      continue;
    }
    const parameters = g.spec?.infrastructure?.parametersRef;
    if (parameters) {
      report.accepted = cond(
        "Accepted",
        false,
        "InvalidParameters",
        `infrastructure.parametersRef ${parameters.group}/${parameters.kind} ${parameters.name}: no parameters are supported`,
      );
      continue;
    }
    const byPort = new Map<number, PlannedListener[]>();
    for (const spec of g.spec?.listeners ?? []) {
      const lr: ListenerReport = { name: spec.name, supportedKinds: [], attachedRoutes: 0, conditions: [] };
      report.listeners.push(lr);
      const p: PlannedListener = { gateway: g, spec, report: lr, attachable: false };
      planned.push(p);
      // Kinds: HTTPRoute and GRPCRoute are served.
      const kinds = spec.allowedRoutes?.kinds;
      const served = (k: { group?: string; kind: string }) =>
        ROUTE_KINDS.find((r) => r.group === (k.group ?? GATEWAY_API.group) && r.kind === k.kind);
      const invalidKinds = (kinds ?? []).filter((k) => !served(k));
      lr.supportedKinds =
        kinds === undefined
          ? [...ROUTE_KINDS]
          : ROUTE_KINDS.filter((r) => kinds.some((k) => served(k) === r));
      let resolved = invalidKinds.length
        ? cond(
            "ResolvedRefs",
            false,
            "InvalidRouteKinds",
            `Route kinds not supported: ${invalidKinds.map((k) => `${k.group ?? GATEWAY_API.group}/${k.kind}`).join(", ")}`,
          )
        : cond("ResolvedRefs", true, "ResolvedRefs", "All references resolved.");
      let accepted = cond("Accepted", true, "Accepted", "Listener is accepted.");
      let conflicted = cond("Conflicted", false, "NoConflicts", "No conflicts.");
      const https = spec.protocol === "HTTPS";
      if (spec.protocol !== "HTTP" && !https) {
        accepted = cond(
          "Accepted",
          false,
          "UnsupportedProtocol",
          `Protocol ${spec.protocol} is not supported.`,
        );
        lr.supportedKinds = [];
      } else if (https && spec.tls?.mode === "Passthrough")
        accepted = cond(
          "Accepted",
          false,
          "UnsupportedValue",
          "TLS mode Passthrough is not supported on HTTPS.",
        );
      const certs: string[] = [];
      if (accepted.status === "True" && https) {
        const refs = spec.tls?.certificateRefs ?? [];
        const problems: string[] = [];
        let reason = "InvalidCertificateRef";
        for (const ref of refs) {
          const refNs = ref.namespace ?? gNs;
          if ((ref.group ?? "") !== "" || (ref.kind ?? "Secret") !== "Secret") {
            problems.push(
              `certificateRef ${ref.group ?? ""}/${ref.kind}/${ref.name}: only Secrets are supported`,
            );
            continue;
          }
          if (
            !granted(
              grants,
              { group: GATEWAY_API.group, kind: "Gateway", namespace: gNs },
              { group: "", kind: "Secret", namespace: refNs, name: ref.name },
            )
          ) {
            reason = "RefNotPermitted";
            problems.push(`Secret ${refNs}/${ref.name}: no ReferenceGrant in ${refNs} allows it`);
            continue;
          }
          const name = key(refNs, ref.name);
          if (ctx.usableSecrets.has(name)) certs.push(name);
          else
            problems.push(
              `Secret ${name} ${ctx.invalidSecrets.get(name) ?? "not found (or not of type kubernetes.io/tls)"}`,
            );
        }
        if (refs.length === 0) problems.push("an HTTPS listener needs a certificateRef");
        if (problems.length > 0) resolved = cond("ResolvedRefs", false, reason, problems.join("; "));
      }
      if (accepted.status === "True") {
        const others = byPort.get(spec.port) ?? [];
        const protocolClash = others.find((o) => o.spec.protocol !== spec.protocol);
        const hostClash = others.find((o) => (o.spec.hostname ?? "") === (spec.hostname ?? ""));
        if (protocolClash)
          conflicted = cond(
            "Conflicted",
            true,
            "ProtocolConflict",
            `Port ${spec.port} is ${protocolClash.spec.protocol} on listener ${protocolClash.spec.name}.`,
          );
        else if (hostClash)
          conflicted = cond(
            "Conflicted",
            true,
            "HostnameConflict",
            `Listener ${hostClash.spec.name} has the same port and hostname.`,
          );
        const owner = bound.get(`${bindAddress}:${spec.port}`);
        if (conflicted.status === "False" && owner !== undefined && owner !== key(gNs, gName))
          accepted = cond(
            "Accepted",
            false,
            "PortUnavailable",
            `${bindAddress}:${spec.port} is used by Gateway ${owner}.`,
          );
      }
      lr.conditions = [accepted, resolved, conflicted];
      if (accepted.status !== "True" || conflicted.status === "True") continue;
      p.attachable = true;
      byPort.set(spec.port, [...(byPort.get(spec.port) ?? []), p]);
      // Served only with what it needs resolved (a certificate problem leaves it out).
      if (resolved.status !== "True" && https) continue;
      const agwName = `gateway/${gNs}/${gName}/${spec.port}`;
      bound.set(`${bindAddress}:${spec.port}`, key(gNs, gName));
      const entry = agw.get(agwName) ?? {
        listener: {
          name: agwName,
          address: bindAddress,
          port: spec.port,
          protocol: https ? ("https" as const) : ("http" as const),
          routes: [],
        },
        members: [],
      };
      if (https) {
        const tls = entry.listener.tls;
        entry.listener.tls = {
          certificates: [...new Set([...(tls?.certificates ?? []), ...certs])],
          minVersion: "TLSv1.2",
          ciphers: "",
          alpn: ["h2", "http/1.1"],
        };
        for (const c of certs) servedSecrets.add(c);
      }
      entry.members.push(p);
      agw.set(agwName, entry);
      lr.agwListener = agwName;
    }
    const invalid = report.listeners.filter((l) => l.agwListener === undefined).length;
    if (invalid > 0 && report.listeners.length > 0)
      report.accepted =
        invalid === report.listeners.length
          ? cond("Accepted", false, "ListenersNotValid", "No listener is valid.")
          : cond("Accepted", true, "ListenersNotValid", `${invalid} listener(s) are not valid.`);
  }

  // HTTPRoutes and GRPCRoutes.
  const byGateway = new Map<string, PlannedListener[]>();
  for (const p of planned) {
    const k = key(p.gateway.metadata?.namespace, p.gateway.metadata?.name);
    byGateway.set(k, [...(byGateway.get(k) ?? []), p]);
  }
  const ourGateways = new Set(gateways.map((g) => key(g.metadata?.namespace, g.metadata?.name)));
  const sources: RouteSource[] = [];
  const routeReports: XRouteReport[] = [];
  // Oldest first, then by namespace/name: Gateway API's tie-break between equally specific matches
  // of different routes (the data plane keeps config order among those).
  const routes = [
    ...[...objects.httpRoutes].map((route) => ({ kind: "HTTPRoute" as const, route, problems: [] })),
    ...[...(objects.grpcRoutes ?? [])].map((g) => ({ kind: "GRPCRoute" as const, ...grpcAsHttpRoute(g) })),
  ].sort((a, b) => byAge(a.route, b.route));
  for (const { kind, route, problems: conversionProblems } of routes) {
    const namespace = route.metadata?.namespace ?? "default";
    const name = route.metadata?.name ?? "";
    const converted = convertRules(kind, route, grants, ctx.services);
    converted.problems.unshift(...conversionProblems);
    const report: XRouteReport = {
      kind,
      namespace,
      name,
      generation: route.metadata?.generation ?? 0,
      resolvedRefs:
        converted.unresolved.length === 0
          ? cond("ResolvedRefs", true, "ResolvedRefs", "All references resolved.")
          : cond("ResolvedRefs", false, converted.unresolvedReason, converted.unresolved.join("; ")),
      parents: [],
    };
    const hostsByListener = new Map<string, Set<string> | "any">();
    for (const parent of route.spec?.parentRefs ?? []) {
      if (
        (parent.group ?? GATEWAY_API.group) !== GATEWAY_API.group ||
        (parent.kind ?? "Gateway") !== "Gateway"
      )
        continue;
      const gwKey = key(parent.namespace ?? namespace, parent.name);
      if (!ourGateways.has(gwKey)) continue;
      const parentReport: RouteParentReport = { parentRef: parent, agwListeners: [] };
      report.parents.push(parentReport);
      const candidates = (byGateway.get(gwKey) ?? []).filter(
        (p) =>
          (parent.sectionName === undefined || parent.sectionName === p.spec.name) &&
          (parent.port === undefined || parent.port === p.spec.port),
      );
      let notAllowed = 0;
      let noHostname = 0;
      for (const p of candidates) {
        if (!p.attachable) continue;
        const from = p.spec.allowedRoutes?.namespaces?.from ?? "Same";
        const gNs = p.gateway.metadata?.namespace ?? "default";
        const nsAllowed =
          from === "All" ||
          (from === "Same" && gNs === namespace) ||
          (from === "Selector" &&
            selects(p.spec.allowedRoutes?.namespaces?.selector, namespaceLabels.get(namespace) ?? {}));
        if (!nsAllowed || !p.report.supportedKinds.some((k) => k.kind === kind)) {
          notAllowed++;
          continue;
        }
        const hosts = routeHosts(route.spec?.hostnames ?? [], p.spec.hostname);
        if (!hosts) {
          noHostname++;
          continue;
        }
        p.report.attachedRoutes++;
        const agwName = p.report.agwListener;
        if (!agwName) continue;
        if (!parentReport.agwListeners.includes(agwName)) parentReport.agwListeners.push(agwName);
        const have = hostsByListener.get(agwName);
        if (hosts.length === 0 || have === "any") hostsByListener.set(agwName, "any");
        else hostsByListener.set(agwName, new Set([...(have ?? []), ...hosts]));
      }
      const attached = candidates.filter((p) => p.attachable).length - notAllowed - noHostname;
      if (candidates.length === 0)
        parentReport.notAttached = cond(
          "Accepted",
          false,
          "NoMatchingParent",
          "No listener matches the parentRef's sectionName and port.",
        );
      else if (attached <= 0)
        parentReport.notAttached =
          notAllowed > 0
            ? cond(
                "Accepted",
                false,
                "NotAllowedByListeners",
                "No listener's allowedRoutes admits this route.",
              )
            : noHostname > 0
              ? cond(
                  "Accepted",
                  false,
                  "NoMatchingListenerHostname",
                  "No listener hostname matches the route's hostnames.",
                )
              : cond("Accepted", false, "NoMatchingParent", "No matching listener is valid.");
    }
    routeReports.push(report);
    for (const [listenerName, hosts] of [...hostsByListener].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const port = listenerName.slice(listenerName.lastIndexOf("/") + 1);
      const https = agw.get(listenerName)?.listener.protocol === "https";
      sources.push({
        key: `${key(namespace, name)}#${listenerName}`,
        kind,
        namespace,
        name,
        generation: report.generation,
        routePrefix: `k8s/${namespace}/${kind.toLowerCase()}/${name}/${port}`,
        gatewayListener: listenerName,
        spec: {
          hostnames: hosts === "any" ? [] : [...hosts].sort(),
          rules: converted.rules.map((r) => redirectPort(r, Number(port), https)),
        },
        problems: converted.problems,
        unresolved: converted.unresolved,
        unresolvedReason: converted.unresolvedReason,
      });
    }
  }

  // Every Gateway listener ends with a plain 404 for any host: what no route matched gets
  // Gateway API's 404 without the data plane's JSON error body (the conformance suite reads a JSON
  // content type as an echo backend's answer, and a HEAD request's has no body).
  const fences = new Map<string, Array<string | undefined>>();
  for (const [name, { members }] of agw)
    fences.set(name, [
      ...(members.length > 1
        ? [...new Set(members.map((m) => m.spec.hostname).filter((h) => h !== undefined))].sort()
        : []),
      undefined,
    ]);

  return {
    listeners: [...agw.values()].map((e) => e.listener).sort((a, b) => (a.name < b.name ? -1 : 1)),
    fences,
    sources,
    servedSecrets: [...servedSecrets],
    classes: ourClasses.map((c) => ({
      name: c.metadata?.name ?? "",
      generation: c.metadata?.generation ?? 0,
    })),
    gateways: gatewayReports,
    routes: routeReports,
  };
}

/**
 * Gateway API: a redirect without port or scheme goes to the listener's port (left out of Location
 * when it is the scheme's own, 80 or 443); with a scheme and no port, to that scheme's port, which
 * the data plane's default (the request's port, or none) gives for requests on default ports.
 */
function redirectPort(rule: GatewayRouteRule, port: number, https: boolean): GatewayRouteRule {
  const r = rule.redirect;
  if (!r || r.port !== undefined || r.scheme !== undefined) return rule;
  if (port === (https ? 443 : 80)) return rule;
  return { ...rule, redirect: { ...r, port } };
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/**
 * A GRPCRoute as the HTTPRoute it routes like. gRPC calls are POSTs to /SERVICE/METHOD, so a method
 * match is a path match: service and method → that exact path; a service alone → the prefix
 * /SERVICE/; a method alone, or RegularExpression → an (anchored) regex on the path. Filters and
 * backendRefs have HTTPRoute's shape already (the CRD admits the header modifiers and mirroring).
 */
export function grpcAsHttpRoute(route: GrpcRoute): { route: HttpRoute; problems: string[] } {
  const problems: string[] = [];
  const rules = (route.spec?.rules ?? []).map(
    (rule, ri): HttpRouteRule => ({
      ...(rule.filters && { filters: rule.filters }),
      ...(rule.backendRefs && { backendRefs: rule.backendRefs }),
      ...(rule.matches && {
        matches: rule.matches.map((m, mi) => {
          const at = `rules[${ri}].matches[${mi}].method`;
          const { service, method, type = "Exact" } = m.method ?? {};
          let path: NonNullable<HttpRouteRule["matches"]>[number]["path"];
          if (m.method && !service && !method) problems.push(`${at}: needs a service or a method`);
          else if (!m.method) path = undefined;
          else if (type === "RegularExpression")
            path = {
              type: "RegularExpression",
              value: `/(?:${service ?? "[^/]+"})/(?:${method ?? "[^/]+"})`,
            };
          else if (service && method) path = { type: "Exact", value: `/${service}/${method}` };
          else if (service) path = { type: "PathPrefix", value: `/${service}/` };
          else path = { type: "RegularExpression", value: `/[^/]+/${escapeRegex(method ?? "")}` };
          return { ...(path && { path }), ...(m.headers && { headers: m.headers }) };
        }),
      }),
    }),
  );
  return {
    route: {
      ...route,
      spec: { parentRefs: route.spec?.parentRefs ?? [], hostnames: route.spec?.hostnames ?? [], rules },
    } as HttpRoute,
    problems,
  };
}

/** An HTTPRoute's rules → GatewayRoute-shaped rules, with what is unsupported or unresolved. */
function convertRules(
  kind: RouteKind,
  route: HttpRoute,
  grants: ReferenceGrant[],
  services: ReadonlyMap<string, Service>,
): { rules: GatewayRouteRule[]; problems: string[]; unresolved: string[]; unresolvedReason: string } {
  const namespace = route.metadata?.namespace ?? "default";
  const problems: string[] = [];
  const unresolved: string[] = [];
  let unresolvedReason = "";
  const fail = (reason: string, message: string) => {
    // The first reason found is the one reported (upstream reports one).
    if (!unresolvedReason) unresolvedReason = reason;
    unresolved.push(message);
  };
  /** A backendRef the route may use, or undefined (reported). */
  const resolve = (
    ref: { group?: string; kind?: string; name: string; namespace?: string; port?: number },
    at: string,
  ): { name: string; namespace: string; port: number } | undefined => {
    const refNs = ref.namespace ?? namespace;
    if ((ref.group ?? "") !== "" || (ref.kind ?? "Service") !== "Service") {
      fail("InvalidKind", `${at}: ${ref.group ?? ""}/${ref.kind} ${ref.name}: only Services are supported`);
      return undefined;
    }
    if (
      !granted(
        grants,
        { group: GATEWAY_API.group, kind, namespace },
        { group: "", kind: "Service", namespace: refNs, name: ref.name },
      )
    ) {
      fail("RefNotPermitted", `${at}: Service ${refNs}/${ref.name}: no ReferenceGrant in ${refNs} allows it`);
      return undefined;
    }
    const svc = services.get(key(refNs, ref.name));
    if (!svc) {
      fail("BackendNotFound", `${at}: Service ${refNs}/${ref.name} not found`);
      return undefined;
    }
    if (ref.port === undefined) {
      problems.push(`${at}: backendRef ${ref.name} needs a port`);
      return undefined;
    }
    if (!(svc.spec?.ports ?? []).some((p) => p.port === ref.port)) {
      fail("BackendNotFound", `${at}: Service ${refNs}/${ref.name} has no port ${ref.port}`);
      return undefined;
    }
    return { name: ref.name, namespace: refNs, port: ref.port };
  };
  const rules = (route.spec?.rules ?? []).map((rule: HttpRouteRule, ruleIndex) => {
    const where = `rules[${ruleIndex}]`;
    const converted: GatewayRouteRule = {};
    if (rule.matches) converted.matches = rule.matches;
    for (const f of rule.filters ?? []) {
      converted.filters ??= {};
      if (f.type === "RequestHeaderModifier" && f.requestHeaderModifier)
        converted.filters.requestHeaderModifier = f.requestHeaderModifier;
      else if (f.type === "ResponseHeaderModifier" && f.responseHeaderModifier)
        converted.filters.responseHeaderModifier = f.responseHeaderModifier;
      else if (f.type === "RequestRedirect" && f.requestRedirect) {
        const r = f.requestRedirect;
        converted.redirect = {
          ...(r.scheme !== undefined && { scheme: r.scheme as "http" | "https" }),
          ...(r.hostname !== undefined && { host: r.hostname }),
          ...(r.port !== undefined && { port: r.port }),
          ...(r.path?.type === "ReplaceFullPath" && { path: r.path.replaceFullPath ?? "/" }),
          ...(r.path?.type === "ReplacePrefixMatch" && { pathPrefix: r.path.replacePrefixMatch ?? "/" }),
          // Gateway API's default is 302.
          status: r.statusCode ?? 302,
        };
      } else if (f.type === "URLRewrite" && f.urlRewrite) {
        const r = f.urlRewrite;
        converted.rewrite = {
          ...(r.hostname !== undefined && { host: r.hostname }),
          ...(r.path?.type === "ReplacePrefixMatch" && { pathPrefix: r.path.replacePrefixMatch ?? "/" }),
          ...(r.path?.type === "ReplaceFullPath" && {
            pathRegex: { pattern: "^.*$", substitution: r.path.replaceFullPath ?? "/" },
          }),
        };
      } else if (f.type === "RequestMirror" && f.requestMirror) {
        if (converted.mirror) {
          problems.push(`${where}.filters: one RequestMirror per rule is supported`);
          continue;
        }
        const m = f.requestMirror;
        const target = resolve(m.backendRef, `${where}.filters[RequestMirror]`);
        const percent =
          m.percent ??
          (m.fraction ? (100 * m.fraction.numerator) / (m.fraction.denominator ?? 100) : undefined);
        if (target)
          converted.mirror = {
            backendRef: target,
            ...(percent !== undefined && { percent }),
          };
      } else problems.push(`${where}.filters: ${f.type} is not supported`);
    }
    converted.backendRefs = [];
    for (const [i, ref] of (rule.backendRefs ?? []).entries()) {
      if ((ref as { filters?: unknown[] }).filters?.length)
        problems.push(`${where}.backendRefs[${i}].filters: filters on a backendRef are not supported`);
      const target = resolve(ref, `${where}.backendRefs[${i}]`);
      if (target && (ref.weight ?? 1) > 0) converted.backendRefs.push({ ...target, weight: ref.weight ?? 1 });
    }
    const t = rule.timeouts;
    if (t?.request || t?.backendRequest) {
      // No retries here: the backend request's timeout bounds the whole request too.
      const both = [t.request, t.backendRequest].filter((x): x is string => x !== undefined && x !== "0s");
      converted.timeout = both.sort((a, b) => durationOrder(a) - durationOrder(b))[0] ?? "0s";
    }
    if (converted.redirect) delete converted.backendRefs;
    // Gateway API: a rule with no usable backend answers 500. (Sent on as a route without a
    // cluster it would be refused by data planes, and by the control plane's check first.)
    else if (converted.backendRefs.length === 0) converted.directResponse = { status: 500 };
    return converted;
  });
  return { rules, problems, unresolved, unresolvedReason: unresolvedReason || "BackendNotFound" };
}

/** Milliseconds of a Gateway API duration ("1h2m3s4ms"), for ordering two of them. */
function durationOrder(d: string): number {
  let ms = 0;
  for (const [, n, unit] of d.matchAll(/(\d+)(ms|h|m|s)/g)) {
    const f = unit === "h" ? 3_600_000 : unit === "m" ? 60_000 : unit === "s" ? 1_000 : 1;
    ms += Number(n) * f;
  }
  return ms;
}

/** The conditions a GatewayClass of ours gets. */
export function gatewayClassConditions(): Cond[] {
  return [cond("Accepted", true, "Accepted", `Handled by ${CONTROLLER_NAME}.`)];
}

/** A Gateway's status without times, Programmed following the data planes' ACKs. */
export function gatewayStatus(
  report: GatewayReport,
  programmed: (agwListener: string) => ProgramState,
): {
  addresses?: GatewayStatus["addresses"];
  conditions: Cond[];
  listeners: NonNullable<GatewayStatus["listeners"]>;
} {
  const listeners = report.listeners.map((l) => {
    const p = l.agwListener
      ? programmed(l.agwListener)
      : { status: "False" as const, reason: "Invalid", message: "Listener is not served." };
    return {
      name: l.name,
      supportedKinds: l.supportedKinds,
      attachedRoutes: l.attachedRoutes,
      conditions: [...l.conditions, { type: "Programmed", ...p }],
    };
  });
  const served = [...new Set(report.listeners.flatMap((l) => (l.agwListener ? [l.agwListener] : [])))];
  let programmedCond: Cond;
  if (report.noAddress)
    programmedCond = cond("Programmed", false, "AddressNotAssigned", "The Gateway address pool is used up.");
  else if (report.accepted.status !== "True")
    programmedCond = cond("Programmed", false, "Invalid", "Gateway is not accepted.");
  else if (served.length === 0 && report.listeners.length > 0)
    programmedCond = cond("Programmed", false, "Invalid", "No listener is served.");
  else {
    const states = served.map((s) => programmed(s));
    const notYet = states.find((s) => s.status !== "True");
    programmedCond = notYet
      ? { type: "Programmed", ...notYet }
      : cond("Programmed", true, "Programmed", states[0]?.message ?? "Programmed.");
  }
  return {
    ...(report.address !== undefined && { addresses: [{ type: "IPAddress", value: report.address }] }),
    conditions: [report.accepted, programmedCond],
    listeners,
  };
}

/**
 * An HTTPRoute's or GRPCRoute's status.parents entries of ours: the attachment's verdict, else the
 * route reports (translation, merge and data planes: status.ts) of the AGW listeners the parent
 * attached to.
 */
export function routeParents(
  report: XRouteReport,
  reportsOf: (agwListener: string) => RouteReport | undefined,
): RouteParentStatus[] {
  return report.parents.map((p) => {
    const parentRef = { group: GATEWAY_API.group, kind: "Gateway", ...p.parentRef };
    let accepted: Cond | undefined = p.notAttached;
    for (const l of p.agwListeners) {
      const a = reportsOf(l)?.conditions.find((c) => c.type === "Accepted");
      if (a && a.status !== "True" && !accepted) accepted = { ...a, reason: "UnsupportedValue" };
    }
    accepted ??= cond("Accepted", true, "Accepted", "Route is accepted.");
    return { parentRef, controllerName: CONTROLLER_NAME, conditions: [accepted, report.resolvedRefs] };
  });
}

export type { Condition };
