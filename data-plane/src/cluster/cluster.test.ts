import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildRing, hashKey, ringIndex, smoothRoundRobin } from "./load-balancer.ts";
import { backoffMs, outcomeRetriable, type RetrySpec } from "./retry.ts";
import { ClusterState } from "./state.ts";

/** The owner of ring position `h` on a ring of equally weighted `keys`. */
function owners(keys: string[]): (h: number) => string | undefined {
  const ring = buildRing(
    keys,
    keys.map(() => 1),
    128,
  );
  return (h) => keys[ring.owners[ringIndex(ring, h)] as number];
}

describe("cluster policies", () => {
  it("ring: adding a 5th endpoint moves ~1/5 of the keys, all to the new one", () => {
    const four = ["a:1", "b:1", "c:1", "d:1"];
    const before = owners(four);
    const after = owners([...four, "e:1"]);
    let moved = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const h = Math.floor((i / n) * 0xffffffff);
      if (before(h) !== after(h)) {
        moved++;
        assert.equal(after(h), "e:1");
      }
    }
    assert.ok(moved > n * 0.12 && moved < n * 0.28, `moved ${moved}`);
  });

  it("smooth weighted round robin interleaves (5,1,1 → no burst longer than the weight)", () => {
    const next = smoothRoundRobin([5, 1, 1]);
    const seq = Array.from({ length: 7 }, next);
    assert.deepEqual(seq, [0, 0, 1, 0, 2, 0, 0]);
  });

  it("hash keys: the first present source wins", () => {
    const req = {
      method: "GET",
      host: "h",
      path: "/",
      query: "a=1&user=42",
      header: (n: string) => (n === "cookie" ? "x=1; sid=abc" : undefined),
    };
    assert.equal(
      hashKey(
        [
          { kind: "header", name: "x-user" },
          { kind: "cookie", name: "sid" },
        ],
        req,
        "10.0.0.1",
      ),
      "abc",
    );
    assert.equal(hashKey([{ kind: "query", name: "user" }], req, ""), "42");
    assert.equal(hashKey([{ kind: "source_ip" }], req, "10.0.0.1"), "10.0.0.1");
    assert.equal(hashKey([{ kind: "header", name: "x-user" }], req, ""), undefined);
  });

  it("backoff: full jitter below min(max, base × 2^(n-1))", () => {
    const spec: RetrySpec = {
      retries: 5,
      retryOn: new Set(["5xx"]),
      retriableStatusCodes: new Set(),
      perTryTimeoutMs: 0,
      backoffBaseMs: 25,
      backoffMaxMs: 250,
      retryNonIdempotent: false,
    };
    assert.equal(
      backoffMs(spec, 1, () => 0.999),
      24,
    );
    assert.equal(
      backoffMs(spec, 3, () => 0.999),
      99,
    );
    assert.equal(
      backoffMs(spec, 10, () => 0.999),
      249,
    );
    assert.equal(outcomeRetriable(spec, { kind: "status", status: 500 }), true);
    assert.equal(outcomeRetriable(spec, { kind: "status", status: 404 }), false);
    assert.equal(
      outcomeRetriable({ ...spec, retryOn: new Set(["reset"]) }, { kind: "connect_failure" }),
      false,
    );
  });

  it("outlier detection: ejection time grows with repeats; at most maxEjectionPercent (but one) ejected", () => {
    const c = new ClusterState("c");
    const [a, b] = c.sync([
      { host: "a", port: 1, key: "a:1" },
      { host: "b", port: 1, key: "b:1" },
    ]);
    assert.ok(a && b);
    c.outlier = {
      consecutive5xx: 2,
      consecutiveGatewayErrors: 0,
      baseEjectionMs: 1000,
      maxEjectionMs: 10000,
      maxEjectionPercent: 10,
    };
    const fail = { kind: "status", status: 500 } as const;
    c.record(a, fail, 0);
    c.record(a, fail, 0);
    assert.equal(a.ejectedUntil, 1000);
    c.record(b, fail, 0);
    c.record(b, fail, 0);
    assert.equal(b.ejectedUntil, 0, "10% of 2 rounds down, but only one may be out");
    c.record(a, fail, 1500);
    c.record(a, fail, 1500);
    assert.equal(a.ejectedUntil, 1500 + 2000, "second ejection lasts twice as long");
  });
});
