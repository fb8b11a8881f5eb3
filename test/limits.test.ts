/**
 * Listener limits (docs/proxy.md) from config.yaml through the translator, the xDS resources and the
 * data plane's build, seen by curl: body size (413) with a per-route override, requests per connection,
 * and CONNECT on a route that allows it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { LISTENER_LIMITS } from "@agw/core/ir";
import { type Gateway, type GatewayConfig, startGateway } from "../data-plane/test/gateway.ts";
import { curl, type HttpOrigin, startHttpOrigin } from "../data-plane/test/net.ts";
import { configFromYaml } from "./yaml-config.ts";

const T = { timeout: 30000 };

describe("listener limits from config.yaml", () => {
  let origin: HttpOrigin;
  let config: GatewayConfig;
  let port = 0;
  let close: () => Promise<void> = async () => {};
  let gateway: Gateway;

  before(async () => {
    origin = await startHttpOrigin((req, res) => {
      let n = 0;
      req.on("data", (c: Buffer) => {
        n += c.length;
      });
      req.on("end", () => res.end(`got ${n}`));
    });
    config = configFromYaml(`
listeners:
  - name: l
    port: 8080
    limits:
      maxRequestBodyBytes: 1024
      maxRequestsPerConnection: 2
      bodyTimeout: 5s
      http2: { maxConcurrentStreams: 16 }
    routes:
      - name: tunnel
        match: { hosts: [tunnel.test], methods: [CONNECT] }
        cluster: app
        connect: true
      - name: uploads
        match: { path: { prefix: /upload/ } }
        cluster: app
        maxRequestBodyBytes: 1048576
      - name: api
        cluster: app
clusters:
  - name: app
    endpoints: ["127.0.0.1:${origin.port}"]
`);
    const proxy = await startGateway(config);
    gateway = proxy;
    port = proxy.port;
    close = proxy.close;
  });

  after(async () => {
    await close();
    await origin.close();
  });

  it("the listener carries the limits with the defaults filled in", () => {
    assert.deepEqual(gateway.serving.store.current().listeners.get("l")?.limits, {
      maxRequestHeaderBytes: LISTENER_LIMITS.maxRequestHeaderBytes,
      maxRequestHeaders: LISTENER_LIMITS.maxRequestHeaders,
      maxRequestBodyBytes: 1024,
      headerTimeoutMs: LISTENER_LIMITS.headerTimeoutMs,
      bodyTimeoutMs: 5000,
      idleTimeoutMs: LISTENER_LIMITS.idleTimeoutMs,
      maxRequestsPerConnection: 2,
      http2MaxConcurrentStreams: 16,
      http2InitialWindowSize: LISTENER_LIMITS.http2.initialWindowSize,
      http2MaxHeaderListBytes: LISTENER_LIMITS.maxRequestHeaderBytes,
    });
  });

  it("curl: a body over the listener's limit gets 413; the upload route allows more", T, async () => {
    const body = "x".repeat(4096);
    const small = await curl(["-i", "--data-binary", body, `http://127.0.0.1:${port}/api`]);
    const text = small.stdout.toString();
    assert.match(text, /^HTTP\/1\.1 413 Content Too Large/);
    assert.match(text, /x-agw-error: request_body_too_large/);
    const upload = await curl(["--data-binary", body, `http://127.0.0.1:${port}/upload/a`]);
    assert.equal(upload.stdout.toString(), "got 4096");
    const h2 = await curl([
      "--http2-prior-knowledge",
      "-i",
      "--data-binary",
      body,
      `http://127.0.0.1:${port}/api`,
    ]);
    assert.match(h2.stdout.toString(), /^HTTP\/2 413/);
  });

  it(
    "curl: three requests on one connection need two connections (maxRequestsPerConnection: 2)",
    T,
    async () => {
      const url = `http://127.0.0.1:${port}/api`;
      const r = await curl(["-sv", url, url, url]);
      assert.equal(r.stdout.toString(), "got 0got 0got 0");
      // curl reports reusing the connection once, then a new one for the third request.
      assert.equal((r.stderr.match(/Connected to/g) ?? []).length, 2);
    },
  );

  it(
    "curl -p -x: CONNECT to the route's host is tunnelled to its cluster; another host gets 405",
    T,
    async () => {
      const through = await curl(["-sS", "-p", "-x", `http://127.0.0.1:${port}`, "http://tunnel.test/x"]);
      assert.equal(through.stdout.toString(), "got 0");
      const refused = await curl(["-sS", "-p", "-x", `http://127.0.0.1:${port}`, "http://other.test/x"]);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /405/);
    },
  );
});
