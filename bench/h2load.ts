// Parsing of h2load's summary and of its --log-file, kept apart from the benches so it can be unit-tested.
// h2load prints only min/max/mean/sd of request times; the percentiles come from the per-request log.

import type { WrkResult } from "./wrk.ts";

function match(output: string, re: RegExp, what: string): RegExpExecArray {
  const m = re.exec(output);
  if (!m) throw new Error(`h2load: no ${what} in output:\n${output}`);
  return m;
}

/** The summary of `h2load -D S`, shaped like wrk's result; latencies are filled in from the log. */
export function parseH2load(output: string): Omit<WrkResult, "p50Us" | "p99Us"> {
  const finished = match(output, /^finished in ([\d.]+)(ms|s), ([\d.]+) req\/s/m, "finished line");
  const seconds = Number(finished[1]) / (finished[2] === "ms" ? 1000 : 1);
  const counts = match(
    output,
    /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m,
    "request counts",
  );
  const [done, failed, timeout] = [3, 5, 7].map((i) => Number(counts[i]));
  const codes = match(output, /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m, "status codes");
  return {
    requests: done ?? 0,
    seconds,
    // With -D, h2load's figure is successful requests over the measured duration (ramp-up excluded).
    rps: Number(finished[3]),
    non2xx: Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    // "failed" counts requests that got no response (it includes "errored"); timeouts apart.
    socketErrors: (failed ?? 0) + (timeout ?? 0),
  };
}

/**
 * p50 and p99 (nearest rank) of the request times in an h2load --log-file: one line per request,
 * tab-separated start time (µs since the epoch), status code (-1 when it failed), duration (µs).
 */
export function logPercentiles(log: string): { p50Us: number; p99Us: number } {
  const durations: number[] = [];
  for (const line of log.split("\n")) {
    const f = line.split("\t");
    if (f.length < 3 || f[1] === "-1") continue;
    durations.push(Number(f[2]));
  }
  if (durations.length === 0) return { p50Us: Number.NaN, p99Us: Number.NaN };
  const sorted = Float64Array.from(durations).sort();
  const rank = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
  return { p50Us: rank(50), p99Us: rank(99) };
}
