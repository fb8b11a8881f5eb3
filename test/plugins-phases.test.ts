/**
 * Both plugin phases and bodies end to end, the same over HTTP/1.1, h2c and h2 over TLS: `agw run`
 * with plugins built from plugins/testdata/phases.ts (agw:plugin@0.2.0) and a 0.1.0 WAT guest, an
 * HTTP/1.1 origin, and node clients that send bodies chunked, with a content-length, or as HTTP/2
 * DATA frames. The gateway is configured for both phases and bodies; the tests of on-response and
 * bodies through the engine join when the exchange calls them (_notes: plugin-seam).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { buildJs, buildWat } from "../plugins/sdk/build.ts";
import { WAT_GUESTS, WAT_GUESTS_V010 } from "../plugins/testdata/wat-guests.ts";
import { freePort, ROOT, requireOrSkip, startGateway, tempDir, waitFor, warmPluginCache } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

function fnv(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16);
}

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

type Protocol = "http/1.1" | "h2c" | "h2";
type Framing = "length" | "chunked";

/** One request; the body goes in `pieces` writes (HTTP/1.1: chunked or with content-length; HTTP/2: DATA frames). */
async function send(
  protocol: Protocol,
  ports: { plain: number; tls: number; ca: string },
  path: string,
  body?: Buffer,
  framing: Framing = "length",
): Promise<Reply> {
  const pieces =
    body === undefined ? [] : [body.subarray(0, body.length >> 1), body.subarray(body.length >> 1)];
  if (protocol === "http/1.1") {
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { "content-type": "application/octet-stream" };
      if (body !== undefined && framing === "length") headers["content-length"] = body.length;
      const req = http.request(
        { host: "127.0.0.1", port: ports.plain, path, method: body ? "POST" : "GET", headers, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers as Record<string, string>,
              body: Buffer.concat(chunks),
            }),
          );
        },
      );
      req.setTimeout(15_000, () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      for (const p of pieces) req.write(p);
      req.end();
    });
  }
  const session =
    protocol === "h2c"
      ? http2.connect(`http://127.0.0.1:${ports.plain}`)
      : http2.connect(`https://127.0.0.1:${ports.tls}`, { ca: ports.ca, servername: "plugins.example.com" });
  try {
    return await new Promise<Reply>((resolve, reject) => {
      session.on("error", reject);
      const stream = session.request({
        ":method": body ? "POST" : "GET",
        ":path": path,
        "content-type": "application/octet-stream",
      });
      stream.setTimeout(15_000, () => stream.close(http2.constants.NGHTTP2_CANCEL));
      let headers: Record<string, string> = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        headers = h as Record<string, string>;
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () =>
        resolve({ status: Number(headers[":status"]), headers, body: Buffer.concat(chunks) }),
      );
      stream.on("error", reject);
      for (const p of pieces) stream.write(p);
      stream.end();
    });
  } finally {
    session.close();
  }
}

const upstreamBody = randomBytes(3000);
let ports: { plain: number; tls: number; ca: string } | undefined;
const cleanup: Array<() => unknown> = [];

