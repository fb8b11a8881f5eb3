/**
 * Active health checks without the gateway around them: one probe against real origins (HTTP status
 * ranges, Host, path, timeout, TCP), and the checkers following the config (started, kept with their
 * verdict, restarted on a new spec, stopped), with thresholds decided by the order of probes.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, describe, it } from "node:test";
import { waitFor } from "../../../test/helpers.ts";
import type { Endpoint } from "../runtime/types.ts";
import { HealthCheckers, type HealthCheckSpec, probe } from "./health-check.ts";
import { ClusterStates } from "./state.ts";

const T = { timeout: 20_000 };

function spec(over: Partial<HealthCheckSpec> = {}): HealthCheckSpec {
  return {
    kind: "http",
    intervalMs: 5,
    jitterMs: 0,
    timeoutMs: 5000,
    healthyThreshold: 2,
    unhealthyThreshold: 2,
    path: "/healthz",
    host: "",
    expectedStatuses: [[200, 300]],
    ...over,
  };
}

interface Origin {
  readonly ep: Endpoint;
  readonly seen: Array<{ url: string; host: string; agent: string }>;
  /** Each probe's status and, when `verdict` is set, the endpoint's verdict as the probe arrived. */
  readonly arrivals: Array<[number, boolean | undefined]>;
  verdict?: () => boolean;
  status: number;
}

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
after(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) await new Promise((r) => s.close(r));
});

function track<S extends net.Server>(server: S): S {
  servers.push(server);
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  return server;
}

