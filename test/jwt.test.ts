/**
 * The jwt plugin end to end: agw run with the component built from plugins/jwt, a JWKS server the
 * test runs (reached through the http-request import), tokens signed with node:crypto.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, type KeyObject, type SignKeyObjectInput, sign } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
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

/** The gateway with the jwt component as plugin `jwt` (extra plugin YAML lines appended), a JWKS server and an origin. */
async function jwtGateway(t: TestContext, published: () => object[], extraPlugin = "", extraRoutes = "") {
  const dir = tempDir("agw-jwt-");
  const component = await buildJs(readFileSync(join(ROOT, "plugins/jwt/plugin.ts"), "utf8"), true);
  writeFileSync(join(dir, "jwt.wasm"), component);
  await warmPluginCache(component);
  const state = { jwksFetches: 0, seen: {} as http.IncomingHttpHeaders };
  const jwksServer = http.createServer((_req, res) => {
    state.jwksFetches++;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: published() }));
  });
  const origin = http.createServer((req, res) => {
    state.seen = req.headers;
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
${extraPlugin.replaceAll("JWKS_HOST", jwksHost)}
listeners:
  - name: public
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: open, match: { path: { prefix: /open } }, cluster: origin }
${extraRoutes}
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
  const call = (token: string | undefined, path = "/api") =>
    get(`${url}${path}`, token === undefined ? {} : { authorization: `Bearer ${token}` });
  const refused = async (token: string | undefined, reason: RegExp, path = "/api") => {
    const r = await call(token, path);
    assert.equal(r.status, 401, r.body);
    assert.match(r.body, reason);
  };
  /** Waits for the plugin to load: `token` is let through. */
  const loaded = async (token: string) => {
    let last = "";
    const ok = await waitFor("the plugin loaded", async () => {
      const r = await call(token);
      last = `${r.status} ${r.body}`;
      return r.status === 200 ? r : undefined;
    }).catch((e: Error) => assert.fail(`${e.message}; last answer: ${last}\n${gw.output()}`));
    assert.equal(ok.status, 200);
  };
  return { state, call, refused, loaded };
}

test("jwt plugin: valid, bad signature, expired, claims, HS256, JWKS key rotation", async (t) => {
  const first = rsaKey("k1");
  const second = rsaKey("k2");
  const impostor = rsaKey("k1");
  let published = [first.jwk];
  const { state, call, refused, loaded } = await jwtGateway(t, () => published);
  const now = Math.floor(Date.now() / 1000);
  const good = { sub: "alice", iss: "https://idp.test", aud: "api", exp: now + 600, nbf: now - 10 };
  await loaded(rs256(first, good));
  assert.equal(state.seen["x-jwt-sub"], "alice");
  const fetchesAfterFirst = state.jwksFetches;
  assert.equal((await call(rs256(first, good))).status, 200);
  assert.equal(state.jwksFetches, fetchesAfterFirst, "the JWKS is cached");

  await refused(undefined, /missing_token/);
  await refused(rs256(impostor, good), /bad signature/);
  await refused(rs256(first, { ...good, exp: now - 3600 }), /token expired/);
  await refused(rs256(first, { ...good, nbf: now + 3600 }), /token not valid yet/);
  await refused(rs256(first, { ...good, iss: "https://evil.test" }), /wrong issuer/);
  await refused(rs256(first, { ...good, aud: ["other"] }), /wrong audience/);
  await refused("not.a-token", /malformed token/);

  assert.equal((await call(hs256("shared-secret", { ...good, sub: "bob" }))).status, 200);
  assert.equal(state.seen["x-jwt-sub"], "bob");
  await refused(hs256("wrong-secret", good), /bad signature/);

  // Rotation: the identity provider publishes k2 and signs with it; a kid the cache lacks refetches.
  published = [first.jwk, second.jwk];
  const before = state.jwksFetches;
  const rotated = await call(rs256(second, { ...good, sub: "carol" }));
  assert.equal(rotated.status, 200, rotated.body);
  assert.equal(state.seen["x-jwt-sub"], "carol");
  assert.ok(state.jwksFetches > before, "a kid miss refetched the JWKS");
  await refused(rs256(rsaKey("k3"), good), /no key \\"k3\\" in the JWKS/);
});