before(async () => {
  if (!hasOpenssl()) return;
  const dir = tempDir("agw-plugin-phases-");
  const phases = await buildJs(readFileSync(join(ROOT, "plugins/testdata/phases.ts"), "utf8"), true);
  const old = await buildWat(WAT_GUESTS_V010.addHeader, "0.1.0");
  writeFileSync(join(dir, "phases.wasm"), phases);
  writeFileSync(join(dir, "old.wasm"), old);
  writeFileSync(join(dir, "deny.wasm"), await buildWat(WAT_GUESTS.deny));
  writeFileSync(join(dir, "trap.wasm"), await buildWat(WAT_GUESTS.trap));
  await warmPluginCache(phases);
  await warmPluginCache(old);
  const ca = makeCa(dir, "plugins-ca");
  makeLeaf(dir, ca, { cn: "plugins.example.com", sans: ["DNS:plugins.example.com"], file: "site" });

  // The origin (HTTP/1.1, and HTTP/2 for the /h2/ routes' protocol: http2 cluster): /resp/* answers
  // `upstreamBody` (chunked or with a content-length), /slow the same in two writes 100 ms apart,
  // /small 1000 bytes; every answer tells what it received of the request in headers.
  const answer = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const got = Buffer.concat(chunks);
      const url = (req.url ?? "").replace(/^\/h2\//, "/");
      res.setHeader("x-origin-body-len", String(got.length));
      res.setHeader("x-origin-body-fnv", fnv(got));
      res.setHeader("x-origin-saw-wat", String(req.headers["x-wat"] ?? ""));
      res.setHeader("x-origin-content-length", String(req.headers["content-length"] ?? ""));
      const write = (b: Buffer) => (res as http.ServerResponse).write(b);
      if (url === "/resp/chunked") {
        write(upstreamBody.subarray(0, 1000));
        res.end(upstreamBody.subarray(1000));
      } else if (url === "/slow") {
        write(upstreamBody.subarray(0, 1000));
        setTimeout(() => res.end(upstreamBody.subarray(1000)), 100);
      } else if (url.startsWith("/resp") || url.startsWith("/replace") || url.startsWith("/head")) {
        res.setHeader("content-length", upstreamBody.length);
        res.end(upstreamBody);
      } else if (url === "/small") res.end(randomBytes(1000));
      else res.end("ok");
    });
  };
  const origin = http.createServer(answer);
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => origin.close());
  const origin2 = http2.createServer(answer);
  await new Promise<void>((resolve) => origin2.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => origin2.close());
  const plain = await freePort();
  const tls = await freePort();
  const route = (name: string, prefix: string, plugins: string, cluster = "origin") =>
    `      - { name: ${name}, match: { path: { prefix: ${prefix} } }, cluster: ${cluster}, plugins: [${plugins}] }`;
  const bodyRoutes: Array<[string, string]> = [
    ["pass", "{ name: pass-body }"],
    ["resp", "{ name: resp-outer }, { name: resp-body }"],
    ["slow", "{ name: resp-outer }, { name: resp-skip }"],
    ["head", "{ name: resp-outer }, { name: resp-inner }, { name: resp-status }"],
    ["replace", "{ name: resp-outer }, { name: resp-replace }"],
    ["small", "{ name: resp-small }"],
  ];
  const routes = [
    route("echo", "/echo", "{ name: echo-body }"),
    route("skip", "/skip", "{ name: skip-body }"),
    ...bodyRoutes.map(([n, plugins]) => route(`h2-${n}`, `/h2/${n}`, plugins, "origin2")),
    ...bodyRoutes.map(([n, plugins]) => route(n, `/${n}`, plugins)),
    route("old", "/old", "{ name: old }"),
    route("deny", "/deny", "{ name: deny }"),
    route("trap", "/trap", "{ name: trap }"),
  ].join("\n");
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - { name: site, certificate: { file: site.crt }, key: { file: site.key } }
plugins:
  - { name: echo-body, source: phases.wasm, requestBody: true, bodyLimit: 65536, config: { request: body } }
  - { name: skip-body, source: phases.wasm, requestBody: true, bodyLimit: 16, overLimit: skip, config: { request: body } }
  - { name: pass-body, source: phases.wasm, requestBody: true, bodyLimit: 65536, config: { name: pass, request: mark } }
  - { name: resp-skip, source: phases.wasm, onResponse: true, responseBody: true, bodyLimit: 100, overLimit: skip, config: { name: skipped, response: body } }
  - { name: resp-outer, source: phases.wasm, onResponse: true, config: { name: outer } }
  - { name: resp-body, source: phases.wasm, onResponse: true, responseBody: true, config: { name: inner, response: body } }
  - { name: resp-inner, source: phases.wasm, onResponse: true, config: { name: inner } }
  - { name: resp-status, source: phases.wasm, onResponse: true, config: { response: status, status: 299 } }
  - { name: resp-replace, source: phases.wasm, onResponse: true, config: { name: r, response: replace } }
  - { name: resp-small, source: phases.wasm, onResponse: true, responseBody: true, bodyLimit: 100, config: { response: body } }
  - { name: old, source: old.wasm, onResponse: true }
  - { name: deny, source: deny.wasm }
  - { name: trap, source: trap.wasm }
listeners:
  - name: plain
    address: 127.0.0.1
    port: ${plain}
    routes:
${routes}
  - name: secure
    address: 127.0.0.1
    port: ${tls}
    protocol: https
    tls: { certificates: [site], alpn: [h2, http/1.1] }
    routes:
