/**
 * The protocol parity matrix (issue 15): each engine behaviour, run the same way over HTTP/1.1, h2c
 * (prior knowledge) and h2 over TLS against one `agw run`, through the one exchange. docs/proxy.md,
 * "Protocol parity", lists each row and names its subtest here.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { buildWat } from "../plugins/sdk/build.ts";
import { WAT_GUESTS } from "../plugins/testdata/wat-guests.ts";
import {
  accessLogEntry,
  freePort,
  requireOrSkip,
  startGateway,
  tempDir,
  waitFor,
  warmPluginCache,
} from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

type Proto = "http1" | "h2c" | "h2";
const PROTOCOLS: readonly Proto[] = ["http1", "h2c", "h2"];
const HOST = "parity.test";

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

interface Send {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Sent, then the request is left open (no end of body). */
  partial?: string;
}

interface Ports {
  plain: number;
  secure: number;
  ca: string;
}

/** One request on a fresh connection in the given protocol; bounded in time. */
function send(ports: Ports, proto: Proto, path: string, o: Send = {}): Promise<Answer> {
  const method = o.method ?? (o.body !== undefined || o.partial !== undefined ? "POST" : "GET");
  const headers = o.headers ?? {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${proto} ${method} ${path}: no answer in 15 s`)),
      15_000,
    );
    const done = (a: Answer) => {
      clearTimeout(timer);
      resolve(a);
    };
    if (proto === "http1") {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: ports.plain,
          method,
          path,
          agent: false,
          headers: { host: HOST, ...headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const h: Record<string, string> = {};
            for (const [k, v] of Object.entries(res.headers))
              h[k] = Array.isArray(v) ? v.join(", ") : String(v);
            done({ status: res.statusCode ?? 0, headers: h, body: Buffer.concat(chunks).toString() });
          });
        },
      );
      req.on("error", reject);
      if (o.partial !== undefined) req.write(o.partial);
      else req.end(o.body);
      return;
    }
    const session =
      proto === "h2c"
        ? http2.connect(`http://127.0.0.1:${ports.plain}`)
        : http2.connect(`https://127.0.0.1:${ports.secure}`, { ca: ports.ca, servername: HOST });
    session.on("error", reject);
    const stream = session.request({ ":method": method, ":path": path, ":authority": HOST, ...headers });
    let h: Record<string, string> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (rh) => {
      h = {};
      for (const [k, v] of Object.entries(rh))
        if (v !== undefined) h[k] = Array.isArray(v) ? v.join(", ") : String(v);
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("close", () => {
      session.close();
      if (h[":status"] === undefined)
        reject(new Error(`${proto} ${method} ${path}: stream closed without a response`));
      else done({ status: Number(h[":status"]), headers: h, body: Buffer.concat(chunks).toString() });
    });
    stream.on("error", () => {});
    if (o.partial !== undefined) stream.write(o.partial);
    else stream.end(o.body);
  });
}

/**
 * The origins: `http` (node:http) echoes, delays, flips a status; `raw` (a TCP server) misbehaves on
 * purpose and counts what it received, by method and path.
 */
