/**
 * Building a large config does not stall serving (docs/security.md, "Config input"): while `agw run`
 * loads, translates, encodes, decodes and compiles a 20,000-route config.yaml written over its small
 * one, requests proxied on the same process keep answering, and the new config ends up live. Before,
 * the whole build ran in one go on the event loop that proxies: requests waited 6.6 s (11.8 s on a
 * busy machine).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { freePort, startGateway, tempDir } from "./helpers.ts";

const ROUTES = 20_000;
/** Generous for a busy 2-core machine (measured: 0.8–1.2 s at load average 22–27; 11.8 s before). */
const BOUND_MS = 2_000;

function config(port: number, originPort: number, routes: number): string {
  const lines: string[] = [];
  // The last route answers 204 itself: when it does, the new config is live.
  for (let i = 0; i < routes; i++)
    lines.push(
      `      - { name: r${i}, match: { path: { prefix: /svc${i}/v1 } }, ${
        i === routes - 1 ? "directResponse: { status: 204 }" : "cluster: origin"
      } }`,
    );
  return `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
${lines.join("\n")}
      - { name: rest, cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`;
}

function get(agent: http.Agent, port: number, path: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent, timeout: 60_000 }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
    });
    req.on("timeout", () => req.destroy(new Error(`${path}: no answer in 60 s`)));
    req.on("error", reject);
  });
}

test("a 20,000-route config is built while proxied requests keep answering", {
  timeout: 300_000,
}, async (t) => {
  const origin = http.createServer((_req, res) => res.end("origin"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => origin.close(() => resolve())));
  const originPort = (origin.address() as AddressInfo).port;
  const port = await freePort();
  const file = join(tempDir(), "config.yaml");
  writeFileSync(file, config(port, originPort, 1));
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());
  const traffic = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const probes = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => {
    traffic.destroy();
    probes.destroy();
  });
  assert.equal((await get(traffic, port, "/x")).status, 200);

  const latencies: number[] = [];
  const statuses: number[] = [];
  let done = false;
  const loop = (async () => {
    while (!done) {
      const r = await get(traffic, port, "/x");
      latencies.push(r.ms);
      statuses.push(r.status);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();

  const written = performance.now();
  writeFileSync(file, config(port, originPort, ROUTES));
  let liveMs = 0;
  while (liveMs === 0) {
    if ((await get(probes, port, `/svc${ROUTES - 1}/v1`)).status === 204)
      liveMs = performance.now() - written;
    else if (performance.now() - written > 240_000) break;
    else await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  done = true;
  await loop;

  assert.ok(liveMs > 0, `the ${ROUTES}-route config went live (${gw.proc.output().slice(-2000)})`);
  const max = Math.max(...latencies);
  t.diagnostic(
    `live after ${liveMs.toFixed(0)} ms; ${latencies.length} requests, slowest ${max.toFixed(0)} ms`,
  );
  assert.ok(latencies.length > 20, `requests kept flowing during the build (${latencies.length})`);
  assert.ok(max < BOUND_MS, `the slowest request took ${max.toFixed(0)} ms while the config was built`);
  // A stalled event loop also fires the route's upstream timeout: 504s. None here.
  assert.deepEqual(
    statuses.filter((s) => s !== 200),
    [],
    "every request was answered by the origin, under the old config or the new one",
  );
});