async function origin(status = 200): Promise<Origin> {
  const o: Origin = { ep: { host: "127.0.0.1", port: 0, key: "" }, seen: [], arrivals: [], status };
  const server = track(
    http.createServer((req, res) => {
      o.seen.push({
        url: req.url ?? "",
        host: req.headers.host ?? "",
        agent: req.headers["user-agent"] ?? "",
      });
      o.arrivals.push([o.status, o.verdict?.()]);
      res.statusCode = o.status;
      res.end();
    }),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return Object.assign(o, { ep: { host: "127.0.0.1", port, key: `127.0.0.1:${port}` } });
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe("health check probe", () => {
  it("HTTP: an expected status passes, others fail; the path, Host and user agent are sent", T, async () => {
    const o = await origin();
    const ranges: HealthCheckSpec["expectedStatuses"] = [
      [200, 300],
      [418, 419],
    ];
    const results: Record<number, boolean> = {};
    for (const status of [199, 200, 299, 300, 417, 418, 419, 503]) {
      o.status = status;
      results[status] = await probe(o.ep, spec({ expectedStatuses: ranges }));
    }
    assert.deepEqual(results, {
      199: false,
      200: true,
      299: true,
      300: false,
      417: false,
      418: true,
      419: false,
      503: false,
    });
    o.status = 200;
    await probe(o.ep, spec({ host: "svc.example", path: "/ready?x=1" }));
    assert.deepEqual(o.seen.at(-2), { url: "/healthz", host: o.ep.key, agent: "agw-health-check" });
    assert.deepEqual(o.seen.at(-1), { url: "/ready?x=1", host: "svc.example", agent: "agw-health-check" });
  });

  it("HTTP: no answer within the timeout, a refused connection: failed", T, async () => {
    const silent = track(net.createServer(() => {}));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as net.AddressInfo).port;
    assert.equal(
      await probe({ host: "127.0.0.1", port, key: `127.0.0.1:${port}` }, spec({ timeoutMs: 50 })),
      false,
    );
    const refused = await closedPort();
    assert.equal(await probe({ host: "127.0.0.1", port: refused, key: "x" }, spec()), false);
  });

  it("TCP: a connection passes, a refused one fails", T, async () => {
    const o = await origin();
    assert.equal(await probe(o.ep, spec({ kind: "tcp" })), true);
    assert.equal(o.seen.length, 0, "a TCP check sends no request");
    const refused = await closedPort();
    assert.equal(await probe({ host: "127.0.0.1", port: refused, key: "x" }, spec({ kind: "tcp" })), false);
  });
});

describe("health checkers follow the config", () => {
  it(
    "thresholds both ways, checkers kept across pushes, restarted on a new spec, stopped when removed",
    T,
    async () => {
      const victim = await origin();
      const sentinel = await origin();
      const states = new ClusterStates();
      const c = states.get("c");
      const [vs] = c.sync([victim.ep, sentinel.ep]);
      assert.ok(vs);
      const checkers = new HealthCheckers(states);
      const cluster = (s: HealthCheckSpec | undefined) => ({
        name: "c",
        endpoints: [victim.ep, sentinel.ep],
        healthCheck: s,
      });
      const probesOf = (o: Origin, n: number) =>
        waitFor(`${n} probes`, () => (o.seen.length >= n ? true : undefined), 15_000);
      try {
        victim.verdict = () => vs.checkHealthy;
        /** From the first probe answered `status` on: `n` probes' [status, verdict on arrival]. */
        const run = async (status: number, n: number) => {
          const from = victim.arrivals.length;
          victim.status = status;
          await waitFor(
            `${n} probes answered ${status}`,
            () => {
              const i = victim.arrivals.findIndex(([st], k) => k >= from && st === status);
              return i >= 0 && victim.arrivals.length >= i + n ? victim.arrivals.slice(i, i + n) : undefined;
            },
            15_000,
          );
          const i = victim.arrivals.findIndex(([st], k) => k >= from && st === status);
          return victim.arrivals.slice(i, i + n);
        };
        checkers.activate([cluster(spec({ unhealthyThreshold: 3, healthyThreshold: 2 }))]);
        // Probes of one endpoint are sequential: when probe k+1 arrives, probes 1..k are judged.
        assert.deepEqual(await run(200, 2), [
          [200, true],
          [200, true],
        ]);
        assert.deepEqual(await run(503, 4), [
          [503, true],
          [503, true],
          [503, true],
          [503, false],
        ]);
        assert.deepEqual(await run(200, 3), [
          [200, false],
          [200, false],
          [200, true],
        ]);

        // The same spec again: the checker (and its counts) is kept, not restarted.
        vs.checkSuccesses = 1000;
        checkers.activate([cluster(spec({ unhealthyThreshold: 3, healthyThreshold: 2 }))]);
        await probesOf(victim, victim.seen.length + 2);
        assert.ok(vs.checkSuccesses > 1000, `kept: ${vs.checkSuccesses}`);
        // A new spec restarts it: it probes the new path.
        checkers.activate([cluster(spec({ unhealthyThreshold: 3, healthyThreshold: 2, path: "/v2" }))]);
        await waitFor(
          "the new path",
          () => (victim.seen.some((s) => s.url === "/v2") ? true : undefined),
          15_000,
        );

        // Checks removed from the config: the endpoint counts as healthy, and it is probed no more (the
        // sentinel, still checked in another cluster, is probed many times meanwhile).
        victim.status = 503;
        await waitFor("out again", () => (vs.checkHealthy ? undefined : true), 15_000);
        const other = states.get("other");
        other.sync([sentinel.ep]);
        checkers.activate([
          cluster(undefined),
          { name: "other", endpoints: [sentinel.ep], healthCheck: spec() },
        ]);
        assert.equal(vs.checkHealthy, true);
        const stoppedAt = victim.seen.length;
        await probesOf(sentinel, sentinel.seen.length + 10);
        assert.ok(
          victim.seen.length <= stoppedAt + 1,
          `probed after stop: ${victim.seen.length - stoppedAt}`,
        );
      } finally {
        checkers.close();
      }
      // Closed: nothing is probed any more.
      const closedAt = sentinel.seen.length;
      const marker = await origin();
      const markers = new HealthCheckers(states);
      const m = states.get("m");
      m.sync([marker.ep]);
      markers.activate([{ name: "m", endpoints: [marker.ep], healthCheck: spec() }]);
      await probesOf(marker, 10);
      markers.close();
      assert.ok(sentinel.seen.length <= closedAt + 1);
    },
  );

  it("a cluster without state is skipped; an endpoint unknown to the state is not checked", T, async () => {
    const o = await origin();
    const states = new ClusterStates();
    const checkers = new HealthCheckers(states);
    const marker = await origin();
    states.get("m").sync([marker.ep]);
    states.get("known");
    checkers.activate([
      { name: "unknown", endpoints: [o.ep], healthCheck: spec() },
      { name: "known", endpoints: [o.ep], healthCheck: spec() },
      { name: "m", endpoints: [marker.ep], healthCheck: spec() },
    ]);
    try {
      await waitFor("marker probes", () => (marker.seen.length >= 10 ? true : undefined), 15_000);
      assert.equal(o.seen.length, 0);
    } finally {
      checkers.close();
    }
  });
});
