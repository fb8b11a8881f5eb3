/**
 * Latency histograms kept as plain numbers on the hot path and turned into Prometheus histograms only
 * at scrape time (metrics.ts, CountedHistogram). prom-client's labelled Histogram.observe hashes the
 * label values on every call: under `node bench/run.ts --only agw-bare,agw` (wrk -c64, 2026-11-25) its
 * observe was ~2% of the data plane's CPU samples, the largest single cost of keeping metrics.
 */
export interface BucketCounts {
  calls: number;
  /** Sum of the observed durations, seconds. */
  seconds: number;
  /** Observations per bucket (not cumulative); the last entry counts those above every bound. */
  readonly durations: number[];
}

export function newBucketCounts(bounds: readonly number[]): BucketCounts {
  return { calls: 0, seconds: 0, durations: new Array<number>(bounds.length + 1).fill(0) };
}

/** Counts one observation of `seconds` into the first bucket whose upper bound holds it. */
export function observeSeconds(b: BucketCounts, bounds: readonly number[], seconds: number): void {
  b.calls++;
  b.seconds += seconds;
  let i = 0;
  while (i < bounds.length && seconds > (bounds[i] as number)) i++;
  (b.durations[i] as number)++;
}
