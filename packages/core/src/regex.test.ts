import assert from "node:assert/strict";
import { test } from "node:test";
import { compileLinearRegex, linearRegexError } from "./regex.ts";

test("typical route regexes are accepted; what needs backtracking is refused with the reason", () => {
  for (const ok of [
    "/api/v[0-9]+/users/[0-9]+",
    "/static/.*\\.(css|js)",
    "(?<id>[a-f0-9]{16})",
    "(?<=/)x",
    "(a+)+",
  ])
    assert.equal(linearRegexError(ok), undefined, ok);
  assert.match(linearRegexError("([a-z") ?? "", /^invalid regex: Invalid regular expression/);
  for (const bad of ["(a)\\1", "(?<n>a)\\k<n>", "(?=a)a", "(?!a)b", "[0-9a-f]{64}", "(a{4}){5}", "(?i:a)"])
    assert.match(linearRegexError(bad) ?? "", /cannot run in linear time/, bad);
  assert.throws(() => compileLinearRegex("(a)\\1", "g"), /cannot run in linear time/);
});

test("a catastrophic pattern on a hostile input is matched on the linear engine", () => {
  const re = compileLinearRegex("^(?:/(a+)+)$");
  const hostile = `/${"a".repeat(40)}!`;
  // On the backtracking engine alone this is 2^40 steps (hours); the test would time out.
  assert.equal(re.test(hostile), false);
  assert.equal(re.test(`/${"a".repeat(40)}`), true);
  assert.equal(
    compileLinearRegex("(a+)+b", "g")[Symbol.replace](`${"a".repeat(40)}!`, "x"),
    `${"a".repeat(40)}!`,
  );
});
