/**
 * Both plugin phases and bodies end to end, the same over HTTP/1.1, h2c and h2 over TLS: `agw run`
 * with plugins built from plugins/testdata/phases.ts (agw:plugin@0.2.0) and a 0.1.0 WAT guest, an
 * HTTP/1.1 origin, and node clients that send bodies chunked, with a content-length, or as HTTP/2
 * DATA frames. The gateway is configured for bodies too; their test joins when the engine reads
 * bodies for plugins (docs/plugins.md, "Not done yet").
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
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

  // The origin: /resp/* answers `upstreamBody` (chunked or with a content-length), /small 1000 bytes,
  // everything else echoes what it received of the request in headers.
  const origin = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const got = Buffer.concat(chunks);
      res.setHeader("x-origin-body-len", String(got.length));
      res.setHeader("x-origin-body-fnv", fnv(got));
      res.setHeader("x-origin-saw-wat", String(req.headers["x-wat"] ?? ""));
      if (req.url === "/resp/chunked") {
        res.write(upstreamBody.subarray(0, 1000));
        res.end(upstreamBody.subarray(1000));
      } else if (
        req.url?.startsWith("/resp") ||
        req.url?.startsWith("/replace") ||
        req.url?.startsWith("/head")
      ) {
        res.setHeader("content-length", upstreamBody.length);
        res.end(upstreamBody);
      } else if (req.url === "/small") res.end(randomBytes(1000));
      else res.end("ok");
    });
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => origin.close());
  const plain = await freePort();
  const tls = await freePort();
  const route = (name: string, prefix: string, plugins: string) =>
    `      - { name: ${name}, match: { path: { prefix: ${prefix} } }, cluster: origin, plugins: [${plugins}] }`;
  const routes = [
    route("echo", "/echo", "{ name: echo-body }"),
    route("skip", "/skip", "{ name: skip-body }"),
    route("resp", "/resp", "{ name: resp-outer }, { name: resp-body }"),
    route("head", "/head", "{ name: resp-outer }, { name: resp-inner }, { name: resp-status }"),
    route("replace", "/replace", "{ name: resp-outer }, { name: resp-replace }"),
    route("small", "/small", "{ name: resp-small }"),
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

test("on-response over HTTP/1.1, h2c and h2 (TLS): headers and status changed in reverse route order; a response replaced", async (t) => {
  if (!requireOrSkip(t, ports !== undefined, "the openssl command is needed to make certificates")) return;
  const p = ports as { plain: number; tls: number; ca: string };
  for (const protocol of PROTOCOLS) {
    const h = await send(protocol, p, "/head");
    assert.equal(h.status, 299, protocol);
    assert.equal(h.headers["x-order"], "inner,outer", protocol);
    assert.equal(h.headers["x-resp-inner"], "1", protocol);
    assert.ok(h.body.equals(upstreamBody), `${protocol}: the upstream body reaches the client`);
    const replaced = await send(protocol, p, "/replace");
    assert.equal(replaced.status, 203, protocol);
    assert.equal(replaced.headers["x-replaced-by"], "r");
    assert.equal(
      replaced.headers["x-resp-outer"],
      undefined,
      "the plugin after the replacement was not called",
    );
    assert.equal(replaced.body.toString(), "replaced by r");
  }
});
