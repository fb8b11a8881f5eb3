/**
 * A non-idempotent request is never sent twice (RFC 9110 §9.2.2), whatever retries: the resend on a
 * reused keep-alive connection that drops, and the route's retry policy (reset, 5xx, gateway-error...).
 * Counted at the origin, over HTTP/1.1 and HTTP/2 downstream, to HTTP/1.1 and HTTP/2 upstreams.
 * The GET cases are the control: the same drop is resent for an idempotent request, so the origin's
 * count does see a second send when there is one.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { describe, it } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { cluster, config, endpoint, type RouteSpec, startGateway } from "../../test/gateway.ts";

const T = { timeout: 30000 };

/** What the origin does with each request after the first on one connection (or HTTP/2 session). */
type Later = "drop" | "503";

interface CountingOrigin {
  readonly port: number;
  /** "METHOD path" of every request whose body the origin read completely. */
  readonly seen: string[];
  connections: number;
  close(): Promise<void>;
}

/**
 * The first request on a connection is answered 200 (the gateway pools the connection); each later one
 * is read to its end, counted, then dropped (the socket or session destroyed) or answered 503.
 */
async function countingOrigin(h2: boolean, later: Later): Promise<CountingOrigin> {
  const origin = { port: 0, seen: [] as string[], connections: 0, close: async () => {} };
  const onRequest = (
    nth: number,
    method: string,
    path: string,
    body: NodeJS.ReadableStream,
    answer: (status: number) => void,
    drop: () => void,
  ) => {
    body.resume();
    body.on("end", () => {
      origin.seen.push(`${method} ${path}`);
      if (nth === 1) answer(200);
      else if (later === "503") answer(503);
      else drop();
    });
  };
  if (h2) {
    const server = http2.createServer();
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (session) => {
      origin.connections++;
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
      let n = 0;
      session.on("stream", (stream, headers) => {
        const nth = ++n;
        onRequest(
          nth,
          String(headers[":method"]),
          String(headers[":path"]),
          stream,
          (status) => {
            stream.respond({ ":status": status });
            stream.end(`answer ${nth}`);
          },
          () => session.destroy(),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    origin.port = (server.address() as net.AddressInfo).port;
    origin.close = async () => {
      for (const s of sessions) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    };
  } else {
    const perSocket = new WeakMap<net.Socket, number>();
    const server = http.createServer({ keepAliveTimeout: 30000 }, (req, res) => {
      const nth = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, nth);
      onRequest(
        nth,
        req.method ?? "",
        req.url ?? "",
        req,
        (status) => {
          res.statusCode = status;
          res.end(`answer ${nth}`);
        },
        () => req.socket.destroy(),
      );
    });
    server.on("connection", () => origin.connections++);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    origin.port = (server.address() as net.AddressInfo).port;
    origin.close = async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    };
  }
  return origin;
}

interface Answer {
  readonly status: number;
}

/** One request over HTTP/1.1 (a fresh client connection) or over an HTTP/2 session (h2c). */
async function send(port: number, h2: boolean, method: string, path: string, body: string): Promise<Answer> {
  if (!h2) {
    return new Promise((resolve, reject) => {
      const req = http.request({ port, host: "127.0.0.1", method, path, agent: false }, (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
        res.on("error", () => resolve({ status: res.statusCode ?? 0 }));
      });
      req.on("error", reject);
      req.end(body);
    });
  }
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ":method": method, ":path": path });
      let status = 0;
      stream.on("response", (h) => {
        status = Number(h[":status"]);
      });
      stream.on("error", reject);
      stream.resume();
      stream.on("close", () => resolve({ status }));
      if (!stream.writableEnded) stream.end(body); // a GET's stream is ended with its HEADERS
    });
  } finally {
    session.destroy();
  }
}

const RETRY_POLICY: RouteSpec["action"] = {
  retry: {
    retries: 3,
    retryOn: ["connect-failure", "refused-stream", "reset", "5xx", "gateway-error"],
    backoffBase: durationFromMs(1),
    backoffMax: durationFromMs(5),
  },
};

describe("a non-idempotent request is never sent twice", () => {
  for (const downstreamH2 of [false, true])
    for (const upstreamH2 of [false, true])
      for (const policy of [false, true])
        for (const later of ["drop", "503"] as const) {
          if (later === "503" && !policy) continue; // a 503 without a policy is simply forwarded
          const down = downstreamH2 ? "HTTP/2" : "HTTP/1.1";
          const up = upstreamH2 ? "HTTP/2" : "HTTP/1.1";
          const how = later === "drop" ? "the reused upstream connection drops" : "the origin answers 503";
          const retry = policy ? "with a retry policy on reset/5xx/gateway-error" : "without a retry policy";
          for (const method of ["POST", "GET"]) {
            // The control: an idempotent GET is resent on a reused HTTP/1.1 connection that dropped,
            // and retried by the policy; an HTTP/2 upstream session is not resent without a policy.
            const resent = method === "GET" && (policy || !upstreamH2);
            const name = `${method} ${down} → ${up}, ${how}, ${retry}: the origin sees it ${resent ? "again" : "once"}`;
            it(name, T, async () => {
              const origin = await countingOrigin(upstreamH2, later);
              const gw = await startGateway(
                config(
                  "v1",
                  [{ prefix: "/", cluster: "c", ...(policy && { action: RETRY_POLICY }) }],
                  [cluster("c", [endpoint(origin.port)], { http2: upstreamH2 })],
                ),
              );
              try {
                const warm = await send(gw.port, downstreamH2, "GET", "/warm", "");
                assert.equal(warm.status, 200);
                assert.equal(origin.connections, 1);
                const r = await send(gw.port, downstreamH2, method, "/order", "buy=1");
                // The request went on the pooled connection (no second connection before it).
                assert.equal(origin.seen[1], `${method} /order`);
                const sent = origin.seen.filter((s) => s === `${method} /order`).length;
                if (resent) {
                  // Resent once after a drop; retried up to the policy's 3 times while the origin answers 503.
                  if (later === "drop") assert.equal(sent, 2, `${method} sent ${sent} times`);
                  else assert.ok(sent >= 2, `${method} sent ${sent} times`);
                  if (later === "drop") assert.equal(r.status, 200);
                } else {
                  assert.equal(sent, 1, `${method} sent ${sent} times`);
                  assert.ok(r.status >= 500, `status ${r.status}`);
                }
              } finally {
                await gw.close();
                await origin.close();
              }
            });
          }
        }
});
