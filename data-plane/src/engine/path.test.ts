import assert from "node:assert/strict";
import { test } from "node:test";
import type { PathPolicy } from "../runtime/types.ts";
import { DEFAULT_PATH_POLICY, normalizePath, PathRejection } from "./path.ts";

const norm = (p: string, policy: PathPolicy = DEFAULT_PATH_POLICY) => {
  const r = normalizePath(p, policy);
  return typeof r === "string" ? r : `400: ${r.message}`;
};

test("an already-normal path is returned as the same string", () => {
  for (const p of ["/", "/a", "/a/b/", "/api/v1/users", "/.well-known/x", "/a.b/c..d/...", "/~user"])
    assert.equal(normalizePath(p, DEFAULT_PATH_POLICY), p);
});

test("the path tricks of issue 14 all become /admin/x", () => {
  for (const p of [
    "/%61dmin/x",
    "/%61%64%6D%69%6e/x",
    "/./admin/x",
    "//admin/x",
    "/public/../admin/x",
    "/public/%2e%2e/admin/x",
    "/public/.%2E/admin/x",
    "/../admin/x",
    "/a/b/../../admin/./x",
    "///admin//x",
    "/public/..//admin/x",
  ])
    assert.equal(norm(p), "/admin/x", p);
});

test("RFC 3986 §5.2.4 dot segments, trailing slashes kept", () => {
  assert.equal(norm("/a/b/c/./../../g"), "/a/g");
  assert.equal(norm("/mid/content=5/../6"), "/mid/6");
  assert.equal(norm("/a/b/.."), "/a/");
  assert.equal(norm("/a/b/."), "/a/b/");
  assert.equal(norm("/.."), "/");
  assert.equal(norm("/."), "/");
  assert.equal(norm("//"), "/");
  assert.equal(norm("/a//"), "/a/");
  assert.equal(norm("/.well-known/..x"), "/.well-known/..x");
});

test("percent-encodings: unreserved decoded, others upper-cased, malformed and NUL refused", () => {
  assert.equal(norm("/%7euser/%41-%5f"), "/~user/A-_");
  assert.equal(norm("/a%20b/%3f/%e2%82%ac"), "/a%20b/%3F/%E2%82%AC");
  assert.match(norm("/a%2"), /^400: .*invalid percent-encoding/);
  assert.match(norm("/a%zz"), /^400: .*invalid percent-encoding/);
  assert.match(norm("/a%00b"), /^400: .*NUL/);
});

test("escaped slashes and backslashes: reject (default), keep, decode", () => {
  for (const p of ["/public%2F..%2Fadmin/x", "/public%2f..%2fadmin/x", "/a%5Cb", "/a\\..\\admin"])
    assert.ok(normalizePath(p, DEFAULT_PATH_POLICY) instanceof PathRejection, p);
  const keep: PathPolicy = { ...DEFAULT_PATH_POLICY, escapedSlashes: "keep" };
  assert.equal(norm("/public%2f..%2fadmin/x", keep), "/public%2F..%2Fadmin/x");
  assert.equal(norm("/a\\b", keep), "/a\\b");
  const decode: PathPolicy = { ...DEFAULT_PATH_POLICY, escapedSlashes: "decode" };
  assert.equal(norm("/public%2F..%2Fadmin/x", decode), "/admin/x");
  assert.equal(norm("/public\\..\\admin%5cx", decode), "/admin/x");
});

test("normalize and mergeSlashes can each be turned off", () => {
  const raw: PathPolicy = { normalize: false, mergeSlashes: false, escapedSlashes: "keep" };
  for (const p of ["/%61dmin/x", "/./admin", "//admin", "/public/../admin", "/a%2fb"])
    assert.equal(norm(p, raw), p);
  const onlyMerge: PathPolicy = { ...raw, mergeSlashes: true };
  assert.equal(norm("//a///b/./c", onlyMerge), "/a/b/./c");
  const onlyNormalize: PathPolicy = { ...raw, normalize: true };
  assert.equal(norm("/a//../b", onlyNormalize), "/a/b");
  assert.match(norm("/a%00", raw), /^400: .*NUL/);
});
