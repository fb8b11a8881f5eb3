/**
 * Traffic policies end to end in one process: config.yaml text → validation → translator → agw.v1
 * resources (as pushed over xDS) → the data plane's RuntimeConfig → the proxy engine, against real
 * upstream HTTP servers on loopback.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { after, describe, it } from "node:test";
import { startGateway } from "../data-plane/test/gateway.ts";
import { waitFor } from "./helpers.ts";
import { configFromYaml } from "./yaml-config.ts";

const T = { timeout: 30000 };

interface Upstream {
  readonly name: string;
  port: number;
  hits: number;
  /** Answer with this status next (then reset to 200), or a delay before answering. */
  failNext: number;
  delayMs: number;
  /** While set, requests are held (after their body) until it resolves. */
  hold: Promise<void> | null;
  healthy: boolean;
  /** Request bodies received, in order. */
  bodies: string[];
  server: http.Server | http2.Http2Server;
  close(): Promise<void>;
  start(port?: number): Promise<void>;
}

/** An HTTP/1.1 origin, or an h2c one (for clusters with protocol: http2) answering the same way. */
async function upstream(name: string, h2c = false): Promise<Upstream> {
  const u: Upstream = {
    name,
    port: 0,
    hits: 0,
    failNext: 0,
    delayMs: 0,
    hold: null,
    healthy: true,
    bodies: [],
    server: http.createServer(),
    async close() {
      if (u.server instanceof http.Server) u.server.closeAllConnections();
      else for (const s of sessions) s.destroy();
      await new Promise<void>((r) => u.server.close(() => r()));
    },
    async start(port = 0) {
      const handle = (req: http.IncomingMessage | http2.Http2ServerRequest, res: Answer) => {
        if (req.url === "/healthz") {
          res.statusCode = u.healthy ? 200 : 503;
          res.end("");
          return;
        }
        u.hits++;
        const answer = () => {
          if (u.failNext !== 0) {
            res.statusCode = u.failNext;
            u.failNext = 0;
          }
          res.setHeader("x-upstream", name);
          res.end(name);
        };
        // The request body is read whole first, so a retry's resent body is seen like the first one.
        let body = "";
        req.on("data", (c: Buffer) => {
          body += c.toString();
        });
        req.on("end", () => {
          u.bodies.push(body);
          if (u.hold !== null) void u.hold.then(answer);
          else if (u.delayMs > 0) setTimeout(answer, u.delayMs);
          else answer();
        });
      };
      if (h2c) {
        const server = http2.createServer(handle);
        server.on("session", (s: http2.ServerHttp2Session) => {
          sessions.add(s);
          s.on("close", () => sessions.delete(s));
        });
        u.server = server;
      } else {
        u.server = http.createServer({ keepAliveTimeout: 30000 }, handle);
      }
      await new Promise<void>((r) => u.server.listen(port, "127.0.0.1", r));
      u.port = (u.server.address() as net.AddressInfo).port;
    },
  };
  const sessions = new Set<http2.ServerHttp2Session>();
  await u.start();
  return u;
}

type Answer = {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body: string): unknown;
};

function yaml(cluster: string, endpoints: Upstream[], route = ""): string {
  return `listeners:
  - name: l
    port: 8080
    routes:
      - name: r
        cluster: c
${route}
clusters:
  - name: c
${cluster}
    endpoints: [${endpoints.map((e) => `"127.0.0.1:${e.port}"`).join(", ")}]
`;
}

async function fetchVia(port: number, path = "/", headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

interface H2Result {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

/** One request over HTTP/2 (h2c with prior knowledge, as curl --http2-prior-knowledge sends it). */
async function h2Via(
  port: number,
  init: { method?: string; headers?: http2.OutgoingHttpHeaders; body?: string } = {},
): Promise<H2Result> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<H2Result>((resolve, reject) => {
      session.on("error", reject);
      const req = session.request(
        { ":method": init.method ?? "GET", ":path": "/", ...init.headers },
        { endStream: init.body === undefined },
      );
      let headers: http2.IncomingHttpHeaders = {};
      let body = "";
      req.setEncoding("utf8");
      req.on("response", (h) => {
        headers = h;
      });
      req.on("data", (c: string) => {
        body += c;
      });
      req.on("end", () => resolve({ status: Number(headers[":status"]), headers, body }));
      req.on("error", reject);
      if (init.body !== undefined) req.end(init.body);
    });
  } finally {
    session.close();
  }
}

async function countBy(port: number, n: number, headers?: (i: number) => Record<string, string>) {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = await fetchVia(port, "/", headers?.(i));
    counts.set(r.body, (counts.get(r.body) ?? 0) + 1);
  }
  return counts;
}

