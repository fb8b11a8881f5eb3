/**
 * Redaction in every dump (docs/security.md): a plugin's config, its Redis URL's password and a TLS
 * private key never appear in the control plane's /config_dump, the data plane's /config_dump, the
 * dashboard's state or the log lines of either — all of them go through the one `redact`.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { startControlPlane } from "@agw/control-plane";
import { createLogger } from "@agw/core";
import { startDataPlane } from "@agw/data-plane";
import { buildWat } from "../plugins/sdk/build.ts";
import { WAT_GUESTS } from "../plugins/testdata/wat-guests.ts";
import { freePort, requireOrSkip, tempDir, waitFor } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const SECRETS = ["hunter2", "sk-live-4242", "route-token-77", "user-pass-99"];

test("plugin configs, URL credentials and private keys are redacted in every dump and log", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make the TLS secret")) return;
  const dir = tempDir("agw-redaction-");
  writeFileSync(join(dir, "add-header.wasm"), await buildWat(WAT_GUESTS.addHeader as string));
  const ca = makeCa(dir, "site-ca");
  const leaf = makeLeaf(dir, ca, { cn: "site.example", sans: ["DNS:site.example"] });
  const keyLines = leaf.keyPem.split("\n").filter((l) => l && !l.startsWith("-----"));
  const configFile = join(dir, "config.yaml");
  writeFileSync(
    configFile,
    `secrets:
  - { name: site, certificate: { file: ${leaf.certFile} }, key: { file: ${leaf.keyFile} } }
plugins:
  - name: add-header
    source: ${dir}/add-header.wasm
    redis: "redis://:hunter2@127.0.0.1:${await freePort()}/0"
    config: { apiKey: sk-live-4242, upstream: "https://svc:user-pass-99@auth.example/check" }
listeners:
  - name: secure
    address: 127.0.0.1
    port: ${await freePort()}
    protocol: https
    tls: { certificates: [site] }
    routes:
      - name: plugged
        cluster: up
        plugins: [{ name: add-header, config: { token: route-token-77 } }]
clusters:
  - { name: up, endpoints: ["127.0.0.1:9"] }
`,
  );
  let logs = "";
  const capture = (component: string) =>
    createLogger(component, {
      write: (line: string) => {
        logs += line;
        return true;
      },
    } as unknown as NodeJS.WritableStream);
  const cp = await startControlPlane({
    configFile,
    xdsLocal: true,
    admin: { host: "127.0.0.1", port: 0 },
    log: capture("control-plane"),
  });
  t.after(() => cp.close());
  const dp = await startDataPlane({
    xds: `${cp.xdsLocal?.target}`,
    nodeId: "redaction",
    admin: { host: "127.0.0.1", port: 0 },
    log: capture("data-plane"),
  });
  t.after(() => dp.close());
  assert.ok(await dp.ready(30_000), "the data plane took the config (key, plugin and all)");
  // Something to redact in the logs too: the same URL logged as a field and inside a message.
  const redisUrl = "redis://:hunter2@127.0.0.1:6379/0";
  capture("test").warn({ url: redisUrl, err: new Error(`cannot reach ${redisUrl}`) }, `retrying ${redisUrl}`);

  const read = async (port: number | undefined, path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    assert.equal(res.status, 200, path);
    return res.text();
  };
  const dumps = {
    "control plane /config_dump": await read(cp.admin?.address.port, "/config_dump"),
    "dashboard state": await read(cp.admin?.address.port, "/dashboard/state"),
    "data plane /config_dump": await waitFor("the plugin in the data plane's dump", async () => {
      const body = await read(dp.admin?.address.port, "/config_dump");
      return body.includes("add-header") ? body : undefined;
    }),
    logs,
  };
  for (const [where, text] of Object.entries(dumps)) {
    for (const secret of SECRETS) assert.ok(!text.includes(secret), `${where} shows ${secret}`);
    for (const line of keyLines) assert.ok(!text.includes(line), `${where} shows a line of the private key`);
    assert.doesNotMatch(text, /PRIVATE KEY/, where);
  }
  // What is kept: names and shapes, and URLs without their credentials.
  assert.match(dumps["control plane /config_dump"], /redis:\/\/:\[redacted\]@127\.0\.0\.1/);
  assert.match(dumps["data plane /config_dump"], /redis:\/\/:\[redacted\]@127\.0\.0\.1/);
  assert.match(dumps["data plane /config_dump"], /"apiKey":\s*"\[redacted\]"/);
  assert.match(dumps["data plane /config_dump"], /"token":\s*"\[redacted\]"/);
  assert.match(dumps.logs, /retrying redis:\/\/:\[redacted\]@127\.0\.0\.1:6379/);
});
