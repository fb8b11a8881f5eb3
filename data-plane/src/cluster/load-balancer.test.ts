/**
 * The load balancers, hash keys, the ring and session affinity, on real endpoint states: which
 * endpoint each policy picks, which it never picks (out of rotation, avoided after a failed attempt),
 * and when it panics and uses them all.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Endpoint, RequestView } from "../runtime/types.ts";
import { hash32 } from "./hash.ts";
import {
  affinityCookie,
  affinityToken,
  type Balanced,
  buildRing,
  cookieValue,
  hashKey,
  type LbSpec,
  makePick,
  ringIndex,
  smoothRoundRobin,
  withAffinity,
} from "./load-balancer.ts";
import { EndpointState } from "./state.ts";

function endpoints(n: number): Endpoint[] {
  return Array.from({ length: n }, (_, i) => ({ host: `10.0.0.${i}`, port: 80, key: `10.0.0.${i}:80` }));
}

function balanced(
  n: number,
  policy: LbSpec["policy"],
  opts: { weights?: number[]; panic?: number; hashOn?: LbSpec["hashOn"] } = {},
): Balanced {
  const eps = endpoints(n);
  return {
    endpoints: eps,
    weights: opts.weights ?? eps.map(() => 1),
    states: eps.map((e) => new EndpointState(e.key)),
    spec: {
      policy,
      hashOn: opts.hashOn ?? [],
      ringPointsPerWeight: 64,
      panicThresholdPercent: opts.panic ?? 0,
    },
  };
}

function request(headers: Record<string, string>, query = ""): RequestView {
  return { method: "GET", host: "h", path: "/", query, header: (n) => headers[n] };
}

/** How often each endpoint index is picked in `times` picks. */
function counts(b: Balanced, times: number, req?: RequestView, avoid: Endpoint | null = null): number[] {
  const pick = makePick(b);
  const seen = b.endpoints.map(() => 0);
  for (let i = 0; i < times; i++) {
    const ep = pick(req, "", avoid);
    assert.ok(ep !== undefined);
    const idx = b.endpoints.indexOf(ep);
    seen[idx] = (seen[idx] ?? 0) + 1;
  }
  return seen;
}

const POLICIES = ["round_robin", "least_request", "ring_hash", "random"] as const;