describe("traffic policies through the proxy", () => {
  const closers: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of closers) await c();
  });

  async function setup(n: number, cluster: string, route = "", h2c = false) {
    const ups: Upstream[] = [];
    for (let i = 0; i < n; i++) {
      const u = await upstream(`u${i}`, h2c);
      ups.push(u);
      closers.push(() => u.close());
    }
    const gateway = await startGateway(configFromYaml(yaml(cluster, ups, route)));
    closers.push(() => gateway.close());
    let version = 1;
    return {
      ups,
      gateway,
      /** Endpoint health, ejections and counters, as the data plane keeps them across pushes. */
      states: gateway.serving.store.clusterStates,
      port: gateway.port,
      /** A push through the real build and swap. */
      push: (text: string) => gateway.push(configFromYaml(text, `v${++version}`)),
    };
  }

  it("weighted round robin follows the weights exactly", T, async () => {
    const ups: Upstream[] = [];
    for (let i = 0; i < 3; i++) ups.push(await upstream(`u${i}`));
    for (const u of ups) closers.push(() => u.close());
    const text = `listeners:
  - name: l
    port: 8080
    routes: [{ name: r, cluster: c }]
clusters:
  - name: c
    endpoints:
${ups.map((u, i) => `      - { address: 127.0.0.1, port: ${u.port}, weight: ${i + 1} }`).join("\n")}
`;
    const proxy = await startGateway(configFromYaml(text));
    closers.push(() => proxy.close());
    const counts = await countBy(proxy.port, 600);
    assert.deepEqual([counts.get("u0"), counts.get("u1"), counts.get("u2")], [100, 200, 300]);
  });

  it("least request (P2C) sends most traffic away from a slow endpoint", T, async () => {
    const s = await setup(3, "    lb: least_request");
    const slow = s.ups[0] as Upstream;
    slow.delayMs = 200;
    // 30 concurrent clients for 1.5 s: the slow endpoint holds requests in flight, so P2C avoids it.
    const deadline = Date.now() + 1500;
    await Promise.all(
      Array.from({ length: 30 }, async () => {
        while (Date.now() < deadline) await fetchVia(s.port);
      }),
    );
    const total = s.ups.reduce((a, u) => a + u.hits, 0);
    const share = slow.hits / total;
    // Round robin would give it a third; P2C leaves it well below.
    assert.ok(share < 0.2, `slow endpoint got ${(share * 100).toFixed(1)}% of ${total}`);
  });

  it(
    "ring hash on a header: sticky, stable across a config push, ~1/N keys move when one is added",
    T,
    async () => {
      const s = await setup(4, "    lb: ring_hash\n    hashOn: [{ header: x-user }]");
      const keys = Array.from({ length: 400 }, (_, i) => `user-${i}`);
      const before = new Map<string, string>();
      for (const k of keys) before.set(k, (await fetchVia(s.port, "/", { "x-user": k })).body);
      // Spread: every endpoint gets a fair share (expected 100 each).
      const per = new Map<string, number>();
      for (const v of before.values()) per.set(v, (per.get(v) ?? 0) + 1);
      for (const u of s.ups) {
        const n = per.get(u.name) ?? 0;
        assert.ok(n > 50 && n < 160, `${u.name} got ${n} of 400 keys`);
      }
      // Same keys again after an identical push: nothing moves.
      await s.push(yaml("    lb: ring_hash\n    hashOn: [{ header: x-user }]", s.ups));
      for (const k of keys.slice(0, 100))
        assert.equal((await fetchVia(s.port, "/", { "x-user": k })).body, before.get(k));
      // A fifth endpoint: about 1/5 of the keys move, all of them to the new endpoint.
      const extra = await upstream("u4");
      closers.push(() => extra.close());
      await s.push(yaml("    lb: ring_hash\n    hashOn: [{ header: x-user }]", [...s.ups, extra]));
      let moved = 0;
      for (const k of keys) {
        const now = (await fetchVia(s.port, "/", { "x-user": k })).body;
        if (now !== before.get(k)) {
          moved++;
          assert.equal(now, "u4", `key ${k} moved between old endpoints`);
        }
      }
      assert.ok(moved > 400 * 0.1 && moved < 400 * 0.32, `${moved} of 400 keys moved (expected ~80)`);
    },
  );

  it("cookie session affinity: the cookie set on the first answer pins later requests", T, async () => {
    const s = await setup(3, "    sessionAffinity: { cookie: agw-sticky, ttl: 1h }");
    const first = await fetchVia(s.port);
    const cookie = first.headers.get("set-cookie") ?? "";
    assert.match(cookie, /^agw-sticky=[0-9a-z]+; Path=\/; Max-Age=3600; HttpOnly$/);
    const value = cookie.split(";")[0] as string;
    for (let i = 0; i < 20; i++) {
      const r = await fetchVia(s.port, "/", { cookie: value });
      assert.equal(r.body, first.body);
      assert.equal(r.headers.get("set-cookie"), null);
    }
  });

  it("a flaky upstream failing the first attempt: the client sees success and 2 attempts", T, async () => {
    const s = await setup(1, "", "        retry: { retries: 2, retryOn: [5xx], backoffBase: 1ms }");
    const u = s.ups[0] as Upstream;
    u.failNext = 503;
    const r = await fetchVia(s.port);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-agw-attempts"), "2");
    assert.equal(u.hits, 2);
    // POST is not retried unless configured.
    u.failNext = 503;
    const post = await fetch(`http://127.0.0.1:${s.port}/`, { method: "POST", body: "x" });
    assert.equal(post.status, 503);
    assert.equal(post.headers.get("x-agw-attempts"), "1");
  });

  it("a dead endpoint is retried on another one (connect failure)", T, async () => {
    const s = await setup(2, "", "        retry: { retries: 1, backoffBase: 1ms }");
    await (s.ups[0] as Upstream).close();
    for (let i = 0; i < 6; i++) {
      const r = await fetchVia(s.port);
      assert.equal(r.status, 200);
      assert.equal(r.body, "u1");
    }
  });

  it("circuit breaker overflow is answered 503 overflow and counted", T, async () => {
    const s = await setup(1, "    circuitBreakers: { maxRequests: 2 }");
    const u = s.ups[0] as Upstream;
    // The origin holds what reaches it until the three overflows are answered: no timing decides
    // which requests are in flight (a delay could let the first two finish before the fifth came).
    let release = () => {};
    u.hold = new Promise<void>((r) => {
      release = r;
    });
    const pending = Array.from({ length: 5 }, () => fetchVia(s.port));
    await waitFor("2 requests at the origin and 3 overflows", () =>
      u.hits === 2 && (s.states.find("c")?.counters.overflows ?? 0) === 3 ? true : undefined,
    );
    release();
    u.hold = null;
    const results = await Promise.all(pending);
    const overflow = results.filter((r) => r.status === 503);
    assert.equal(results.filter((r) => r.status === 200).length, 2);
    assert.equal(overflow.length, 3);
    for (const r of overflow) assert.equal(r.headers.get("x-agw-error"), "overflow");
    assert.equal(s.states.find("c")?.counters.overflows, 3);
    // Released once the requests finish.
    assert.equal((await fetchVia(s.port)).status, 200);
  });

  it(
    "outlier detection ejects an endpoint that keeps failing and re-admits it after the ejection time",
    T,
    async () => {
      const s = await setup(
        3,
        "    outlierDetection: { consecutive5xx: 3, baseEjectionTime: 5s, maxEjectionPercent: 34 }",
      );
      const bad = s.ups[0] as Upstream;
      bad.server.removeAllListeners("request");
      bad.server.on("request", (_req, res) => {
        bad.hits++;
        res.statusCode = 500;
        res.end("u0");
      });
      // Decided by the endpoint's state, not by how long requests take on a loaded machine: one
      // request at a time until the ejection, then only requests answered while it lasts count.
      const state = () => s.states.find("c")?.endpoints.get(`127.0.0.1:${bad.port}`);
      const ejectedUntil = () => state()?.ejectedUntil ?? 0;
      for (let i = 0; i < 30 && ejectedUntil() <= Date.now(); i++) await fetchVia(s.port);
      const hitsAtEjection = bad.hits;
      assert.equal(hitsAtEjection, 3, "three 5xx in a row eject it");
      const until = ejectedUntil();
      const during: string[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await fetchVia(s.port);
        if (Date.now() < until) during.push(r.body);
      }
      assert.ok(during.length > 0, "a request was answered while the endpoint was ejected");
      assert.ok(!during.includes("u0"), `the ejected endpoint answered: ${during.join(",")}`);
      await waitFor("the ejection to end", () => (Date.now() >= ejectedUntil() ? true : undefined), 10_000);
      await countBy(s.port, 6);
      assert.ok(bad.hits > hitsAtEjection, "re-admitted after the ejection time");
    },
  );

  it(
    "active HTTP checks: a killed endpoint leaves the rotation and comes back after recovery; state survives pushes",
    T,
    async () => {
      const cluster =
        "    healthCheck: { path: /healthz, interval: 100ms, timeout: 200ms, healthyThreshold: 2, unhealthyThreshold: 2 }";
      const s = await setup(3, cluster);
      const victim = s.ups[1] as Upstream;
      const port = victim.port;
      const key = `127.0.0.1:${port}`;
      const state = () => s.states.find("c")?.endpoints.get(key);
      await victim.close();
      await waitFor("the check to fail", () => (state()?.checkHealthy === false ? true : undefined), 5000);
      const during = await countBy(s.port, 30);
      assert.equal(during.get("u1"), undefined);
      assert.equal(during.get("u0"), 15);
      // A push of the same config keeps the verdict (no flap back to healthy).
      await s.push(yaml(cluster, s.ups));
      assert.equal(state()?.checkHealthy, false);
      await victim.start(port);
      await waitFor("the check to pass", () => (state()?.checkHealthy === true ? true : undefined), 5000);
      const after = await countBy(s.port, 30);
      assert.equal(after.get("u1"), 10);
    },
  );

  for (const h2c of [false, true]) {
    const kind = h2c ? "an HTTP/2 (h2c) upstream" : "an HTTP/1.1 upstream";
    const protocol = h2c ? "    protocol: http2\n" : "";

    it(
      `HTTP/2 clients to ${kind}: a 5xx is retried (x-agw-attempts), a POST only when allowed, its body resent`,
      T,
      async () => {
        const s = await setup(
          1,
          protocol,
          "        retry: { retries: 2, retryOn: [5xx], backoffBase: 1ms }",
          h2c,
        );
        const u = s.ups[0] as Upstream;
        u.failNext = 503;
        const r = await h2Via(s.port);
        assert.equal(r.status, 200);
        assert.equal(r.body, "u0");
        assert.equal(r.headers["x-agw-attempts"], "2");
        assert.equal(u.hits, 2);
        u.failNext = 503;
        const post = await h2Via(s.port, { method: "POST", body: "x" });
        assert.equal(post.status, 503);
        assert.equal(post.headers["x-agw-attempts"], "1");

        const t = await setup(
          1,
          protocol,
          "        retry: { retries: 1, retryOn: [5xx], backoffBase: 1ms, retryNonIdempotent: true }",
          h2c,
        );
        const v = t.ups[0] as Upstream;
        v.failNext = 503;
        const resent = await h2Via(t.port, { method: "POST", body: "payload" });
        assert.equal(resent.status, 200);
        assert.equal(resent.headers["x-agw-attempts"], "2");
        assert.deepEqual(v.bodies, ["payload", "payload"]);
      },
    );

    it(
      `HTTP/2 clients to ${kind}: a dead endpoint and a slow one (per-try timeout) are retried on another`,
      T,
      async () => {
        const s = await setup(2, protocol, "        retry: { retries: 1, backoffBase: 1ms }", h2c);
        await (s.ups[0] as Upstream).close();
        for (let i = 0; i < 4; i++) {
          const r = await h2Via(s.port);
          assert.equal(r.status, 200);
          assert.equal(r.body, "u1");
        }
        const t = await setup(
          2,
          protocol,
          "        retry: { retries: 1, perTryTimeout: 1s, backoffBase: 1ms }",
          h2c,
        );
        (t.ups[0] as Upstream).delayMs = 20_000;
        const answers = [await h2Via(t.port), await h2Via(t.port)];
        for (const r of answers) {
          assert.equal(r.status, 200);
          assert.equal(r.body, "u1");
        }
        // Round robin sends at least one of the two to the slow endpoint first.
        assert.ok(answers.some((r) => r.headers["x-agw-attempts"] === "2"));
      },
    );

    it(
      `HTTP/2 clients to ${kind}: the session-affinity cookie is set, then pins later requests`,
      T,
      async () => {
        const s = await setup(3, `${protocol}    sessionAffinity: { cookie: agw-sticky, ttl: 1h }`, "", h2c);
        const first = await h2Via(s.port);
        const cookies = [first.headers["set-cookie"] ?? []].flat();
        assert.equal(cookies.length, 1, String(cookies));
        assert.match(cookies[0] as string, /^agw-sticky=[0-9a-z]+; Path=\/; Max-Age=3600; HttpOnly$/);
        const value = (cookies[0] as string).split(";")[0] as string;
        for (let i = 0; i < 10; i++) {
          const r = await h2Via(s.port, { headers: { cookie: value } });
          assert.equal(r.body, first.body);
          assert.equal(r.headers["set-cookie"], undefined);
        }
      },
    );
  }
});
