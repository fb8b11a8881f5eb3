/**
 * Route retry policy (Envoy's `retry_policy` semantics): which failures are retried, how often, how
 * long each try may take and how long to wait between tries.
 */

import type { RetrySpec } from "../runtime/types.ts";
import type { AttemptOutcome } from "./state.ts";

export { RETRY_CONDITIONS, type RetryCondition, type RetrySpec } from "../runtime/types.ts";

/** RFC 9110 §9.2.2 idempotent methods. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);

export function methodRetriable(spec: RetrySpec, method: string): boolean {
  return spec.retryNonIdempotent || IDEMPOTENT.has(method);
}

/** Whether the policy retries this outcome (the attempt budget is checked by the caller). */
export function outcomeRetriable(spec: RetrySpec, o: AttemptOutcome): boolean {
  const on = spec.retryOn;
  switch (o.kind) {
    case "connect_failure":
      return on.has("connect-failure") || on.has("gateway-error") || on.has("5xx");
    case "reset":
    case "timeout":
      // Envoy counts a per-try timeout as a reset-class failure retried by 5xx/gateway-error/reset.
      return on.has("reset") || on.has("gateway-error") || on.has("5xx");
    case "status":
      if (on.has("5xx") && o.status >= 500) return true;
      if (on.has("gateway-error") && (o.status === 502 || o.status === 503 || o.status === 504)) return true;
      return on.has("retriable-status-codes") && spec.retriableStatusCodes.has(o.status);
  }
}

/**
 * Exponential backoff with full jitter, as Envoy: the n-th retry (1-based) waits a random time in
 * [0, min(max, base × 2^(n-1))).
 */
export function backoffMs(spec: RetrySpec, retry: number, random = Math.random): number {
  const ceiling = Math.min(spec.backoffMaxMs, spec.backoffBaseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceiling);
}
