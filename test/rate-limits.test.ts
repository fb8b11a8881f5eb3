/**
 * Local rate limits end to end (docs/traffic/rate-limits.md): `agw run --workers 2` and curl over
 * HTTP/1.1, h2c and h2 over TLS; the limit holds across both worker threads; RateLimit-Policy,
 * RateLimit, 429 and Retry-After; a header-keyed limit; a route without a limit carries none of it.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { curl, hasCurl, type Ports, PROTOCOLS, tlsFiles } from "./curl.ts";
import { CLI, freePort, plainAndTlsConfig, requireOrSkip, startGateway, tempDir } from "./helpers.ts";

const run = promisify(execFile);

let ports: Ports | undefined;
let adminPort = 0;
const cleanup: Array<() => unknown> = [];

before(async () => {
  const dir = tempDir("agw-rate-limits-");
  const files = tlsFiles(dir);
  if (files === null || !(await hasCurl())) return;
  const origin = http.createServer((_req, res) => res.end("ok"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => origin.close());
  const plain = await freePort();
  const tls = await freePort();
  const routes = `
      - name: three
        match: { path: { prefix: /three } }
        cluster: origin
        rateLimit: { limits: [{ name: route, requests: 3, per: 1h }] }
      - name: keyed
        match: { path: { prefix: /keyed } }
        cluster: origin
        rateLimit:
          limits:
            - { name: per-key, key: [clientAddress, { header: x-api-key }], requests: 2, per: 1h }
      - name: global
        match: { path: { prefix: /global } }
        cluster: origin
        rateLimit: { limits: [{ name: global, requests: 20, per: 1h }] }
      - name: quiet
        match: { path: { prefix: /quiet } }
        cluster: origin
        rateLimit: { headers: false, limits: [{ requests: 1, per: 1h }] }
      - name: open
        match: { path: { prefix: / } }
        cluster: origin`;
  const file = plainAndTlsConfig(dir, { plain, tls, origin: (origin.address() as AddressInfo).port }, routes);
  const gw = await startGateway(file, ["--workers", "2"]);
  cleanup.push(() => gw.proc.stop());
  adminPort = gw.adminPort;
  ports = { plain, tls, caFile: files.caFile };
});

after(async () => {
  for (const c of cleanup) await c();
});

function ready(t: { skip(m: string): void }): Ports | undefined {
  const ok = requireOrSkip(
    t as Parameters<typeof requireOrSkip>[0],
    ports !== undefined,
    "openssl and a curl with HTTP/2 are needed",
  );
  return ok ? ports : undefined;
}

test("a route's limit: 3 requests pass with RateLimit fields, the 4th gets 429 with Retry-After, on every protocol", async (t) => {
  const p = ready(t);
  if (p === undefined) return;
  // h2c and HTTP/1.1 share the plain listener's route, so each protocol gets its own listener's
  // bucket only for h2; the plain one is split: HTTP/1.1 takes 3, h2c finds it empty.
  const seen: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await curl("http/1.1", p, "/three");
    assert.equal(r.status, 200);
    assert.equal(r.headers["ratelimit-policy"], '"route";q=3;w=3600');
    assert.match(r.headers.ratelimit ?? "", new RegExp(`^"route";r=${2 - i};t=\\d+$`));
    seen.push(r.headers.ratelimit ?? "");
  }
  for (const protocol of ["http/1.1", "h2c"] as const) {
    const r = await curl(protocol, p, "/three");
    assert.equal(r.status, 429, protocol);
    assert.equal(r.version, protocol === "h2c" ? "2" : "1.1");
    assert.equal(r.headers["x-agw-error"], "rate_limited");
    assert.match(r.headers["retry-after"] ?? "", /^\d+$/);
    // One token an hour: the wait is about 20 minutes (1200 s), never 0.
    const wait = Number(r.headers["retry-after"]);
    assert.ok(wait > 1000 && wait <= 1200, `retry-after ${wait}`);
    assert.equal(r.headers.ratelimit, `"route";r=0;t=${wait}`);
  }
  for (let i = 0; i < 3; i++) assert.equal((await curl("h2", p, "/three")).status, 200);
  const refused = await curl("h2", p, "/three");
  assert.equal(refused.version, "2");
  assert.equal(refused.status, 429);
  assert.ok(refused.headers["retry-after"]);
});

test("a limit keyed by a header: each key has its own bucket; no header is one shared bucket", async (t) => {
  const p = ready(t);
  if (p === undefined) return;
  for (const protocol of PROTOCOLS) {
    const key = ["-H", `x-api-key: ${protocol}-a`];
    assert.equal((await curl(protocol, p, "/keyed", key)).status, 200);
    assert.equal((await curl(protocol, p, "/keyed", key)).status, 200);
    assert.equal((await curl(protocol, p, "/keyed", key)).status, 429, `${protocol}: third with key a`);
    const other = await curl(protocol, p, "/keyed", ["-H", `x-api-key: ${protocol}-b`]);
    assert.equal(other.status, 200, `${protocol}: key b has its own bucket`);
  }
  // Without the header: one bucket for all such requests (not unlimited).
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push((await curl("http/1.1", p, "/keyed")).status);
  assert.deepEqual(statuses, [200, 200, 429]);
});

test("--workers 2: 60 concurrent requests on fresh connections get exactly the limit's 20, from both workers", async (t) => {
  const p = ready(t);
  if (p === undefined) return;
  const before = (await (await fetch(`http://127.0.0.1:${adminPort}/workers`)).json()) as Array<{
    accepted: number;
  }>;
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.get(
        { host: "127.0.0.1", port: p.plain, path: "/global", agent: false, timeout: 20_000 },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
    });
  const statuses = await Promise.all(Array.from({ length: 60 }, one));
  const ok = statuses.filter((s) => s === 200).length;
  const refused = statuses.filter((s) => s === 429).length;
  assert.equal(ok, 20, `200s: ${ok}, 429s: ${refused}`);
  assert.equal(refused, 40);
  const afterRows = (await (await fetch(`http://127.0.0.1:${adminPort}/workers`)).json()) as Array<{
    accepted: number;
  }>;
  const served = afterRows.map((w, i) => w.accepted - (before[i]?.accepted ?? 0));
  // Both threads took connections (the kernel spreads them): with per-thread buckets this would be 40.
  assert.equal(served.length, 2);
  assert.ok(
    served.every((n) => n > 0),
    `connections per worker ${served.join(", ")}`,
  );
  // The decisions, summed over both threads.
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/stats/prometheus`)).text();
  assert.match(metrics, /agw_rate_limit_decisions_total\{route="plain\/global",decision="admitted"\} 20\n/);
  assert.match(metrics, /agw_rate_limit_decisions_total\{route="plain\/global",decision="refused"\} 40\n/);
});

test("headers: false keeps RateLimit fields off, but not Retry-After; a route without a limit has none", async (t) => {
  const p = ready(t);
  if (p === undefined) return;
  const first = await curl("h2c", p, "/quiet");
  assert.equal(first.status, 200);
  assert.equal(first.headers.ratelimit, undefined);
  const second = await curl("h2c", p, "/quiet");
  assert.equal(second.status, 429);
  assert.equal(second.headers["ratelimit-policy"], undefined);
  assert.ok(second.headers["retry-after"]);
  for (let i = 0; i < 5; i++) {
    const r = await curl("http/1.1", p, "/open");
    assert.equal(r.status, 200);
    assert.equal(r.headers.ratelimit, undefined);
    assert.equal(r.headers["retry-after"], undefined);
  }
  // A 429 on a keep-alive connection does not leak its fields into the next answer on it.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const on = (path: string) =>
    new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.get({ host: "127.0.0.1", port: p.plain, path, agent }, (res) => {
        res.resume();
        res.on("end", () => resolve(res));
      });
      req.on("error", reject);
    });
  const limited = await on("/three");
  assert.equal(limited.statusCode, 429);
  const next = await on("/open");
  assert.equal(next.statusCode, 200);
  assert.equal(next.headers["retry-after"], undefined);
  assert.equal(next.headers.ratelimit, undefined);
  agent.destroy();
});

test("agw validate names a bad rate limit with its file and line", async () => {
  const file = join(tempDir("agw-rate-limits-validate-"), "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: web
    port: 8080
    routes:
      - name: api
        cluster: origin
        rateLimit:
          limits:
            - { name: a, requests: 10, per: 0s }
            - { name: a, requests: 0, per: 1s, key: [clientAdress] }
clusters:
  - { name: origin, endpoints: ["127.0.0.1:9"] }
`,
  );
  const failure = await run(process.execPath, [CLI, "validate", "-c", file]).then(
    () => assert.fail("expected exit 1"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(failure.code, 1);
  const at = (line: number, path: string) =>
    new RegExp(`${file}:${line} ${path.replace(/[[\].]/g, "\\$&")}: `);
  assert.match(failure.stderr, at(9, "listeners[0].routes[0].rateLimit.limits[0].per"));
  assert.match(failure.stderr, at(10, "listeners[0].routes[0].rateLimit.limits[1].requests"));
  assert.match(failure.stderr, at(10, "listeners[0].routes[0].rateLimit.limits[1].key[0]"));
  assert.match(failure.stderr, /key\[0\]: expected "clientAddress", "route" or \{header: NAME\}/);
});
