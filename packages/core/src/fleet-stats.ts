/**
 * What data planes and the control plane agree on about fleet stats (proto/agw/v1/stats.proto): the
 * latency buckets, the status classes, the endpoint health codes and the size bounds.
 */

/** Latency bucket upper bounds in seconds: 0.5 ms … 30 s; a last bucket counts what is slower. */
export const LATENCY_BOUNDS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
] as const;

/** Index = status / 100 - 1; the last counts exchanges aborted before any status was sent. */
export const CODE_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "aborted"] as const;

/** Classes counted as errors: 5xx and aborted. */
export const ERROR_CLASSES = [4, 5] as const;

/** EndpointHealth.health codes. */
export const ENDPOINT_HEALTH = ["unchecked", "healthy", "unhealthy", "ejected"] as const;
export type EndpointHealthName = (typeof ENDPOINT_HEALTH)[number];

/** What one report may carry; a data plane leaves out the rest (counted in `dropped`). */
export const STATS_LIMITS = {
  routes: 20_000,
  clusters: 10_000,
  /** Endpoint health entries per report. */
  endpoints: 20_000,
  /** Bytes of one encoded report the control plane reads. */
  reportBytes: 4 * 1024 * 1024,
} as const;

/**
 * The q-quantile (0..1) of bucket counts, in seconds, interpolated linearly inside the bucket that
 * holds it (as Prometheus' histogram_quantile does); the slowest bucket answers its lower bound.
 * 0 when there is no observation.
 */
export function quantileSeconds(buckets: ArrayLike<number>, q: number): number {
  let total = 0;
  for (let i = 0; i < buckets.length; i++) total += buckets[i] as number;
  if (total === 0) return 0;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i] as number;
    if (n > 0 && seen + n >= rank) {
      const lower = i === 0 ? 0 : (LATENCY_BOUNDS[i - 1] as number);
      const upper = LATENCY_BOUNDS[i];
      if (upper === undefined) return lower;
      return lower + (upper - lower) * ((rank - seen) / n);
    }
    seen += n;
  }
  return LATENCY_BOUNDS[LATENCY_BOUNDS.length - 1] as number;
}
