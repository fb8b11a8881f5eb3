/**
 * The policy side of one proxied request, reused by the engine from request to request on a
 * connection: circuit-breaker admission, attempt accounting (least request, outlier detection), the
 * retry decision and per-try timeout, and the headers those policies add to the response.
 */
import type {
  AttemptOutcome,
  ClusterRuntime,
  ClusterTrafficState,
  Endpoint,
  EndpointTrafficState,
  RequestView,
} from "../runtime/types.ts";
import { affinityCookie, affinityToken, cookieValue } from "./load-balancer.ts";
import { backoffMs, methodRetriable, outcomeRetriable, type RetrySpec } from "./retry.ts";

const NO_FIELDS: ReadonlyArray<readonly [string, string]> = [];

export class RequestTraffic {
  private readonly onPerTryTimeout: () => void;
  private state: ClusterTrafficState | null = null;
  private cluster: ClusterRuntime | null = null;
  private retry: RetrySpec | null = null;
  private req: RequestView | null = null;
  private endpoint: Endpoint | null = null;
  private epState: EndpointTrafficState | null = null;
  private admitted = false;
  private retrying = false;
  private timer: NodeJS.Timeout | null = null;
  /** Attempts started for the current request. */
  attempts = 0;
  /** Response fields set before the request went upstream (CORS, data-plane/src/traffic). */
  responseFields: ReadonlyArray<readonly [string, string]> = NO_FIELDS;

  constructor(onPerTryTimeout: () => void) {
    this.onPerTryTimeout = onPerTryTimeout;
  }

  /**
   * A request (or an L4 connection: `req` null) for `cluster`; false when the circuit breaker refuses
   * it (answer 503 overflow, or close the connection).
   */
  begin(cluster: ClusterRuntime, retry: RetrySpec | null | undefined, req: RequestView | null): boolean {
    this.cluster = cluster;
    this.retry = retry ?? null;
    this.req = req;
    this.attempts = 0;
    const state = cluster.state ?? null;
    this.state = state;
    if (state === null) return true;
    this.admitted = state.admit();
    return this.admitted;
  }

  /** An attempt to `ep` starts (the previous one, if any, is over). */
  attemptStarted(ep: Endpoint): void {
    this.releaseAttempt();
    this.attempts++;
    this.endpoint = ep;
    const state = this.state;
    if (state !== null) {
      const s = state.endpoints.get(ep.key) ?? null;
      this.epState = s;
      if (s !== null) s.active++;
      state.activeAttempts++;
    }
    const perTry = this.retry?.perTryTimeoutMs ?? 0;
    if (perTry > 0) this.timer = setTimeout(this.onPerTryTimeout, perTry);
  }

  /** The response head arrived; true when the policy wants another attempt instead of this answer. */
  responseStarted(status: number, replayable: boolean): boolean {
    this.clearTimer();
    return this.ended({ kind: "status", status }, replayable);
  }

  /** An L4 connection to the endpoint is up: a success for outlier detection, as a 2xx is for HTTP. */
  connected(): void {
    this.clearTimer();
    this.ended({ kind: "status", status: 200 }, false);
  }

  /** The attempt failed before a response head; true when the policy wants another attempt. */
  attemptFailed(kind: "connect_failure" | "reset" | "timeout", replayable: boolean): boolean {
    this.clearTimer();
    return this.ended({ kind }, replayable);
  }

  private ended(outcome: AttemptOutcome, replayable: boolean): boolean {
    const state = this.state;
    if (state !== null && this.epState !== null) state.record(this.epState, outcome, Date.now());
    const r = this.retry;
    if (
      r === null ||
      !replayable ||
      this.attempts > r.retries ||
      this.req === null ||
      !methodRetriable(r, this.req.method) ||
      !outcomeRetriable(r, outcome)
    )
      return false;
    if (state !== null) {
      if (!state.admitRetry()) return false;
      state.counters.retries++;
      if (!this.retrying) state.activeRetries++;
      this.retrying = true;
    }
    return true;
  }

  /** Wait before the next attempt. */
  backoffMs(): number {
    return this.retry === null ? 0 : backoffMs(this.retry, this.attempts);
  }

  /** The endpoint for the next attempt: another one than the last when the cluster has one. */
  nextEndpoint(clientIp: string): Endpoint | undefined {
    return this.cluster?.pickEndpoint(this.req ?? undefined, clientIp, this.endpoint);
  }

  /**
   * The `x-agw-attempts` value of any answer to this request, the gateway's own errors included (a
   * final 503 upstream_connect_failed says how many attempts failed); "" when the route has no retry
   * policy or no attempt was started.
   */
  get attemptsValue(): string {
    return this.retry !== null && this.attempts > 0 ? String(this.attempts) : "";
  }

  /** The affinity cookie to set (the client's does not name this endpoint), "" when none is needed. */
  affinitySetCookie(): string {
    const affinity = this.cluster?.affinity;
    const ep = this.endpoint;
    if (affinity === undefined || ep === null) return "";
    const token = cookieValue(this.req?.header("cookie"), affinity.cookie);
    return token !== affinityToken(ep) ? affinityCookie(affinity, ep) : "";
  }

  /** The request is over (answered, failed or aborted): releases everything it held. Idempotent. */
  end(): void {
    this.releaseAttempt();
    const state = this.state;
    if (state !== null) {
      if (this.admitted) state.activeRequests--;
      if (this.retrying) state.activeRetries--;
    }
    this.admitted = false;
    this.retrying = false;
    this.responseFields = NO_FIELDS;
    this.state = null;
    this.cluster = null;
    this.retry = null;
    this.req = null;
  }

  private releaseAttempt(): void {
    this.clearTimer();
    if (this.endpoint === null) return;
    if (this.epState !== null) this.epState.active--;
    if (this.state !== null) this.state.activeAttempts--;
    this.endpoint = null;
    this.epState = null;
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
