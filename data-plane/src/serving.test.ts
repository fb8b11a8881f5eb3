/**
 * The serving unit's swap (serving.ts, ConfigStore → pool.retainOnly): a push keeps the pooled upstream
 * connections of clusters it did not change, HTTP/1.1 and HTTP/2 alike, counted at the origins; the
 * connections to endpoints the push removed are closed.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { describe, it } from "node:test";
import { waitFor } from "../../test/helpers.ts";
import { cluster, config, endpoint, type GatewayConfig, startGateway } from "../test/gateway.ts";
import { startHttpOrigin } from "../test/net.ts";

const T = { timeout: 30000 };

/** An h2c origin that counts sessions and answers every stream with its name. */
async function h2Origin(name: string) {
  const server = http2.createServer();
  const origin = { port: 0, sessions: 0, close: async () => {} };
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    origin.sessions++;
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.on("stream", (stream) => {
    stream.respond({ ":status": 200 });
    stream.end(name);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin.port = (server.address() as net.AddressInfo).port;
  origin.close = async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return origin;
}

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ port, host: "127.0.0.1", path, agent: false }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c.toString();
        });
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

describe("a push through the real swap", () => {
  it(
    "keeps pooled connections of unchanged clusters (HTTP/1.1 and HTTP/2), closes those to removed endpoints",
    T,
    async () => {
      const a = await startHttpOrigin((_req, res) => res.end("a"));
      const h = await h2Origin("h");
      const b1 = await startHttpOrigin((_req, res) => res.end("b1"));
      const b2 = await startHttpOrigin((_req, res) => res.end("b2"));
      const cfg = (version: string, b: number): GatewayConfig =>
        config(
          version,
          [
            { prefix: "/a", cluster: "a" },
            { prefix: "/h", cluster: "h" },
            { prefix: "/b", cluster: "b" },
          ],
          [
            cluster("a", [endpoint(a.port)]),
            cluster("h", [endpoint(h.port)], { http2: true }),
            cluster("b", [endpoint(b)]),
          ],
        );
      const gw = await startGateway(cfg("v1", b1.port));
      try {
        assert.equal(await get(gw.port, "/a"), "a");
        assert.equal(await get(gw.port, "/h"), "h");
        assert.equal(await get(gw.port, "/b"), "b1");
        assert.deepEqual([a.connections, h.sessions, b1.connections], [1, 1, 1]);
        // Ten pushes: cluster b moves between its two origins; a and h are untouched.
        for (let i = 0; i < 10; i++) {
          await gw.push(cfg(`v${i + 2}`, i % 2 === 0 ? b2.port : b1.port));
          assert.equal(await get(gw.port, "/a"), "a");
          assert.equal(await get(gw.port, "/h"), "h");
          assert.equal(await get(gw.port, "/b"), i % 2 === 0 ? "b2" : "b1");
        }
        assert.equal(a.connections, 1, "the HTTP/1.1 connection of the unchanged cluster was kept");
        assert.equal(h.sessions, 1, "the HTTP/2 session of the unchanged cluster was kept");
        // Each push that moved b closed the idle connection to the endpoint it left.
        assert.equal(b1.connections, 6);
        assert.equal(b2.connections, 5);
        await gw.push(cfg("v12", b2.port));
        await waitFor("the idle connection to b1 closed", () =>
          gw.pool.idleConnections === 1 ? true : undefined,
        );
      } finally {
        await gw.close();
        for (const o of [a, h, b1, b2]) await o.close();
      }
    },
  );
});
