/**
 * Metrics of plugins and traffic policies, and endpoint health in /clusters, from a real gateway
 * (control plane + data plane in this process, real sockets, real WebAssembly guests).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { type ControlPlane, startControlPlane } from "@agw/control-plane";
import { type DataPlane, startDataPlane } from "@agw/data-plane";
import { buildWat } from "../plugins/sdk/build.ts";
import { WAT_GUESTS } from "../plugins/testdata/wat-guests.ts";
import { freePort, tempDir, waitFor } from "./helpers.ts";

async function get(port: number, path: string): Promise<{ status: number; body: string; attempts: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text(), attempts: res.headers.get("x-agw-attempts") ?? "" };
}

/** The value of one sample line of a Prometheus text exposition, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] as string).split(",").sort();
    if (JSON.stringify(have) === JSON.stringify(want)) return Number(m[3]);
  }
  return 0;
}

interface ClusterView {
  name: string;
  counters?: Record<string, number>;
  endpoints: Array<{ address: string; health: string }>;
}

test("plugin calls and errors, retries, overflows, ejections and endpoint health: exact counts", async (t) => {
  const dir = tempDir("agw-obs-policies-");
  writeFileSync(join(dir, "add-header.wasm"), await buildWat(WAT_GUESTS.addHeader as string));
  writeFileSync(join(dir, "trap.wasm"), await buildWat(WAT_GUESTS.trap as string));
  const upstream = http.createServer((req, res) => {
    const answer = () => {
      res.statusCode = req.url?.startsWith("/broken") ? 500 : 200;
      res.end("upstream\n");
    };
    if (req.url?.startsWith("/slow")) setTimeout(answer, 300);
    else answer();
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  t.after(() => upstream.close());
  const up = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const deadEndpoint = `127.0.0.1:${await freePort()}`; // nothing listens: its health checks fail
  const port = await freePort();
  const configFile = join(dir, "config.yaml");
  writeFileSync(
    configFile,
    `listeners:
  - name: main
    address: 127.0.0.1
    port: ${port}
    routes:
      - name: broken
        match: { path: { prefix: /broken } }
        cluster: broken
        retry: { retries: 2, retryOn: [5xx], backoffBase: 1ms }
      - { name: slow, match: { path: { prefix: /slow } }, cluster: limited }
      - { name: plugged, match: { path: { prefix: /plugged } }, cluster: checked, plugins: [{ name: add-header }] }
      - { name: trapped, match: { path: { prefix: /trapped } }, cluster: checked, plugins: [{ name: trap }] }
clusters:
  - name: broken
    endpoints: ["${up}"]
    outlierDetection: { consecutive5xx: 3, baseEjectionTime: 1h, maxEjectionPercent: 100 }
  - name: limited
    endpoints: ["${up}"]
    circuitBreakers: { maxRequests: 1 }
  - name: checked
    endpoints: ["${up}", "${deadEndpoint}"]
    healthCheck: { path: /, interval: 100ms, timeout: 200ms, unhealthyThreshold: 1 }
plugins:
  - { name: add-header, source: ${dir}/add-header.wasm }
  - { name: trap, source: ${dir}/trap.wasm }
`,
  );
  const cp: ControlPlane = await startControlPlane({ configFile, xdsLocal: true });
  t.after(() => cp.close());
  const dp: DataPlane = await startDataPlane({
    xds: `${cp.xdsLocal?.target}`,
    nodeId: "obs-policies",
    admin: { host: "127.0.0.1", port: 0 },
  });
  t.after(() => dp.close());
  assert.ok(await dp.ready(20_000), "data plane got its first config");
  const admin = (dp.admin as NonNullable<DataPlane["admin"]>).address.port;
  const clusters = async () => JSON.parse((await get(admin, "/clusters")).body) as ClusterView[];
  await waitFor("the dead endpoint to fail its health check", async () =>
    (await clusters()).find((c) => c.name === "checked")?.endpoints[1]?.health === "unhealthy"
      ? true
      : undefined,
  );

  // One request to a cluster whose only endpoint answers 500: three attempts, then it is ejected.
  const broken = await get(port, "/broken");
  assert.equal(broken.status, 500);
  assert.equal(broken.attempts, "3");
  // Three requests at once where the circuit breaker admits one: two overflow.
  const slow = await Promise.all([1, 2, 3].map(() => get(port, "/slow")));
  assert.deepEqual(slow.map((r) => r.status).sort(), [200, 503, 503]);
  for (let i = 0; i < 4; i++) assert.equal((await get(port, "/plugged")).status, 200);
  for (let i = 0; i < 2; i++) assert.equal((await get(port, "/trapped")).status, 500);

  const stats = (await get(admin, "/stats/prometheus")).body;
  const perCluster = (name: string, cluster: string) => sample(stats, name, { cluster });
  assert.equal(perCluster("agw_upstream_retries_total", "broken"), 2);
  assert.equal(perCluster("agw_upstream_retries_refused_total", "broken"), 0);
  assert.equal(perCluster("agw_outlier_ejections_total", "broken"), 1);
  assert.equal(perCluster("agw_circuit_breaker_overflows_total", "limited"), 2);
  assert.equal(perCluster("agw_circuit_breaker_overflows_total", "broken"), 0);
  assert.equal(perCluster("agw_upstream_requests_active", "limited"), 0);
  const health = (cluster: string, endpoint: string, state: string) =>
    sample(stats, "agw_endpoint_health", { cluster, endpoint, health: state });
  assert.equal(health("broken", up, "ejected"), 1);
  assert.equal(health("limited", up, "unchecked"), 1);
  assert.equal(health("checked", up, "healthy"), 1);
  assert.equal(health("checked", deadEndpoint, "unhealthy"), 1);

  const plugin = (name: string, plugin: string) => sample(stats, name, { plugin });
  assert.equal(plugin("agw_plugin_calls_total", "add-header"), 4);
  assert.equal(plugin("agw_plugin_errors_total", "add-header"), 0);
  assert.equal(plugin("agw_plugin_calls_total", "trap"), 2);
  assert.equal(plugin("agw_plugin_errors_total", "trap"), 2);
  assert.equal(plugin("agw_plugin_timeouts_total", "trap"), 0);
  assert.equal(plugin("agw_plugin_call_duration_seconds_count", "add-header"), 4);
  assert.equal(
    sample(stats, "agw_plugin_call_duration_seconds_bucket", { plugin: "add-header", le: "+Inf" }),
    4,
  );
  assert.ok(plugin("agw_plugin_call_duration_seconds_sum", "add-header") > 0);

  const view = await clusters();
  const byName = (name: string) => view.find((c) => c.name === name) as ClusterView;
  assert.deepEqual(byName("broken").endpoints, [{ address: up, health: "ejected" }]);
  assert.deepEqual(byName("broken").counters, { overflows: 0, retriesRefused: 0, retries: 2, ejections: 1 });
  assert.equal(byName("limited").counters?.overflows, 2);
  assert.deepEqual(byName("checked").endpoints, [
    { address: up, health: "healthy" },
    { address: deadEndpoint, health: "unhealthy" },
  ]);
});
