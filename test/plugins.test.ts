/**
 * WebAssembly component plugins end to end: config.yaml → control plane → xDS → two data planes that
 * load the components, with a real redis-server the tests start. Hostile guests (trap, endless loop,
 * unbounded memory), api-key, and the Redis rate limiter exact across both data planes.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import type http from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { buildJs, buildWat } from "../plugins/sdk/build.ts";
import { WAT_GUESTS } from "../plugins/testdata/wat-guests.ts";
import {
  agw,
  freePort,
  killAndWait,
  type Proc,
  ROOT,
  requireOrSkip,
  startHeaderEcho,
  startRedisServer,
  tempDir,
  waitFor,
  warmPluginCache,
} from "./helpers.ts";

function hasCommand(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const HAVE_REDIS = hasCommand("redis-server");

interface Redis {
  port: number;
  child: ChildProcess;
}

async function startRedis(port: number): Promise<Redis> {
  return { port, child: await startRedisServer(port) };
}

async function request(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

const dir = tempDir("agw-plugins-");
let origin: http.Server;
let originPort = 0;

before(async () => {
  // The origin answers with the headers it received, so tests see what plugins changed.
  ({ server: origin, port: originPort } = await startHeaderEcho());
  for (const [name, wat] of Object.entries(WAT_GUESTS))
    writeFileSync(join(dir, `${name}.wasm`), await buildWat(wat));
  for (const name of ["api-key", "rate-limit"]) {
    const source = readFileSync(join(ROOT, "plugins", name, "plugin.ts"), "utf8");
    const bytes = await buildJs(source, true);
    writeFileSync(join(dir, `${name}.wasm`), bytes);
    await warmPluginCache(bytes);
  }
});

after(() => origin.close());

interface Gateway {
  urls: string[];
  procs: Proc[];
  output(): string;
}

/** One control plane and `dataPlanes` data planes (on 127.0.0.2, .3, ...) serving `yaml`. */
async function startGateway(yaml: (port: number) => string, dataPlanes: number): Promise<Gateway> {
  const port = await freePort();
  const file = join(dir, `config-${port}.yaml`);
  writeFileSync(file, yaml(port));
  const xdsPort = await freePort();
  const procs: Proc[] = [
    agw(["control-plane", "-c", file, "--xds-listen", `127.0.0.1:${xdsPort}`, "--admin", "127.0.0.1:0"]),
  ];
  const urls: string[] = [];
  for (let i = 0; i < dataPlanes; i++) {
    const bind = `127.0.0.${i + 2}`;
    procs.push(
      agw([
        "data-plane",
        "--xds",
        `127.0.0.1:${xdsPort}`,
        "--node-id",
        `plugins-${port}-${i}`,
        "--admin",
        "127.0.0.1:0",
        "--bind-address",
        bind,
      ]),
    );
    urls.push(`http://${bind}:${port}`);
  }
  const output = () => procs.map((p) => p.output()).join("\n");
  for (const url of urls)
    await waitFor(
      `${url} to serve with its plugins\n${output()}`,
      async () => ((await request(`${url}/plain`)).status === 200 ? true : undefined),
      60_000,
    );
  return { urls, procs, output };
}

const stopAll = (g: Gateway) => Promise.all(g.procs.map((p) => p.stop()));

test("hostile guests get the route's failure response; the gateway and other routes carry on", async (t) => {
  const g = await startGateway(
    (port) => `
listeners:
  - name: public
    port: ${port}
    routes:
      - { name: plain, match: { path: { prefix: /plain } }, cluster: origin }
      - { name: header, match: { path: { prefix: /header } }, cluster: origin, plugins: [{ name: add-header }] }
      - { name: trap, match: { path: { prefix: /trap } }, cluster: origin, plugins: [{ name: trap }] }
      - { name: crash, match: { path: { prefix: /c } }, cluster: origin, plugins: [{ name: crash }] }
      - { name: spin, match: { path: { prefix: /s } }, cluster: origin, plugins: [{ name: spin }] }
      - { name: grow, match: { path: { prefix: /grow } }, cluster: origin, plugins: [{ name: grow }] }
      - { name: open, match: { path: { prefix: /open } }, cluster: origin, plugins: [{ name: trap-open }] }
clusters:
  - { name: origin, endpoints: ["127.0.0.1:${originPort}"] }
plugins:
  - { name: add-header, source: ${dir}/addHeader.wasm }
  - { name: trap, source: ${dir}/trap.wasm, failureStatus: 503 }
  - { name: crash, source: ${dir}/trapOnSixBytePath.wasm }
  - { name: spin, source: ${dir}/loopOnSixBytePath.wasm, fuel: 5000000 }
  - { name: grow, source: ${dir}/growMemory.wasm, memoryLimit: 8388608 }
  - { name: trap-open, source: ${dir}/trap.wasm, failOpen: true }
`,
    1,
  );
  t.after(() => stopAll(g));
  const url = g.urls[0] as string;

  const header = await request(`${url}/header`);
  assert.equal(header.status, 200);
  assert.equal(JSON.parse(header.body).headers["x-wat"], "1", "the guest's header reaches the upstream");

  for (let i = 0; i < 3; i++) {
    const trap = await request(`${url}/trap`);
    assert.equal(trap.status, 503, "the configured failure status");
    assert.equal(trap.headers.get("x-agw-error"), "plugin_failed");
    const grow = await request(`${url}/grow`);
    assert.equal(grow.status, 500);
    assert.equal(grow.headers.get("x-agw-error"), "plugin_failed");
    // A trap or a runaway loop kills only its instance: the next call runs on a fresh one.
    assert.equal((await request(`${url}/c/abc`)).status, 500);
    assert.equal((await request(`${url}/c`)).status, 200, "a trapped instance is replaced");
    assert.equal((await request(`${url}/s/abc`)).status, 500, "an endless loop is stopped");
    assert.equal((await request(`${url}/s`)).status, 200, "a looping instance is replaced");
    assert.equal((await request(`${url}/plain`)).status, 200, "routes without plugins are unaffected");
    assert.equal((await request(`${url}/header`)).status, 200, "other plugins are unaffected");
    const open = await request(`${url}/open`);
    assert.equal(open.status, 200, "a fail-open plugin lets the request through");
  }
});

