/**
 * What the fleet stats stream costs per request, measured in process so the machine's load cannot
 * drown it (wall-clock A/B rounds of whole gateways on this machine differ by up to 28%):
 *
 * 1. Per request: the code the engine runs per finished exchange to keep the counts the stream
 *    reads (DataPlaneMetrics.record: status class and latency bucket per route and cluster). The
 *    reporter adds no code of its own there: the A/B times the same calls with a StatsReporter
 *    reading those counts and without one, alternating, many calls per round, medians.
 * 2. Per interval: reading the counts (DataPlaneMetrics.counts), building the report (deltas since the
 *    last one) and encoding it (toBinary), at 10,000 routes and 10,000 clusters every one of which had
 *    traffic in the interval (the worst case: idle routes cost nothing). The stream write of the
 *    encoded bytes on the xDS connection's HTTP/2 stream is not included.
 *
 * Both are CPU time of this process (process.cpuUsage: user + system), not wall time: on a loaded
 * machine the wall clock also counts the time other processes hold the cores.
 *
 * Then the per-interval cost divided by the requests of an interval, at several request rates and
 * the default interval (5 s), to compare with a request's total CPU on the data plane.
 * Usage: node bench/stats-stream.ts [--rounds 9] [--calls 500000] [--routes 10000] [--interval-s 5]
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { createLogger } from "@agw/core";
import { ReportStatsRequestSchema } from "@agw/core/gen/agw/v1/stats_pb.js";
import { toBinary } from "@bufbuild/protobuf";
import type { ExchangeView } from "../data-plane/src/observability/exchange.ts";
import { DataPlaneMetrics, type MetricSources } from "../data-plane/src/observability/metrics.ts";
import { StatsReporter } from "../data-plane/src/observability/stats-reporter.ts";
import type { ClusterRuntime, CompiledRoute } from "../data-plane/src/runtime/types.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "9" },
    calls: { type: "string", default: "500000" },
    routes: { type: "string", default: "10000" },
    "interval-s": { type: "string", default: "5" },
  },
});
const rounds = Number(values.rounds);
const calls = Number(values.calls);
const routeCount = Number(values.routes);
const intervalS = Number(values["interval-s"]);

// Read only when Prometheus scrapes, which this bench never does.
const sources = {} as MetricSources;
const log = createLogger("bench-stats-stream");

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

/** `n` exchanges over `n` distinct routes and clusters, as the engine's ExchangeView shows them. */
function exchanges(n: number): ExchangeView[] {
  return Array.from({ length: n }, (_, i) => {
    const route = { name: `route-${i}` } as CompiledRoute;
    const cluster = { name: `cluster-${i}` } as ClusterRuntime;
    return {
      proxy: { listenerName: "public" },
      bytesRead: 0,
      bytesWritten: 0,
      clientIp: "127.0.0.1",
      head: null,
      protocol: "HTTP/1.1",
      requestId: "",
      route,
      cluster,
      endpoint: null,
      startedAt: 1,
      status: 200 + (i % 7 === 0 ? 300 : 0),
      errorCode: "",
    } satisfies ExchangeView;
  });
}

/** CPU µs (user + system) of this process since `start`. */
function cpuSince(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return d.user + d.system;
}

/** CPU ns per record() over `calls` calls cycling through `xs`. */
function timeRecord(metrics: DataPlaneMetrics, xs: ExchangeView[]): number {
  const start = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const x = xs[i % xs.length] as ExchangeView;
    metrics.record(x, false, 2.5 + (i & 7), 1.5);
  }
  return (cpuSince(start) * 1000) / calls;
}

const loadBefore = loadavg()[0] ?? 0;

// 1. Per request, with and without a reporter reading the same counts, alternating.
const xs = exchanges(100);
const without = new DataPlaneMetrics(sources);
const withStats = new DataPlaneMetrics(sources);
const reporterOnTheSide = new StatsReporter({
  nodeId: "bench",
  log,
  counts: async () => [withStats.counts()],
  health: () => [],
});
await reporterOnTheSide.report();
timeRecord(without, xs);
timeRecord(withStats, xs);
const nsWithout: number[] = [];
const nsWith: number[] = [];
for (let r = 0; r < rounds; r++) {
  nsWithout.push(timeRecord(without, xs));
  nsWith.push(timeRecord(withStats, xs));
  // The reporter does its interval's work between rounds, as it would between requests.
  await reporterOnTheSide.report();
}

// 2. Per interval at `routeCount` busy routes and clusters.
const big = new DataPlaneMetrics(sources);
const busy = exchanges(routeCount);
const reporter = new StatsReporter({
  nodeId: "bench",
  log,
  counts: async () => [big.counts()],
  health: () => [],
});
for (const x of busy) big.record(x, false, 3, 2);
await reporter.report();
const intervalMs: number[] = [];
let bytes = 0;
for (let r = 0; r < rounds; r++) {
  // Every route and cluster had traffic since the last report.
  for (const x of busy) big.record(x, false, 3, 2);
  const start = process.cpuUsage();
  const report = await reporter.report();
  bytes = toBinary(ReportStatsRequestSchema, report).length;
  intervalMs.push(cpuSince(start) / 1000);
}
const loadAfter = loadavg()[0] ?? 0;

const mWithout = median(nsWithout);
const mWith = median(nsWith);
const mInterval = median(intervalMs);
console.log(
  `load average before ${loadBefore.toFixed(2)}, after ${loadAfter.toFixed(2)}; node ${process.version}`,
);
console.log(
  `per request, DataPlaneMetrics.record, CPU (${calls} calls × ${rounds} rounds, median): without a stats reporter ${mWithout.toFixed(0)} ns, with ${mWith.toFixed(0)} ns (rounds: ${nsWithout.map((n) => n.toFixed(0)).join(",")} / ${nsWith.map((n) => n.toFixed(0)).join(",")})`,
);
console.log(
  `per interval, ${routeCount} busy routes + ${routeCount} busy clusters: counts + report + encode, CPU ${mInterval.toFixed(1)} ms median (rounds: ${intervalMs.map((n) => n.toFixed(0)).join(",")}), ${bytes} bytes`,
);
console.log(`per request, the interval's work shared by its requests (interval ${intervalS} s):`);
for (const rate of [2_000, 6_000, 20_000]) {
  const perRequestUs = (mInterval * 1000) / (rate * intervalS);
  console.log(
    `  ${rate} req/s: ${perRequestUs.toFixed(2)} µs/request = ${perRequestUs.toFixed(1)}% of 100 µs, ${((perRequestUs / 40) * 100).toFixed(1)}% of 40 µs CPU/request`,
  );
}
const worst = (mInterval * 1000) / routeCount;
console.log(
  `  worst case, one request per route per interval (${routeCount} requests): ${worst.toFixed(2)} µs/request = ${worst.toFixed(1)}% of 100 µs, ${((worst / 40) * 100).toFixed(1)}% of 40 µs`,
);
