/**
 * The gateway enforces `grpc-timeout` itself (issue 24): a raw node:http2 client that keeps no
 * deadline of its own gets DEADLINE_EXCEEDED (grpc-status 4) from the gateway when the upstream is
 * slower than the deadline, over h2c and h2 over TLS, before the response head (a trailers-only
 * answer) and after it (in the trailers). grpc-js would enforce the deadline by itself and hide a
 * gateway that ignores it, so it is not used here.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import http2 from "node:http2";
import type net from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { freePort, requireOrSkip, startGateway, tempDir } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const HOST = "grpc.test";
/** One gRPC message (uncompressed, 2 bytes). */
const MESSAGE = Buffer.from([0, 0, 0, 0, 2, 8, 1]);

interface Outcome {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | null;
  ms: number;
}

/** A gRPC call with `grpc-timeout: 300m` and no deadline of the client's own: it waits for the gateway (bounded at 20 s). */
function call(session: http2.ClientHttp2Session, path: string): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const bound = setTimeout(() => reject(new Error(`${path}: no end of the call in 20 s`)), 20_000);
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      ":authority": HOST,
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": "300m",
    });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | null = null;
    stream.on("response", (h) => {
      headers = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(bound);
      resolve({ headers, trailers, ms: performance.now() - started });
    });
    stream.end(MESSAGE);
  });
}

test("grpc-timeout: the gateway answers DEADLINE_EXCEEDED in time, over h2c and h2 over TLS", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates")) return;
  const dir = tempDir();
  const ca = makeCa(dir, "grpc-deadline-ca");
  makeLeaf(dir, ca, { cn: HOST, sans: [`DNS:${HOST}`], file: "gw" });
  // The upstream: Unary never answers; Stream sends its head and one message, then stalls.
  const stalled = new Set<http2.ServerHttp2Stream>();
  const origin = http2.createServer();
  origin.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    stalled.add(stream);
    if (headers[":path"] === "/slow.Svc/Stream") {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.write(MESSAGE);
    }
  });
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
  t.after(() => {
    for (const s of stalled) s.destroy();
    origin.close();
  });
  const [plain, secure] = await Promise.all([freePort(), freePort()]);
  const routes = `    routes:\n      - { name: grpc, cluster: grpc, timeout: 60s }\n`;
  const file = join(dir, "config.yaml");
  // Both listeners carry the same route.
  writeFileSync(
    file,
    `secrets:
  - { name: gw, certificate: { file: gw.crt }, key: { file: gw.key } }
listeners:
  - name: plain
    address: 127.0.0.1
    port: ${plain}
${routes}  - name: secure
    address: 127.0.0.1
    port: ${secure}
    protocol: https
    tls: { certificates: [gw], alpn: [h2] }
${routes}clusters:
  - { name: grpc, protocol: http2, endpoints: ["127.0.0.1:${(origin.address() as net.AddressInfo).port}"] }
`,
  );
  const { proc: gw } = await startGateway(file);
  t.after(() => gw.stop());

  const sessions = {
    h2c: () => http2.connect(`http://127.0.0.1:${plain}`),
    h2: () => http2.connect(`https://127.0.0.1:${secure}`, { ca: ca.pem, servername: HOST }),
  };
  for (const [proto, connect] of Object.entries(sessions)) {
    await t.test(`${proto}: no response head yet → a trailers-only DEADLINE_EXCEEDED`, async () => {
      const session = connect();
      session.on("error", () => {});
      try {
        const o = await call(session, "/slow.Svc/Unary");
        assert.equal(o.headers["grpc-status"], "4", JSON.stringify(o));
        assert.equal(o.headers["x-agw-error"], "upstream_timeout");
        // The attack bound: the gateway, not the 60 s route timeout nor the 20 s client bound, ended it.
        assert.ok(o.ms < 5_000, `answered after ${Math.round(o.ms)} ms`);
      } finally {
        session.close();
      }
    });
    await t.test(`${proto}: response streaming → DEADLINE_EXCEEDED in the trailers`, async () => {
      const session = connect();
      session.on("error", () => {});
      try {
        const o = await call(session, "/slow.Svc/Stream");
        assert.equal(o.headers[":status"], 200);
        assert.equal(o.trailers?.["grpc-status"], "4", JSON.stringify(o));
        assert.ok(o.ms < 5_000, `ended after ${Math.round(o.ms)} ms`);
      } finally {
        session.close();
      }
    });
  }
});
