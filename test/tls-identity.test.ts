/**
 * A downstream TLS connection's identity is the same whether ALPN chose HTTP/1.1 or h2 (issue 25):
 * real curl over both against `agw run` with `alpn: [h2, http/1.1]` and downstream mTLS. The upstream
 * sees x-forwarded-proto https and the client certificate's X-Forwarded-Client-Cert, a redirect keeps
 * the https scheme, and a certificate the subjectAltNames rule refuses gets a 403 in the protocol it
 * speaks (an HTTP/1.1 403 written onto an h2 connection was an "Empty reply" for curl).
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { freePort, requireOrSkip, startGateway, tempDir } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);

function curlHasHttp2(): boolean {
  const r = spawnSync("curl", ["--version"], { encoding: "utf8" });
  return r.status === 0 && /HTTP2/.test(r.stdout);
}

test("TLS identity over HTTP/1.1 and h2: XFCC, x-forwarded-proto, redirects, SAN refusal", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates")) return;
  if (!requireOrSkip(t, curlHasHttp2(), "curl with HTTP/2 support is needed")) return;
  const dir = tempDir("agw-tls-identity-");
  const ca = makeCa(dir, "server-ca");
  const clientCa = makeCa(dir, "client-ca");
  makeLeaf(dir, ca, { cn: "gw.example.com", sans: ["DNS:gw.example.com"], file: "gw" });
  makeLeaf(dir, clientCa, {
    cn: "good-client",
    sans: ["URI:spiffe://agw/good"],
    clientAuth: true,
    file: "good",
  });
  makeLeaf(dir, clientCa, {
    cn: "other-client",
    sans: ["URI:spiffe://agw/other"],
    clientAuth: true,
    file: "other",
  });
  let seen: http.IncomingHttpHeaders = {};
  let hits = 0;
  const origin = http.createServer((req, res) => {
    hits++;
    seen = req.headers;
    res.end(`origin ${req.url}\n`);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const originPort = (origin.address() as AddressInfo).port;
  const port = await freePort();
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - name: gw
    certificate: { file: gw.crt }
    key: { file: gw.key }
  - name: client-ca
    ca: { file: client-ca.crt }
listeners:
  - name: secure
    address: 127.0.0.1
    port: ${port}
    protocol: https
    tls:
      certificates: [gw]
      alpn: [h2, http/1.1]
      clientCertificate: { ca: client-ca, subjectAltNames: ["spiffe://agw/good"] }
    routes:
      - { name: moved, match: { path: { exact: /old } }, redirect: { path: /new } }
      - { name: all, cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`,
  );
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());

  const curl = async (proto: "--http1.1" | "--http2", client: string, path: string, extra: string[] = []) => {
    const r = await run("curl", [
      "-sS",
      "-i",
      proto,
      "--max-time",
      "10",
      "--cacert",
      ca.certFile,
      "--cert",
      join(dir, `${client}.crt`),
      "--key",
      join(dir, `${client}.key`),
      "--resolve",
      `gw.example.com:${port}:127.0.0.1`,
      "-w",
      "\n[%{http_version} %{http_code}]",
      ...extra,
      `https://gw.example.com:${port}${path}`,
    ]).catch((e: { code: number; stdout: string; stderr: string }) => e);
    return { exit: "code" in r ? r.code : 0, out: r.stdout, err: r.stderr };
  };

  for (const [proto, version] of [
    ["--http1.1", "1.1"],
    ["--http2", "2"],
  ] as const) {
    await t.test(`${proto}: the upstream sees https and the client certificate`, async () => {
      seen = {};
      const r = await curl(proto, "good", "/who", ["-H", "x-forwarded-client-cert: Hash=forged"]);
      assert.equal(r.exit, 0, r.err);
      assert.match(r.out, new RegExp(`\\[${version.replace(".", "\\.")} 200\\]$`));
      assert.equal(seen["x-forwarded-proto"], "https");
      const xfcc = String(seen["x-forwarded-client-cert"]);
      assert.match(xfcc, /URI=spiffe:\/\/agw\/good/);
      assert.match(xfcc, /Subject="CN=good-client"/);
      assert.doesNotMatch(xfcc, /forged/);
    });

    await t.test(`${proto}: a redirect keeps the https scheme`, async () => {
      const r = await curl(proto, "good", "/old");
      assert.equal(r.exit, 0, r.err);
      assert.match(r.out, new RegExp(`location: https://gw\\.example\\.com:${port}/new`, "i"));
    });

    await t.test(`${proto}: a certificate the subjectAltNames rule refuses gets a 403`, async () => {
      const before = hits;
      const r = await curl(proto, "other", "/who");
      assert.equal(r.exit, 0, `curl failed: ${r.err}`);
      assert.match(r.out, new RegExp(`\\[${version.replace(".", "\\.")} 403\\]$`));
      assert.match(r.out, /x-agw-error: client_certificate_rejected/i);
      assert.match(r.out, /no subject alternative name matches \(spiffe:\/\/agw\/other\)/);
      assert.equal(hits, before, "nothing reached the upstream");
    });
  }
});
