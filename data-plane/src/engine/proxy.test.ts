import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { GatewayConfig } from "../../test/gateway.ts";
import { cluster, config, endpoint, type Gateway, startGateway } from "../../test/gateway.ts";
import { curl, type HttpOrigin, parseResponses, rawExchange, startHttpOrigin } from "../../test/net.ts";
import { AGW_ERRORS } from "./errors.ts";

const T = { timeout: 20000 };

function get(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: example.test\r\n${extra}\r\n`;
}

/** Resolves once `n` complete responses are in `b` (used as rawExchange's `until`). */
function responses(n: number, noBody?: (i: number, status: number) => boolean) {
  return (b: Buffer): boolean => parseResponses(b, noBody).responses.length >= n;
}

function sha(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

describe("proxy over real sockets", () => {
  let origin: HttpOrigin;
  let proxy: Gateway;
  let cfg: GatewayConfig;

  before(async () => {
    origin = await startHttpOrigin((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      switch (url.pathname) {
        case "/headers":
          res.setHeader("content-type", "application/json");
          res.setHeader("x-upstream-hop", "secret");
          res.setHeader("connection", "x-upstream-hop");
          res.setHeader("x-remove-me", "1");
          res.end(JSON.stringify(req.headers));
          return;
        case "/stream": // echo, chunked response
          req.pipe(res);
          return;
        case "/echo-length": {
          const parts: Buffer[] = [];
          req.on("data", (c: Buffer) => parts.push(c));
          req.on("end", () => {
            const b = Buffer.concat(parts);
            res.setHeader("content-length", b.length);
            res.end(b);
          });
          return;
        }
        case "/head":
          res.setHeader("content-length", 11);
          res.end(req.method === "HEAD" ? undefined : "hello world");
          return;
        case "/chunks":
          res.write("ab");
          res.end("cd");
          return;
        case "/204":
          res.statusCode = 204;
          res.end();
          return;
        case "/304":
          res.statusCode = 304;
          res.setHeader("etag", '"x"');
          res.end();
          return;
        case "/slow":
          setTimeout(
            () => res.end(`slow ${url.searchParams.get("id")}`),
            Number(url.searchParams.get("ms") ?? 0),
          );
          return;
        default:
          req.resume();
          res.end(`ok ${req.method} ${req.url}`);
      }
    });
    cfg = config(
      "A",
      [
        {
          prefix: "/headers",
          cluster: "origin",
          requestHeaders: { add: [["x-added", "1"]], set: [["x-set", "s"]], remove: ["x-drop"] },
          responseHeaders: { add: [["x-res-added", "r"]], set: [], remove: ["x-remove-me"] },
        },
        { prefix: "/noendpoints", cluster: "empty" },
        { prefix: "/", cluster: "origin" },
      ],
      [cluster("origin", [endpoint(origin.port)]), cluster("empty", [])],
    );
    proxy = await startGateway(cfg);
  });

  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it("GET via curl", T, async () => {
    const r = await curl(["-i", `http://127.0.0.1:${proxy.port}/hello?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString();
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(text, /x-request-id: [0-9a-f-]{36}\r\n/);
    assert.ok(text.endsWith("ok GET /hello?x=1"));
  });

  it("GET via raw socket, HTTP/1.0 closes", T, async () => {
    const r = await rawExchange(proxy.port, "GET /raw HTTP/1.0\r\n\r\n");
    assert.equal(r.closed, true);
    const [res] = parseResponses(r.data).responses;
    assert.equal(res?.status, 200);
    assert.equal(res?.headers.get("connection"), "close");
    assert.equal(res?.body.toString(), "ok GET /raw");
  });

  it("keep-alive on both sides: two requests, one client socket, one origin connection", T, async () => {
    const local = await startHttpOrigin((req, res) => res.end(`n${req.url}`));
    const p = await startGateway(
      config("k", [{ prefix: "/", cluster: "c" }], [cluster("c", [endpoint(local.port)])]),
    );
    try {
      const s = net.connect(p.port, "127.0.0.1");
      const chunks: Buffer[] = [];
      s.on("data", (c: Buffer) => chunks.push(c));
      const waitFor = async (n: number) => {
        for (let i = 0; i < 500 && parseResponses(Buffer.concat(chunks)).responses.length < n; i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      s.write(get("/1"));
      await waitFor(1);
      s.write(get("/2"));
      await waitFor(2);
      const { responses: rs } = parseResponses(Buffer.concat(chunks));
      s.destroy();
      assert.deepEqual(
        rs.map((r) => r.body.toString()),
        ["n/1", "n/2"],
      );
      assert.equal(local.connections, 1);
      assert.equal(p.pool.idleConnections, 1);
    } finally {
      await p.close();
      await local.close();
    }
  });

  it("pipelined requests are answered in order", T, async () => {
    const req = `${get("/slow?ms=80&id=1")}${get("/slow?ms=0&id=2")}${get("/slow?ms=20&id=3")}`;
    const r = await rawExchange(proxy.port, req, { until: responses(3) });
    const { responses: rs } = parseResponses(r.data);
    assert.deepEqual(
      rs.map((x) => x.body.toString()),
      ["slow 1", "slow 2", "slow 3"],
    );
  });

  it("chunked request body and chunked response body", T, async () => {
    const body = "4;ext=1\r\nabcd\r\n6\r\nefghij\r\n0\r\nX-Trailer: t\r\n\r\n";
    const r = await rawExchange(
      proxy.port,
      `POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
      { until: responses(1) },
    );
    const [res] = parseResponses(r.data).responses;
    assert.equal(res?.status, 200);
    assert.equal(res?.headers.get("transfer-encoding"), "chunked");
    assert.equal(res?.body.toString(), "abcdefghij");
    const seen = origin.requests.at(-1);
    assert.equal(seen?.headers["transfer-encoding"], "chunked");
  });

  it("streams 10 MB both ways (chunked and content-length) with matching hashes", T, async () => {
    const data = randomBytes(10 * 1024 * 1024);
    for (const path of ["/stream", "/echo-length"]) {
      const got = await new Promise<Buffer>((resolve, reject) => {
        const req = http.request({ port: proxy.port, host: "127.0.0.1", path, method: "POST", agent: false });
        if (path === "/echo-length") req.setHeader("content-length", data.length);
        req.on("response", (res) => {
          const parts: Buffer[] = [];
          res.on("data", (c: Buffer) => parts.push(c));
          res.on("end", () => resolve(Buffer.concat(parts)));
          res.on("error", reject);
        });
        req.on("error", reject);
        let off = 0;
        const pump = (): void => {
          while (off < data.length) {
            const piece = data.subarray(off, off + 65536);
            off += piece.length;
            if (!req.write(piece)) {
              req.once("drain", pump);
              return;
            }
          }
          req.end();
        };
        pump();
      });
      assert.equal(got.length, data.length, path);
      assert.equal(sha(got), sha(data), path);
    }
  });

  it("HEAD, 204 and 304 have no body and keep the connection usable", T, async () => {
    const req = `HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n${get("/204")}${get("/304")}${get("/after")}`;
    const noBody = (i: number) => i === 0;
    const r = await rawExchange(proxy.port, req, { until: responses(4, noBody) });
    const { responses: rs, rest } = parseResponses(r.data, noBody);
    assert.deepEqual(
      rs.map((x) => x.status),
      [200, 204, 304, 200],
    );
    assert.equal(rs[0]?.headers.get("content-length"), "11");
    assert.equal(rs[3]?.body.toString(), "ok GET /after");
    assert.equal(rest, 0);
  });

  it("Expect: 100-continue with curl and a 4 KiB file", T, async () => {
    const file = join(tmpdir(), `agw-expect-${process.pid}.bin`);
    const content = randomBytes(4096);
    await writeFile(file, content);
    const r = await curl([
      "-v",
      "-H",
      "Expect: 100-continue",
      "--data-binary",
      `@${file}`,
      `http://127.0.0.1:${proxy.port}/echo-length`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /HTTP\/1\.1 100 Continue/);
    assert.equal(sha(r.stdout), sha(content));
  });

  it("strips hop-by-hop headers, adds X-Forwarded-* and x-request-id, applies header ops", T, async () => {
    const req =
      "GET /headers HTTP/1.1\r\nHost: Front.example:8080\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n" +
      "Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\n" +
      "Proxy-Authorization: Basic eA==\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n" +
      "X-Drop: 1\r\nX-Set: original\r\nX-Keep: yes\r\n\r\n";
    const r = await rawExchange(proxy.port, req, { until: responses(1) });
    const [res] = parseResponses(r.data).responses;
    assert.equal(res?.status, 200);
    const seen = JSON.parse(res?.body.toString() ?? "{}") as Record<string, string>;
    for (const h of [
      "x-hop",
      "keep-alive",
      "te",
      "upgrade",
      "proxy-connection",
      "proxy-authorization",
      "x-drop",
    ]) {
      assert.equal(seen[h], undefined, h);
    }
    assert.equal(seen.connection, undefined);
    assert.equal(seen["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert.equal(seen["x-forwarded-proto"], "http");
    assert.equal(seen["x-forwarded-host"], "Front.example:8080");
    assert.equal(seen.host, "Front.example:8080");
    assert.equal(seen["x-keep"], "yes");
    assert.equal(seen["x-added"], "1");
    assert.equal(seen["x-set"], "s");
    assert.match(seen["x-request-id"] ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(res?.headers.get("x-request-id"), seen["x-request-id"]);
    assert.equal(res?.headers.get("x-upstream-hop"), undefined);
    assert.equal(res?.headers.get("x-remove-me"), undefined);
    assert.equal(res?.headers.get("keep-alive"), undefined);
    assert.equal(res?.headers.get("x-res-added"), "r");
  });

  it("HTTP/1.0 client gets a chunked upstream body decoded and close-delimited", T, async () => {
    const r = await rawExchange(proxy.port, "GET /chunks HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert.equal(r.closed, true);
    const text = r.data.toString();
    assert.doesNotMatch(text, /transfer-encoding/i);
    assert.match(text, /connection: close\r\n\r\nabcd$/);
  });

  it("a config swap keeps idle upstream connections to endpoints that still exist", T, async () => {
    const local = await startHttpOrigin((_req, res) => res.end("ok"));
    const p = await startGateway(
      config("1", [{ prefix: "/", cluster: "c" }], [cluster("c", [endpoint(local.port)])]),
    );
    try {
      await rawExchange(p.port, get("/"), { until: responses(1) });
      // A real push (through the store's swap and its pool clean-up): the cluster is renamed, the endpoint stays.
      await p.push(config("2", [{ prefix: "/", cluster: "d" }], [cluster("d", [endpoint(local.port)])]));
      const r = await rawExchange(p.port, get("/"), { until: responses(1) });
      assert.equal(parseResponses(r.data).responses[0]?.status, 200);
      assert.equal(local.connections, 1);
    } finally {
      await p.close();
      await local.close();
    }
  });

  it("answers routing failures locally with JSON errors", T, async () => {
    const bad = config("none", [], []);
    const p = await startGateway(bad);
    try {
      const r = await rawExchange(p.port, get("/x", "x-request-id: abc-123\r\n"), { until: responses(1) });
      const [res] = parseResponses(r.data).responses;
      assert.equal(res?.status, 404);
      assert.equal(res?.headers.get("x-agw-error"), AGW_ERRORS.AGW_ERR_ROUTE_NOT_FOUND);
      assert.equal(res?.headers.get("content-type"), "application/json");
      assert.equal(res?.headers.get("x-request-id"), "abc-123");
      assert.deepEqual(JSON.parse(res?.body.toString() ?? ""), {
        error: "route_not_found",
        message: "no route matched the request",
        request_id: "abc-123",
      });
    } finally {
      await p.close();
    }
    // (A route to a cluster that does not exist never goes live: the push keeps warming. Only a
    // cluster without endpoints reaches the engine.)
    const r2 = await rawExchange(proxy.port, get("/noendpoints"), { until: responses(1) });
    const rs = parseResponses(r2.data).responses;
    assert.deepEqual(
      rs.map((x) => [x.status, x.headers.get("x-agw-error")]),
      [[503, "no_healthy_upstream"]],
    );
  });
});
