/** config.yaml (already validated) → IR. */
import { type GatewayConfig, parseDuration, type RouteConfigEntry } from "@agw/core/config/schema";
import { parseHostPort } from "@agw/core/config/semantic";
import { DEFAULTS, type HeaderOps, type Ir, type IrRoute, type ValueMatch } from "@agw/core/ir";

type HeaderOpsInput = RouteConfigEntry["requestHeaders"];
type ValueMatchInput = {
  name: string;
  exact?: string | undefined;
  regex?: string | undefined;
  present?: boolean | undefined;
  invert?: boolean | undefined;
};

function durationMs(text: string | undefined, fallback: number): number {
  return text === undefined ? fallback : (parseDuration(text) ?? fallback);
}

function headerOps(ops: HeaderOpsInput): HeaderOps {
  return {
    add: Object.entries(ops?.add ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    set: Object.entries(ops?.set ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    remove: (ops?.remove ?? []).map((k) => k.toLowerCase()),
  };
}

function valueMatch(m: ValueMatchInput, lowerName: boolean): ValueMatch {
  const name = lowerName ? m.name.toLowerCase() : m.name;
  const invert = m.invert ?? false;
  if (m.exact !== undefined) return { name, kind: "exact", value: m.exact, invert };
  if (m.regex !== undefined) return { name, kind: "regex", value: m.regex, invert };
  return { name, kind: "present", value: "", invert: m.present === false ? !invert : invert };
}

function route(r: RouteConfigEntry, order: number): IrRoute {
  const p = r.match?.path;
  const path: IrRoute["path"] =
    p?.exact !== undefined
      ? { kind: "exact", value: p.exact }
      : p?.regex !== undefined
        ? { kind: "regex", value: p.regex }
        : { kind: "prefix", value: p?.prefix ?? "/" };
  return {
    name: r.name,
    order,
    hosts: r.match?.hosts ?? [],
    path,
    methods: r.match?.methods ?? [],
    headers: (r.match?.headers ?? []).map((h) => valueMatch(h, true)),
    query: (r.match?.query ?? []).map((q) => valueMatch(q, false)),
    target: r.clusters ? { weighted: r.clusters.map((c) => ({ ...c })) } : { cluster: r.cluster ?? "" },
    timeoutMs: durationMs(r.timeout, DEFAULTS.routeTimeoutMs),
    requestHeaders: headerOps(r.requestHeaders),
    responseHeaders: headerOps(r.responseHeaders),
    plugins: (r.plugins ?? []).map((pl) => ({ name: pl.name, config: pl.config ?? {} })),
  };
}

export function translateConfig(config: GatewayConfig): Ir {
  return {
    listeners: (config.listeners ?? []).map((l) => ({
      name: l.name,
      address: l.address ?? DEFAULTS.listenerAddress,
      port: l.port,
      protocol: "http",
      routes: (l.routes ?? []).map(route),
    })),
    clusters: (config.clusters ?? []).map((c) => ({
      name: c.name,
      lb: c.lb ?? "round_robin",
      connectTimeoutMs: durationMs(c.connectTimeout, DEFAULTS.connectTimeoutMs),
      idleTimeoutMs: durationMs(c.idleTimeout, DEFAULTS.idleTimeoutMs),
      maxIdlePerEndpoint: c.maxIdlePerEndpoint ?? DEFAULTS.maxIdlePerEndpoint,
      maxRequestsPerConnection: c.maxRequestsPerConnection ?? 0,
      endpoints: c.endpoints.map((e) => {
        if (typeof e !== "string") return { address: e.address, port: e.port, weight: e.weight ?? 1 };
        const hp = parseHostPort(e);
        if (!hp) throw new Error(`endpoint "${e}" passed validation but does not parse`);
        return { address: hp.host, port: hp.port, weight: 1 };
      }),
    })),
  };
}
