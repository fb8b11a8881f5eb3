/**
 * Response compression end to end (docs/traffic/compression.md): `agw run` and curl over HTTP/1.1,
 * h2c and h2 over TLS; curl --compressed decodes, explicit Accept-Encoding bytes are decoded with
 * node:zlib; q-values and the configured preference; what is never compressed (small, already
 * encoded, no-transform, images, gRPC, event streams unless asked); an event stream that is asked
 * for is flushed event by event.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import zlib from "node:zlib";
import { curl, hasCurl, type Ports, PROTOCOLS, tlsFiles } from "./curl.ts";
import { freePort, plainAndTlsConfig, requireOrSkip, startGateway, tempDir } from "./helpers.ts";

/** 20 KB of JSON that compresses well, but not trivially. */
const JSON_BODY = Buffer.from(
  JSON.stringify(
    Array.from({ length: 200 }, (_, i) => ({
      id: i,
      name: `item-${i}`,
      tag: randomBytes(8).toString("hex"),
    })),
  ),
);
const PNG = randomBytes(5000);
let ports: Ports | undefined;
let dir = "";
let releaseSecondEvent: () => void = () => {};
let adminPort = 0;
const cleanup: Array<() => unknown> = [];

before(async () => {
  dir = tempDir("agw-compression-");
  const files = tlsFiles(dir);
  if (files === null || !(await hasCurl())) return;
  const origin = http.createServer((req, res) => {
    const path = (req.url ?? "").replace(/^\/(sse-on|plain)/, "");
    if (path === "/json") {
      res.writeHead(200, { "content-type": "application/json", etag: '"v1"', "accept-ranges": "bytes" });
      res.end(JSON_BODY);
    } else if (path === "/chunked") {
      res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
      res.write(JSON_BODY.subarray(0, 7000));
      setTimeout(() => res.end(JSON_BODY.subarray(7000)), 20);
    } else if (path === "/small") {
      res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
      res.end(JSON_BODY.subarray(0, 100));
    } else if (path === "/png") {
      res.writeHead(200, { "content-type": "image/png" });
      res.end(PNG);
    } else if (path === "/encoded") {
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      res.end(zlib.gzipSync(JSON_BODY));
    } else if (path === "/no-transform") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "public, no-transform" });
      res.end(JSON_BODY);
    } else if (path === "/grpc") {
      res.writeHead(200, { "content-type": "application/grpc" });
      res.end(JSON_BODY);
    } else if (path === "/sse") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${"first ".repeat(300)}\n\n`);
      releaseSecondEvent = () => res.end(`data: ${"second ".repeat(300)}\n\n`);
    } else res.end("ok");
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => origin.close());
  const plain = await freePort();
  const tls = await freePort();
  const routes = `
      - name: sse-on
        match: { path: { prefix: /sse-on/ } }
        cluster: origin
        rewrite: { pathPrefix: / }
        compression: { eventStream: true, codings: [gzip] }
      - name: plain
        match: { path: { prefix: /plain/ } }
        cluster: origin
        rewrite: { pathPrefix: / }
      - name: compressed
        match: { path: { prefix: / } }
        cluster: origin
        compression: { levels: { gzip: 9, br: 5, zstd: 3 } }`;
  const file = plainAndTlsConfig(dir, { plain, tls, origin: (origin.address() as AddressInfo).port }, routes);
  const gw = await startGateway(file);
  cleanup.push(() => gw.proc.stop());
  adminPort = gw.adminPort;
  ports = { plain, tls, caFile: files.caFile };
});

after(async () => {
  for (const c of cleanup) await c();
});

function ready(t: Parameters<typeof requireOrSkip>[0]): Ports | undefined {
  return requireOrSkip(t, ports !== undefined, "openssl and a curl with HTTP/2 are needed")
    ? ports
    : undefined;
}

const decode: Record<string, (b: Buffer) => Buffer> = {
  gzip: zlib.gunzipSync,
  br: zlib.brotliDecompressSync,
  zstd: zlib.zstdDecompressSync,
};

let files = 0;
/** curl with explicit Accept-Encoding: the raw (undecoded) body bytes and the head. */
async function raw(protocol: (typeof PROTOCOLS)[number], p: Ports, path: string, acceptEncoding?: string) {
  const out = join(dir, `body-${files++}`);
  const args = acceptEncoding === undefined ? [] : ["-H", `accept-encoding: ${acceptEncoding}`];
  const reply = await curl(protocol, p, path, args, out);
  return { ...reply, body: readFileSync(out) };
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: curl --compressed gets the origin's bytes back, brotli by the route's preference`, async (t) => {
    const p = ready(t);
    if (p === undefined) return;
    for (const path of ["/json", "/chunked"]) {
      const out = join(dir, `compressed-${files++}`);
      const r = await curl(protocol, p, path, ["--compressed"], out);
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-encoding"], "br", path); // curl offers deflate, gzip, br, zstd
      assert.equal(r.headers["content-length"], undefined);
      assert.match(r.headers.vary ?? "", /accept-encoding/i);
      assert.deepEqual(readFileSync(out), JSON_BODY, `${path}: decoded body`);
    }
  });

  test(`${protocol}: each coding asked for explicitly, decoded with node:zlib`, async (t) => {
    const p = ready(t);
    if (p === undefined) return;
    for (const coding of ["gzip", "br", "zstd"]) {
      const r = await raw(protocol, p, "/json", coding);
      assert.equal(r.headers["content-encoding"], coding);
      assert.ok(r.body.length < JSON_BODY.length / 1.5, `${coding}: ${r.body.length} bytes`);
      assert.deepEqual((decode[coding] as (b: Buffer) => Buffer)(r.body), JSON_BODY, coding);
      assert.equal(r.headers.etag, 'W/"v1"', "a strong ETag becomes weak");
      assert.equal(r.headers["accept-ranges"], undefined);
    }
  });
}

