import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CorsPolicySchema,
  DirectResponseSchema,
  RedirectSchema,
  RewritePolicySchema,
} from "@agw/core/gen/agw/v1/route_pb.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Cors, compileDirectResponse, compileRedirect, type LocalRequest } from "./local.ts";
import { compileRewrite, type RewriteInput } from "./rewrite.ts";

function input(target: string, rawHost = "example.com"): RewriteInput & LocalRequest {
  const q = target.indexOf("?");
  return {
    method: "GET",
    host: rawHost.split(":")[0] ?? "",
    rawHost,
    path: q < 0 ? target : target.slice(0, q),
    query: q < 0 ? "" : target.slice(q + 1),
    originForm: target,
    header: () => undefined,
  };
}

const ep = { host: "10.0.0.7", port: 8080, key: "10.0.0.7:8080" };
const rewrite = (init: MessageInitShape<typeof RewritePolicySchema>, prefix: string) =>
  compileRewrite(create(RewritePolicySchema, init), prefix);
const redirect = (init: MessageInitShape<typeof RedirectSchema>, prefix = "/") =>
  compileRedirect(create(RedirectSchema, init), prefix);

describe("rewrite", () => {
  it("prefix: replaces only the matched prefix, never doubles a slash, keeps the query", () => {
    const r = rewrite({ path: { case: "prefix", value: "/" } }, "/api/");
    assert.equal(r.target(input("/api/users?x=1")), "/users?x=1");
    assert.equal(
      rewrite({ path: { case: "prefix", value: "/" } }, "/api").target(input("/api/users")),
      "/users",
    );
    assert.equal(rewrite({ path: { case: "prefix", value: "/v2" } }, "/api").target(input("/api")), "/v2");
  });

  it("regex: every match, capture groups, the result stays absolute", () => {
    const r = rewrite({ path: { case: "regex", value: { pattern: "/+", substitution: "/" } } }, "");
    assert.equal(r.target(input("//a///b?q")), "/a/b?q");
    const strip = rewrite({ path: { case: "regex", value: { pattern: "^/app", substitution: "" } } }, "");
    assert.equal(strip.target(input("/app")), "/");
  });

  it("host: fixed value, endpoint host:port, or the request's", () => {
    assert.equal(
      rewrite({ host: { case: "hostValue", value: "in.example" } }, "").host(input("/"), ep),
      "in.example",
    );
    assert.equal(
      rewrite({ host: { case: "autoHost", value: true } }, "").host(input("/"), ep),
      "10.0.0.7:8080",
    );
    const v6 = { host: "::1", port: 80, key: "[::1]:80" };
    assert.equal(rewrite({ host: { case: "autoHost", value: true } }, "").host(input("/"), v6), "[::1]");
    assert.equal(rewrite({}, "").host(input("/", "a.example:81"), ep), "a.example:81");
  });

  it("refuses what would break the request line", () => {
    assert.throws(() => rewrite({ path: { case: "prefix", value: "/a b" } }, "/"), /invalid rewrite prefix/);
    assert.throws(() => rewrite({ path: { case: "prefix", value: "/x" } }, ""), /matches by path prefix/);
    assert.throws(
      () => rewrite({ path: { case: "regex", value: { pattern: "(", substitution: "" } } }, ""),
      /invalid rewrite regex/,
    );
    assert.throws(
      () => rewrite({ host: { case: "hostValue", value: "a\r\nb" } }, ""),
      /invalid rewrite host/,
    );
  });
});

describe("redirect", () => {
  it("keeps the request's port only when scheme and host stay", () => {
    assert.equal(
      location(redirect({ path: { case: "pathValue", value: "/x" } })(input("/a", "h:8080"), false)),
      "http://h:8080/x",
    );
    assert.equal(
      location(redirect({ scheme: "https" })(input("/a?q=1", "h:8080"), false)),
      "https://h/a?q=1",
    );
    assert.equal(
      location(redirect({ host: "n.example" })(input("/a", "h:8080"), true)),
      "https://n.example/a",
    );
    assert.equal(location(redirect({ scheme: "https", port: 443 })(input("/a", "h"), false)), "https://h/a");
    assert.equal(
      location(redirect({ port: 8443, stripQuery: true })(input("/a?q", "h"), true)),
      "https://h:8443/a",
    );
    const prefixed = redirect({ path: { case: "prefix", value: "/new/" } }, "/old/");
    assert.equal(location(prefixed(input("/old/page", "h"), false)), "http://h/new/page");
  });

  it("status defaults to 301 and must be a redirect", () => {
    assert.equal(redirect({})(input("/"), false).status, 301);
    assert.throws(() => redirect({ status: 200 }), /not 301/);
  });
});

describe("direct response and CORS", () => {
  it("direct response: content type only with one", () => {
    const r = compileDirectResponse(create(DirectResponseSchema, { status: 204 }))(input("/"), false);
    assert.deepEqual(r.headers, []);
    assert.throws(() => compileDirectResponse(create(DirectResponseSchema, { status: 99 })), /out of range/);
  });

  it("a credentialed any-origin policy echoes the origin instead of *", () => {
    const cors = new Cors(create(CorsPolicySchema, { allowOrigins: ["*"], allowCredentials: true }));
    const req = { ...input("/"), header: (n: string) => (n === "origin" ? "https://x.example" : undefined) };
    assert.deepEqual(
      new Map(cors.actualHeaders(req)).get("access-control-allow-origin"),
      "https://x.example",
    );
    const open = new Cors(create(CorsPolicySchema, { allowOrigins: ["*"] }));
    assert.deepEqual(open.actualHeaders(req), [["access-control-allow-origin", "*"]]);
    assert.equal(open.preflight(req), undefined, "a GET is not a preflight");
  });
});

function location(r: { headers: ReadonlyArray<readonly [string, string]> }): string | undefined {
  return r.headers.find(([n]) => n === "location")?.[1];
}
