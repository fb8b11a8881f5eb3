/**
 * A plugin as a user writes one: `agw plugin new` scaffolds a TypeScript guest, `agw plugin build`
 * makes the component, config.yaml loads it by a path relative to itself, and a request shows it ran.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { agw, CLI, freePort, get, tempDir, waitFor } from "./helpers.ts";

const run = promisify(execFile);

test("agw plugin new + build, loaded through config.yaml, observed on a request", async (t) => {
  const dir = tempDir("agw-plugin-cli-");
  const scaffold = await run(process.execPath, [CLI, "plugin", "new", "greeter"], { cwd: dir });
  assert.match(scaffold.stdout, /wrote greeter\/plugin\.ts/);
  assert.match(scaffold.stdout, /next: agw plugin build greeter/);
  const again = await run(process.execPath, [CLI, "plugin", "new", "greeter"], { cwd: dir }).then(
    () => assert.fail("expected a refusal"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(again.code, 2);
  assert.match(again.stderr, /greeter exists and is not empty/);

  const built = await run(process.execPath, [CLI, "plugin", "build", "greeter"], {
    cwd: dir,
    timeout: 120_000,
  });
  assert.match(built.stdout, /checked against the agw:plugin world; wrote greeter\/greeter\.wasm/);
  assert.match(built.stdout, /digest: sha256:[0-9a-f]{64}/);
  assert.ok(existsSync(join(dir, "greeter/greeter.wasm")));

  let seen: http.IncomingHttpHeaders = {};
  const origin = http.createServer((req, res) => {
    seen = req.headers;
    res.end("ok\n");
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const port = await freePort();
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    `plugins:
  - name: greeter
    source: greeter/greeter.wasm
    config: { header: x-greeted }
listeners:
  - name: public
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: hello, match: { path: { prefix: /hello } }, cluster: origin, plugins: [{ name: greeter }] }
      - { name: other, cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${(origin.address() as AddressInfo).port}"]
`,
  );
  // Started from the repository root: the relative source resolves against config.yaml's directory.
  const gw = agw([
    "run",
    "-c",
    config,
    "--xds-listen",
    "127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
    "--cp-admin",
    "127.0.0.1:0",
  ]);
  t.after(() => gw.stop());
  await waitFor(
    `the gateway serving with its plugin\n${gw.output()}`,
    async () =>
      (await get(`http://127.0.0.1:${port}/hello/world`).catch(() => undefined))?.status === 200
        ? true
        : undefined,
    60_000,
  );
  assert.equal(seen["x-greeted"], "GET /hello/world");
  await get(`http://127.0.0.1:${port}/elsewhere`);
  assert.equal(seen["x-greeted"], undefined, "routes without the plugin are untouched");
});
