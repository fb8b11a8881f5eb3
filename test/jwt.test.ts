/**
 * The jwt plugin end to end: agw run with the component built from plugins/jwt, a JWKS server the
 * test runs (reached through the http-request import), tokens signed with node:crypto.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { buildJs } from "../plugins/sdk/build.ts";
import { agw, freePort, get, ROOT, tempDir, waitFor, warmPluginCache } from "./helpers.ts";

const b64 = (data: Buffer | string) => Buffer.from(data).toString("base64url");

function rsaKey(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" } };
}

function rs256(key: { kid: string; privateKey: KeyObject }, claims: Record<string, unknown>): string {
  const input = `${b64(JSON.stringify({ alg: "RS256", typ: "JWT", kid: key.kid }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${b64(sign("sha256", Buffer.from(input), key.privateKey))}`;
}

function hs256(secret: string, claims: Record<string, unknown>): string {
  const input = `${b64(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

test("jwt plugin: valid, bad signature, expired, claims, HS256, JWKS key rotation", async (t) => {
  const dir = tempDir("agw-jwt-");
  const component = await buildJs(readFileSync(join(ROOT, "plugins/jwt/plugin.ts"), "utf8"), true);
  writeFileSync(join(dir, "jwt.wasm"), component);
  await warmPluginCache(component);
  const first = rsaKey("k1");
  const second = rsaKey("k2");
  const impostor = rsaKey("k1");
  let published = [first.jwk];
  let jwksFetches = 0;
  const jwksServer = http.createServer((_req, res) => {
    jwksFetches++;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: published }));
  });
  let seen: http.IncomingHttpHeaders = {};
  const origin = http.createServer((req, res) => {
    seen = req.headers;
    res.end("ok\n");
  });
  for (const s of [jwksServer, origin])
    await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    jwksServer.close();
    origin.close();
  });
  const jwksHost = `127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;
  const port = await freePort();
  writeFileSync(
    join(dir, "config.yaml"),
    `plugins:
  - name: jwt
    source: jwt.wasm
    httpAllowHosts: ["${jwksHost}"]
    config:
      jwksUrl: http://${jwksHost}/jwks.json
      issuer: https://idp.test
      audience: api
      secret: shared-secret
      refetchMinMs: 1
listeners:
  - name: public
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: open, match: { path: { prefix: /open } }, cluster: origin }
      - { name: api, cluster: origin, plugins: [{ name: jwt }] }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${(origin.address() as AddressInfo).port}"]
`,
  );
  const gw = agw([
    "run",
    "-c",
    join(dir, "config.yaml"),
    "--xds-listen",
    "127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
    "--cp-admin",
    "127.0.0.1:0",
  ]);
  t.after(() => gw.stop());
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    `the gateway serving\n${gw.output()}`,
    async () => ((await get(`${url}/open`).catch(() => undefined))?.status === 200 ? true : undefined),
    60_000,
  );
  const now = Math.floor(Date.now() / 1000);
  const good = { sub: "alice", iss: "https://idp.test", aud: "api", exp: now + 600, nbf: now - 10 };
  const call = (token: string | undefined) =>
    get(`${url}/api`, token === undefined ? {} : { authorization: `Bearer ${token}` });
  const refused = async (token: string | undefined, reason: RegExp) => {
    const r = await call(token);
    assert.equal(r.status, 401, r.body);
    assert.match(r.body, reason);
  };

  let last = "";
  const ok = await waitFor("the plugin loaded", async () => {
    const r = await call(rs256(first, good));
    last = `${r.status} ${r.body}`;
    return r.status === 200 ? r : undefined;
  }).catch((e: Error) => assert.fail(`${e.message}; last answer: ${last}\n${gw.output()}`));
  assert.equal(ok.status, 200);
  assert.equal(seen["x-jwt-sub"], "alice");
  const fetchesAfterFirst = jwksFetches;
  assert.equal((await call(rs256(first, good))).status, 200);
  assert.equal(jwksFetches, fetchesAfterFirst, "the JWKS is cached");

  await refused(undefined, /missing_token/);
  await refused(rs256(impostor, good), /bad signature/);
  await refused(rs256(first, { ...good, exp: now - 3600 }), /token expired/);
  await refused(rs256(first, { ...good, nbf: now + 3600 }), /token not valid yet/);
  await refused(rs256(first, { ...good, iss: "https://evil.test" }), /wrong issuer/);
  await refused(rs256(first, { ...good, aud: ["other"] }), /wrong audience/);
  await refused("not.a-token", /malformed token/);

  assert.equal((await call(hs256("shared-secret", { ...good, sub: "bob" }))).status, 200);
  assert.equal(seen["x-jwt-sub"], "bob");
  await refused(hs256("wrong-secret", good), /bad signature/);

  // Rotation: the identity provider publishes k2 and signs with it; a kid the cache lacks refetches.
  published = [first.jwk, second.jwk];
  const before = jwksFetches;
  const rotated = await call(rs256(second, { ...good, sub: "carol" }));
  assert.equal(rotated.status, 200, rotated.body);
  assert.equal(seen["x-jwt-sub"], "carol");
  assert.ok(jwksFetches > before, "a kid miss refetched the JWKS");
  await refused(rs256(rsaKey("k3"), good), /no key \\"k3\\" in the JWKS/);
});
