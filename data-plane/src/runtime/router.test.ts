import assert from "node:assert/strict";
import { test } from "node:test";
import { type RouteMatch, RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { compileCandidate, compileRouter } from "./router.ts";
import type { RequestView } from "./types.ts";

type MatchInit = MessageInitShape<typeof RouteSchema>["match"];

function router(routes: Array<[name: string, match: MatchInit]>) {
  return compileRouter(
    routes.map(([name, match], order) => {
      const route = create(RouteSchema, { name, order, match });
      const compiled = {
        name,
        pickCluster: () => name,
        timeoutMs: 0,
        requestHeaders: { add: [], set: [], remove: [] },
        responseHeaders: { add: [], set: [], remove: [] },
      };
      return compileCandidate(route, compiled);
    }),
  );
}

function req(
  path: string,
  init: { host?: string; method?: string; headers?: Record<string, string> } = {},
): RequestView {
  const [p, q = ""] = path.split("?");
  return {
    method: init.method ?? "GET",
    host: init.host ?? "example.com",
    path: p ?? "/",
    query: q,
    header: (name) => init.headers?.[name],
  };
}

const prefix = (value: string): RouteMatch["path"] => ({ case: "prefix", value });

test("exact beats regex beats the longest prefix", () => {
  const r = router([
    ["root", { path: prefix("/") }],
    ["api", { path: prefix("/api") }],
    ["api-v1", { path: prefix("/api/v1") }],
    ["users-re", { path: { case: "regex", value: "/api/v[0-9]+/users" } }],
    ["health", { path: { case: "exact", value: "/api/v1/health" } }],
  ]);
  assert.equal(r.match(req("/api/v1/health"))?.name, "health");
  assert.equal(r.match(req("/api/v1/users"))?.name, "users-re");
  assert.equal(r.match(req("/api/v1/users/7"))?.name, "api-v1");
  assert.equal(r.match(req("/api/v2"))?.name, "api");
  assert.equal(r.match(req("/apix"))?.name, "root", "prefixes match whole segments");
  assert.equal(r.match(req("/"))?.name, "root");
});

test("hosts: exact, then the longest wildcard, then any host; falling through when nothing matches", () => {
  const r = router([
    ["any", { path: prefix("/") }],
    ["wild", { hosts: ["*.example.com"], path: prefix("/") }],
    ["deep-wild", { hosts: ["*.api.example.com"], path: prefix("/") }],
    ["exact", { hosts: ["shop.example.com"], path: prefix("/cart") }],
  ]);
  assert.equal(r.match(req("/cart", { host: "shop.example.com" }))?.name, "exact");
  assert.equal(r.match(req("/other", { host: "shop.example.com" }))?.name, "wild");
  assert.equal(r.match(req("/", { host: "v1.api.example.com" }))?.name, "deep-wild");
  assert.equal(r.match(req("/", { host: "example.com" }))?.name, "any", "a wildcard needs a label before it");
  assert.equal(r.match(req("/", { host: "other.org" }))?.name, "any");
});

test("methods, headers and query narrow a match; more conditions win at equal path", () => {
  const r = router([
    ["plain", { path: prefix("/p") }],
    ["post", { path: prefix("/p"), methods: ["POST"] }],
    [
      "canary",
      { path: prefix("/p"), headers: [{ name: "X-Env", value: { case: "exact", value: "canary" } }] },
    ],
    ["debug", { path: prefix("/p"), query: [{ name: "debug", value: { case: "regex", value: "1|true" } }] }],
    [
      "no-auth",
      {
        path: prefix("/q"),
        headers: [{ name: "authorization", value: { case: "present", value: true }, invert: true }],
      },
    ],
  ]);
  assert.equal(r.match(req("/p", { method: "POST" }))?.name, "post");
  assert.equal(r.match(req("/p", { headers: { "x-env": "canary" } }))?.name, "canary");
  assert.equal(r.match(req("/p?debug=true"))?.name, "debug");
  assert.equal(r.match(req("/p?debug=yes"))?.name, "plain");
  assert.equal(r.match(req("/q"))?.name, "no-auth");
  assert.equal(r.match(req("/q", { headers: { authorization: "x" } })), undefined);
});

test("an invalid regex fails compilation with the engine's message", () => {
  assert.throws(
    () => router([["bad", { path: { case: "regex", value: "([a-z" } }]]),
    /Invalid regular expression/,
  );
});

test("prefixes: a trailing slash, empty segments, many routes sharing segments", () => {
  const r = router([
    ["root", { path: prefix("/") }],
    ["api-slash", { path: prefix("/api/") }],
    ["api", { path: prefix("/api") }],
    ["double", { path: prefix("/a//b") }],
    ["v1", { path: prefix("/api/v1") }],
    ["v1-users", { path: prefix("/api/v1/users") }],
  ]);
  assert.equal(r.match(req("/api"))?.name, "api", "/api/ needs something after /api");
  assert.equal(r.match(req("/api/"))?.name, "api-slash");
  assert.equal(r.match(req("/api/x"))?.name, "api-slash", "the longer prefix wins");
  assert.equal(r.match(req("/api/v1"))?.name, "v1");
  assert.equal(r.match(req("/api/v1/"))?.name, "v1");
  assert.equal(r.match(req("/api/v1/users/7"))?.name, "v1-users");
  assert.equal(r.match(req("/api/v1/usersx"))?.name, "v1");
  assert.equal(r.match(req("/a//b/c"))?.name, "double");
  assert.equal(r.match(req("/a/b"))?.name, "root");
});

test("the compiled router agrees with a linear scan over routes in precedence order", () => {
  const segments = ["a", "b", "api", "v1", ""];
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const randomPath = () => {
    let p = "";
    const depth = 1 + rand(4);
    for (let i = 0; i < depth; i++) p += `/${segments[rand(segments.length)]}`;
    return rand(3) === 0 ? `${p}/` : p;
  };
  const routes: Array<[string, MatchInit]> = [];
  for (let i = 0; i < 60; i++) {
    const kind = rand(3);
    const p = randomPath();
    const methods = rand(4) === 0 ? ["POST"] : [];
    routes.push([
      `r${i}`,
      kind === 0 ? { path: { case: "exact", value: p }, methods } : { path: prefix(p), methods },
    ]);
  }
  const r = router(routes);
  const segmentMatch = (p: string, path: string) =>
    path.startsWith(p) && (path.length === p.length || p.endsWith("/") || path.charCodeAt(p.length) === 47);
  const linear = (path: string, method: string) => {
    const ok = (m: MatchInit) => (m?.methods?.length ?? 0) === 0 || m?.methods?.includes(method);
    const rank = (m: MatchInit) => ((m?.methods?.length ?? 0) > 0 ? 0 : 1);
    const byRank = (a: [string, MatchInit], b: [string, MatchInit]) => rank(a[1]) - rank(b[1]);
    const exact = routes.filter(([, m]) => m?.path?.case === "exact" && m.path.value === path && ok(m));
    if (exact.length > 0) return exact.sort(byRank)[0]?.[0];
    const prefixes = routes.filter(
      ([, m]) => m?.path?.case === "prefix" && segmentMatch(m.path.value ?? "", path) && ok(m),
    );
    prefixes.sort(
      (a, b) => String(b[1]?.path?.value).length - String(a[1]?.path?.value).length || byRank(a, b),
    );
    return prefixes[0]?.[0];
  };
  for (let i = 0; i < 2000; i++) {
    const path = randomPath();
    const method = rand(2) === 0 ? "GET" : "POST";
    assert.equal(r.match(req(path, { method }))?.name, linear(path, method), `${method} ${path}`);
  }
});

test("specificity at one path: methods, then more headers, then more query params, then config order", () => {
  const h = (name: string) => ({ name, value: { case: "present" as const, value: true } });
  const q = (name: string) => ({ name, value: { case: "present" as const, value: true } });
  for (const kind of ["prefix", "exact"] as const) {
    const path = { case: kind, value: "/s" };
    const r = router([
      ["first", { path }],
      ["second", { path }],
      ["one-query", { path, query: [q("a")] }],
      ["two-queries", { path, query: [q("a"), q("b")] }],
      ["one-header", { path, headers: [h("x-a")] }],
      ["two-headers", { path, headers: [h("x-a"), h("x-b")] }],
      ["method", { path, methods: ["PUT"] }],
      ["slash", { path: { case: kind, value: "/s/" } }],
    ]);
    assert.equal(r.match(req("/s"))?.name, "first", `${kind}: config order last`);
    assert.equal(r.match(req("/s?a=1"))?.name, "one-query", kind);
    assert.equal(r.match(req("/s?a=1&b=2"))?.name, "two-queries", kind);
    assert.equal(r.match(req("/s?a=1&b=2", { headers: { "x-a": "1" } }))?.name, "one-header", kind);
    assert.equal(r.match(req("/s", { headers: { "x-a": "1", "x-b": "1" } }))?.name, "two-headers", kind);
    assert.equal(r.match(req("/s", { method: "PUT", headers: { "x-a": "1", "x-b": "1" } }))?.name, "method");
  }
});

test("regexes in config order; a header regex needs the header; the query is re-read per request", () => {
  const r = router([
    ["root", { path: prefix("/") }],
    ["late", { path: { case: "regex", value: "/r/.*" }, query: [] }],
    ["early", { path: { case: "regex", value: "/r/[a-z]+" } }],
    ["hdr", { path: prefix("/h"), headers: [{ name: "x-v", value: { case: "regex", value: ".*" } }] }],
    ["q", { path: prefix("/q"), query: [{ name: "k", value: { case: "exact", value: "1" } }] }],
  ]);
  assert.equal(r.match(req("/r/abc"))?.name, "late", "the earlier regex in config order");
  assert.equal(r.match(req("/h"))?.name, "root", "a regex never matches an absent header");
  assert.equal(r.match(req("/h", { headers: { "x-v": "" } }))?.name, "hdr");
  // The same query object parsed once, then a different query: each request is judged on its own.
  assert.equal(r.match(req("/q?k=1"))?.name, "q");
  assert.equal(r.match(req("/q?k=2"))?.name, "root");
  assert.equal(r.match(req("/q?k=1"))?.name, "q");
  assert.equal(r.match(req("/q"))?.name, "root");
});

test("prefixes that do not start with /: only for paths that do not either, longest first", () => {
  const r = router([
    ["star", { path: prefix("*") }],
    ["ab", { path: prefix("ab") }],
    ["abc", { path: prefix("abc") }],
    ["root", { path: prefix("/") }],
  ]);
  assert.equal(r.match(req("*"))?.name, "star");
  assert.equal(r.match(req("abc"))?.name, "abc");
  assert.equal(r.match(req("abc/d"))?.name, "abc");
  assert.equal(r.match(req("ab/x"))?.name, "ab");
  assert.equal(r.match(req("abx")), undefined, "a whole segment, as for / prefixes");
  assert.equal(r.match(req("/ab"))?.name, "root");
  const slash = router([["x-slash", { path: prefix("x/") }]]);
  assert.equal(slash.match(req("x/y"))?.name, "x-slash");
});

test("a route without a match is a prefix / on any host; an empty prefix matches every path", () => {
  const bare = compileRouter([
    compileCandidate(create(RouteSchema, { name: "bare", order: 0 }), {
      name: "bare",
      pickCluster: () => "bare",
      timeoutMs: 0,
      requestHeaders: { add: [], set: [], remove: [] },
      responseHeaders: { add: [], set: [], remove: [] },
    }),
  ]);
  assert.equal(bare.match(req("/any/path", { host: "h.test" }))?.name, "bare");
  const empty = router([["empty", { path: prefix("") }]]);
  assert.equal(empty.match(req("/x/y"))?.name, "empty");
  const noMatch = router([["hostless", {}]]);
  assert.equal(noMatch.match(req("/z", { host: "a.b" }))?.name, "hostless");
});

test("hosts: a route with hosts is not an any-host route; wildcards try each suffix, exact host falls through", () => {
  const r = router([
    ["exact-only", { hosts: ["a.test"], path: prefix("/") }],
    ["wild-deep", { hosts: ["*.b.c.test"], path: prefix("/x") }],
    ["wild", { hosts: ["*.c.test"], path: prefix("/") }],
  ]);
  assert.equal(r.match(req("/", { host: "other.test" })), undefined, "a host-bound route only for its host");
  assert.equal(r.match(req("/x", { host: "a.b.c.test" }))?.name, "wild-deep");
  assert.equal(r.match(req("/y", { host: "a.b.c.test" }))?.name, "wild", "the shorter suffix next");
  assert.equal(r.match(req("/", { host: ".c.test" })), undefined, "no label before the suffix");
  assert.equal(r.match(req("/", { host: "c.test" })), undefined);
});

test("config order comes from each route's order, not from the order routes arrived in", () => {
  const compiled = (name: string) => ({
    name,
    pickCluster: () => name,
    timeoutMs: 0,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [], remove: [] },
  });
  // Arrival order (a Delta update may bring routes in any order) reversed against `order`.
  const r = compileRouter(
    (
      [
        ["re-2", 2, { path: { case: "regex", value: "/r/.*" } }],
        ["re-1", 1, { path: { case: "regex", value: "/r/[a-z]+" } }],
        ["p-4", 4, { path: prefix("/p") }],
        ["p-3", 3, { path: prefix("/p") }],
        ["s-6", 6, { path: prefix("/s/") }],
        ["s-5", 5, { path: prefix("/s/"), methods: ["PUT"] }],
        ["odd-short", 7, { path: prefix("x") }],
        ["odd-long", 8, { path: prefix("x/y") }],
        ["e", 9, { path: { case: "exact", value: "/e" } }],
      ] as Array<[string, number, MatchInit]>
    ).map(([name, order, match]) =>
      compileCandidate(create(RouteSchema, { name, order, match }), compiled(name)),
    ),
  );
  assert.equal(r.match(req("/r/abc"))?.name, "re-1");
  assert.equal(r.match(req("/p"))?.name, "p-3");
  assert.equal(r.match(req("/s/x", { method: "PUT" }))?.name, "s-5", "methods first among /s/ routes");
  assert.equal(r.match(req("x/y/z"))?.name, "odd-long", "the longer odd prefix first");
  assert.equal(r.match(req("/e/x")), undefined, "an exact path is not a prefix");
});
