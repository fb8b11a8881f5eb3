/**
 * The plugin development loop as a user runs it: `agw plugin new` scaffolds a TypeScript guest and a
 * README whose config.yaml validates, `agw plugin build` makes the component, `agw run` loads it by a
 * path relative to config.yaml, a request shows it ran, an exception's message reaches the log, and a
 * rebuild is picked up by the running gateway (new digest) without a failed request.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { agw, CLI, freePort, get, tempDir, waitFor, warmPluginCache } from "./helpers.ts";

const run = promisify(execFile);

test("agw plugin new → README config validates → build → request → exception logged → rebuild reloads while serving", {
  timeout: 600_000,
}, async (t) => {
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

  // The README's config.yaml, exactly as generated, is valid (it named an undefined cluster before).
  const readme = readFileSync(join(dir, "greeter/README.md"), "utf8");
  const yaml = /```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(yaml, readme);
  const config = join(dir, "config.yaml");
  writeFileSync(config, yaml);
  const validated = await run(process.execPath, [CLI, "validate", "-c", config], { cwd: dir });
  assert.match(validated.stdout, /valid/);

  // The plugin throws on /boom, so the test can see where the exception goes.
  const source = join(dir, "greeter/plugin.ts");
  const original = readFileSync(source, "utf8");
  const withThrow = original.replace(
    "export function onRequest(request: Request) {",
    'export function onRequest(request: Request) {\n  if (request.path === "/boom") throw new Error("boom at " + request.path);',
  );
  assert.notEqual(withThrow, original);
  writeFileSync(source, withThrow);
  const built = await run(process.execPath, [CLI, "plugin", "build", "greeter"], {
    cwd: dir,
    timeout: 300_000,
  });
  assert.match(built.stdout, /checked against the agw:plugin world; wrote greeter\/greeter\.wasm/);
  assert.match(built.stdout, /digest: sha256:[0-9a-f]{64}/);
  assert.ok(existsSync(join(dir, "greeter/greeter.wasm")));
  await warmPluginCache(new Uint8Array(readFileSync(join(dir, "greeter/greeter.wasm"))));

  let seen: http.IncomingHttpHeaders = {};
  const origin = http.createServer((req, res) => {
    seen = req.headers;
    res.end("ok\n");
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const port = await freePort();
  writeFileSync(
    config,
    yaml
      .replace("port: 8080", `port: ${port}`)
      .replace("127.0.0.1:9080", `127.0.0.1:${(origin.address() as AddressInfo).port}`),
  );
  // Started from another directory: the relative source resolves against config.yaml's directory.
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
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    `the gateway serving with its plugin\n${gw.output()}`,
    async () => ((await get(`${url}/hello`).catch(() => undefined))?.status === 200 ? true : undefined),
    120_000,
  );
  assert.equal(seen["x-greeter"], "GET /hello");

  // A guest's exception: the request fails closed, and the message (not only "unreachable") is logged.
  const boom = await get(`${url}/boom`);
  assert.equal(boom.status, 500);
  assert.equal(boom.headers.get("x-agw-error"), "plugin_failed");
  await waitFor(`the exception in the log\n${gw.output()}`, () =>
    /"reason":"Error: boom at \/boom/.test(gw.output()) ? true : undefined,
  );

  // Rebuild with a changed answer while requests keep coming: every one succeeds, and the new build
  // takes over without a restart.
  writeFileSync(
    source,
    // The template literal of the scaffold, as text (the same edit as docs/plugins.md's sed).
    withThrow.replace("`$" + "{request.method}", "`v2 $" + "{request.method}"),
  );
  const statuses = new Map<number, number>();
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const r = await get(`${url}/hello`).catch(() => ({ status: 0 }));
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  try {
    await run(process.execPath, [CLI, "plugin", "build", "greeter"], { cwd: dir, timeout: 300_000 });
    await waitFor(
      `the rebuilt plugin to answer\n${gw.output()}`,
      async () => {
        await get(`${url}/hello`);
        return seen["x-greeter"] === "v2 GET /hello" ? true : undefined;
      },
      300_000,
    );
  } finally {
    polling = false;
    await poller;
  }
  assert.deepEqual(
    [...statuses.keys()],
    [200],
    `statuses during the reload: ${JSON.stringify([...statuses])}`,
  );
  await get(`${url}/elsewhere`);
  assert.equal(seen["x-greeter"], "v2 GET /elsewhere");
});
