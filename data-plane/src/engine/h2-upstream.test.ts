/**
 * HTTP/2 upstream sessions against real node:http2 origins: session reuse and the stream limit,
 * GOAWAY, REFUSED_STREAM resends, connect failures; through the HTTP/1.1 engine (the bridge) and
 * from HTTP/2 clients (h2c prior knowledge to the proxy).
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import type net from "node:net";
import { after, describe, it } from "node:test";
import { waitFor } from "../../../test/helpers.ts";
import { cluster, config, endpoint, type Gateway, startGateway } from "../../test/gateway.ts";

const T = { timeout: 20000 };

interface H2Origin {
  readonly port: number;
  /** Sessions accepted so far. */
  sessions: number;
  streams: number;
  close(): Promise<void>;
}

async function startH2Origin(
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, o: H2Origin) => void,
  settings: http2.Settings = {},
): Promise<H2Origin> {
  const server = http2.createServer({ settings });
  const open = new Set<http2.ServerHttp2Session>();
  const origin: H2Origin = {
    port: 0,
    sessions: 0,
    streams: 0,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  server.on("session", (s) => {
    origin.sessions++;
    open.add(s);
    s.on("close", () => open.delete(s));
  });
  server.on("stream", (stream, headers) => {
    origin.streams++;
    stream.on("error", () => {});
    onStream(stream, headers, origin);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  (origin as { port: number }).port = (server.address() as net.AddressInfo).port;
  return origin;
}

/** Answers after reading the whole request: 200, the body echoed, a trailer. */
function echo(delayMs = 0) {
  return (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () =>
      setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ":status": 200, "x-path": String(headers[":path"]) }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "x-trailer": "done" }));
        stream.end(Buffer.concat(chunks));
      }, delayMs),
    );
  };
}

async function gateway(originPort: number): Promise<Gateway> {
  const c = cluster("h2", [endpoint(originPort)], { http2: true });
  const cfg = config("v1", [{ prefix: "/", cluster: "h2" }], [c]);
  return startGateway(cfg);
}

/** One request over HTTP/2 (h2c prior knowledge) to the gateway. */
function h2Request(
  client: http2.ClientHttp2Session,
  path: string,
  body?: string,
): Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders | null; error: string }> {
  return new Promise((resolve) => {
    const req = client.request({ ":method": body === undefined ? "GET" : "POST", ":path": path });
    let status = 0;
    let data = "";
    let trailers: http2.IncomingHttpHeaders | null = null;
    req.on("response", (h) => {
      status = Number(h[":status"]);
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      data += d;
    });
    req.on("close", () => resolve({ status, body: data, trailers, error: "" }));
    req.on("error", (e) => resolve({ status, body: data, trailers, error: e.message }));
    req.end(body);
  });
}

