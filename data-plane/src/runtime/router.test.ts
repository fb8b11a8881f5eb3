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