${routes}
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${(origin.address() as AddressInfo).port}"]
  - name: origin2
    protocol: http2
    endpoints: ["127.0.0.1:${(origin2.address() as AddressInfo).port}"]
`,
  );
  const { proc: gw } = await startGateway(file);
  cleanup.push(() => gw.stop());
  const p = { plain, tls, ca: ca.pem };
  await waitFor(`the plugins loaded\n${gw.output()}`, async () => {
    const r = await send("http/1.1", p, "/old").catch(() => undefined);
    return r?.status === 200 ? r : undefined;
  });
  ports = p;
});

after(async () => {
  for (const c of cleanup) await c();
});

const PROTOCOLS = ["http/1.1", "h2c", "h2"] as const;

test("request_filter over HTTP/1.1, h2c and h2 (TLS): a 0.1.0 guest (onResponse on) mutates, deny is plugin_denied, a trap plugin_failed", async (t) => {
  if (!requireOrSkip(t, ports !== undefined, "the openssl command is needed to make certificates")) return;
  const p = ports as { plain: number; tls: number; ca: string };
  for (const protocol of PROTOCOLS) {
    const o = await send(protocol, p, "/old");
    assert.equal(o.status, 200, protocol);
    assert.equal(o.headers["x-origin-saw-wat"], "1", protocol);
    const denied = await send(protocol, p, "/deny");
    assert.equal(denied.status, 403, protocol);
    assert.equal(denied.headers["x-agw-error"], "plugin_denied", protocol);
    const failed = await send(protocol, p, "/trap");
    assert.equal(failed.status, 500, protocol);
    assert.equal(failed.headers["x-agw-error"], "plugin_failed", protocol);
  }
});

/** The HTTP/1.1 origin, and the HTTP/2 one behind the protocol: http2 cluster. */
const UPSTREAMS = [
  ["", "HTTP/1.1 upstream"],
  ["/h2", "HTTP/2 upstream"],
] as const;

test("on-response over HTTP/1.1, h2c and h2 (TLS), from HTTP/1.1 and HTTP/2 upstreams: headers and status changed in reverse route order; a response replaced", async (t) => {
  if (!requireOrSkip(t, ports !== undefined, "the openssl command is needed to make certificates")) return;
  const p = ports as { plain: number; tls: number; ca: string };
  for (const protocol of PROTOCOLS) {
    for (const [up, upstream] of UPSTREAMS) {
      const what = `${protocol}, ${upstream}`;
      const h = await send(protocol, p, `${up}/head`);
      assert.equal(h.status, 299, what);
      assert.equal(h.headers["x-order"], "inner,outer", what);
      assert.equal(h.headers["x-resp-inner"], "1", what);
      assert.ok(h.body.equals(upstreamBody), `${what}: the upstream body reaches the client`);
      const replaced = await send(protocol, p, `${up}/replace`);
      assert.equal(replaced.status, 203, what);
      assert.equal(replaced.headers["x-replaced-by"], "r", what);
      assert.equal(
        replaced.headers["x-resp-outer"],
        undefined,
        `${what}: the plugin after the replacement ran`,
      );
      assert.equal(replaced.body.toString(), "replaced by r", what);
    }
  }
});

test("plugins: request and response bodies, the same over HTTP/1.1, h2c and h2 (TLS), from HTTP/1.1 and HTTP/2 upstreams", async (t) => {
  if (!requireOrSkip(t, ports !== undefined, "the openssl command is needed to make certificates")) return;
  const p = ports as { plain: number; tls: number; ca: string };
  const body = randomBytes(10_000);
  for (const protocol of PROTOCOLS) {
    const framings: Framing[] = protocol === "http/1.1" ? ["length", "chunked"] : ["length"];
    for (const framing of framings) {
      const what = `${protocol} ${protocol === "http/1.1" ? framing : "DATA"}`;
      // The body-reading plugin sees the exact bytes.
      const echo = await send(protocol, p, "/echo", body, framing);
      assert.equal(echo.status, 200, `${what}: ${echo.body}`);
      assert.equal(echo.headers["x-body-len"], String(body.length), what);
      assert.equal(echo.headers["x-body-fnv"], fnv(body), what);
      // Over the plugin's limit with overLimit: reject → 413.
      const big = await send(protocol, p, "/echo", randomBytes(70_000), framing);
      assert.equal(big.status, 413, what);
      assert.equal(big.headers["x-agw-error"], "request_body_too_large", what);
      // overLimit: skip → the plugin is passed by and the body reaches the origin whole, streamed.
      const skipped = await send(protocol, p, "/skip", body, framing);
      assert.equal(skipped.status, 200, `${what}: ${skipped.body}`);
      assert.equal(skipped.headers["x-origin-body-fnv"], fnv(body), what);
      // A plugin that read the body and lets the request go on: the origin gets the same bytes, sized
      // with a Content-Length whatever framing the client used (chunked, DATA frames).
      for (const [up, upstream] of UPSTREAMS) {
        const passed = await send(protocol, p, `${up}/pass`, body, framing);
        assert.equal(passed.status, 200, `${what}, ${upstream}: ${passed.body}`);
        assert.equal(passed.headers["x-origin-body-fnv"], fnv(body), `${what}, ${upstream}`);
        assert.equal(passed.headers["x-origin-content-length"], String(body.length), `${what}, ${upstream}`);
      }
    }
    for (const [up, upstream] of UPSTREAMS) {
      // on-response: headers changed in reverse route order; the body-reading one sees the exact
      // bytes (chunked and content-length upstream, or DATA), and the client gets them unchanged.
      for (const path of [`${up}/resp/chunked`, `${up}/resp/length`]) {
        const r = await send(protocol, p, path);
        const what = `${protocol} ${path}`;
        assert.equal(r.status, 200, what);
        assert.equal(r.headers["x-order"], "inner,outer", what);
        assert.equal(r.headers["x-resp-body-len"], "3000", what);
        assert.equal(r.headers["x-resp-body-fnv"], fnv(upstreamBody), what);
        assert.ok(r.body.equals(upstreamBody), `${what}: the client got the upstream body`);
      }
      // Past a plugin's limit with overLimit: reject → 502.
      const small = await send(protocol, p, `${up}/small`);
      assert.equal(small.status, 502, `${protocol}, ${upstream}`);
      assert.equal(small.headers["x-agw-error"], "response_body_too_large", `${protocol}, ${upstream}`);
      // Past it with overLimit: skip → that plugin is not called, the others are, and what was read
      // goes to the client followed by the rest of the body as it comes.
      const slow = await send(protocol, p, `${up}/slow`);
      const what = `${protocol} ${up}/slow`;
      assert.equal(slow.status, 200, what);
      assert.equal(slow.headers["x-order"], "outer", what);
      assert.equal(slow.headers["x-resp-body-seen"], undefined, what);
      assert.ok(slow.body.equals(upstreamBody), `${what}: the client got the upstream body`);
    }
  }
});

test("a body read for a plugin keeps the HTTP/1.1 connection: pipelined requests behind it (chunked, then sized) are answered in order", async (t) => {
  if (!requireOrSkip(t, ports !== undefined, "the openssl command is needed to make certificates")) return;
  const p = ports as { plain: number; tls: number; ca: string };
  const a = "first body, chunked";
  const b = "second body";
  const wire =
    `POST /pass/1 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n${a.length.toString(16)}\r\n${a}\r\n0\r\n\r\n` +
    `POST /pass/2 HTTP/1.1\r\nhost: x\r\ncontent-length: ${b.length}\r\n\r\n${b}` +
    "GET /old HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
  const got = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(p.plain, "127.0.0.1", () => socket.end(wire));
    const chunks: Buffer[] = [];
    socket.setTimeout(15_000, () => socket.destroy(new Error("timed out")));
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
    socket.on("error", reject);
  });
  const statuses = [...got.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => m[1]);
  assert.deepEqual(statuses, ["200", "200", "200"], got);
  const fnvs = [...got.matchAll(/^x-origin-body-fnv: (\w+)/gim)].map((m) => m[1]);
  assert.deepEqual(fnvs.slice(0, 2), [fnv(Buffer.from(a)), fnv(Buffer.from(b))], got);
  const lengths = [...got.matchAll(/^x-origin-content-length: (\d*)/gim)].map((m) => m[1]);
  assert.deepEqual(lengths.slice(0, 2), [String(a.length), String(b.length)], got);
});