describe("HTTP/2 upstreams", () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it(
    "one session carries sequential and concurrent requests, from HTTP/1.1 and HTTP/2 clients",
    T,
    async () => {
      const origin = await startH2Origin(echo());
      const gw = await gateway(origin.port);
      cleanups.push(
        () => gw.close(),
        () => origin.close(),
      );
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`http://127.0.0.1:${gw.port}/seq/${i}`, { method: "POST", body: `b${i}` });
        assert.equal(res.status, 200);
        assert.equal(await res.text(), `b${i}`);
      }
      const all = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          fetch(`http://127.0.0.1:${gw.port}/par/${i}`).then((r) => r.status),
        ),
      );
      assert.deepEqual(new Set(all), new Set([200]));
      const client = http2.connect(`http://127.0.0.1:${gw.port}`);
      cleanups.push(() => client.destroy());
      const got = await Promise.all(
        Array.from({ length: 10 }, (_, i) => h2Request(client, `/h2/${i}`, `x${i}`)),
      );
      for (const [i, r] of got.entries()) {
        assert.equal(r.status, 200);
        assert.equal(r.body, `x${i}`);
        assert.equal(r.trailers?.["x-trailer"], "done");
      }
      assert.equal(origin.sessions, 1);
      assert.equal(origin.streams, 35);
    },
  );

  it("a session at the peer's max concurrent streams: the next request opens another", T, async () => {
    const origin = await startH2Origin(echo(150), { maxConcurrentStreams: 1 });
    const gw = await gateway(origin.port);
    cleanups.push(
      () => gw.close(),
      () => origin.close(),
    );
    // The first request lets the peer's SETTINGS arrive; then three at once need three sessions.
    assert.equal((await fetch(`http://127.0.0.1:${gw.port}/first`)).status, 200);
    const statuses = await Promise.all(
      [1, 2, 3].map((i) => fetch(`http://127.0.0.1:${gw.port}/c${i}`).then((r) => r.status)),
    );
    assert.deepEqual(statuses, [200, 200, 200]);
    assert.equal(origin.sessions, 3);
  });

  it("sessions show in the pool's states; past maxIdlePerEndpoint, idle sessions close", T, async () => {
    const origin = await startH2Origin(echo(300), { maxConcurrentStreams: 1 });
    const c = cluster("h2", [endpoint(origin.port)], { http2: true, maxIdlePerEndpoint: 1 });
    const cfg = config("v1", [{ prefix: "/", cluster: "h2" }], [c]);
    const gw = await startGateway(cfg);
    cleanups.push(
      () => gw.close(),
      () => origin.close(),
    );
    assert.equal((await fetch(`http://127.0.0.1:${gw.port}/first`)).status, 200);
    const states = () => gw.pool.h2.sessionStates();
    const inFlight = Promise.all([1, 2, 3].map((i) => fetch(`http://127.0.0.1:${gw.port}/c${i}`)));
    await waitFor("three active sessions", () => states().active === 3 || undefined, 5000);
    for (const r of await inFlight) assert.equal(r.status, 200);
    await waitFor(
      "one idle session left",
      () => {
        const s = states();
        return (s.idle === 1 && s.active === 0) || undefined;
      },
      5000,
    );
    assert.equal(origin.sessions, 3);
  });

  it("GOAWAY: the stream in flight finishes, the next request goes to a new session", T, async () => {
    const origin = await startH2Origin((stream, headers) => {
      if (headers[":path"] === "/goaway") {
        stream.session?.close(); // GOAWAY(NO_ERROR): this stream may finish, no new ones
        setTimeout(() => {
          stream.respond({ ":status": 200 });
          stream.end("finished after GOAWAY");
        }, 100);
        return;
      }
      echo()(stream, headers);
    });
    const gw = await gateway(origin.port);
    cleanups.push(
      () => gw.close(),
      () => origin.close(),
    );
    const res = await fetch(`http://127.0.0.1:${gw.port}/goaway`);
    assert.equal(await res.text(), "finished after GOAWAY");
    const next = await fetch(`http://127.0.0.1:${gw.port}/next`, { method: "POST", body: "again" });
    assert.equal(await next.text(), "again");
    assert.equal(origin.sessions, 2);
  });

  it("REFUSED_STREAM: the request (a POST with a body) is resent and answered", T, async () => {
    let refused = 0;
    const origin = await startH2Origin((stream, headers) => {
      if (refused === 0) {
        refused++;
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      echo()(stream, headers);
    });
    const gw = await gateway(origin.port);
    cleanups.push(
      () => gw.close(),
      () => origin.close(),
    );
    const res = await fetch(`http://127.0.0.1:${gw.port}/once`, { method: "POST", body: "not lost" });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "not lost");
    assert.equal(origin.streams, 2);
    const client = http2.connect(`http://127.0.0.1:${gw.port}`);
    cleanups.push(() => client.destroy());
    refused = 0;
    const r = await h2Request(client, "/h2-once", "h2 body");
    assert.equal(r.status, 200);
    assert.equal(r.body, "h2 body");
  });

  it(
    "a reset after the response head: the HTTP/1.1 client sees a truncated response, the HTTP/2 client a reset",
    T,
    async () => {
      const origin = await startH2Origin((stream) => {
        stream.respond({ ":status": 200 });
        stream.write("partial");
        // destroy, not close(): close() ends the DATA side cleanly before its RST_STREAM.
        setTimeout(() => stream.destroy(new Error("origin failed mid-response")), 50);
      });
      const gw = await gateway(origin.port);
      cleanups.push(
        () => gw.close(),
        () => origin.close(),
      );
      const res = await fetch(`http://127.0.0.1:${gw.port}/cut`);
      assert.equal(res.status, 200);
      await assert.rejects(res.text());
      const client = http2.connect(`http://127.0.0.1:${gw.port}`);
      cleanups.push(() => client.destroy());
      const r = await h2Request(client, "/cut");
      assert.equal(r.status, 200);
      assert.match(r.error, /NGHTTP2_INTERNAL_ERROR/);
    },
  );

  it("nothing listening: 503 upstream_connect_failed", T, async () => {
    const origin = await startH2Origin(echo());
    const port = origin.port;
    await origin.close();
    const gw = await gateway(port);
    cleanups.push(() => gw.close());
    const res = await fetch(`http://127.0.0.1:${gw.port}/`);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("x-agw-error"), "upstream_connect_failed");
    const client = http2.connect(`http://127.0.0.1:${gw.port}`);
    cleanups.push(() => client.destroy());
    assert.equal((await h2Request(client, "/")).status, 503);
  });
});
