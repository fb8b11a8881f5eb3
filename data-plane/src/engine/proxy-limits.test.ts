import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { describe, it } from "node:test";
import { waitFor } from "../../../test/helpers.ts";
import type { GatewayConfig } from "../../test/gateway.ts";
import { cluster, config, endpoint, limits, startGateway, withLimits } from "../../test/gateway.ts";
import { parseResponses, rawExchange, startHttpOrigin } from "../../test/net.ts";
import { AGW_ERRORS } from "./errors.ts";

const T = { timeout: 20000 };

function until(what: string, cond: () => boolean): Promise<true> {
  return waitFor(what, () => cond() || undefined, 5000);
}

/** An origin that counts the request body bytes it receives and answers 200 "ok" at the body's end. */
async function countingOrigin() {
  const seen = { bodyBytes: 0, requests: 0 };
  const origin = await startHttpOrigin((req, res) => {
    seen.requests++;
    req.on("data", (c: Buffer) => {
      seen.bodyBytes += c.length;
    });
    req.on("end", () => res.end("ok"));
    req.on("error", () => {});
  });
  return { origin, seen };
}

function single(port: number, maxRequestBodyBytes?: number): GatewayConfig {
  return config(
    "v",
    [{ prefix: "/", cluster: "c", ...(maxRequestBodyBytes !== undefined && { maxRequestBodyBytes }) }],
    [cluster("c", [endpoint(port)])],
  );
}

/** A raw client that writes when told and collects everything it receives. */
function rawClient(port: number) {
  const s = net.connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  let closed = false;
  let reset = false;
  s.on("data", (c: Buffer) => chunks.push(c));
  s.on("error", () => {
    reset = true;
  });
  s.on("close", () => {
    closed = true;
  });
  return {
    socket: s,
    data: () => Buffer.concat(chunks),
    closed: () => closed,
    reset: () => reset,
  };
}

