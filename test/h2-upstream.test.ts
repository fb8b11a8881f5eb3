/**
 * protocol: http2 clusters through `agw run`, seen with curl: an h2c origin and an h2-over-TLS origin
 * (certificates made at test time), each reached by curl --http2-prior-knowledge and by HTTP/1.1
 * curl; the origin's trailers reach both kinds of client. An HTTPS origin that only speaks HTTP/1.1
 * fails clearly: 502 upstream_tls_failed naming the ALPN outcome.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { freePort, requireOrSkip, startGateway, tempDir } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);

/** Answers with what it saw (protocol, path, body) and a trailer. */
function respond(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, tag: string): void {
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.on("end", () => {
    stream.respond({ ":status": 200, "x-origin": tag }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "x-origin-trailer": `${tag}-done` }));
    stream.end(`${tag} ${headers[":method"]} ${headers[":path"]} body=${Buffer.concat(chunks)}\n`);
  });
}

test("protocol: http2 clusters (h2c and h2 over TLS) through agw run, with curl over HTTP/2 and HTTP/1.1", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates")) return;
  const dir = tempDir();
  const ca = makeCa(dir, "upstream-ca");
  const leaf = makeLeaf(dir, ca, { cn: "h2.internal", sans: ["DNS:h2.internal"], file: "origin" });

  const h2c = http2.createServer();
  h2c.on("stream", (s, h) => respond(s, h, "h2c"));
  const h2tls = http2.createSecureServer({
    cert: readFileSync(leaf.certFile),
    key: readFileSync(leaf.keyFile),
  });
  h2tls.on("stream", (s, h) => respond(s, h, "h2tls"));
  const h1tls = https.createServer(
    { cert: readFileSync(leaf.certFile), key: readFileSync(leaf.keyFile) },
    (_req, res) => res.end("http/1.1 only\n"),
  );
  const listen = (s: { listen(port: number, host: string, cb: () => void): unknown; address(): unknown }) =>
    new Promise<number>((resolve) =>
      s.listen(0, "127.0.0.1", () => resolve((s.address() as AddressInfo).port)),
    );
  const [h2cPort, h2tlsPort, h1tlsPort] = await Promise.all([listen(h2c), listen(h2tls), listen(h1tls)]);

  const port = await freePort();
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - name: upstream-ca
    ca: { file: upstream-ca.crt }
listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: tls, match: { path: { prefix: /tls/ } }, cluster: h2tls }
      - { name: h1only, match: { path: { prefix: /h1only/ } }, cluster: h1only }
      - { name: plain, cluster: h2c }
clusters:
  - name: h2c
    protocol: http2
    endpoints: ["127.0.0.1:${h2cPort}"]
  - name: h2tls
    protocol: http2
    tls: { sni: h2.internal, ca: upstream-ca }
    endpoints: ["127.0.0.1:${h2tlsPort}"]
  - name: h1only
    protocol: http2
    tls: { sni: h2.internal, ca: upstream-ca }
    endpoints: ["127.0.0.1:${h1tlsPort}"]
`,
  );
  t.after(() => {
    h2c.close();
    h2tls.close();
    h1tls.close();
  });
  const { proc: gw } = await startGateway(file);
  t.after(() => gw.stop());

  const curl = async (...args: string[]) =>
    (await run("curl", ["-sS", "--raw", "-i", "--max-time", "10", ...args])).stdout.replace(/\r\n/g, "\n");

  for (const [path, tag] of [
    ["/a", "h2c"],
    ["/tls/b", "h2tls"],
  ] as const) {
    const h2 = await curl("--http2-prior-knowledge", "-d", "ping", `http://127.0.0.1:${port}${path}`);
    assert.match(h2, /^HTTP\/2 200 ?\n/);
    assert.match(h2, new RegExp(`\nx-origin: ${tag}\n`));
    assert.match(h2, new RegExp(`\n${tag} POST ${path} body=ping\n`));
    assert.match(h2, new RegExp(`\nx-origin-trailer: ${tag}-done\n`), "trailers reach an HTTP/2 client");

    const h1 = await curl("-d", "pong", `http://127.0.0.1:${port}${path}`);
    assert.match(h1, /^HTTP\/1.1 200 OK\n/);
    assert.match(h1, /\ntransfer-encoding: chunked\n/);
    assert.match(h1, new RegExp(`\n${tag} POST ${path} body=pong\n`));
    assert.match(h1, new RegExp(`\n0\nx-origin-trailer: ${tag}-done\n`), "trailers in the last chunk");
  }

  const refused = await curl(`http://127.0.0.1:${port}/h1only/`);
  assert.match(refused, /^HTTP\/1.1 502 /);
  assert.match(refused, /\nx-agw-error: upstream_tls_failed\n/);
  assert.match(refused, /did not negotiate h2 by ALPN/);
});
