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
import { compileLinearRegex } from "@agw/core/regex";
import { runToEnd, type Steps } from "@agw/core/slices";
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
  readonly prefix: PrefixNode;
  /** Prefixes not starting with "/": they can only match a path that does not either (e.g. "*"). */
  readonly oddPrefix: ReadonlyArray<readonly [string, Candidate]>;
}

/**
 * A segment trie of path prefixes: a lookup walks the request path's segments once, so its cost
 * follows the path's depth, not the number of routes (bench/router.ts: 10 vs 10,000 routes).
 */
class PrefixNode {
  readonly children = new Map<string, PrefixNode>();
  /** Prefixes ending at this segment ("/api"): they match when the path ends here or goes on with "/". */
  readonly bare: Candidate[] = [];
  /** Prefixes ending at this segment plus "/" ("/api/"): they match when the path goes on with "/". */
  readonly slash: Candidate[] = [];
}

function insertPrefix(root: PrefixNode, prefix: string, c: Candidate): void {
  const slash = prefix.endsWith("/");
  const segments = (slash ? prefix.slice(0, -1) : prefix).split("/").slice(1);
  let node = root;
  for (const segment of segments) {
    let next = node.children.get(segment);
    if (next === undefined) {
      next = new PrefixNode();
      node.children.set(segment, next);
    }
    node = next;
  }
  (slash ? node.slash : node.bare).push(c);
}

function sortPrefixes(node: PrefixNode): void {
  node.bare.sort(bySpecificity);
  node.slash.sort(bySpecificity);
  for (const child of node.children.values()) sortPrefixes(child);
}

/**
 * Longest prefix first: the deeper segment, then at one node "/api/" before "/api". `pos` is where
 * this node's segment ends in the path (the path ends there or has "/" there).
 */
function walkPrefixes(node: PrefixNode, req: RequestView, pos: number): CompiledRoute | undefined {
  const path = req.path;
  if (pos < path.length) {
    if (node.children.size > 0) {
      const slash = path.indexOf("/", pos + 1);
      const end = slash < 0 ? path.length : slash;
      const child = node.children.get(path.slice(pos + 1, end));
      if (child !== undefined) {
        const hit = walkPrefixes(child, req, end);
        if (hit !== undefined) return hit;
      }
    }
    const slashed = node.slash;
    for (let i = 0; i < slashed.length; i++) {
      const c = slashed[i] as Candidate;
      if (candidateMatches(c, req)) return c.route;
    }
  }
  const bare = node.bare;
  for (let i = 0; i < bare.length; i++) {
    const c = bare[i] as Candidate;
    if (candidateMatches(c, req)) return c.route;
  }
  return undefined;
}

/**
 * Anchored regex for a whole value, run in linear time (packages/core/src/regex.ts); throws when the
 * pattern is invalid or cannot run in linear time, whatever control plane sent it.
 */
export function anchored(source: string): RegExp {
  return compileLinearRegex(`^(?:${source})$`);
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

/** The last query string parsed: several query-matching candidates of one lookup parse it once. */
let parsedQuery = "";
let parsedParams = new URLSearchParams();

function queryParams(query: string): URLSearchParams {
  if (query !== parsedQuery) {
    parsedParams = new URLSearchParams(query);
    parsedQuery = query;
  }
  return parsedParams;
}

function candidateMatches(c: Candidate, req: RequestView): boolean {
  if (c.methods && !c.methods.has(req.method)) return false;
  for (const [name, test] of c.headers) if (!test(req.header(name))) return false;
  if (c.query.length > 0) {
    const params = queryParams(req.query);
    for (const [name, test] of c.query) if (!test(params.get(name) ?? undefined)) return false;
  }
  return true;
}

function* buildTable(candidates: readonly Candidate[]): Steps<PathTable> {
  const exact = new Map<string, Candidate[]>();
  const regex: Array<readonly [RegExp, Candidate]> = [];
  const prefix = new PrefixNode();
  const oddPrefix: Array<readonly [string, Candidate]> = [];
  for (const c of candidates) {
    yield;
    if (c.path.kind === "exact") {
      const list = exact.get(c.path.value) ?? [];
      list.push(c);
      exact.set(c.path.value, list);
    } else if (c.path.kind === "regex") {
      regex.push([c.path.value, c]);
    } else if (c.path.value === "" || c.path.value.startsWith("/")) {
      insertPrefix(prefix, c.path.value, c);
    } else {
      oddPrefix.push([c.path.value, c]);
    }
  }
  for (const list of exact.values()) list.sort(bySpecificity);
  regex.sort((a, b) => a[1].order - b[1].order);
  sortPrefixes(prefix);
  oddPrefix.sort((a, b) => b[0].length - a[0].length || bySpecificity(a[1], b[1]));
  return { exact, regex, prefix, oddPrefix };
}

function lookup(table: PathTable, req: RequestView): CompiledRoute | undefined {
  const path = req.path;
  const exact = table.exact.get(path);
  if (exact) for (const c of exact) if (candidateMatches(c, req)) return c.route;
  // Regexes cannot be indexed: they are tried in config order, so their cost grows with their number.
  for (const [re, c] of table.regex) if (re.test(path) && candidateMatches(c, req)) return c.route;
  if (path.charCodeAt(0) === 47) return walkPrefixes(table.prefix, req, 0);
  for (const [p, c] of table.oddPrefix)
    if (prefixMatches(p, path) && candidateMatches(c, req)) return c.route;
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
  return runToEnd(compileRouterSteps(candidates));
}

/** compileRouter a candidate at a time, for a build in slices (packages/core/src/slices.ts). */
export function* compileRouterSteps(candidates: readonly Candidate[]): Steps<Router> {
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
  const exactTables = new Map<string, PathTable>();
  for (const [h, list] of byExactHost) exactTables.set(h, yield* buildTable(list));
  // Keyed by ".example.com": a host's suffixes are looked up at each "." from the left, longest first.
  const wildcardTables = new Map<string, PathTable>();
  for (const [suffix, list] of byWildcard) wildcardTables.set(suffix, yield* buildTable(list));
  const anyTable = yield* buildTable(anyHost);

  return {
    match(req) {
      const host = req.host;
      const exact = exactTables.get(host);
      if (exact) {
        const hit = lookup(exact, req);
        if (hit) return hit;
      }
      if (wildcardTables.size > 0) {
        // The first label is never a suffix on its own: "*.example.com" does not match "example.com".
        for (let dot = host.indexOf(".", 1); dot > 0; dot = host.indexOf(".", dot + 1)) {
          const table = wildcardTables.get(host.slice(dot));
          if (table !== undefined) {
            const hit = lookup(table, req);
            if (hit) return hit;
          }
        }
      }
      return lookup(anyTable, req);
    },
  };
}