/** A token signed by node:crypto with `header` (alg, kid) as given. */
function signed(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  signer: (input: Buffer) => Buffer,
): string {
  const input = `${b64(JSON.stringify({ typ: "JWT", ...header }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${b64(signer(Buffer.from(input)))}`;
}

function asymmetric(kid: string, alg: string, type: "ec" | "ed25519", curve?: string) {
  const { privateKey, publicKey } =
    type === "ec"
      ? generateKeyPairSync("ec", { namedCurve: curve as string })
      : generateKeyPairSync("ed25519");
  const hash = alg === "ES384" ? "sha384" : alg === "ES256" ? "sha256" : null;
  const key: SignKeyObjectInput =
    type === "ec" ? { key: privateKey, dsaEncoding: "ieee-p1363" } : { key: privateKey };
  return {
    kid,
    publicKey,
    jwk: { ...publicKey.export({ format: "jwk" }), kid, alg, use: "sig" },
    token: (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
      signed({ alg, kid, ...header }, claims, (input) => sign(hash, input, key)),
  };
}

test("jwt plugin: ES256, ES384 and EdDSA through the host's crypto; tampering and algorithm confusion refused", async (t) => {
  const es256 = asymmetric("e1", "ES256", "ec", "P-256");
  const es384 = asymmetric("e2", "ES384", "ec", "P-384");
  const eddsa = asymmetric("d1", "EdDSA", "ed25519");
  const rsa = rsaKey("r1");
  const published = [es256.jwk, es384.jwk, eddsa.jwk, rsa.jwk];
  const { state, call, refused, loaded } = await jwtGateway(
    t,
    () => published,
    `    crypto: true
  - name: jwt-nocrypto
    source: jwt.wasm
    httpAllowHosts: ["JWKS_HOST"]
    config: { jwksUrl: "http://JWKS_HOST/jwks.json" }`,
    "      - { name: nocrypto, match: { path: { prefix: /nocrypto } }, cluster: origin, plugins: [{ name: jwt-nocrypto }] }",
  );
  const now = Math.floor(Date.now() / 1000);
  const good = { sub: "dana", iss: "https://idp.test", aud: "api", exp: now + 600 };
  await loaded(es256.token(good));
  assert.equal(state.seen["x-jwt-sub"], "dana");
  for (const [who, key] of [
    ["erin", es384],
    ["finn", eddsa],
  ] as const) {
    const r = await call(key.token({ ...good, sub: who }));
    assert.equal(r.status, 200, r.body);
    assert.equal(state.seen["x-jwt-sub"], who);
  }
  // Tampered: the claims changed after signing; the signature of another key of the same curve.
  const [h, , s] = es256.token(good).split(".") as [string, string, string];
  await refused(`${h}.${b64(JSON.stringify({ ...good, sub: "admin" }))}.${s}`, /bad signature/);
  const other = asymmetric("e1", "ES256", "ec", "P-256");
  await refused(other.token(good), /bad signature/);
  await refused(eddsa.token({ ...good, exp: now - 3600 }), /token expired/);

  // Algorithm confusion. HS256 "signed" with the ES256 public key (as PEM and as JWK text): the
  // plugin verifies HS256 only with its configured secret, never with a JWKS key.
  for (const material of [
    String(es256.publicKey.export({ format: "pem", type: "spki" })),
    JSON.stringify(es256.jwk),
  ])
    await refused(
      signed({ alg: "HS256", kid: "e1" }, good, (input) =>
        createHmac("sha256", material).update(input).digest(),
      ),
      /bad signature/,
    );
  await refused(
    signed({ alg: "none", kid: "e1" }, good, () => Buffer.alloc(0)),
    /algorithm none is not accepted/,
  );
  // An ES256 header naming the RSA key, an RS256 header naming the EC key, ES384 naming the P-256 key.
  await refused(es256.token(good, { kid: "r1" }), /key \\"r1\\" is not a key for ES256/);
  await refused(
    signed({ alg: "RS256", kid: "e1" }, good, (i) => sign("sha256", i, rsa.privateKey)),
    /is not a key for RS256/,
  );
  await refused(es384.token(good, { kid: "e1" }), /key \\"e1\\" is not a key for ES384/);

  // The same component without the crypto grant cannot verify ES256 (and says so), RS256 still works.
  await refused(es256.token(good), /ES256 cannot be verified/, "/nocrypto");
  assert.equal((await call(rs256(rsa, good), "/nocrypto")).status, 200);
});
