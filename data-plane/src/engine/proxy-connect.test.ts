import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import net from "node:net";
import { describe, it } from "node:test";
import { requireOrSkip, waitFor } from "../../../test/helpers.ts";
import type { GatewayConfig } from "../../test/gateway.ts";
import { cluster, config, endpoint, startGateway } from "../../test/gateway.ts";
import {
  closedPort,
  curl,
  parseResponses,
  rawExchange,
  startHttpOrigin,
  startRawOrigin,
} from "../../test/net.ts";

const T = { timeout: 20000 };

function until(what: string, cond: () => boolean): Promise<true> {
  return waitFor(what, () => cond() || undefined, 5000);
}

function connectTo(port: number, version: string, allow = true): GatewayConfig {
  return config(
    `v${version}`,
    [{ prefix: "/", cluster: "c", connect: allow }],
    [cluster("c", [endpoint(port)])],
  );
}

/** A TCP echo origin that prefixes nothing: what a tunnel must carry byte for byte. */
function echoOrigin() {
  return startRawOrigin((s) => {
    s.on("data", (c: Buffer) => s.write(c));
    s.on("end", () => s.end());
  });
}

async function curlAvailable(): Promise<boolean> {
  return (await curl(["--version"])).code === 0;
}

describe("CONNECT", () => {
  it(
    "curl through the gateway as a proxy (-p -x): CONNECT by authority, then HTTP inside the tunnel",
    T,
    async (t) => {
      if (!requireOrSkip(t, await curlAvailable(), "curl is not installed")) return;
      const origin = await startHttpOrigin((req, res) => res.end(`origin saw ${req.method} ${req.url}`));
      const p = await startGateway(connectTo(origin.port, "1"));
      try {
        const r = await curl([
          "-sS",
          "-p",
          "-x",
          `http://127.0.0.1:${p.port}`,
          "http://backend.test:8080/hello",
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.toString(), "origin saw GET /hello");
        assert.deepEqual(
          origin.requests.map((x) => x.method),
          ["GET"],
        );
      } finally {
        await p.close();
        await origin.close();
      }
    },
  );

  it(
    "raw socket: 200 Connection Established, bytes spliced both ways, survives config pushes",
    T,
    async () => {
      const echo = await echoOrigin();
      const cfg = connectTo(echo.port, "1");
      const p = await startGateway(cfg);
      const s = net.connect(p.port, "127.0.0.1");
      let got = Buffer.alloc(0);
      s.on("data", (c: Buffer) => {
        got = Buffer.concat([got, c]);
      });
      try {
        // The first tunnel bytes ride with the CONNECT request (a client that does not wait for the 200).
        s.write("CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\nearly;");
        await until("200 and the early bytes", () => got.toString().endsWith("early;"));
        assert.match(
          got.toString(),
          /^HTTP\/1\.1 200 Connection Established\r\nx-request-id: [^\r]+\r\n\r\nearly;$/,
        );
        for (let i = 0; i < 20; i++) await p.push(connectTo(await closedPort(), String(i + 2), i % 2 === 0));
        got = Buffer.alloc(0);
        const blob = Buffer.alloc(256 * 1024, 7);
        s.write(blob);
        await until("the blob echoed after 20 pushes", () => got.length === blob.length);
        assert.ok(got.equals(blob));
        s.end(); // the half-close goes through: the echo origin ends, so does the tunnel
        await until("tunnel closed", () => s.destroyed || s.readableEnded);
      } finally {
        s.destroy();
        await p.close();
        await echo.close();
      }
    },
  );

  it("a route without connect: 405 connect_not_allowed; CONNECT to a dead endpoint: 503", T, async () => {
    const echo = await echoOrigin();
    const dead = await closedPort();
    const cfg = connectTo(echo.port, "1", false);
    const p = await startGateway(cfg);
    try {
      const req = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
      const r = await rawExchange(p.port, req);
      const res = parseResponses(r.data).responses[0];
      assert.equal(res?.status, 405);
      assert.equal(res?.headers.get("x-agw-error"), "connect_not_allowed");
      assert.equal(JSON.parse(res?.body.toString() ?? "").error, "connect_not_allowed");
      assert.ok(r.closed);
      assert.equal(echo.connections, 0);
      await p.push(connectTo(dead, "2"));
      const r2 = await rawExchange(p.port, req);
      assert.equal(parseResponses(r2.data).responses[0]?.status, 503);
    } finally {
      await p.close();
      await echo.close();
    }
  });
});

/** A CONNECT stream over h2c with prior knowledge; `got` collects what comes back through it. */
function h2Connect(session: http2.ClientHttp2Session, authority: string) {
  const stream = session.request({ ":method": "CONNECT", ":authority": authority });
  const r = {
    stream,
    status: 0,
    headers: {} as http2.IncomingHttpHeaders,
    got: Buffer.alloc(0),
    ended: false,
    closed: false,
  };
  stream.on("response", (h) => {
    r.headers = h;
    r.status = Number(h[":status"]);
  });
  stream.on("data", (c: Buffer) => {
    r.got = Buffer.concat([r.got, c]);
  });
  stream.on("end", () => {
    r.ended = true;
  });
  stream.on("close", () => {
    r.closed = true;
  });
  stream.on("error", () => {});
  return r;
}

describe("CONNECT over HTTP/2 (RFC 9113 §8.5)", () => {
  it("200, then DATA ↔ TCP both ways across config pushes; END_STREAM ↔ FIN", T, async () => {
    const echo = await echoOrigin();
    const cfg = connectTo(echo.port, "1");
    const p = await startGateway(cfg);
    const session = http2.connect(`http://127.0.0.1:${p.port}`);
    session.on("error", () => {});
    try {
      const t = h2Connect(session, "db.internal:5432");
      t.stream.write("early;"); // before the 200: kept for the tunnel
      await until("200 and the early bytes echoed", () => t.got.toString() === "early;");
      assert.equal(t.status, 200);
      assert.match(String(t.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
      for (let i = 0; i < 20; i++) await p.push(connectTo(await closedPort(), String(i + 2), i % 2 === 0));
      t.got = Buffer.alloc(0);
      const blob = randomBytes(512 * 1024); // past the stream's flow-control window: backpressure both ways
      t.stream.write(blob);
      await until("the blob echoed after 20 pushes", () => t.got.length === blob.length);
      assert.ok(t.got.equals(blob));
      t.stream.end(); // END_STREAM → FIN to the echo origin, which ends → END_STREAM back
      await until("the tunnel ended", () => t.ended);
      assert.equal(echo.connections, 1);
    } finally {
      session.destroy();
      await p.close();
      await echo.close();
    }
  });

  it(
    "the upstream ends first: END_STREAM to the client, which gets lingerTimeoutMs to end its side",
    T,
    async () => {
      const closer = await startRawOrigin((s) => {
        s.on("data", () => s.end("bye"));
      });
      const p = await startGateway(connectTo(closer.port, "1"), { proxy: { lingerTimeoutMs: 300 } });
      const session = http2.connect(`http://127.0.0.1:${p.port}`);
      session.on("error", () => {});
      try {
        const t = h2Connect(session, "a.test:443");
        t.stream.write("hello");
        await until("the upstream's bytes and its FIN", () => t.ended && t.got.toString() === "bye");
        // The client never ends its side: the stream is closed once the linger time is over.
        await until("the half-open stream closed", () => t.closed);
        assert.equal(t.stream.rstCode, http2.constants.NGHTTP2_NO_ERROR);
      } finally {
        session.destroy();
        await p.close();
        await closer.close();
      }
    },
  );

  it(
    "a route without connect: 405; a dead endpoint: 503; an upstream reset: RST_STREAM CONNECT_ERROR",
    T,
    async () => {
      const echo = await echoOrigin();
      const resetter = await startRawOrigin((s) => {
        s.on("data", () => s.resetAndDestroy());
      });
      const cfg = connectTo(echo.port, "1", false);
      const p = await startGateway(cfg);
      const session = http2.connect(`http://127.0.0.1:${p.port}`);
      session.on("error", () => {});
      try {
        const denied = h2Connect(session, "a.test:443");
        await until("405", () => denied.ended);
        assert.equal(denied.status, 405);
        assert.equal(denied.headers["x-agw-error"], "connect_not_allowed");
        assert.equal(JSON.parse(denied.got.toString()).error, "connect_not_allowed");
        assert.equal(echo.connections, 0);

        await p.push(connectTo(await closedPort(), "2"));
        const dead = h2Connect(session, "a.test:443");
        await until("503", () => dead.ended);
        assert.equal(dead.status, 503);
        assert.equal(dead.headers["x-agw-error"], "upstream_connect_failed");

        await p.push(connectTo(resetter.port, "3"));
        const cut = h2Connect(session, "a.test:443");
        await until("200", () => cut.status === 200);
        cut.stream.write("boom");
        await until("the stream reset", () => cut.closed);
        assert.equal(cut.stream.rstCode, http2.constants.NGHTTP2_CONNECT_ERROR);

        // The session carries on: a tunnel on it still works.
        await p.push(connectTo(echo.port, "4"));
        const ok = h2Connect(session, "a.test:443");
        ok.stream.end("still here");
        await until("echoed and ended", () => ok.ended);
        assert.equal(ok.got.toString(), "still here");
      } finally {
        session.destroy();
        await p.close();
        await echo.close();
        await resetter.close();
      }
    },
  );
});
