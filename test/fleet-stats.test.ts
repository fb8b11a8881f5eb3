/**
 * Fleet stats over xDS (agw.v1.StatsService, docs/operability.md): a data plane reports its traffic
 * to the control plane it gets its config from, and follows it to another replica on failover; a
 * hostile reporter (docs/security.md, "Fleet stats") cannot make the control plane keep names the
 * config does not have, send a report past the size bound, or be listened to faster than the interval.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { type ControlPlane, startControlPlane } from "@agw/control-plane";
import { AsyncQueue, createLogger, STATS_LIMITS } from "@agw/core";
import {
  type ReportStatsRequest,
  ReportStatsRequestSchema,
  StatsService,
} from "@agw/core/gen/agw/v1/stats_pb.js";
import { startDataPlane } from "@agw/data-plane";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { freePort, tempDir, waitFor } from "./helpers.ts";

const log = createLogger("fleet-stats-test");

async function upstream(t: { after(fn: () => void): void }): Promise<number> {
  const server = http.createServer((_req, res) => res.end("ok\n"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => server.close());
  return (server.address() as AddressInfo).port;
}

function configFile(port: number, upstreamPort: number): string {
  const file = join(tempDir("agw-fleet-"), "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: shop, match: { path: { prefix: /shop } }, cluster: app }
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstreamPort}]
`,
  );
  return file;
}

function controlPlane(file: string): Promise<ControlPlane> {
  return startControlPlane({
    configFile: file,
    xdsHost: "127.0.0.1",
    xdsPort: 0,
    statsIntervalMs: 1000,
    log,
  });
}

/** Requests seen for the route in the control plane's ring so far. */
function routeRequests(cp: ControlPlane): number {
  const s = cp.fleet.series("route:web/shop");
  return s.rps.reduce((a, b) => a + b, 0) * (s.interval_ms / 1000);
}

test("a data plane reports its traffic to its control plane, and to the next replica after failover", async (t) => {
  const upstreamPort = await upstream(t);
  const port = await freePort();
  const file = configFile(port, upstreamPort);
  const first = await controlPlane(file);
  const second = await controlPlane(file);
  t.after(() => Promise.all([first.close(), second.close()]));
  const dp = await startDataPlane({
    xds: [first.xds?.target ?? "", second.xds?.target ?? ""],
    nodeId: "edge-1",
    log,
  });
  t.after(() => dp.close());
  assert.ok(await dp.ready(10_000));
  const load = async (n: number) => {
    for (let i = 0; i < n; i++) assert.equal((await fetch(`http://127.0.0.1:${port}/shop/${i}`)).status, 200);
  };

  await load(30);
  await waitFor("the first control plane to have the 30 requests", () =>
    routeRequests(first) === 30 ? true : undefined,
  );
  const cluster = first.fleet.series("cluster:app");
  assert.equal(
    cluster.rps.reduce((a, b) => a + b, 0),
    30,
    "per cluster too",
  );
  assert.ok(first.fleet.nodes.has("edge-1"));
  assert.ok(Math.max(...first.fleet.series("route:web/shop").p99_ms) > 0, "latency is reported");

  await first.close();
  await waitFor("the data plane to fail over", () =>
    dp.xds.connected && dp.xds.server.endsWith(String(second.xds?.address.port)) ? true : undefined,
  );
  await load(20);
  await waitFor("the second control plane to have the 20 requests", () =>
    routeRequests(second) === 20 ? true : undefined,
  );
});

test("a hostile stats reporter: unknown names, oversized reports and floods are bounded", async (t) => {
  const upstreamPort = await upstream(t);
  const cp = await controlPlane(configFile(await freePort(), upstreamPort));
  t.after(() => cp.close());
  const transport = createGrpcTransport({ baseUrl: `http://${cp.xds?.target}` });
  const client = createClient(StatsService, transport);
  const report = (init: MessageInitShape<typeof ReportStatsRequestSchema>) =>
    create(ReportStatsRequestSchema, init);

  // 1,000 invented routes, clusters and endpoints: nothing of them is kept; the known route is.
  const outbound = new AsyncQueue<ReportStatsRequest>();
  const responses = client.reportStats(outbound)[Symbol.asyncIterator]();
  outbound.push(report({ nodeId: "intruder" }));
  assert.equal((await responses.next()).value?.intervalMs, 1000);
  const invented = Array.from({ length: 1000 }, (_, i) => i);
  outbound.push(
    report({
      intervalMs: 1000,
      routes: [
        ...invented.map((i) => ({ listener: "web", route: `evil-${i}`, requests: [0, 5] })),
        { listener: "web", route: "shop", requests: [0, 7] },
      ],
      clusters: invented.map((i) => ({
        cluster: `evil-${i}`,
        requests: [0, 1],
        endpoints: [{ address: `10.0.0.${i % 250}:80`, health: 3 }],
      })),
      healthComplete: true,
    }),
  );
  // A flood: reports faster than half the interval are not listened to.
  const flood = 200;
  const floodStart = Date.now();
  for (let i = 0; i < flood; i++)
    outbound.push(
      report({ intervalMs: 1000, routes: [{ listener: "web", route: "shop", requests: [0, 1000] }] }),
    );
  await waitFor("the report to be taken", () => (cp.fleet.nodes.get("intruder")?.reports ? true : undefined));
  await waitFor("the slot to close", () => (routeRequests(cp) > 0 ? true : undefined), 5_000);
  // The reports it took: the first, then at most one per half interval while the flood was read.
  const node = cp.fleet.nodes.get("intruder");
  const reports = node?.reports ?? 0;
  const allowed = 1 + Math.ceil((Date.now() - floodStart) / 500);
  assert.ok(reports >= 1 && reports <= Math.min(allowed, 10), `${reports} reports taken of ${flood + 1}`);
  assert.ok((node?.dropped ?? 0) >= 2000, "invented routes and clusters are dropped");
  assert.equal(node?.health.size, 0, "no health for endpoints the config does not have");
  await waitFor("every taken report in the ring", () =>
    routeRequests(cp) === 7 + 1000 * (reports - 1) ? true : undefined,
  );
  for (const key of [...cp.fleet.rows("route:"), ...cp.fleet.rows("cluster:")].map((r) => r.key))
    assert.ok(!key.includes("evil"), key);
  outbound.close();

  // A report past the size bound ends the stream.
  const big = new AsyncQueue<ReportStatsRequest>();
  big.push(report({ nodeId: "intruder-2" }));
  big.push(
    report({
      routes: Array.from({ length: STATS_LIMITS.reportBytes / 64 }, (_, i) => ({
        listener: "web",
        route: `${"x".repeat(60)}${i}`,
      })),
    }),
  );
  await assert.rejects(
    async () => {
      for await (const _ of client.reportStats(big)) {
        /* the interval */
      }
    },
    (e: unknown) => e instanceof ConnectError && e.code === Code.ResourceExhausted,
  );
  big.close();
});
