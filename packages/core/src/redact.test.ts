import assert from "node:assert/strict";
import { test } from "node:test";
import { REDACTED, redact, redactString } from "./redact.ts";

test("URL credentials: the password, or a lone user (a token), is hidden; the rest kept", () => {
  assert.equal(redactString("redis://:s3cret@redis:6379/0"), `redis://:${REDACTED}@redis:6379/0`);
  assert.equal(
    redactString("see https://bob:pw@h.example/x and more"),
    `see https://bob:${REDACTED}@h.example/x and more`,
  );
  assert.equal(redactString("https://ghp_token@github.com/x"), `https://${REDACTED}@github.com/x`);
  assert.equal(
    redactString("http://h.example/a@b"),
    "http://h.example/a@b",
    "an @ in the path is not userinfo",
  );
  assert.equal(redactString("mail me: a@b.example"), "mail me: a@b.example");
});

test("PEM fields, private key blocks in strings, plugin configs; the input is not changed", () => {
  const input = {
    secrets: [
      { name: "s", certificateChainPem: "-----BEGIN CERTIFICATE-----", privateKeyPem: "k", caPem: "" },
    ],
    note: "-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----",
    plugins: [{ name: "p", config: { key: "v", nested: { list: [1, true] } }, redisUrl: "rediss://u:p@r" }],
  };
  const copy = structuredClone(input);
  assert.deepEqual(redact(input), {
    secrets: [{ name: "s", certificateChainPem: REDACTED, privateKeyPem: REDACTED, caPem: "" }],
    note: REDACTED,
    plugins: [
      {
        name: "p",
        config: { key: REDACTED, nested: { list: [REDACTED, REDACTED] } },
        redisUrl: `rediss://u:${REDACTED}@r`,
      },
    ],
  });
  assert.deepEqual(input, copy);
});

test("errors keep their class name and lose the credentials in message and stack", () => {
  const e = redact(new TypeError("cannot reach redis://:pw@h:1"));
  assert.ok(e instanceof Error);
  assert.equal(e.name, "TypeError");
  assert.equal(e.message, `cannot reach redis://:${REDACTED}@h:1`);
  assert.ok(!e.stack?.includes(":pw@"));
});
