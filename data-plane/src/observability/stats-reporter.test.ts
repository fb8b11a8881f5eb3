/**
 * The fleet stats report: deltas since the previous report, idle routes left out, endpoint health
 * only when it changed, the per-report bounds, and its size at 10,000 routes (bench/RESULTS.md
 * records the figure; `node bench/stats-stream.ts` prints it).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger, LATENCY_BOUNDS } from "@agw/core";
import { ReportStatsRequestSchema } from "@agw/core/gen/agw/v1/stats_pb.js";
import { toBinary } from "@bufbuild/protobuf";
import type { StatsCounts } from "./metrics.ts";
import { StatsReporter } from "./stats-reporter.ts";

const log = createLogger("stats-reporter-test");

/** `routes` routes whose every request so far is `n` 2xx answers in the 1–2.5 ms bucket. */
export function countsOf(routes: number, n: number): StatsCounts {
  const latency = new Array<number>(LATENCY_BOUNDS.length + 1).fill(0);
  latency[2] = n;
  return {
    routes: Array.from({ length: routes }, (_, i) => ({
      listener: "public",
      route: `route-${i}`,
      requests: [0, n, 0, 0, 0, 0],
      latency: [...latency],
    })),
    clusters: Array.from({ length: routes }, (_, i) => ({
      cluster: `cluster-${i}`,
      requests: [0, n, 0, 0, 0, 0],
      latency: [...latency],
    })),
  };
}

test("a report carries what changed since the previous one, and health only when it changed", async () => {
  let counts = countsOf(3, 5);
  let health: [string, [string, "healthy" | "ejected"][]][] = [["cluster-0", [["10.0.0.1:80", "healthy"]]]];
  const reporter = new StatsReporter({
    nodeId: "n",
    log,
    counts: async () => [counts],
    health: () => health,
  });
  const first = await reporter.report();
  assert.equal(first.routes.length, 3);
  assert.deepEqual(first.routes[0]?.requests, [0, 5, 0, 0, 0, 0]);
  assert.equal(first.healthComplete, true);
  assert.equal(first.clusters.find((c) => c.cluster === "cluster-0")?.endpoints[0]?.health, 1);

  // Route 1 gets 2 more requests; the others none: only route 1 is sent, with 2.
  counts = countsOf(3, 5);
  (counts.routes[1] as StatsCounts["routes"][number]).requests[1] = 7;
  const second = await reporter.report();
  assert.deepEqual(
    second.routes.map((r) => [r.route, r.requests[1]]),
    [["route-1", 2]],
  );
  assert.equal(second.healthComplete, false);
  assert.equal(second.clusters.length, 0);

  health = [["cluster-0", [["10.0.0.1:80", "ejected"]]]];
  const third = await reporter.report();
  assert.equal(third.healthComplete, true);
  assert.equal(third.clusters[0]?.endpoints[0]?.health, 3);
});

test("a report stops at its bounds and says how much it left out", async () => {
  const reporter = new StatsReporter({
    nodeId: "n",
    log,
    counts: async () => [countsOf(10, 1)],
    health: () => [],
    limits: { routes: 4, clusters: 2, endpoints: 1 },
  });
  const report = await reporter.report();
  assert.equal(report.routes.length, 4);
  assert.equal(report.clusters.length, 2);
  assert.equal(report.dropped, 6 + 8);
});

test("bytes per interval at 10,000 routes (and 10,000 clusters), every one of them busy", async () => {
  let n = 1000;
  const reporter = new StatsReporter({
    nodeId: "n",
    log,
    counts: async () => [countsOf(10_000, n)],
    health: () => [],
  });
  await reporter.report();
  n += 250;
  const bytes = toBinary(ReportStatsRequestSchema, await reporter.report()).length;
  // 10,000 × (route name + 6 classes + 16 buckets) and as many clusters: about 680 KB (measured
  // 2026-12-03; a deterministic count). An idle gateway sends a few bytes.
  assert.ok(bytes < 1_000_000, `${bytes} bytes`);
  console.log(`fleet stats report, 10,000 busy routes + 10,000 busy clusters: ${bytes} bytes`);
});
