/**
 * `agw config dump` against a real running control plane (agw control-plane, in its own process):
 * the published config in YAML and JSON, no private key or plugin secret in it, the admin token
 * rules of docs/security.md (a remote client needs the token), and a clear error when nothing
 * listens.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { agw, CLI, freePort, get, requireOrSkip, tempDir, waitFor } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const dump = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, "config", "dump", ...args], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, AGW_ADMIN_TOKEN: "" },
  });

/** A non-loopback IPv4 address of this machine: a client from it is remote to the admin. */
const external = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === "IPv4" && !a.internal)?.address;

test("agw config dump prints the running control plane's published config, redacted, in YAML or JSON", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make the TLS secret")) return;
  const dir = tempDir("agw-config-dump-");
  const ca = makeCa(dir, "dump-ca");
  const leaf = makeLeaf(dir, ca, { cn: "site.example", sans: ["DNS:site.example"] });
  const keyLine = leaf.keyPem.split("\n").find((l) => l.length > 40 && !l.startsWith("-----")) ?? "";
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - { name: site, certificate: { file: ${leaf.certFile} }, key: { file: ${leaf.keyFile} } }
listeners:
  - name: secure
    address: 127.0.0.1
    port: ${await freePort()}
    protocol: https
    tls: { certificates: [site] }
    routes:
      - { name: shop, match: { path: { prefix: /shop } }, cluster: shop-backend }
clusters:
  - { name: shop-backend, endpoints: ["127.0.0.1:9"] }
`,
  );
  const admin = await freePort();
  const host = external ?? "127.0.0.1";
  const cp = agw([
    "control-plane",
    "-c",
    file,
    "--xds-listen",
    "127.0.0.1:0",
    "--admin",
    `${host === "127.0.0.1" ? "127.0.0.1" : "0.0.0.0"}:${admin}`,
    "--admin-token",
    "s3cret-token",
  ]);
  t.after(() => cp.stop());
  await waitFor(
    "the control plane ready",
    async () => ((await get(`http://127.0.0.1:${admin}/ready`)).status === 200 ? true : undefined),
    30_000,
  );

  const yaml = dump("--cp-admin", `127.0.0.1:${admin}`);
  assert.equal(yaml.status, 0, yaml.stderr);
  const doc = parse(yaml.stdout);
  assert.deepEqual(Object.keys(doc).slice(0, 2), ["versions", "config"]);
  assert.ok(doc.versions["type.googleapis.com/agw.v1.Listener"], "each xDS type's version");
  assert.equal(doc.config.listeners[0].name, "secure");
  assert.equal(doc.config.listeners[0].routes[0].name, "shop");
  assert.equal(doc.config.clusters[0].name, "shop-backend");
  assert.ok(keyLine.length > 40);
  assert.ok(!yaml.stdout.includes(keyLine), "no private key bytes");
  assert.doesNotMatch(yaml.stdout, /PRIVATE KEY/);

  const json = dump("--cp-admin", `127.0.0.1:${admin}`, "-o", "json");
  assert.equal(json.status, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), doc, "the same dump in JSON");
  assert.equal(dump("-o", "xml", "--cp-admin", `127.0.0.1:${admin}`).status, 2);

  // Nothing listening: one line saying where it looked, exit 1.
  const none = dump("--cp-admin", `127.0.0.1:${await freePort()}`);
  assert.equal(none.status, 1);
  assert.match(
    none.stderr,
    /cannot reach the control plane's admin at http:\/\/127\.0\.0\.1:\d+ .*--cp-admin/,
  );

  // From another address of this machine the client is remote: the token is required.
  if (!external) return t.diagnostic("no non-loopback IPv4 address here: the remote token check is not run");
  const remote = dump("--cp-admin", `${external}:${admin}`);
  assert.equal(remote.status, 1);
  assert.match(remote.stderr, /HTTP 403: remote admin clients must present the admin token .*--admin-token/);
  const wrong = dump("--cp-admin", `${external}:${admin}`, "--admin-token", "guess");
  assert.equal(wrong.status, 1);
  assert.match(wrong.stderr, /the token was refused/);
  const withToken = dump("--cp-admin", `${external}:${admin}`, "--admin-token", "s3cret-token");
  assert.equal(withToken.status, 0, withToken.stderr);
  assert.deepEqual(parse(withToken.stdout).config, doc.config);
});