async function startOrigins() {
  const flips = new Set<string>();
  const httpOrigin = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = req.url ?? "";
      if (url.includes("slow")) {
        const t = setTimeout(
          () => res.end("late"),
          Number(new URL(url, "http://x").searchParams.get("ms") ?? 5000),
        );
        res.on("close", () => clearTimeout(t));
        return;
      }
      if (url.startsWith("/retry/") && !flips.has(url)) {
        flips.add(url);
        res.writeHead(503).end("try again");
        return;
      }
      res.setHeader("x-origin-traceparent", req.headers.traceparent ?? "");
      res.end(JSON.stringify({ method: req.method, url, body: Buffer.concat(chunks).toString() }));
    });
  });
  await new Promise<void>((r) => httpOrigin.listen(0, "127.0.0.1", r));

  const seen = new Map<string, number>();
  const raw = net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    let served = 0;
    socket.on("error", () => {});
    socket.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString("latin1");
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        const [method, path] = head.split(" ");
        const key = `${method} ${path}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        if (path?.startsWith("/garbage")) {
          socket.end("NOT HTTP AT ALL\r\n\r\n");
          return;
        }
        // A reused connection dies with the request unanswered; a fresh one answers.
        if (path?.startsWith("/reset") || (path?.startsWith("/replay") && served > 0)) {
          socket.destroy();
          return;
        }
        served++;
        socket.write("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh");
      }
    });
  });
  await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
  return {
    httpPort: (httpOrigin.address() as net.AddressInfo).port,
    rawPort: (raw.address() as net.AddressInfo).port,
    seen,
    close() {
      httpOrigin.closeAllConnections();
      httpOrigin.close();
      raw.close();
    },
  };
}

function routes(o: { httpPort: number; rawPort: number }, deadPort: number): string {
  const r = (s: string) => `      - ${s}\n`;
  return (
    r("{ name: echo, match: { path: { prefix: /echo } }, cluster: origin }") +
    r(
      "{ name: redirect, match: { path: { exact: /redirect } }, redirect: { path: /elsewhere, status: 302 } }",
    ) +
    r(
      '{ name: direct, match: { path: { exact: /direct } }, directResponse: { status: 203, body: "direct\\n" } }',
    ) +
    r(
      '{ name: cors, match: { path: { prefix: /cors } }, cluster: origin, cors: { allowOrigins: ["https://app.example"] } }',
    ) +
    r(
      "{ name: retry, match: { path: { prefix: /retry/ } }, cluster: origin, retry: { retries: 1, retryOn: [retriable-status-codes], retriableStatusCodes: [503], backoffBase: 1ms } }",
    ) +
    r("{ name: replay, match: { path: { prefix: /replay/ } }, cluster: raw }") +
    r(
      "{ name: replay-policy, match: { path: { prefix: /replay-policy/ } }, cluster: raw, retry: { retries: 2, retryOn: [reset], backoffBase: 1ms } }",
    ) +
    r("{ name: slow, match: { path: { prefix: /slow } }, cluster: origin, timeout: 300ms }") +
    r("{ name: limited, match: { path: { prefix: /limited } }, cluster: origin, maxRequestBodyBytes: 10 }") +
    r("{ name: empty, match: { path: { prefix: /empty } }, cluster: empty }") +
    r("{ name: refused, match: { path: { prefix: /refused } }, cluster: dead }") +
    r("{ name: reset, match: { path: { prefix: /reset } }, cluster: raw }") +
    r("{ name: garbage, match: { path: { prefix: /garbage } }, cluster: raw }") +
    r("{ name: tls, match: { path: { prefix: /tls } }, cluster: tls-to-plain }") +
    r("{ name: cb, match: { path: { prefix: /cb } }, cluster: cb, timeout: 20s }") +
    r("{ name: upload, match: { path: { prefix: /upload } }, cluster: origin }") +
    r(
      "{ name: body-read, match: { path: { prefix: /body-read } }, cluster: origin, plugins: [{ name: body-read }] }",
    ) +
    r(
      "{ name: body-skip, match: { path: { prefix: /body-skip } }, cluster: origin, plugins: [{ name: body-skip }] }",
    ) +
    r(
      "{ name: resp-read, match: { path: { prefix: /resp-read } }, cluster: origin, plugins: [{ name: resp-read }] }",
    ) +
    r(
      "{ name: resp-tiny, match: { path: { prefix: /resp-tiny } }, cluster: origin, plugins: [{ name: resp-tiny }] }",
    ) +
    `clusters:
  - { name: origin, endpoints: ["127.0.0.1:${o.httpPort}"] }
  - { name: raw, endpoints: ["127.0.0.1:${o.rawPort}"] }
  - { name: empty, endpoints: [] }
  - { name: dead, endpoints: ["127.0.0.1:${deadPort}"] }
  - { name: tls-to-plain, endpoints: ["127.0.0.1:${o.httpPort}"], tls: { sni: origin.test } }
  - { name: cb, endpoints: ["127.0.0.1:${o.httpPort}"], circuitBreakers: { maxRequests: 1 } }