test("api-key: a known key passes (and is not forwarded), others get 401", async (t) => {
  const g = await startGateway(
    (port) => `
listeners:
  - name: public
    port: ${port}
    routes:
      - { name: plain, match: { path: { prefix: /plain } }, cluster: origin }
      - name: api
        match: { path: { prefix: /api } }
        cluster: origin
        plugins: [{ name: api-key, config: { keys: [k-123, k-456] } }]
clusters:
  - { name: origin, endpoints: ["127.0.0.1:${originPort}"] }
plugins:
  - { name: api-key, source: ${dir}/api-key.wasm }
`,
    1,
  );
  t.after(() => stopAll(g));
  const url = g.urls[0] as string;
  const missing = await request(`${url}/api`);
  assert.equal(missing.status, 401);
  assert.match(missing.body, /invalid_api_key/);
  assert.equal((await request(`${url}/api`, { "x-api-key": "wrong" })).status, 401);
  const ok = await request(`${url}/api`, { "x-api-key": "k-456" });
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).headers["x-api-key"], undefined, "the key is not sent upstream");
});

test("rate-limit in Redis: exact across two data planes, window resets, fail-open/closed while Redis is down", async (t) => {
  if (!requireOrSkip(t, HAVE_REDIS, "redis-server not installed (Debian package redis-server)")) return;
  const redisPort = await freePort();
  let redis = await startRedis(redisPort);
  const limit = 5;
  const windowMs = 1500;
  const g = await startGateway(
    (port) => `
listeners:
  - name: public
    port: ${port}
    routes:
      - { name: plain, match: { path: { prefix: /plain } }, cluster: origin }
      - name: limited
        match: { path: { prefix: /limited } }
        cluster: origin
        plugins: [{ name: rate-limit, config: { limit: ${limit}, windowMs: ${windowMs}, key: "header:x-client" } }]
      - name: open
        match: { path: { prefix: /open } }
        cluster: origin
        plugins: [{ name: rate-limit, config: { limit: 1000, windowMs: 60000, onRedisError: open } }]
clusters:
  - { name: origin, endpoints: ["127.0.0.1:${originPort}"] }
plugins:
  - { name: rate-limit, source: ${dir}/rate-limit.wasm, redis: "redis://127.0.0.1:${redisPort}" }
`,
    2,
  );
  t.after(async () => {
    await stopAll(g);
    await killAndWait(redis.child);
  });
  const [a, b] = g.urls as [string, string];

  const burst = async (client: string) => {
    const statuses: number[] = [];
    for (let i = 0; i < limit + 1; i++)
      statuses.push((await request(`${i % 2 ? b : a}/limited`, { "x-client": client })).status);
    return statuses;
  };
  // Alternating data planes: the count is shared, so exactly `limit` pass.
  assert.deepEqual(await burst("c1"), [...Array(limit).fill(200), 429]);
  const rejected = await request(`${a}/limited`, { "x-client": "c1" });
  assert.equal(rejected.status, 429);
  assert.ok(Number(rejected.headers.get("retry-after")) >= 1);
  assert.equal(rejected.headers.get("ratelimit-limit"), String(limit));
  assert.equal(rejected.headers.get("ratelimit-remaining"), "0");
  assert.equal((await request(`${b}/limited`, { "x-client": "c2" })).status, 200, "keys are counted apart");

  // The window resets: the key expires in Redis and the count starts again.
  await waitFor("the window to reset", async () =>
    (await request(`${b}/limited`, { "x-client": "c1" })).status === 200 ? true : undefined,
  );

  // Redis down: the closed route answers 503, the open one lets requests through.
  await killAndWait(redis.child);
  await waitFor("fail closed while Redis is down", async () =>
    (await request(`${a}/limited`, { "x-client": "c3" })).status === 503 ? true : undefined,
  );
  assert.equal((await request(`${b}/limited`, { "x-client": "c3" })).status, 503);
  assert.equal((await request(`${a}/open`)).status, 200);
  assert.equal((await request(`${a}/plain`)).status, 200);

  // Redis back: both data planes reconnect and count again.
  redis = await startRedis(redisPort);
  for (const url of [a, b])
    await waitFor(`${url} to use Redis again`, async () =>
      (await request(`${url}/limited`, { "x-client": `back-${url}` })).status === 200 ? true : undefined,
    );
  assert.deepEqual(await burst("c4"), [...Array(limit).fill(200), 429]);
});
