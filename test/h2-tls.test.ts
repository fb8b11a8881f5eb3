/**
 * HTTP/2 over TLS end to end: `curl --http2` against an HTTPS listener with alpn [h2, http/1.1]
 * negotiates h2, is proxied to an HTTP/1.1 origin, and the stream shows in the metrics and the access
 * log like an HTTP/1.1 exchange.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { accessLogEntry, freePort, requireOrSkip, startGateway, tempDir, waitFor } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);

test("curl --http2 over TLS (ALPN h2): proxied, counted in metrics, access-logged", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates")) return;
  const dir = tempDir();
  const ca = makeCa(dir, "h2-test-ca");
  makeLeaf(dir, ca, { cn: "h2.example.com", sans: ["DNS:h2.example.com"], file: "h2" });
  const origin = http.createServer((req, res) => res.end(`origin ${req.url} ${req.httpVersion}\n`));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const originPort = (origin.address() as AddressInfo).port;
  const port = await freePort();
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - name: h2
    certificate: { file: h2.crt }
    key: { file: h2.key }
listeners:
  - name: secure
    address: 127.0.0.1
    port: ${port}
    protocol: https
    tls: { certificates: [h2], alpn: [h2, http/1.1] }
    routes:
      - { name: all, cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`,
  );
  const accessLog = join(dir, "access.log");
  t.after(() => origin.close());
  const { proc: gw, adminPort } = await startGateway(file, ["--access-log", accessLog]);
  t.after(() => gw.stop());

  const { stdout } = await run("curl", [
    "-sS",
    "--http2",
    "--cacert",
    ca.certFile,
    "--resolve",
    `h2.example.com:${port}:127.0.0.1`,
    "-H",
    "x-request-id: h2-over-tls",
    "-w",
    "\\n%{http_version} %{http_code}",
    `https://h2.example.com:${port}/hello`,
  ]);
  assert.equal(stdout, "origin /hello 1.1\n\n2 200");

  const metrics = await waitFor("the stream in the metrics", async () => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/stats/prometheus`)).text();
    return /agw_downstream_requests_total\{listener="secure",route="all",cluster="origin",code_class="2xx"\} 1/.test(
      text,
    )
      ? text
      : undefined;
  });
  assert.match(metrics, /agw_upstream_request_duration_seconds_count\{[^}]*\} 1/);
  // The access log is buffered (4 KiB) until the gateway exits; SIGTERM drains and flushes it.
  assert.equal(await gw.stop(), 0);
  const line = accessLogEntry(accessLog, "h2-over-tls");
  assert.equal(line.status, 200);
  assert.equal(line.route, "all");
});