`
  );
}

test("protocol parity: every engine behaviour over HTTP/1.1, h2c and h2 over TLS", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates")) return;
  const dir = tempDir();
  // A guest that lets everything through: what the engine does around the plugins is the row.
  const pass = await buildWat(WAT_GUESTS.pass);
  writeFileSync(join(dir, "pass.wasm"), pass);
  await warmPluginCache(pass);
  const ca = makeCa(dir, "parity-ca");
  makeLeaf(dir, ca, { cn: HOST, sans: [`DNS:${HOST}`], file: "gw" });
  const origins = await startOrigins();
  t.after(() => origins.close());
  const collector = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => res.end("{}"));
  });
  await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
  t.after(() => collector.close());
  const [plain, secure, deadPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const routeText = routes(origins, deadPort);
  const [routeLines, clusterLines] = routeText.split("clusters:\n") as [string, string];
  const listener = (name: string, port: number, extra: string) =>
    `  - name: ${name}\n    address: 127.0.0.1\n    port: ${port}\n${extra}    limits: { bodyTimeout: 1s }\n    routes:\n${routeLines}`;
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - { name: gw, certificate: { file: gw.crt }, key: { file: gw.key } }
plugins:
  - { name: body-read, source: pass.wasm, requestBody: true, bodyLimit: 64 }
  - { name: body-skip, source: pass.wasm, requestBody: true, bodyLimit: 4, overLimit: skip }
  - { name: resp-read, source: pass.wasm, onResponse: true, responseBody: true, bodyLimit: 4096 }
  - { name: resp-tiny, source: pass.wasm, onResponse: true, responseBody: true, bodyLimit: 8 }
listeners:
${listener("plain", plain, "")}${listener("secure", secure, "    protocol: https\n    tls: { certificates: [gw], alpn: [h2, http/1.1] }\n")}clusters:
${clusterLines}`,
  );
  const accessLog = join(dir, "access.log");
  const otlp = `http://127.0.0.1:${(collector.address() as net.AddressInfo).port}/v1/traces`;
  const { proc: gw, adminPort } = await startGateway(file, [
    "--access-log",
    accessLog,
    "--otlp-endpoint",
    otlp,
  ]);
  t.after(() => gw.stop());
  const ports: Ports = { plain, secure, ca: ca.pem };

  /** Runs `check` once per protocol, each as its own subtest. */
  const each = (name: string, check: (p: Proto) => Promise<void>) =>
    t.test(name, async (st) => {
      for (const p of PROTOCOLS) await st.test(p, () => check(p));
    });
  const errorOf = (a: Answer) => a.headers["x-agw-error"];

  await each("routing: the route's cluster answers, with x-request-id", async (p) => {
    const a = await send(ports, p, `/echo/${p}?q=1`, { headers: { "x-request-id": `parity-echo-${p}` } });
    assert.equal(a.status, 200);
    assert.equal(JSON.parse(a.body).url, `/echo/${p}?q=1`);
    assert.equal(a.headers["x-request-id"], `parity-echo-${p}`);
  });

  await each("local response: redirect", async (p) => {
    const a = await send(ports, p, "/redirect");
    assert.equal(a.status, 302);
    assert.match(a.headers.location ?? "", /\/elsewhere$/);
  });

  await each("local response: direct response", async (p) => {
    const a = await send(ports, p, "/direct");
    assert.deepEqual([a.status, a.body], [203, "direct\n"]);
  });

  await each("local response: CORS preflight, and CORS fields on the proxied answer", async (p) => {
    const origin = "https://app.example";
    const pre = await send(ports, p, "/cors", {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "GET" },
    });
    assert.equal(pre.headers["access-control-allow-origin"], origin);
    const a = await send(ports, p, "/cors", { headers: { origin } });
    assert.equal(a.status, 200);
    assert.equal(
      a.headers["access-control-allow-origin"],
      origin,
      "the route's CORS reaches a proxied answer",
    );
  });

  await each("retries: a retriable status is retried, x-agw-attempts says so", async (p) => {
    const a = await send(ports, p, `/retry/${p}`);
    assert.deepEqual([a.status, a.headers["x-agw-attempts"]], [200, "2"]);
  });

  await each("replay: a POST is never resent after its reused connection died; a GET is, once", async (p) => {
    for (const prefix of ["/replay", "/replay-policy"]) {
      const key = `${prefix}/${p}`;
      assert.equal((await send(ports, p, `${key}/warm1`)).status, 200); // leaves one pooled connection
      const post = await send(ports, p, `${key}/post`, { body: "once" });
      assert.deepEqual([post.status, errorOf(post)], [502, "upstream_reset"]);
      assert.equal(origins.seen.get(`POST ${key}/post`), 1, `${key}: the POST reached the origin once`);
      assert.equal((await send(ports, p, `${key}/warm2`)).status, 200);
      const get = await send(ports, p, `${key}/get`);
      assert.deepEqual(
        [get.status, get.body],
        [200, "fresh"],
        `${key}: the GET was resent on a fresh connection`,
      );
      assert.equal(origins.seen.get(`GET ${key}/get`), 2);
    }
  });

  await each("timeouts: the route timeout answers 504 upstream_timeout", async (p) => {
    const a = await send(ports, p, "/slow?ms=10000");
    assert.deepEqual([a.status, errorOf(a)], [504, "upstream_timeout"]);
  });

  await each("limits: a body over the route's limit gets 413, a slow body 408", async (p) => {
    const big = await send(ports, p, "/limited", { body: "x".repeat(100) });
    assert.deepEqual([big.status, errorOf(big)], [413, "request_body_too_large"]);
    const slow = await send(ports, p, "/upload", { headers: { "content-length": "10" }, partial: "ab" });
    assert.deepEqual([slow.status, errorOf(slow)], [408, "request_timeout"]);
  });

  await each("x-agw-error: every code the engine can reach from a valid config", async (p) => {
    const cases: Array<[string, number, string]> = [
      ["/nothing", 404, "route_not_found"],
      ["/empty", 503, "no_healthy_upstream"],
      ["/refused", 503, "upstream_connect_failed"],
      [`/reset/${p}`, 502, "upstream_reset"],
      [`/garbage/${p}`, 502, "upstream_protocol_error"],
      ["/tls", 502, "upstream_tls_failed"],
      ["/echo/a%2Fb", 400, "bad_request"],
    ];
    for (const [path, status, code] of cases) {
      const a = await send(ports, p, path);
      assert.deepEqual([a.status, errorOf(a)], [status, code], path);
      assert.equal(JSON.parse(a.body).error, code);
    }
  });

  await waitFor(`the plugins loaded\n${gw.output()}`, async () => {
    const a = await send(ports, "http1", "/body-read/ready", { body: "x" }).catch(() => undefined);
    return a?.status === 200 ? a : undefined;
  });
  await each(
    "plugins: bodies read for them reach the upstream (and the client) whole; over the limit 413 / 502, or skipped",
    async (p) => {
      const sent = "a body for the plugins";
      const read = await send(ports, p, "/body-read/x", { body: sent });
      assert.equal(read.status, 200, read.body);
      assert.equal(JSON.parse(read.body).body, sent);
      const big = await send(ports, p, "/body-read/x", { body: "x".repeat(100) });
      assert.deepEqual([big.status, errorOf(big)], [413, "request_body_too_large"]);
      const skipped = await send(ports, p, "/body-skip/x", { body: sent });
      assert.deepEqual([skipped.status, JSON.parse(skipped.body).body], [200, sent]);
      const resp = await send(ports, p, "/resp-read/x");
      assert.equal(resp.status, 200, resp.body);
      assert.equal(JSON.parse(resp.body).url, "/resp-read/x");
      assert.equal(resp.headers["content-length"], String(Buffer.byteLength(resp.body)));
      const tiny = await send(ports, p, "/resp-tiny/x");
      assert.deepEqual([tiny.status, errorOf(tiny)], [502, "response_body_too_large"]);
    },
  );

  await each("circuit breaking: over maxRequests answers 503 overflow", async (p) => {
    const first = send(ports, p, "/cb/slow?ms=1500");
    await waitFor("the first request at the origin", async () =>
      /"name":\s*"cb"[^\]]*?"active_requests":\s*1/.test(
        await fetch(`http://127.0.0.1:${adminPort}/clusters`).then((r) => r.text()),
      )
        ? true
        : undefined,
    );
    const second = await send(ports, p, "/cb/second");
    assert.deepEqual([second.status, errorOf(second)], [503, "overflow"]);
    assert.equal((await first).status, 200);
  });

  await each("tracing: the upstream gets the client's trace with the gateway's span", async (p) => {
    const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const a = await send(ports, p, "/echo/trace", {
      headers: { traceparent: `00-${trace}-00f067aa0ba902b7-01` },
    });
    const sent = a.headers["x-origin-traceparent"] ?? "";
    assert.match(sent, new RegExp(`^00-${trace}-[0-9a-f]{16}-01$`));
    assert.notEqual(sent.split("-")[2], "00f067aa0ba902b7");
  });

  await t.test("metrics: each protocol's echo request counted on its listener", async () => {
    const text = await fetch(`http://127.0.0.1:${adminPort}/stats/prometheus`).then((r) => r.text());
    const count = (listener: string) =>
      Number(
        new RegExp(
          `agw_downstream_requests_total\\{listener="${listener}",route="echo",cluster="origin",code_class="2xx"\\} (\\d+)`,
        ).exec(text)?.[1] ?? 0,
      );
    // HTTP/1.1 and h2c on the plain listener (routing + tracing rows), h2 on the secure one.
    assert.deepEqual([count("plain"), count("secure")], [4, 2]);
  });

  await t.test("access log: the protocol each client spoke", async () => {
    // A clean exit within the drain wait also says no connection was left open (an HTTP/2 204 held its stream).
    assert.equal(await gw.stop(), 0, gw.output());
    const protocols = PROTOCOLS.map((p) => accessLogEntry(accessLog, `parity-echo-${p}`).protocol);
    assert.deepEqual(protocols, ["HTTP/1.1", "HTTP/2", "HTTP/2"]);
  });
});