test("Accept-Encoding q-values, *, identity and the configured preference", async (t) => {
  const p = ready(t);
  if (p === undefined) return;
  const cases: Array<[string, string | undefined]> = [
    ["gzip;q=0.5, br;q=0.9", "br"],
    ["gzip;q=1, br;q=0.9", "gzip"],
    ["gzip, br;q=0", "gzip"],
    ["gzip, zstd", "zstd"], // a tie: br, zstd, gzip is the default preference
    ["*", "br"],
    ["*;q=0.5, gzip", "gzip"],
    ["*;q=0", undefined],
    ["identity", undefined],
    ["deflate", undefined],
    ["GZIP;Q=0.3", "gzip"],
  ];
  for (const [accept, expected] of cases) {
    const r = await raw("http/1.1", p, "/json", accept);
    assert.equal(r.headers["content-encoding"], expected, accept);
    assert.match(r.headers.vary ?? "", /accept-encoding/i, `${accept}: Vary even when not compressed`);
    if (expected === undefined) {
      assert.deepEqual(r.body, JSON_BODY);
      assert.equal(r.headers.etag, '"v1"', "a response not compressed keeps its strong ETag");
    }
  }
  const none = await raw("h2c", p, "/json");
  assert.equal(none.headers["content-encoding"], undefined, "no Accept-Encoding: as it is");
  assert.deepEqual(none.body, JSON_BODY);
});

test("never compressed: small, already encoded, no-transform, images, gRPC, event streams not asked for, routes without the policy", async (t) => {
  const p = ready(t);
  if (p === undefined) return;
  for (const protocol of PROTOCOLS) {
    const small = await raw(protocol, p, "/small", "gzip");
    assert.equal(small.headers["content-encoding"], undefined);
    assert.equal(small.body.length, 100);
    const encoded = await raw(protocol, p, "/encoded", "br, gzip");
    assert.equal(encoded.headers["content-encoding"], "gzip", "passed as the origin encoded it");
    assert.deepEqual(zlib.gunzipSync(encoded.body), JSON_BODY);
    for (const path of ["/no-transform", "/png", "/grpc", "/plain/json"]) {
      const r = await raw(protocol, p, path, "gzip, br, zstd");
      assert.equal(r.headers["content-encoding"], undefined, `${protocol} ${path}`);
      assert.ok(r.body.length === JSON_BODY.length || r.body.length === PNG.length, `${protocol} ${path}`);
    }
    assert.equal((await raw(protocol, p, "/plain/json", "gzip")).headers.vary, undefined);
  }
});

test("an event stream: untouched by default; with eventStream: true each event reaches the client at once", async (t) => {
  const p = ready(t);
  if (p === undefined) return;
  // Untouched: no eventStream on the route.
  const session = http2.connect(`http://127.0.0.1:${p.plain}`);
  try {
    for (const [path, compressed] of [
      ["/sse", false],
      ["/sse-on/sse", true],
    ] as const) {
      const stream = session.request({ ":path": path, "accept-encoding": "gzip" });
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) =>
        stream.once("response", resolve),
      );
      assert.equal(headers["content-encoding"], compressed ? "gzip" : undefined, path);
      // The first event arrives (decoded) while the origin still holds the second.
      const inflate = zlib.createGunzip();
      const text = new Promise<string>((resolve, reject) => {
        let seen = "";
        const source = compressed ? stream.pipe(inflate) : stream;
        source.on("data", (d: Buffer) => {
          seen += d.toString();
          if (seen.includes("\n\n")) resolve(seen);
        });
        source.on("error", reject);
      });
      const first = await Promise.race([
        text,
        new Promise<string>((_, reject) =>
          setTimeout(() => reject(new Error(`${path}: first event not flushed`)), 10_000),
        ),
      ]);
      assert.match(first, /^data: first /);
      assert.doesNotMatch(first, /second/);
      releaseSecondEvent();
      await new Promise((resolve) => stream.on("close", resolve).resume());
    }
  } finally {
    session.close();
  }
});

test("metrics: bytes in and out per route and coding give the compression ratio", async (t) => {
  const p = ready(t);
  if (p === undefined) return;
  await raw("http/1.1", p, "/json", "zstd");
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/stats/prometheus`)).text();
  const value = (direction: string) =>
    Number(
      new RegExp(
        `agw_compression_bytes_total\\{route="plain/compressed",coding="zstd",direction="${direction}"\\} (\\d+)`,
      ).exec(text)?.[1],
    );
  assert.ok(value("in") >= JSON_BODY.length, `in ${value("in")}`);
  assert.ok(value("out") > 0 && value("out") < value("in") / 1.5, `out ${value("out")}`);
  assert.match(text, /agw_compression_responses_total\{route="plain\/compressed",coding="zstd"\} \d+/);
});