describe("load balancing", () => {
  it("hash32 is MurmurHash3 (x86, 32 bit) over UTF-16 code units, pinned: rings must agree across versions", () => {
    // Reference vectors of MurmurHash3_x86_32 for inputs of at most one code unit.
    assert.equal(hash32("", 0), 0);
    assert.equal(hash32("a", 0), 0x3c2569b2);
    // Every data plane, old and new, must put the same key on the same ring position.
    assert.deepEqual(
      ["", "a", "ab", "abc", "abcd", "127.0.0.1:8080", "é€"].map((s) => hash32(s)),
      [3954623016, 2141232806, 1395310093, 1515432033, 125242130, 1417336568, 3950225418],
    );
    assert.deepEqual(
      ["ab", "abc", "abcd", "127.0.0.1:8080", "é€"].map((s) => hash32(s, 0)),
      [3780547604, 1968171120, 3862726651, 1213558942, 2352805452],
    );
  });

  it("round robin: equal weights take turns; an endpoint out of rotation is skipped", () => {
    const b = balanced(3, "round_robin");
    const pick = makePick(b);
    const order = () =>
      Array.from({ length: 6 }, () => b.endpoints.indexOf(pick(undefined, "", null) as Endpoint));
    assert.deepEqual(order(), [0, 1, 2, 0, 1, 2]);
    (b.states[1] as EndpointState).checkHealthy = false;
    assert.deepEqual(order(), [0, 2, 0, 2, 0, 2]);
    const next = smoothRoundRobin([2, 2]);
    assert.deepEqual([next(), next(), next()], [0, 1, 0]);
  });

  it("smooth weighted round robin gives each endpoint its weight's share", () => {
    const next = smoothRoundRobin([3, 1]);
    assert.deepEqual(
      Array.from({ length: 8 }, () => next()),
      [0, 0, 1, 0, 0, 0, 1, 0],
    );
  });

  it("every policy: never an endpoint that failed its checks or is ejected, while enough are available", () => {
    for (const policy of POLICIES) {
      const b = balanced(4, policy, { hashOn: [{ kind: "header", name: "x-k" }] });
      (b.states[1] as EndpointState).checkHealthy = false;
      (b.states[2] as EndpointState).ejectedUntil = Date.now() + 60_000;
      const pick = makePick(b);
      for (let i = 0; i < 200; i++) {
        const ep = pick(request({ "x-k": `key${i}` }), "", null);
        assert.ok(ep === b.endpoints[0] || ep === b.endpoints[3], `${policy} picked ${ep?.key}`);
      }
    }
  });

  it("every policy: the endpoint to avoid (a failed attempt's) is not picked again, unless it is the only one", () => {
    for (const policy of POLICIES) {
      const b = balanced(3, policy, { hashOn: [{ kind: "header", name: "x-k" }] });
      const pick = makePick(b);
      for (let i = 0; i < 100; i++)
        assert.notEqual(
          pick(request({ "x-k": `key${i}` }), "", b.endpoints[1] as Endpoint),
          b.endpoints[1],
          policy,
        );
      const one = balanced(1, policy);
      assert.equal(makePick(one)(undefined, "", one.endpoints[0] as Endpoint), one.endpoints[0], policy);
      assert.equal(makePick(balanced(0, policy))(undefined, "", null), undefined, policy);
    }
  });

  it("no endpoint usable but the one to avoid: none, rather than a down endpoint", () => {
    for (const policy of POLICIES) {
      const b = balanced(2, policy);
      (b.states[1] as EndpointState).checkHealthy = false;
      assert.equal(makePick(b)(undefined, "", b.endpoints[0] as Endpoint), undefined, policy);
    }
  });

  it("panic: with every endpoint out, or fewer available than the threshold's share, all are used", () => {
    for (const policy of POLICIES) {
      // All out (threshold 0): every endpoint is used again.
      const all = balanced(2, policy);
      for (const s of all.states) s.checkHealthy = false;
      assert.ok(
        counts(all, 200).every((c) => c > 0),
        policy,
      );
      // 2 of 4 available = 50%: not below a 50% threshold, so the two out are never used...
      const half = balanced(4, policy, { panic: 50 });
      (half.states[0] as EndpointState).checkHealthy = false;
      (half.states[1] as EndpointState).checkHealthy = false;
      const seen = counts(half, 200);
      assert.equal((seen[0] ?? 0) + (seen[1] ?? 0), 0, `${policy}: ${seen}`);
      // ...but below a 51% threshold they are.
      const below = balanced(4, policy, { panic: 51 });
      (below.states[0] as EndpointState).checkHealthy = false;
      (below.states[1] as EndpointState).checkHealthy = false;
      const used = counts(below, 400);
      assert.ok((used[0] ?? 0) > 0 && (used[1] ?? 0) > 0, `${policy}: ${used}`);
    }
  });

  it("random and least request honour weights", () => {
    for (const policy of ["random", "least_request"] as const) {
      const seen = counts(balanced(2, policy, { weights: [3, 1] }), 4000);
      const share = (seen[0] ?? 0) / 4000;
      // least_request compares two distinct endpoints when it can, so idle ones tie and the first chosen wins.
      assert.ok(share > 0.6 && share < 0.9, `${policy}: ${seen}`);
    }
    const uniform = counts(balanced(4, "random"), 4000);
    assert.ok(
      uniform.every((c) => c > 700 && c < 1300),
      `random, equal weights: ${uniform}`,
    );
  });

  it("least request: the endpoint with fewer requests in flight, relative to its weight", () => {
    const b = balanced(2, "least_request");
    (b.states[0] as EndpointState).active = 3;
    (b.states[1] as EndpointState).active = 2;
    // Two random tries may both land on one endpoint (then it wins alone): a strong majority, not all.
    const fewer = counts(b, 200);
    assert.ok((fewer[1] ?? 0) >= 180, `${fewer}`);
    // Weighted: 3 in flight on weight 4 (0.75) beats 1 on weight 1 (1).
    const w = balanced(2, "least_request", { weights: [4, 1] });
    (w.states[0] as EndpointState).active = 3;
    (w.states[1] as EndpointState).active = 1;
    const weighted = counts(w, 200);
    assert.ok((weighted[0] ?? 0) >= 180, `${weighted}`);
    // Equal load: both are used.
    const tie = counts(balanced(3, "least_request"), 300);
    assert.ok(
      tie.every((c) => c > 0),
      `${tie}`,
    );
  });

  it("ring hash: a key always goes to the same endpoint; only the keys of an endpoint out move, to the next on the ring", () => {
    const hashOn = [{ kind: "header", name: "x-user" }] as const;
    const b = balanced(4, "ring_hash", { hashOn: [...hashOn] });
    const pick = makePick(b);
    const before = new Map<string, Endpoint | undefined>();
    for (let i = 0; i < 400; i++) {
      const user = `user${i}`;
      const first = pick(request({ "x-user": user }), "", null);
      assert.equal(pick(request({ "x-user": user }), "", null), first);
      before.set(user, first);
    }
    const owned = [...before.values()].filter((e) => e === b.endpoints[2]).length;
    assert.ok(owned > 40, `endpoint 2 owns ${owned} of 400 keys`);
    (b.states[2] as EndpointState).checkHealthy = false;
    const ring = buildRing(
      b.endpoints.map((e) => e.key),
      b.weights,
      64,
    );
    for (const [user, first] of before) {
      const now = pick(request({ "x-user": user }), "", null);
      if (first !== b.endpoints[2]) {
        assert.equal(now, first, `${user} stays`);
        continue;
      }
      // The next point on the ring not owned by endpoint 2.
      let at = ringIndex(ring, hash32(user));
      while (ring.owners[at] === 2) at = (at + 1) % ring.owners.length;
      assert.equal(now, b.endpoints[ring.owners[at] as number], `${user} moves to the next owner`);
    }
    // Without a key, any endpoint.
    const anyKey = counts(balanced(3, "ring_hash", { hashOn: [...hashOn] }), 300, request({}));
    assert.ok(
      anyKey.every((c) => c > 0),
      `${anyKey}`,
    );
  });

  it("ring: points per weight, sorted; every endpoint has at least one", () => {
    const ring = buildRing(["a:1", "b:1"], [3, 1], 5);
    assert.equal(ring.points.length, 20);
    assert.equal(ring.owners.filter((o) => o === 0).length, 15);
    for (let i = 1; i < ring.points.length; i++)
      assert.ok((ring.points[i - 1] as number) <= (ring.points[i] as number));
    assert.equal(
      ring.points[0],
      Math.min(
        ...Array.from({ length: 5 }, (_, j) => hash32(`b:1_${j}`)),
        ...Array.from({ length: 15 }, (_, j) => hash32(`a:1_${j}`)),
      ),
    );
    assert.equal(buildRing(["a:1", "b:1"], [2, 0], 3).points.length, 7);
    // Equal points are ordered by owner, so the ring does not depend on the endpoints' order.
    assert.deepEqual(buildRing(["a:1", "a:1"], [1, 1], 2).owners, Int32Array.from([0, 1, 0, 1]));
  });

  it("ringIndex: the first point at or after the hash, wrapping past the last", () => {
    const ring = { points: Uint32Array.from([10, 20, 30]), owners: Int32Array.from([0, 1, 2]) };
    assert.deepEqual(
      [0, 10, 11, 20, 29, 30, 31, 0xffffffff].map((h) => ringIndex(ring, h)),
      [0, 0, 1, 1, 2, 2, 0, 0],
    );
  });

  it("hash keys: header, cookie, query, source address; the first present wins", () => {
    const req = request({ cookie: "a=1; sid = abc ;x", "x-user": "u1" }, "flag&user=42&e=");
    assert.equal(hashKey([{ kind: "cookie", name: "sid" }], req, ""), "abc");
    assert.equal(hashKey([{ kind: "cookie", name: "x" }], req, ""), undefined);
    assert.equal(hashKey([{ kind: "cookie", name: "sid" }], request({}), ""), undefined);
    assert.equal(hashKey([{ kind: "query", name: "user" }], req, ""), "42");
    assert.equal(hashKey([{ kind: "query", name: "flag" }], req, ""), "");
    assert.equal(hashKey([{ kind: "query", name: "e" }], req, ""), "");
    assert.equal(hashKey([{ kind: "query", name: "us" }], req, ""), undefined);
    assert.equal(hashKey([{ kind: "query", name: "user" }], request({}), ""), undefined);
    assert.equal(hashKey([{ kind: "query", name: "user" }], undefined, "1.2.3.4"), undefined);
    assert.equal(hashKey([{ kind: "source_ip" }], undefined, ""), undefined);
    assert.equal(
      hashKey(
        [{ kind: "header", name: "x-none" }, { kind: "source_ip" }, { kind: "header", name: "x-user" }],
        req,
        "1.2.3.4",
      ),
      "1.2.3.4",
    );
    assert.equal(hashKey([], req, "1.2.3.4"), undefined);
    assert.equal(cookieValue("a=1;b=2=3", "b"), "2=3");
  });

  it("session affinity: the cookie's endpoint while it is usable and not to be avoided; otherwise the balancer", () => {
    const b = balanced(3, "round_robin");
    const spec = { cookie: "agw-s", ttlSeconds: 0, path: "/" };
    const pick = withAffinity(makePick(b), b, spec);
    const to = (i: number) => request({ cookie: `x=1; agw-s=${affinityToken(b.endpoints[i] as Endpoint)}` });
    for (let i = 0; i < 5; i++) assert.equal(pick(to(2), "", null), b.endpoints[2]);
    assert.notEqual(pick(to(2), "", b.endpoints[2] as Endpoint), b.endpoints[2]);
    (b.states[2] as EndpointState).checkHealthy = false;
    for (let i = 0; i < 5; i++) assert.notEqual(pick(to(2), "", null), b.endpoints[2]);
    const unknown = request({ cookie: "agw-s=nope" });
    assert.deepEqual(
      [pick(unknown, "", null), pick(unknown, "", null)].map((e) => e?.key),
      ["10.0.0.0:80", "10.0.0.1:80"],
    );
    assert.equal(affinityToken({ host: "10.0.0.1", port: 80, key: "10.0.0.1:80" }), "1xmkeam");
    assert.equal(affinityToken(b.endpoints[0] as Endpoint), hash32("10.0.0.0:80", 0x5eed).toString(36));
    assert.equal(
      affinityCookie(spec, b.endpoints[0] as Endpoint),
      `agw-s=${affinityToken(b.endpoints[0] as Endpoint)}; Path=/; HttpOnly`,
    );
    assert.equal(
      affinityCookie({ cookie: "s", ttlSeconds: 60, path: "/app" }, b.endpoints[0] as Endpoint),
      `s=${affinityToken(b.endpoints[0] as Endpoint)}; Path=/app; Max-Age=60; HttpOnly`,
    );
  });
});
