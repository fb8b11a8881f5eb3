import assert from "node:assert/strict";
import { once } from "node:events";
import type net from "node:net";
import { describe, it } from "node:test";
import { cluster, endpoint, runtimeCluster } from "../../test/gateway.ts";
import { startRawOrigin } from "../../test/net.ts";
import type { Endpoint } from "../runtime/types.ts";
import { type UpstreamHandler, UpstreamPool } from "./upstream-pool.ts";

const T = { timeout: 10000 };
const handler: UpstreamHandler = { onUpstreamData() {}, onUpstreamDrain() {}, onUpstreamClose() {} };

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe("UpstreamPool", () => {
  it("reuses idle connections and honours maxRequestsPerConnection / maxIdlePerEndpoint", T, async () => {
    const o = await startRawOrigin(() => {});
    const pool = new UpstreamPool();
    const c = runtimeCluster(
      cluster("c", [endpoint(o.port)], { maxRequestsPerConnection: 2, maxIdlePerEndpoint: 1 }),
    );
    const ep = c.endpoints[0] as Endpoint;
    try {
      const a = pool.acquire(ep, c, handler);
      assert.equal(a.reused, false);
      await once(a.socket as net.Socket, "connect");
      pool.release(a, c);
      assert.equal(pool.idleConnections, 1);
      const b = pool.acquire(ep, c, handler);
      assert.equal(b, a);
      assert.equal(b.reused, true);
      pool.release(b, c); // second use reached the limit: closed, not pooled
      assert.equal(pool.idleConnections, 0);

      const x = pool.acquire(ep, c, handler);
      const y = pool.acquire(ep, c, handler);
      assert.notEqual(x, y);
      pool.release(x, c);
      pool.release(y, c); // over maxIdlePerEndpoint
      assert.equal(pool.idleConnections, 1);
      pool.retainOnly(new Set([ep.key]));
      assert.equal(pool.idleConnections, 1);
      pool.retainOnly(new Set());
      assert.equal(pool.idleConnections, 0);
    } finally {
      pool.close();
      await o.close();
    }
  });

  it("closes connections idle longer than the cluster's idleTimeoutMs", T, async () => {
    const o = await startRawOrigin(() => {});
    const pool = new UpstreamPool({ sweepIntervalMs: 20 });
    const c = runtimeCluster(cluster("c", [endpoint(o.port)], { idleTimeoutMs: 50 }));
    const ep = c.endpoints[0] as Endpoint;
    try {
      const a = pool.acquire(ep, c, handler);
      await once(a.socket as net.Socket, "connect");
      pool.release(a, c);
      await until(() => pool.idleConnections === 0);
      assert.equal(pool.idleConnections, 0);
      assert.notEqual(pool.acquire(ep, c, handler), a);
    } finally {
      pool.close();
      await o.close();
    }
  });

  it("drops an idle connection the upstream closed", T, async () => {
    const o = await startRawOrigin((s) => setTimeout(() => s.end(), 30));
    const pool = new UpstreamPool();
    const c = runtimeCluster(cluster("c", [endpoint(o.port)]));
    const ep = c.endpoints[0] as Endpoint;
    try {
      const a = pool.acquire(ep, c, handler);
      await once(a.socket as net.Socket, "connect");
      pool.release(a, c);
      await until(() => pool.idleConnections === 0);
      assert.equal(pool.idleConnections, 0);
      assert.equal(a.eof, true);
    } finally {
      pool.close();
      await o.close();
    }
  });
});
