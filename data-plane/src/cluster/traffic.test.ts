/**
 * The per-request policies on real cluster state: circuit breaking, the retry budget, which outcomes
 * and methods are retried, outlier ejection and its decay, and what RequestTraffic holds and releases.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClusterRuntime, Endpoint, RequestView } from "../runtime/types.ts";
import { affinityToken } from "./load-balancer.ts";
import { methodRetriable, outcomeRetriable, type RetryCondition, type RetrySpec } from "./retry.ts";
import { type AttemptOutcome, ClusterState, ClusterStates, EndpointState, isGatewayError } from "./state.ts";
import { RequestTraffic } from "./traffic.ts";

function retrySpec(over: Partial<RetrySpec> = {}): RetrySpec {
  return {
    retries: 2,
    retryOn: new Set<RetryCondition>(["5xx"]),
    retriableStatusCodes: new Set(),
    perTryTimeoutMs: 0,
    backoffBaseMs: 25,
    backoffMaxMs: 250,
    retryNonIdempotent: false,
    ...over,
  };
}

const OUTCOMES: AttemptOutcome[] = [
  { kind: "connect_failure" },
  { kind: "reset" },
  { kind: "timeout" },
  { kind: "status", status: 500 },
  { kind: "status", status: 501 },
  { kind: "status", status: 502 },
  { kind: "status", status: 503 },
  { kind: "status", status: 504 },
  { kind: "status", status: 499 },
  { kind: "status", status: 429 },
];
const label = (o: AttemptOutcome) => (o.kind === "status" ? String(o.status) : o.kind);

describe("retry policy", () => {
  it("which outcomes each retry_on condition retries", () => {
    const table: Record<string, string[]> = {};
    for (const cond of ["connect-failure", "refused-stream", "reset", "5xx", "gateway-error"] as const)
      table[cond] = OUTCOMES.filter((o) => outcomeRetriable(retrySpec({ retryOn: new Set([cond]) }), o)).map(
        label,
      );
    table.codes = OUTCOMES.filter((o) =>
      outcomeRetriable(
        retrySpec({
          retryOn: new Set(["retriable-status-codes"]),
          retriableStatusCodes: new Set([429, 503]),
        }),
        o,
      ),
    ).map(label);
    table.codesUnset = OUTCOMES.filter((o) =>
      outcomeRetriable(retrySpec({ retryOn: new Set(), retriableStatusCodes: new Set([429]) }), o),
    ).map(label);
    assert.deepEqual(table, {
      "connect-failure": ["connect_failure"],
      "refused-stream": [],
      reset: ["reset", "timeout"],
      "5xx": ["connect_failure", "reset", "timeout", "500", "501", "502", "503", "504"],
      "gateway-error": ["connect_failure", "reset", "timeout", "502", "503", "504"],
      codes: ["503", "429"],
      codesUnset: [],
    });
  });

  it("only idempotent methods, unless the policy allows the others", () => {
    const strict = retrySpec();
    assert.deepEqual(
      ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "POST", "PATCH", "CONNECT", "get", "X"].filter(
        (m) => methodRetriable(strict, m),
      ),
      ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"],
    );
    assert.equal(methodRetriable(retrySpec({ retryNonIdempotent: true }), "POST"), true);
  });
});

describe("cluster state", () => {
  it("gateway errors: 502, 503, 504 and every failure without a status", () => {
    assert.deepEqual(OUTCOMES.filter(isGatewayError).map(label), [
      "connect_failure",
      "reset",
      "timeout",
      "502",
      "503",
      "504",
    ]);
  });

  it("an endpoint is ejected until ejectedUntil, exclusive; available needs its checks too", () => {
    const s = new EndpointState("a:1");
    assert.ok(s.available(0) && !s.ejected(0));
    s.ejectedUntil = 100;
    assert.deepEqual(
      [s.ejected(99), s.ejected(100), s.available(99), s.available(100)],
      [true, false, false, true],
    );
    s.checkHealthy = false;
    assert.equal(s.available(200), false);
  });

  it("circuit breaker: max requests and max connections, each counted as an overflow", () => {
    const c = new ClusterState("c");
    assert.ok(c.admit() && c.admit(), "no limits");
    c.circuit = { maxConnections: 0, maxRequests: 3, maxRetries: 0 };
    assert.equal(c.admit(), true);
    assert.equal(c.admit(), false, "the 4th request in flight");
    assert.equal(c.activeRequests, 3);
    assert.equal(c.counters.overflows, 1);
    c.circuit = { maxConnections: 2, maxRequests: 0, maxRetries: 0 };
    c.activeAttempts = 1;
    assert.equal(c.admit(), true);
    c.activeAttempts = 2;
    assert.equal(c.admit(), false);
    assert.equal(c.counters.overflows, 2);
  });

  it("retries: max retries, the budget (a share of the requests in flight, at least its minimum), connections", () => {
    const c = new ClusterState("c");
    assert.equal(c.admitRetry(), true);
    c.circuit = { maxConnections: 0, maxRequests: 0, maxRetries: 2 };
    c.activeRetries = 1;
    assert.equal(c.admitRetry(), true);
    c.activeRetries = 2;
    assert.equal(c.admitRetry(), false);
    assert.equal(c.counters.retriesRefused, 1);
    c.circuit = { maxConnections: 0, maxRequests: 0, maxRetries: 0 };
    c.budget = { percent: 20, minConcurrency: 2 };
    c.activeRequests = 20; // 20% of 20 = 4 > 2
    c.activeRetries = 3;
    assert.equal(c.admitRetry(), true);
    c.activeRetries = 4;
    assert.equal(c.admitRetry(), false);
    c.activeRequests = 4; // 20% of 4 = 0.8, the minimum 2 applies
    c.activeRetries = 1;
    assert.equal(c.admitRetry(), true);
    c.activeRetries = 2;
    assert.equal(c.admitRetry(), false);
    c.activeRequests = 14; // 20% of 14 = 2.8: floor, 2
    assert.equal(c.admitRetry(), false);
    assert.equal(c.counters.retriesRefused, 4);
    c.budget = null;
    c.circuit = { maxConnections: 3, maxRequests: 0, maxRetries: 0 };
    c.activeAttempts = 2;
    assert.equal(c.admitRetry(), true);
    c.activeAttempts = 3;
    assert.equal(c.admitRetry(), false);
    assert.equal(c.counters.retriesRefused, 5);
  });

  function outlierCluster(n: number, over: Partial<NonNullable<ClusterState["outlier"]>> = {}) {
    const c = new ClusterState("c");
    const states = c.sync(Array.from({ length: n }, (_, i) => ({ host: "h", port: i, key: `h:${i}` })));
    c.outlier = {
      consecutive5xx: 3,
      consecutiveGatewayErrors: 0,
      baseEjectionMs: 1000,
      maxEjectionMs: 3000,
      maxEjectionPercent: 100,
      ...over,
    };
    return { c, states: states as [EndpointState, ...EndpointState[]] };
  }
  const s500 = { kind: "status", status: 500 } as const;
  const s503 = { kind: "status", status: 503 } as const;

  it("outlier detection: consecutive 5xx eject; a success in between starts over", () => {
    const { c, states } = outlierCluster(2);
    const [a] = states;
    c.record(a, s500, 0);
    c.record(a, s500, 0);
    c.record(a, { kind: "status", status: 404 }, 0);
    assert.deepEqual([a.consecutive5xx, a.consecutiveGateway], [0, 0]);
    c.record(a, s500, 0);
    c.record(a, { kind: "reset" }, 0);
    assert.equal(a.ejectedUntil, 0);
    c.record(a, s500, 10);
    assert.equal(a.ejectedUntil, 1010);
    assert.deepEqual([a.consecutive5xx, a.consecutiveGateway, c.counters.ejections], [0, 0, 1]);
    // While ejected, failures count but do not eject again.
    for (let i = 0; i < 5; i++) c.record(a, s500, 20);
    assert.equal(a.ejectedUntil, 1010);
    assert.equal(c.counters.ejections, 1);
    assert.equal(a.consecutive5xx, 5);
  });

  it("outlier detection: consecutive gateway errors (a 500 in between starts over)", () => {
    const { c, states } = outlierCluster(2, { consecutive5xx: 0, consecutiveGatewayErrors: 2 });
    const [a] = states;
    c.record(a, s503, 0);
    c.record(a, s500, 0);
    assert.deepEqual([a.consecutive5xx, a.consecutiveGateway], [2, 0]);
    c.record(a, { kind: "connect_failure" }, 0);
    assert.equal(a.ejectedUntil, 0);
    c.record(a, { kind: "timeout" }, 0);
    assert.equal(a.ejectedUntil, 1000);
  });

  it("outlier detection off: failures are counted, nobody is ejected", () => {
    const c = new ClusterState("c");
    const [a] = c.sync([{ host: "h", port: 1, key: "h:1" }]);
    assert.ok(a);
    for (let i = 0; i < 10; i++) c.record(a, s503, 0);
    assert.deepEqual([a.ejectedUntil, a.consecutive5xx], [0, 10]);
    const { c: d, states } = outlierCluster(1, { consecutive5xx: 0, consecutiveGatewayErrors: 0 });
    for (let i = 0; i < 10; i++) d.record(states[0], s503, 0);
    assert.equal(states[0].ejectedUntil, 0);
  });

  it("outlier detection: ejections grow to the maximum, and shrink back one per base time spent healthy", () => {
    const { c, states } = outlierCluster(1, { consecutive5xx: 1 });
    const [a] = states;
    c.record(a, s500, 0);
    assert.equal(a.ejectedUntil, 1000);
    c.record(a, s500, 1000);
    assert.equal(a.ejectedUntil, 3000, "2 × base");
    c.record(a, s500, 3000);
    assert.equal(a.ejectedUntil, 6000, "3 × base = the maximum");
    c.record(a, s500, 6000);
    assert.equal(a.ejectedUntil, 9000, "capped at the maximum");
    assert.equal(a.ejections, 4);
    // 2.5 base times healthy after the last ejection ended: the multiplier drops by 2, then grows by 1.
    c.record(a, s500, 11500);
    assert.equal(a.ejections, 3);
    assert.equal(a.ejectedUntil, 11500 + 3000);
    // A long healthy spell: back to the base time.
    c.record(a, s500, 100_000);
    assert.equal(a.ejections, 1);
    assert.equal(a.ejectedUntil, 101_000);
    // A maximum below the base: the base applies.
    const { c: low, states: ls } = outlierCluster(1, { consecutive5xx: 1, maxEjectionMs: 10 });
    low.record(ls[0], s500, 0);
    assert.equal(ls[0].ejectedUntil, 1000);
  });

  it("outlier detection: at most maxEjectionPercent of the endpoints out at once (at least one may be)", () => {
    const { c, states } = outlierCluster(5, { consecutive5xx: 1, maxEjectionPercent: 40 });
    for (const s of states) c.record(s, s500, 0);
    assert.deepEqual(
      states.map((s) => s.ejectedUntil > 0),
      [true, true, false, false, false],
    );
    // Once the first ejections end, others may be ejected.
    c.record(states[2] as EndpointState, s500, 1000);
    assert.ok((states[2] as EndpointState).ejectedUntil > 1000);
    const { c: one, states: os } = outlierCluster(3, { consecutive5xx: 1, maxEjectionPercent: 10 });
    for (const s of os) one.record(s, s500, 0);
    assert.deepEqual(
      os.map((s) => s.ejectedUntil > 0),
      [true, false, false],
    );
  });

  it("state survives pushes: sync reuses known endpoints, retain drops the ones gone", () => {
    const states = new ClusterStates();
    const c = states.get("c");
    assert.equal(states.get("c"), c);
    assert.equal(states.find("d"), undefined);
    const [a] = c.sync([{ host: "h", port: 1, key: "h:1" }]);
    assert.ok(a);
    a.active = 7;
    const [a2, b] = c.sync([
      { host: "h", port: 1, key: "h:1" },
      { host: "h", port: 2, key: "h:2" },
    ]);
    assert.equal(a2, a);
    assert.ok(b && b !== a);
    states.get("gone");
    states.retain(new Map([["c", { endpoints: [{ host: "h", port: 2, key: "h:2" }] }]]));
    assert.equal(states.find("gone"), undefined);
    assert.equal(states.find("c"), c);
    assert.deepEqual([...c.endpoints.keys()], ["h:2"]);
  });
});

function runtime(state: ClusterState | undefined, eps: Endpoint[], affinity?: ClusterRuntime["affinity"]) {
  const picks: Array<Endpoint | null | undefined> = [];
  const cluster: ClusterRuntime = {
    name: "c",
    endpoints: eps,
    pickEndpoint: (_req, _ip, avoid) => {
      picks.push(avoid);
      return eps.find((e) => e !== avoid);
    },
    ...(state ? { state } : {}),
    ...(affinity ? { affinity } : {}),
    connectTimeoutMs: 1000,
    idleTimeoutMs: 1000,
    maxIdlePerEndpoint: 1,
    maxRequestsPerConnection: 0,
  };
  return { cluster, picks };
}

function req(method: string, cookie?: string): RequestView {
  return { method, host: "h", path: "/", query: "", header: (n) => (n === "cookie" ? cookie : undefined) };
}

describe("RequestTraffic", () => {
  const eps: Endpoint[] = [
    { host: "h", port: 1, key: "h:1" },
    { host: "h", port: 2, key: "h:2" },
  ];

  it("counts what a request holds, retries within the policy, and releases everything at the end", () => {
    const state = new ClusterState("c");
    state.sync(eps);
    const [a, b] = [state.endpoints.get("h:1"), state.endpoints.get("h:2")] as [EndpointState, EndpointState];
    const { cluster, picks } = runtime(state, eps);
    const t = new RequestTraffic(() => {});
    assert.equal(t.begin(cluster, retrySpec({ retries: 1 }), req("GET")), true);
    assert.equal(t.attemptsValue, "");
    t.attemptStarted(eps[0] as Endpoint);
    assert.deepEqual([a.active, state.activeAttempts, state.activeRequests], [1, 1, 1]);
    assert.equal(t.responseStarted(503, true), true, "a 503 is retried by 5xx");
    assert.deepEqual([state.counters.retries, state.activeRetries], [1, 1]);
    assert.equal(a.consecutive5xx, 1, "the outcome reached outlier detection");
    assert.equal(t.nextEndpoint("1.2.3.4"), eps[1]);
    assert.deepEqual(picks, [eps[0]], "the failed endpoint is avoided");
    t.attemptStarted(eps[1] as Endpoint);
    assert.deepEqual([a.active, b.active, state.activeAttempts], [0, 1, 1]);
    assert.equal(t.attemptsValue, "2");
    assert.equal(t.responseStarted(503, true), false, "one retry only");
    assert.equal(state.counters.retries, 1);
    t.end();
    assert.deepEqual(
      [b.active, state.activeAttempts, state.activeRequests, state.activeRetries],
      [0, 0, 0, 0],
    );
    t.end();
    assert.deepEqual(
      [b.active, state.activeAttempts, state.activeRequests, state.activeRetries],
      [0, 0, 0, 0],
    );
  });

  it("no retry: without a policy, not replayable, a POST, a status the policy keeps, or refused by the budget", () => {
    const state = new ClusterState("c");
    state.sync(eps);
    const { cluster } = runtime(state, eps);
    const once = (spec: RetrySpec | null, method: string, status: number, replayable = true) => {
      const t = new RequestTraffic(() => {});
      t.begin(cluster, spec, req(method));
      t.attemptStarted(eps[0] as Endpoint);
      const again = t.responseStarted(status, replayable);
      t.end();
      return again;
    };
    assert.equal(once(retrySpec(), "GET", 503), true);
    assert.equal(once(null, "GET", 503), false);
    assert.equal(once(retrySpec(), "GET", 503, false), false);
    assert.equal(once(retrySpec(), "POST", 503), false);
    assert.equal(once(retrySpec({ retryNonIdempotent: true }), "POST", 503), true);
    assert.equal(once(retrySpec(), "GET", 404), false);
    assert.equal(once(retrySpec({ retries: 0 }), "GET", 503), false);
    state.circuit = { maxConnections: 0, maxRequests: 0, maxRetries: 1 };
    state.activeRetries = 1;
    assert.equal(once(retrySpec(), "GET", 503), false);
    assert.equal(state.counters.retriesRefused, 1);
    state.activeRetries = 0;
    // An L4 connection (no request) is never retried.
    const t = new RequestTraffic(() => {});
    t.begin(cluster, retrySpec(), null);
    t.attemptStarted(eps[0] as Endpoint);
    assert.equal(t.attemptFailed("connect_failure", true), false);
    t.end();
    assert.equal(state.activeRequests, 0);
  });

  it("failures before a head: retried by the matching conditions; an L4 connection counts as a success", () => {
    const state = new ClusterState("c");
    const [a] = state.sync(eps) as [EndpointState];
    const { cluster } = runtime(state, eps);
    const t = new RequestTraffic(() => {});
    t.begin(cluster, retrySpec({ retries: 5, retryOn: new Set(["connect-failure"]) }), req("GET"));
    t.attemptStarted(eps[0] as Endpoint);
    assert.equal(t.attemptFailed("connect_failure", true), true);
    t.attemptStarted(eps[0] as Endpoint);
    assert.equal(t.attemptFailed("reset", true), false);
    assert.equal(a.consecutive5xx, 2);
    t.attemptStarted(eps[0] as Endpoint);
    t.connected();
    assert.equal(a.consecutive5xx, 0);
    t.end();
    // A retrying request holds one retry slot, however many retries it makes.
    assert.equal(state.activeRetries, 0);
  });

  it("the circuit breaker refuses a request; a refused request releases nothing it did not hold", () => {
    const state = new ClusterState("c");
    state.sync(eps);
    state.circuit = { maxConnections: 0, maxRequests: 1, maxRetries: 0 };
    const { cluster } = runtime(state, eps);
    const first = new RequestTraffic(() => {});
    const second = new RequestTraffic(() => {});
    assert.equal(first.begin(cluster, null, req("GET")), true);
    assert.equal(second.begin(cluster, null, req("GET")), false);
    second.end();
    assert.equal(state.activeRequests, 1);
    first.end();
    assert.equal(state.activeRequests, 0);
    // Without cluster state (no policies), everything is admitted.
    assert.equal(new RequestTraffic(() => {}).begin(runtime(undefined, eps).cluster, null, req("GET")), true);
  });

  it("a per-try timeout fires for an attempt without a head, and not once a head arrived", async () => {
    const { cluster } = runtime(new ClusterState("c"), eps);
    let fired = 0;
    const timedOut = new Promise<void>((resolve) => {
      const t = new RequestTraffic(() => {
        fired++;
        resolve();
      });
      t.begin(cluster, retrySpec({ perTryTimeoutMs: 20 }), req("GET"));
      t.attemptStarted(eps[0] as Endpoint);
    });
    await timedOut;
    assert.equal(fired, 1);
    let late = 0;
    const t = new RequestTraffic(() => {
      late++;
    });
    t.begin(cluster, retrySpec({ perTryTimeoutMs: 20 }), req("GET"));
    t.attemptStarted(eps[0] as Endpoint);
    t.responseStarted(200, true);
    // A second request's timer, started after, proves the first one's time has passed.
    await new Promise<void>((resolve) => {
      const u = new RequestTraffic(resolve);
      u.begin(cluster, retrySpec({ perTryTimeoutMs: 40 }), req("GET"));
      u.attemptStarted(eps[0] as Endpoint);
    });
    assert.equal(late, 0);
    assert.equal(new RequestTraffic(() => {}).backoffMs(), 0);
  });

  it("backoff grows with the attempts", () => {
    const { cluster } = runtime(undefined, eps);
    const t = new RequestTraffic(() => {});
    t.begin(cluster, retrySpec({ backoffBaseMs: 1000, backoffMaxMs: 100_000 }), req("GET"));
    t.attemptStarted(eps[0] as Endpoint);
    t.attemptStarted(eps[0] as Endpoint);
    t.attemptStarted(eps[0] as Endpoint);
    // The 3rd attempt's wait is below 4 s, and with 200 tries one lands above 2 s.
    const waits = Array.from({ length: 200 }, () => t.backoffMs());
    assert.ok(waits.every((w) => w >= 0 && w < 4000));
    assert.ok(waits.some((w) => w >= 2000));
  });

  it("session affinity: the cookie is set when the client's does not name the endpoint", () => {
    const spec = { cookie: "s", ttlSeconds: 0, path: "/" };
    const { cluster } = runtime(undefined, eps, spec);
    const t = new RequestTraffic(() => {});
    t.begin(cluster, null, req("GET", `s=${affinityToken(eps[0] as Endpoint)}`));
    assert.equal(t.affinitySetCookie(), "", "no attempt yet");
    t.attemptStarted(eps[0] as Endpoint);
    assert.equal(t.affinitySetCookie(), "");
    t.attemptStarted(eps[1] as Endpoint);
    assert.equal(t.affinitySetCookie(), `s=${affinityToken(eps[1] as Endpoint)}; Path=/; HttpOnly`);
    const plain = new RequestTraffic(() => {});
    plain.begin(runtime(undefined, eps).cluster, null, req("GET"));
    plain.attemptStarted(eps[0] as Endpoint);
    assert.equal(plain.affinitySetCookie(), "");
    assert.equal(plain.attemptsValue, "", "no retry policy");
  });
});

describe("RequestTraffic: what it must not do", () => {
  const eps: Endpoint[] = [
    { host: "h", port: 1, key: "h:1" },
    { host: "h", port: 2, key: "h:2" },
  ];
  /** Resolves after a per-try timer of `ms` started now fires: earlier timers have had their chance. */
  const laterTimer = (ms: number) =>
    new Promise<void>((resolve) => {
      const u = new RequestTraffic(resolve);
      u.begin(runtime(undefined, eps).cluster, retrySpec({ perTryTimeoutMs: ms }), req("GET"));
      u.attemptStarted(eps[0] as Endpoint);
    });

  it("no per-try timer without a per-try timeout, and none left running once an attempt ends", async () => {
    let fired = 0;
    const onTimeout = () => {
      fired++;
    };
    const { cluster } = runtime(new ClusterState("c"), eps);
    const none = new RequestTraffic(onTimeout);
    none.begin(cluster, retrySpec({ perTryTimeoutMs: 0 }), req("GET"));
    none.attemptStarted(eps[0] as Endpoint);
    const ends: Array<(t: RequestTraffic) => void> = [
      (t) => t.attemptFailed("reset", true),
      (t) => t.connected(),
      (t) => t.attemptStarted(eps[1] as Endpoint),
      (t) => t.end(),
    ];
    const started = ends.map((finish) => {
      const t = new RequestTraffic(onTimeout);
      t.begin(cluster, retrySpec({ perTryTimeoutMs: 20 }), req("GET"));
      t.attemptStarted(eps[0] as Endpoint);
      finish(t);
      return t;
    });
    await laterTimer(60);
    // The third one started a second attempt: its own timer is the only one that may fire.
    assert.equal(fired, 1);
    for (const t of started) t.end();
  });

  it("one retry slot per request, however many retries; released once; the object is reused cleanly", () => {
    const state = new ClusterState("c");
    state.sync(eps);
    const { cluster } = runtime(state, eps);
    const t = new RequestTraffic(() => {});
    for (let round = 0; round < 2; round++) {
      t.begin(cluster, retrySpec({ retries: 3 }), req("GET"));
      t.attemptStarted(eps[0] as Endpoint);
      assert.equal(t.responseStarted(503, true), true);
      t.attemptStarted(eps[1] as Endpoint);
      assert.equal(t.responseStarted(503, true), true);
      assert.equal(state.activeRetries, 1, `round ${round}`);
      t.end();
      assert.equal(state.activeRetries, 0, `round ${round}`);
      assert.deepEqual(t.responseFields, []);
    }
    t.begin(cluster, null, req("GET"));
    t.attemptStarted(eps[0] as Endpoint);
    t.responseStarted(200, true);
    t.end();
    assert.deepEqual([state.activeRetries, state.activeRequests, state.activeAttempts], [0, 0, 0]);
  });

  it("without cluster state, or with an endpoint the state does not know: nothing is counted, nothing breaks", () => {
    const { cluster, picks } = runtime(undefined, eps);
    const fresh = new RequestTraffic(() => {});
    assert.deepEqual(fresh.responseFields, []);
    assert.equal(fresh.nextEndpoint("1.2.3.4"), undefined, "no request yet");
    assert.equal(fresh.affinitySetCookie(), "");
    fresh.end();
    const t = new RequestTraffic(() => {});
    const r = req("GET");
    t.begin(cluster, retrySpec(), r);
    t.attemptStarted(eps[0] as Endpoint);
    assert.equal(t.responseStarted(503, true), true, "retried, with no state to count it in");
    assert.equal(t.nextEndpoint("1.2.3.4"), eps[1]);
    t.end();
    assert.equal(picks.length, 1);
    const state = new ClusterState("c");
    const u = new RequestTraffic(() => {});
    u.begin(runtime(state, eps).cluster, retrySpec(), r);
    u.attemptStarted({ host: "h", port: 9, key: "h:9" });
    assert.equal(u.responseStarted(503, true), true);
    u.end();
    assert.deepEqual([state.activeAttempts, state.activeRequests], [0, 0]);
    // An L4 connection with affinity configured has no request, so no cookie.
    const l4 = new RequestTraffic(() => {});
    l4.begin(runtime(undefined, eps, { cookie: "s", ttlSeconds: 0, path: "/" }).cluster, null, null);
    l4.attemptStarted(eps[0] as Endpoint);
    assert.equal(l4.affinitySetCookie(), `s=${affinityToken(eps[0] as Endpoint)}; Path=/; HttpOnly`);
  });

  it("the next endpoint is picked for this request", () => {
    const seen: Array<RequestView | undefined> = [];
    const cluster: ClusterRuntime = {
      ...runtime(undefined, eps).cluster,
      pickEndpoint: (r) => {
        seen.push(r);
        return eps[0];
      },
    };
    const t = new RequestTraffic(() => {});
    const r = req("GET");
    t.begin(cluster, null, r);
    t.nextEndpoint("");
    assert.equal(seen[0], r);
  });

  it("names and keys are kept; retain skips a cluster it never had", () => {
    assert.equal(new EndpointState("a:1").key, "a:1");
    assert.equal(new ClusterState("c").name, "c");
    const states = new ClusterStates();
    states.retain(new Map([["never", { endpoints: [] }]]));
    assert.equal(states.find("never"), undefined);
  });
});