describe("request body size limit (413)", () => {
  it("Content-Length over the limit: 413 before the upstream sees anything, then close", T, async () => {
    const { origin, seen } = await countingOrigin();
    const p = await startGateway(withLimits(single(origin.port), limits({ maxRequestBodyBytes: 100 })));
    try {
      const r = await rawExchange(
        p.port,
        `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n${"x".repeat(101)}`,
      );
      const res = parseResponses(r.data).responses[0];
      assert.equal(res?.status, 413);
      assert.equal(res?.headers.get("x-agw-error"), AGW_ERRORS.AGW_ERR_REQUEST_BODY_TOO_LARGE);
      assert.equal(res?.headers.get("connection"), "close");
      assert.equal(JSON.parse(res?.body.toString() ?? "").error, "request_body_too_large");
      assert.ok(r.closed);
      assert.equal(origin.connections, 0);
      // At the limit exactly is fine.
      const ok = await rawExchange(
        p.port,
        `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nConnection: close\r\n\r\n${"x".repeat(100)}`,
      );
      assert.equal(parseResponses(ok.data).responses[0]?.status, 200);
      assert.equal(seen.bodyBytes, 100);
    } finally {
      await p.close();
      await origin.close();
    }
  });

  it("a chunked body crossing the limit: 413, and the upstream got no byte past the limit", T, async () => {
    const { origin, seen } = await countingOrigin();
    const p = await startGateway(withLimits(single(origin.port), limits({ maxRequestBodyBytes: 1000 })));
    const c = rawClient(p.port);
    try {
      c.socket.write("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
      c.socket.write(`258\r\n${"a".repeat(600)}\r\n`);
      await until("seen.bodyBytes === 600", () => seen.bodyBytes === 600);
      c.socket.write(`258\r\n${"b".repeat(600)}\r\n0\r\n\r\n`);
      await until("c.closed()", () => c.closed());
      const res = parseResponses(c.data()).responses[0];
      assert.equal(res?.status, 413);
      assert.equal(res?.headers.get("x-agw-error"), "request_body_too_large");
      assert.equal(seen.bodyBytes, 600);
    } finally {
      c.socket.destroy();
      await p.close();
      await origin.close();
    }
  });

  it("crossing the limit after the response started: the exchange is reset on both sides", T, async () => {
    let upstreamAborted = false;
    let bodyBytes = 0;
    const origin = await startHttpOrigin((req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("streaming"); // the response starts before the body is read
      req.on("data", (c: Buffer) => {
        bodyBytes += c.length;
      });
      req.on("close", () => {
        if (!req.complete) upstreamAborted = true;
      });
      req.on("error", () => {});
    });
    const p = await startGateway(withLimits(single(origin.port), limits({ maxRequestBodyBytes: 500 })));
    const c = rawClient(p.port);
    try {
      c.socket.write(
        `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n${"a".repeat(500)}\r\n`,
      );
      await until("c.data().includes('streaming')", () => c.data().includes("streaming"));
      c.socket.write(`1\r\nb\r\n`);
      await until("c.closed() && upstreamAborted", () => c.closed() && upstreamAborted);
      assert.match(c.data().toString(), /^HTTP\/1\.1 200/);
      assert.equal(bodyBytes, 500);
    } finally {
      c.socket.destroy();
      await p.close();
      await origin.close();
    }
  });

  it("a route's maxRequestBodyBytes overrides the listener's", T, async () => {
    const { origin, seen } = await countingOrigin();
    const p = await startGateway(withLimits(single(origin.port, 0), limits({ maxRequestBodyBytes: 10 })));
    try {
      const r = await rawExchange(
        p.port,
        `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\nConnection: close\r\n\r\n${"x".repeat(50)}`,
      );
      assert.equal(parseResponses(r.data).responses[0]?.status, 200);
      assert.equal(seen.bodyBytes, 50);
    } finally {
      await p.close();
      await origin.close();
    }
  });
});

describe("connection limits and timeouts", () => {
  it("maxRequestsPerConnection: the last allowed response carries Connection: close", T, async () => {
    const { origin } = await countingOrigin();
    const p = await startGateway(withLimits(single(origin.port), limits({ maxRequestsPerConnection: 2 })));
    try {
      const get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
      const r = await rawExchange(p.port, get + get + get);
      const { responses } = parseResponses(r.data);
      assert.equal(responses.length, 2);
      assert.equal(responses[0]?.headers.get("connection"), undefined);
      assert.equal(responses[1]?.headers.get("connection"), "close");
      assert.ok(r.closed);
    } finally {
      await p.close();
      await origin.close();
    }
  });

  it("a trickling body is bounded: no byte for bodyTimeout → 408", T, async () => {
    const { origin } = await countingOrigin();
    const p = await startGateway(withLimits(single(origin.port), limits({ bodyTimeoutMs: 200 })));
    const c = rawClient(p.port);
    try {
      c.socket.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
      await until("c.closed()", () => c.closed());
      const res = parseResponses(c.data()).responses[0];
      assert.equal(res?.status, 408);
      assert.equal(res?.headers.get("x-agw-error"), "request_timeout");
    } finally {
      c.socket.destroy();
      await p.close();
      await origin.close();
    }
  });

  it("a push changes the head limit for new requests; the open keep-alive connection stays", T, async () => {
    const { origin } = await countingOrigin();
    const p = await startGateway(withLimits(single(origin.port), limits()));
    const c = rawClient(p.port);
    const big = `GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ${"p".repeat(3000)}\r\n\r\n`;
    try {
      c.socket.write(big);
      await until(
        "parseResponses(c.data()).responses.length === 1",
        () => parseResponses(c.data()).responses.length === 1,
      );
      await p.push(withLimits(single(origin.port), limits({ maxRequestHeaderBytes: 2048 })));
      c.socket.write(big);
      await until(
        "parseResponses(c.data()).responses.length === 2",
        () => parseResponses(c.data()).responses.length === 2,
      );
      const { responses } = parseResponses(c.data());
      assert.deepEqual(
        responses.map((r) => r.status),
        [200, 431],
      );
    } finally {
      c.socket.destroy();
      await p.close();
      await origin.close();
    }
  });
});

describe("HTTP/2 limits", () => {
  function h2(port: number): http2.ClientHttp2Session {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.on("error", () => {});
    return s;
  }

  function send(
    s: http2.ClientHttp2Session,
    headers: http2.OutgoingHttpHeaders,
    body: Buffer | null,
  ): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string; reset: number }> {
    return new Promise((resolve) => {
      const req = s.request(headers, { endStream: body === null });
      let status = 0;
      let h: http2.IncomingHttpHeaders = {};
      let out = "";
      req.on("response", (rh) => {
        status = Number(rh[":status"]);
        h = rh;
      });
      req.on("data", (c: Buffer) => {
        out += c.toString();
      });
      req.on("error", () => {});
      req.on("close", () => resolve({ status, headers: h, body: out, reset: req.rstCode ?? 0 }));
      if (body !== null) req.end(body);
    });
  }

  it("413 per stream, by content-length and by DATA; the session carries on", T, async () => {
    const { origin, seen } = await countingOrigin();
    const p = await startGateway(withLimits(single(origin.port), limits({ maxRequestBodyBytes: 100 })));
    const s = h2(p.port);
    try {
      const byLength = await send(
        s,
        { ":method": "POST", ":path": "/", "content-length": "200" },
        Buffer.alloc(200, 1),
      );
      assert.equal(byLength.status, 413);
      assert.equal(byLength.headers["x-agw-error"], "request_body_too_large");
      const byData = await send(s, { ":method": "POST", ":path": "/" }, Buffer.alloc(200, 1));
      assert.equal(byData.status, 413);
      assert.ok(seen.bodyBytes <= 100);
      const ok = await send(s, { ":method": "POST", ":path": "/" }, Buffer.alloc(100, 1));
      assert.equal(ok.status, 200);
      assert.equal(ok.body, "ok");
    } finally {
      s.destroy();
      await p.close();
      await origin.close();
    }
  });

  it(
    "SETTINGS follow the listener's http2 limits; GOAWAY after maxRequestsPerConnection streams",
    T,
    async () => {
      const { origin } = await countingOrigin();
      const p = await startGateway(
        withLimits(
          single(origin.port),
          limits({
            maxRequestsPerConnection: 2,
            http2MaxConcurrentStreams: 7,
            http2InitialWindowSize: 1 << 20,
          }),
        ),
      );
      const s = h2(p.port);
      let goaway = false;
      s.on("goaway", () => {
        goaway = true;
      });
      try {
        await new Promise((r) => s.once("remoteSettings", r));
        assert.equal(s.remoteSettings.maxConcurrentStreams, 7);
        assert.equal(s.remoteSettings.initialWindowSize, 1 << 20);
        const a = await send(s, { ":path": "/" }, null);
        const b = await send(s, { ":path": "/" }, null);
        assert.deepEqual([a.status, b.status], [200, 200]);
        await until("goaway", () => goaway);
      } finally {
        s.destroy();
        await p.close();
        await origin.close();
      }
    },
  );
});
