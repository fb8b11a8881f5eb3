import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { describe, it } from "node:test";
import { requireOrSkip } from "../../../test/helpers.ts";
import {
  cluster,
  config,
  endpoint,
  type Gateway,
  type GatewayConfig,
  limits,
  startGateway,
  withLimits,
} from "../../test/gateway.ts";
import { closedPort, parseResponses, rawExchange, startHttpOrigin, startRawOrigin } from "../../test/net.ts";
import { AGW_ERRORS } from "./errors.ts";

const T = { timeout: 20000 };
const BLACKHOLE =
  "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\n" +
  "print(s.getsockname()[1],flush=True)\ntime.sleep(20)";

function get(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: example.test\r\n${extra}\r\n`;
}

function oneResponse(b: Buffer): boolean {
  return parseResponses(b).responses.length >= 1;
}

function single(port: number, c: Partial<Parameters<typeof cluster>[2]> = {}, timeoutMs = 0): GatewayConfig {
  return config("v", [{ prefix: "/", cluster: "c", timeoutMs }], [cluster("c", [endpoint(port)], c)]);
}

/** Reads one request head on `s`, then calls `then`. */
function onHead(s: net.Socket, then: (s: net.Socket) => void): void {
  let buf = "";
  const onData = (c: Buffer): void => {
    buf += c.toString("latin1");
    if (buf.includes("\r\n\r\n")) {
      s.off("data", onData);
      then(s);
    }
  };
  s.on("data", onData);
}

describe("upstream failures", () => {
  it("content-length response cut short: the client sees a truncated response and a close", T, async () => {
    const o = await startRawOrigin((s) =>
      onHead(s, () => {
        s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        setTimeout(() => s.destroy(), 20);
      }),
    );
    const p = await startGateway(single(o.port));
    try {
      const r = await rawExchange(p.port, get("/"));
      assert.equal(r.closed, true);
      assert.match(r.data.toString(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n0123456789$/);
      assert.equal(parseResponses(r.data).responses.length, 0);
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("chunked response cut short: no terminating chunk reaches the client", T, async () => {
    const o = await startRawOrigin((s) =>
      onHead(s, () => {
        s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        setTimeout(() => s.destroy(), 20);
      }),
    );
    const p = await startGateway(single(o.port));
    try {
      const r = await rawExchange(p.port, get("/"));
      assert.equal(r.closed, true);
      assert.ok(r.data.toString().endsWith("5\r\nhello\r\n"), r.data.toString());
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("close-delimited response is re-chunked for HTTP/1.1 clients", T, async () => {
    const o = await startRawOrigin((s) =>
      onHead(s, () => {
        s.end("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close");
      }),
    );
    const p = await startGateway(single(o.port));
    try {
      const r = await rawExchange(p.port, get("/"), { until: oneResponse });
      const [res] = parseResponses(r.data).responses;
      assert.equal(res?.headers.get("transfer-encoding"), "chunked");
      assert.equal(res?.body.toString(), "until close");
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("upstream closes before the response head: 502 upstream_reset", T, async () => {
    const o = await startRawOrigin((s) => onHead(s, () => s.destroy()));
    const p = await startGateway(single(o.port));
    try {
      const r = await rawExchange(p.port, get("/"), { until: oneResponse });
      const [res] = parseResponses(r.data).responses;
      assert.equal(res?.status, 502);
      assert.equal(res?.headers.get("x-agw-error"), AGW_ERRORS.AGW_ERR_UPSTREAM_RESET);
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("invalid response head: 502 upstream_protocol_error", T, async () => {
    const o = await startRawOrigin((s) => onHead(s, () => s.write("HTTP/1.1 2x0 OK\r\n\r\n")));
    const p = await startGateway(single(o.port));
    try {
      const r = await rawExchange(p.port, get("/"), { until: oneResponse });
      const [res] = parseResponses(r.data).responses;
      assert.equal(res?.status, 502);
      assert.equal(res?.headers.get("x-agw-error"), AGW_ERRORS.AGW_ERR_UPSTREAM_PROTOCOL_ERROR);
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("connection refused: 503 upstream_connect_failed", T, async () => {
    const port = await closedPort();
    const p2 = await startGateway(single(port));
    try {
      const r = await rawExchange(p2.port, get("/"), { until: oneResponse });
      const [res] = parseResponses(r.data).responses;
      assert.equal(res?.status, 503);
      assert.equal(res?.headers.get("x-agw-error"), AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_FAILED);
      assert.match(res?.body.toString() ?? "", /"request_id":"[0-9a-f-]{36}"/);
    } finally {
      await p2.close();
    }
  });

  it("connect timeout: 504 upstream_connect_timeout", T, async (t) => {
    // A listener that never accepts, with its backlog filled: further SYNs are dropped, so connect hangs.
    const child = spawn("python3", ["-c", BLACKHOLE], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const port = await new Promise<number>((resolve) => {
        child.on("error", () => resolve(0));
        child.stdout.once("data", (c: Buffer) => resolve(Number(c.toString().trim())));
      });
      if (!requireOrSkip(t, port !== 0, "python3 is needed for a listener that never accepts")) return;
      const fillers = [0, 1, 2, 3].map(() => net.connect(port, "127.0.0.1").on("error", () => {}));
      const cfg = config(
        "v",
        [{ prefix: "/", cluster: "c" }],
        [cluster("c", [endpoint(port)], { connectTimeoutMs: 200 })],
      );
      const p = await startGateway(cfg);
      try {
        const r = await rawExchange(p.port, get("/"), { until: oneResponse });
        const [res] = parseResponses(r.data).responses;
        assert.equal(res?.status, 504);
        assert.equal(res?.headers.get("x-agw-error"), AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_TIMEOUT);
      } finally {
        for (const f of fillers) f.destroy();
        await p.close();
      }
    } finally {
      child.kill();
    }
  });

  it("route timeout while the upstream never answers: 504 upstream_timeout", T, async () => {
    const o = await startRawOrigin(() => {});
    const p = await startGateway(single(o.port, {}, 200));
    try {
      const r = await rawExchange(p.port, get("/"), { until: oneResponse });
      const [res] = parseResponses(r.data).responses;
      assert.equal(res?.status, 504);
      assert.equal(res?.headers.get("x-agw-error"), AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT);
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("a reused keep-alive connection the upstream dropped is retried once on a fresh one", T, async () => {
    // Answers only the first request of each connection, then resets on the next one (a keep-alive race).
    const o = await startRawOrigin((s) =>
      onHead(s, () => {
        s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        s.once("data", () => s.destroy());
      }),
    );
    const p = await startGateway(single(o.port));
    try {
      for (let i = 0; i < 3; i++) {
        const r = await rawExchange(p.port, get("/"), { until: oneResponse });
        assert.equal(parseResponses(r.data).responses[0]?.status, 200, `request ${i}`);
      }
      assert.equal(o.connections, 3);
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("an idle pooled connection closed by the upstream is not handed out", T, async () => {
    const o = await startHttpOrigin((_req, res) => res.end("ok"));
    const p = await startGateway(single(o.port));
    try {
      const r1 = await rawExchange(p.port, get("/"), { until: oneResponse });
      assert.equal(parseResponses(r1.data).responses[0]?.status, 200);
      assert.equal(p.pool.idleConnections, 1);
      const closing = o.close(); // closes idle connections; the pool must notice
      for (let i = 0; i < 200 && p.pool.idleConnections > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(p.pool.idleConnections, 0);
      await closing;
    } finally {
      await p.close();
    }
  });

  it("config swap mid-request: the request finishes on the config it started with", T, async () => {
    let p: Gateway | undefined;
    const b = await startHttpOrigin((_req, res) => res.end("from B"));
    // Pushes B through the real swap while this request is in flight, then answers.
    const a = await startHttpOrigin((_req, res) => {
      void p?.push(cfgB).then(() => res.end("from A"));
    });
    const cfgA = config(
      "A",
      [{ prefix: "/", cluster: "c", responseHeaders: { add: [["x-config", "A"]] } }],
      [cluster("c", [endpoint(a.port)])],
    );
    const cfgB = config(
      "B",
      [{ prefix: "/", cluster: "c", responseHeaders: { add: [["x-config", "B"]] } }],
      [cluster("c", [endpoint(b.port)])],
    );
    p = await startGateway(cfgA);
    try {
      const r = await rawExchange(p.port, get("/1"), { until: oneResponse });
      const [res] = parseResponses(r.data).responses;
      assert.equal(res?.body.toString(), "from A");
      assert.equal(res?.headers.get("x-config"), "A");
      const r2 = await rawExchange(p.port, get("/2"), { until: oneResponse });
      const [res2] = parseResponses(r2.data).responses;
      assert.equal(res2?.body.toString(), "from B");
      assert.equal(res2?.headers.get("x-config"), "B");
    } finally {
      await p.close();
      await a.close();
      await b.close();
    }
  });
});

describe("malformed requests", () => {
  const cases: Array<[string, string, number]> = [
    [
      "CL + TE",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      400,
    ],
    [
      "differing duplicate CL",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      400,
    ],
    [
      "bad chunk size",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
      400,
    ],
    ["obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 400],
    ["control char", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\u00012\r\n\r\n", 400],
    ["bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400],
    ["space before colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400],
    ["invalid TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, \r\n\r\n0\r\n\r\n", 400],
    ["unknown TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501],
    ["HTTP/2.0 text", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505],
    ["oversized head", `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"x".repeat(70 * 1024)}\r\n\r\n`, 431],
  ];

  it("rejects each case with Connection: close and never forwards it", T, async () => {
    const o = await startHttpOrigin((req, res) => {
      req.resume();
      res.end("forwarded");
    });
    const p = await startGateway(single(o.port));
    try {
      for (const [name, text, status] of cases) {
        const r = await rawExchange(p.port, text);
        assert.equal(r.closed, true, name);
        const [res] = parseResponses(r.data).responses;
        assert.equal(res?.status, status, name);
        assert.equal(res?.headers.get("connection"), "close", name);
        assert.ok(res?.headers.get("x-agw-error"), name);
      }
      // A valid request afterwards is the only one the origin ever saw.
      const ok = await rawExchange(p.port, get("/valid"), { until: oneResponse });
      assert.equal(parseResponses(ok.data).responses[0]?.body.toString(), "forwarded");
      assert.deepEqual(
        o.requests.map((r) => r.url),
        ["/valid"],
      );
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("slow request head: 408 after the header timeout, then close", T, async () => {
    const p = await startGateway(withLimits(config("none", [], []), limits({ headerTimeoutMs: 150 })));
    try {
      const r = await rawExchange(p.port, "GET / HTTP/1.1\r\nHost: a\r\n");
      assert.equal(r.closed, true);
      assert.equal(parseResponses(r.data).responses[0]?.status, 408);
    } finally {
      await p.close();
    }
  });

  it("idle keep-alive connections are closed after keepAliveTimeoutMs", T, async () => {
    const o = await startHttpOrigin((_req, res) => res.end("ok"));
    const p = await startGateway(withLimits(single(o.port), limits({ idleTimeoutMs: 100 })));
    try {
      const r = await rawExchange(p.port, get("/"));
      assert.equal(r.closed, true);
      assert.equal(parseResponses(r.data).responses[0]?.status, 200);
    } finally {
      await p.close();
      await o.close();
    }
  });

  it("a client that half-closes after its request still gets the response", T, async () => {
    const o = await startHttpOrigin((_req, res) => setTimeout(() => res.end("late"), 20));
    const p = await startGateway(single(o.port));
    try {
      const data = await new Promise<Buffer>((resolve) => {
        const s = net.connect(p.port, "127.0.0.1");
        const parts: Buffer[] = [];
        s.on("data", (c: Buffer) => parts.push(c));
        s.on("close", () => resolve(Buffer.concat(parts)));
        s.end(`${get("/a")}${get("/b")}`);
      });
      assert.deepEqual(
        parseResponses(data).responses.map((r) => r.body.toString()),
        ["late", "late"],
      );
    } finally {
      await p.close();
      await o.close();
    }
  });
});
