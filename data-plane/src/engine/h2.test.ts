import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { requireOrSkip } from "../../../test/helpers.ts";
import type { GatewayConfig } from "../../test/gateway.ts";
import { cluster, config, endpoint, type Gateway, startGateway } from "../../test/gateway.ts";
import { curl, type HttpOrigin, parseResponses, rawExchange, startHttpOrigin } from "../../test/net.ts";
import { AGW_ERRORS } from "./errors.ts";
import { grpcTimeoutMs } from "./h2.ts";

const T = { timeout: 30000 };

function sha(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

function run(cmd: string, args: string[], timeoutMs = 20000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { timeout: timeoutMs });
    let out = "";
    p.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    p.stderr.on("data", (c: Buffer) => {
      out += c.toString();
    });
    p.on("error", () => resolve({ code: -1, out }));
    p.on("close", (code) => resolve({ code, out }));
  });
}

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function h2request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    const parts: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    req.on("response", (h) => {
      head = h;
    });
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () =>
      resolve({ status: Number(head[":status"]), headers: head, body: Buffer.concat(parts) }),
    );
    req.on("error", reject);
    if (body !== undefined) req.end(body);
  });
}

describe("HTTP/2 downstream (h2c with prior knowledge)", () => {
  let origin: HttpOrigin;
  let proxy: Gateway;
  let cfg: GatewayConfig;

  before(async () => {
    origin = await startHttpOrigin((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/echo") {
        res.setHeader("x-seen-te", String(req.headers["transfer-encoding"] ?? ""));
        res.setHeader("x-seen-cookie", String(req.headers.cookie ?? ""));
        req.pipe(res);
        return;
      }
      res.setHeader("set-cookie", ["a=1", "b=2"]);
      res.setHeader("content-type", "text/plain");
      res.end(
        `hello ${req.method} ${req.url} host=${req.headers.host} xfp=${req.headers["x-forwarded-proto"]}`,
      );
    });
    cfg = config(
      "v1",
      [
        { prefix: "/down", cluster: "missing-endpoints" },
        { prefix: "/", cluster: "origin" },
      ],
      [cluster("origin", [endpoint(origin.port)]), cluster("missing-endpoints", [])],
    );
    proxy = await startGateway(cfg);
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it("answers curl --http2-prior-knowledge through the HTTP/1.1 upstream", T, async () => {
    const r = await curl(["-i", "--http2-prior-knowledge", `http://127.0.0.1:${proxy.port}/a?b=c`]);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString();
    assert.match(text, /^HTTP\/2 200/);
    assert.match(text, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
    assert.match(text, /\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n/);
    assert.ok(text.endsWith(`hello GET /a?b=c host=127.0.0.1:${proxy.port} xfp=http`), text);
  });

  it("streams a large request body (chunked upstream) and the response back", T, async () => {
    const content = randomBytes(3_000_000);
    const file = join(tmpdir(), `agw-h2-body-${process.pid}`);
    await writeFile(file, content);
    const r = await curl([
      "--http2-prior-knowledge",
      "-H",
      "content-type: application/octet-stream",
      "--data-binary",
      `@${file}`,
      `http://127.0.0.1:${proxy.port}/echo`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha(r.stdout), sha(content));
  });

  it("multiplexes concurrent streams on one connection and joins split cookies", T, async () => {
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
    try {
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => h2request(session, { ":path": `/n${i}` })),
      );
      results.forEach((r, i) => {
        assert.equal(r.status, 200);
        assert.match(r.body.toString(), new RegExp(`^hello GET /n${i} `));
      });
      const echoed = await h2request(
        session,
        { ":method": "POST", ":path": "/echo", cookie: ["x=1", "y=2"] },
        Buffer.from("body"),
      );
      assert.equal(echoed.body.toString(), "body");
      assert.equal(echoed.headers["x-seen-cookie"], "x=1; y=2");
      assert.equal(echoed.headers["x-seen-te"], "chunked");
    } finally {
      session.close();
    }
  });

  it("answers gateway errors with JSON for HTTP clients and grpc-status for gRPC clients", T, async () => {
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
    try {
      const plain = await h2request(session, { ":path": "/down" });
      assert.equal(plain.status, 503);
      assert.equal(plain.headers["x-agw-error"], AGW_ERRORS.AGW_ERR_NO_HEALTHY_UPSTREAM);
      assert.equal(JSON.parse(plain.body.toString()).error, AGW_ERRORS.AGW_ERR_NO_HEALTHY_UPSTREAM);
      const grpc = await h2request(session, {
        ":method": "POST",
        ":path": "/down/pkg.Svc/Call",
        "content-type": "application/grpc",
        te: "trailers",
      });
      assert.equal(grpc.status, 200);
      assert.equal(grpc.headers["grpc-status"], "14");
      assert.equal(grpc.headers["grpc-message"], "the%20cluster%20has%20no%20endpoint");
    } finally {
      session.close();
    }
  });

  it("still serves HTTP/1.1 on the same port", T, async () => {
    const r = await rawExchange(proxy.port, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n", {
      until: (b) => parseResponses(b).responses.length >= 1,
    });
    assert.equal(parseResponses(r.data).responses[0]?.status, 200);
  });

  it("serves h2load with every request succeeding", T, async (t) => {
    const probe = await run("h2load", ["--version"]);
    if (!requireOrSkip(t, probe.code === 0, "h2load is not installed (apt-get install nghttp2-client)"))
      return;
    const r = await run("h2load", [
      "-n",
      "2000",
      "-c",
      "4",
      "-m",
      "16",
      `http://127.0.0.1:${proxy.port}/load`,
    ]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored/);
    assert.match(r.out, /status codes: 2000 2xx/);
  });
});

describe("grpc-timeout", () => {
  it("parses every unit and rejects malformed values", () => {
    assert.equal(grpcTimeoutMs("2S"), 2000);
    assert.equal(grpcTimeoutMs("250m"), 250);
    assert.equal(grpcTimeoutMs("1M"), 60000);
    assert.equal(grpcTimeoutMs("1H"), 3600000);
    assert.equal(grpcTimeoutMs("1500u"), 2);
    assert.equal(grpcTimeoutMs("5n"), 1);
    assert.equal(grpcTimeoutMs("10"), 0);
    assert.equal(grpcTimeoutMs("123456789S"), 0);
    assert.equal(grpcTimeoutMs(undefined), 0);
  });
});
