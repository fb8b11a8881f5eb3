/**
 * Route matching, compiled once per config. Precedence (documented in docs/routing.md):
 * 1. host: exact host, then wildcards longest suffix first, then routes without hosts; when no route
 *    of a more specific host matches, the next host level is tried;
 * 2. path: exact, then regex (in config order), then prefix, longest first; prefixes match whole
 *    segments ("/api" matches "/api" and "/api/x", not "/apix");
 * 3. among routes with equal path specificity: with methods before without, then more header
 *    matches, then more query matches, then config order.
 */
import type { Route } from "@agw/core/gen/agw/v1/route_pb.js";
import type { CompiledRoute, RequestView, Router } from "./types.ts";

type ValueTest = (value: string | undefined) => boolean;

export interface Candidate {
  readonly route: CompiledRoute;
  readonly path:
    | { readonly kind: "exact" | "prefix"; readonly value: string }
    | { readonly kind: "regex"; readonly value: RegExp };
  readonly hosts: readonly string[];
  readonly order: number;
  readonly methods: ReadonlySet<string> | undefined;
  readonly headers: ReadonlyArray<readonly [string, ValueTest]>;
  readonly query: ReadonlyArray<readonly [string, ValueTest]>;
}

interface PathTable {
  readonly exact: ReadonlyMap<string, Candidate[]>;
  readonly regex: ReadonlyArray<readonly [RegExp, Candidate]>;
  /** Sorted by prefix length, longest first. */
  readonly prefix: ReadonlyArray<readonly [string, Candidate]>;
}

/** Anchored regex for a whole value; throws SyntaxError with the engine's message when invalid. */
export function anchored(source: string): RegExp {
  return new RegExp(`^(?:${source})$`);
}

function valueTest(
  kind: string | undefined,
  value: string | boolean | undefined,
  invert: boolean,
): ValueTest {
  let test: ValueTest;
  if (kind === "exact") {
    const expected = value as string;
    test = (v) => v === expected;
  } else if (kind === "regex") {
    const re = anchored(value as string);
    test = (v) => v !== undefined && re.test(v);
  } else {
    test = (v) => v !== undefined;
  }
  return invert ? (v) => !test(v) : test;
}

function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || prefix.endsWith("/") || path.charCodeAt(prefix.length) === 47;
}

function bySpecificity(a: Candidate, b: Candidate): number {
  return (
    Number(b.methods !== undefined) - Number(a.methods !== undefined) ||
    b.headers.length - a.headers.length ||
    b.query.length - a.query.length ||
    a.order - b.order
  );
}

function candidateMatches(c: Candidate, req: RequestView, query: () => URLSearchParams): boolean {
  if (c.methods && !c.methods.has(req.method)) return false;
  for (const [name, test] of c.headers) if (!test(req.header(name))) return false;
  if (c.query.length > 0) {
    const params = query();
    for (const [name, test] of c.query) if (!test(params.get(name) ?? undefined)) return false;
  }
  return true;
}

function buildTable(candidates: readonly Candidate[]): PathTable {
  const exact = new Map<string, Candidate[]>();
  const regex: Array<readonly [RegExp, Candidate]> = [];
  const prefix: Array<readonly [string, Candidate]> = [];
  for (const c of candidates) {
    if (c.path.kind === "exact") {
      const list = exact.get(c.path.value) ?? [];
      list.push(c);
      exact.set(c.path.value, list);
    } else if (c.path.kind === "regex") {
      regex.push([c.path.value, c]);
    } else {
      prefix.push([c.path.value, c]);
    }
  }
  for (const list of exact.values()) list.sort(bySpecificity);
  regex.sort((a, b) => a[1].order - b[1].order);
  prefix.sort((a, b) => b[0].length - a[0].length || bySpecificity(a[1], b[1]));
  return { exact, regex, prefix };
}

function lookup(table: PathTable, req: RequestView, query: () => URLSearchParams): CompiledRoute | undefined {
  const exact = table.exact.get(req.path);
  if (exact) for (const c of exact) if (candidateMatches(c, req, query)) return c.route;
  for (const [re, c] of table.regex) if (re.test(req.path) && candidateMatches(c, req, query)) return c.route;
  for (const [p, c] of table.prefix)
    if (prefixMatches(p, req.path) && candidateMatches(c, req, query)) return c.route;
  return undefined;
}

/** Compiles one route's match; throws (SyntaxError for a bad regex) when it cannot. */
export function compileCandidate(route: Route, compiled: CompiledRoute): Candidate {
  const m = route.match;
  const p = m?.path;
  return {
    route: compiled,
    path:
      p?.case === "regex"
        ? { kind: "regex", value: anchored(p.value) }
        : { kind: p?.case === "exact" ? "exact" : "prefix", value: p?.value ?? "/" },
    hosts: m?.hosts ?? [],
    order: route.order,
    methods: m && m.methods.length > 0 ? new Set(m.methods) : undefined,
    headers: (m?.headers ?? []).map((h) => [
      h.name.toLowerCase(),
      valueTest(h.value.case, h.value.value, h.invert),
    ]),
    query: (m?.query ?? []).map((q) => [q.name, valueTest(q.value.case, q.value.value, q.invert)]),
  };
}

export function compileRouter(candidates: readonly Candidate[]): Router {
  const byExactHost = new Map<string, Candidate[]>();
  const byWildcard = new Map<string, Candidate[]>();
  const anyHost: Candidate[] = [];
  for (const candidate of candidates) {
    if (candidate.hosts.length === 0) anyHost.push(candidate);
    for (const host of candidate.hosts) {
      const target = host.startsWith("*.") ? byWildcard : byExactHost;
      const key = host.startsWith("*.") ? host.slice(1) : host;
      const list = target.get(key) ?? [];
      list.push(candidate);
      target.set(key, list);
    }
  }
  const exactTables = new Map([...byExactHost].map(([h, list]) => [h, buildTable(list)]));
  const wildcardTables = [...byWildcard]
    .sort((a, b) => b[0].length - a[0].length)
    .map(([suffix, list]) => [suffix, buildTable(list)] as const);
  const anyTable = buildTable(anyHost);

  return {
    match(req) {
      let params: URLSearchParams | undefined;
      const query = () => {
        params ??= new URLSearchParams(req.query);
        return params;
      };
      const exact = exactTables.get(req.host);
      if (exact) {
        const hit = lookup(exact, req, query);
        if (hit) return hit;
      }
      for (const [suffix, table] of wildcardTables) {
        if (req.host.endsWith(suffix) && req.host.length > suffix.length) {
          const hit = lookup(table, req, query);
          if (hit) return hit;
        }
      }
      return lookup(anyTable, req, query);
    },
  };
}
