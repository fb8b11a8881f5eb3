/**
 * The TLS manager end to end: `agw run` on a config.yaml whose certificates are files written at test
 * time, driven by real TLS clients (openssl s_client, curl, Node's tls for load). Certificates are
 * edited on disk and reach the data plane through the control plane's file watch and xDS.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import tls from "node:tls";
import { promisify } from "node:util";
import {
  freePort,
  get,
  type RunningGateway,
  requireOrSkip,
  startGateway,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);

function hasCommand(cmd: string): boolean {
  return spawnSync(cmd, ["--version"], { stdio: "ignore" }).status === 0;
}

/** Writes like an editor that saves by rename. */
function save(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

/** The subject CN of the certificate the server presents for `servername` (undefined: no SNI). */
async function servedCn(port: number, servername: string | undefined): Promise<string> {
  const args = [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    ...(servername ? ["-servername", servername] : ["-noservername"]),
  ];
  const { stdout } = await run("sh", ["-c", `openssl ${args.join(" ")} </dev/null 2>/dev/null`], {
    timeout: 10_000,
  }).catch((e: { stdout: string }) => e);
  const m = /subject=.*CN\s*=\s*([^\n,]+)/.exec(stdout);
  return m?.[1]?.trim() ?? `no certificate (${stdout.slice(0, 200)})`;
}

interface Origin {
  port: number;
  lastHeaders: http.IncomingHttpHeaders;
  close(): void;
}

async function startOrigin(): Promise<Origin> {
  const origin: Origin = { port: 0, lastHeaders: {}, close: () => server.close() };
  const server = http.createServer((req, res) => {
    origin.lastHeaders = req.headers;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ path: req.url, headers: req.headers }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin.port = (server.address() as AddressInfo).port;
  return origin;
}

/** The last NACK the control plane recorded for the Secret type, if any. */
async function secretNack(gw: RunningGateway): Promise<{ version: string; message: string } | undefined> {
  const res = await get(`http://127.0.0.1:${gw.cpAdminPort}/dataplanes`);
  const dps = JSON.parse(res.body) as Array<{
    types: Record<string, { last_nack?: { version: string; message: string } }>;
  }>;
  return dps[0]?.types["type.googleapis.com/agw.v1.Secret"]?.last_nack;
}

function secretYaml(name: string, cert: string, key: string): string {
  return `  - name: ${name}\n    certificate: { file: ${cert} }\n    key: { file: ${key} }\n`;
}

test("SNI, runtime listeners, rotation under load, bad certificates NACKed, mTLS, upstream TLS", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates and run s_client"))
    return;
  if (!requireOrSkip(t, hasCommand("curl"), "curl is needed as a TLS client")) return;
  const dir = tempDir("agw-tls-");
  const ca = makeCa(dir, "test-ca");
  const clientCa = makeCa(dir, "client-ca");
  const otherCa = makeCa(dir, "other-ca");
  makeLeaf(dir, ca, { cn: "default.test", sans: ["DNS:default.test"], type: "rsa", file: "default" });
  makeLeaf(dir, ca, { cn: "a.example.com", sans: ["DNS:a.example.com"], type: "rsa", file: "a" });
  makeLeaf(dir, ca, { cn: "b.example.com", sans: ["DNS:b.example.com"], type: "ec", file: "b" });
  makeLeaf(dir, ca, { cn: "c.example.com", sans: ["DNS:c.example.com"], type: "rsa", file: "c" });
  makeLeaf(dir, ca, { cn: "wild.example.com", sans: ["DNS:*.wild.example.com"], type: "ec", file: "wild" });
  makeLeaf(dir, clientCa, {
    cn: "good-client",
    sans: ["URI:spiffe://agw/test-client"],
    clientAuth: true,
    file: "good-client",
  });
  makeLeaf(dir, clientCa, {
    cn: "other-client",
    sans: ["URI:spiffe://agw/other"],
    clientAuth: true,
    file: "other-client",
  });
  makeLeaf(dir, otherCa, {
    cn: "stranger",
    sans: ["URI:spiffe://agw/test-client"],
    clientAuth: true,
    file: "stranger",
  });
  // An HTTPS origin whose certificate our test CA did not sign.
  const untrusted = makeLeaf(dir, otherCa, {
    cn: "origin.internal",
    sans: ["DNS:origin.internal", "IP:127.0.0.1"],
    file: "untrusted-origin",
  });
  const trusted = makeLeaf(dir, ca, {
    cn: "origin.internal",
    sans: ["DNS:origin.internal"],
    file: "trusted-origin",
  });

  const origin = await startOrigin();
  t.after(() => origin.close());
  const httpsOrigin = (leaf: typeof untrusted) =>
    new Promise<https.Server>((resolve) => {
      const s = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) =>
        res.end("secure origin\n"),
      );
      s.listen(0, "127.0.0.1", () => resolve(s));
    });
  const untrustedOrigin = await httpsOrigin(untrusted);
  const trustedOrigin = await httpsOrigin(trusted);
  t.after(() => {
    untrustedOrigin.close();
    trustedOrigin.close();
  });

  const [port, port2, mtlsPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const file = join(dir, "config.yaml");
  const config = (extraListener: boolean) => `secrets:
${secretYaml("default", "default.crt", "default.key")}${secretYaml("a", "a.crt", "a.key")}${secretYaml("b", "b.crt", "b.key")}${secretYaml("c", "c.crt", "c.key")}${secretYaml("wild", "wild.crt", "wild.key")}  - name: client-ca
    ca: { file: client-ca.crt }
  - name: test-ca
    ca: { file: test-ca.crt }
listeners:
  - name: public
    address: 127.0.0.1
    port: ${port}
    protocol: https
    tls: { certificates: [default, a, b, c, wild] }
    routes:
      - { name: untrusted, match: { path: { prefix: /untrusted } }, cluster: untrusted }
      - { name: trusted, match: { path: { prefix: /trusted } }, cluster: trusted }
      - { name: all, cluster: origin }
  - name: mtls
    address: 127.0.0.1
    port: ${mtlsPort}
    protocol: https
    tls:
      certificates: [a]
      clientCertificate: { ca: client-ca, subjectAltNames: ["spiffe://agw/test-client"] }
    routes:
      - { name: all, cluster: origin }
${
  extraListener
    ? `  - name: extra
    address: 127.0.0.1
    port: ${port2}
    protocol: https
    tls: { certificates: [b], minVersion: TLSv1.3 }
    routes:
      - { name: all, cluster: origin }
`
    : ""
}clusters:
  - name: origin
    endpoints: ["127.0.0.1:${origin.port}"]
  - name: untrusted
    endpoints: ["127.0.0.1:${(untrustedOrigin.address() as AddressInfo).port}"]
    tls: { ca: test-ca }
  - name: trusted
    endpoints: ["127.0.0.1:${(trustedOrigin.address() as AddressInfo).port}"]
    tls: { ca: test-ca, sni: origin.internal }
`;
  save(file, config(false));
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());
  const curl = async (p: number, host: string, path: string, extra: string[] = []) => {
    const r = await run("curl", [
      "-sS",
      "-i",
      "--max-time",
      "10",
      "--cacert",
      ca.certFile,
      "--resolve",
      `${host}:${p}:127.0.0.1`,
      ...extra,
      `https://${host}:${p}${path}`,
    ]).catch((e: { code: number; stdout: string; stderr: string }) => e);
    return { exit: "code" in r ? r.code : 0, out: r.stdout, err: r.stderr };
  };

  await t.test("SNI picks the certificate: three names, a wildcard and the default", async () => {
    assert.equal(await servedCn(port, "a.example.com"), "a.example.com");
    assert.equal(await servedCn(port, "b.example.com"), "b.example.com");
    assert.equal(await servedCn(port, "c.example.com"), "c.example.com");
    assert.equal(await servedCn(port, "x.wild.example.com"), "wild.example.com");
    assert.equal(await servedCn(port, "unknown.example.org"), "default.test");
    assert.equal(await servedCn(port, undefined), "default.test");
    const r = await curl(port, "b.example.com", "/hello");
    assert.equal(r.exit, 0, r.err);
    assert.match(r.out, /^HTTP\/1\.1 200/);
    assert.equal(origin.lastHeaders["x-forwarded-proto"], "https");
    const alpn = await run("sh", [
      "-c",
      `openssl s_client -connect 127.0.0.1:${port} -servername a.example.com -alpn h2,http/1.1 </dev/null 2>/dev/null`,
    ]);
    assert.match(alpn.stdout, /ALPN protocol: http\/1\.1/);
  });

  await t.test("a listener added and removed at runtime", async () => {
    const before = await curl(port2, "b.example.com", "/");
    assert.notEqual(before.exit, 0, "nothing listens yet");
    save(file, config(true));
    await waitFor("the new listener", async () =>
      (await curl(port2, "b.example.com", "/")).exit === 0 ? true : undefined,
    );
    const r = await curl(port2, "b.example.com", "/", ["--tlsv1.2", "--tls-max", "1.2"]);
    assert.notEqual(r.exit, 0, "minVersion TLSv1.3 refuses TLS 1.2");
    save(file, config(false));
    await waitFor("the listener closed", async () =>
      (await curl(port2, "b.example.com", "/")).exit === 7 ? true : undefined,
    );
    assert.equal((await curl(port, "a.example.com", "/")).exit, 0, "the other listener kept serving");
  });

  await t.test("mTLS: a verified client with the right SAN passes, others are refused", async () => {
    const ok = await curl(mtlsPort, "a.example.com", "/who", [
      "--cert",
      join(dir, "good-client.crt"),
      "--key",
      join(dir, "good-client.key"),
    ]);
    assert.equal(ok.exit, 0, ok.err);
    assert.match(ok.out, /^HTTP\/1\.1 200/);
    assert.match(String(origin.lastHeaders["x-forwarded-client-cert"]), /URI=spiffe:\/\/agw\/test-client/);
    assert.match(String(origin.lastHeaders["x-forwarded-client-cert"]), /Subject="CN=good-client"/);
    const none = await curl(mtlsPort, "a.example.com", "/who");
    assert.notEqual(none.exit, 0, "no client certificate: the handshake fails");
    const stranger = await curl(mtlsPort, "a.example.com", "/who", [
      "--cert",
      join(dir, "stranger.crt"),
      "--key",
      join(dir, "stranger.key"),
    ]);
    assert.notEqual(stranger.exit, 0, "a certificate from another CA is refused");
    const wrongSan = await curl(mtlsPort, "a.example.com", "/who", [
      "--cert",
      join(dir, "other-client.crt"),
      "--key",
      join(dir, "other-client.key"),
    ]);
    assert.match(wrongSan.out, /^HTTP\/1\.1 403/);
    assert.match(wrongSan.out, /x-agw-error: client_certificate_rejected/);
    assert.match(wrongSan.out, /no subject alternative name matches \(spiffe:\/\/agw\/other\)/);
    // A client cannot forge the header on a plain (non-mTLS) listener either.
    await curl(port, "a.example.com", "/", ["-H", "x-forwarded-client-cert: Hash=forged"]);
    assert.equal(origin.lastHeaders["x-forwarded-client-cert"], undefined);
  });

  await t.test(
    "upstream TLS: an untrusted certificate is a 502 upstream_tls_failed, a trusted one answers",
    async () => {
      const bad = await curl(port, "a.example.com", "/untrusted");
      assert.match(bad.out, /^HTTP\/1\.1 502/);
      assert.match(bad.out, /x-agw-error: upstream_tls_failed/);
      assert.match(bad.out, /upstream TLS handshake failed: .*(certificate|verify)/i);
      const good = await curl(port, "a.example.com", "/trusted");
      assert.match(good.out, /^HTTP\/1\.1 200/);
      assert.match(good.out, /secure origin/);
    },
  );

  await t.test("rotation under load: 0 failed handshakes, old connections keep working", async () => {
    const before = await servedCn(port, "a.example.com");
    assert.equal(before, "a.example.com");
    // An established keep-alive connection on the old certificate.
    const agent = new https.Agent({
      keepAlive: true,
      maxSockets: 1,
      ca: ca.pem,
      servername: "a.example.com",
    });
    const oldFingerprint = await new Promise<string>((resolve, reject) => {
      const req = https.get(
        { host: "127.0.0.1", port, path: "/old", agent, servername: "a.example.com" },
        (res) => {
          res.resume();
          res.on("end", () => resolve((req.socket as tls.TLSSocket).getPeerCertificate().fingerprint256));
        },
      );
      req.on("error", reject);
    });
    let failed = 0;
    let handshakes = 0;
    const seen = new Set<string>();
    let stop = false;
    const worker = async () => {
      while (!stop) {
        await new Promise<void>((resolve) => {
          const s = tls.connect({ host: "127.0.0.1", port, servername: "a.example.com", ca: ca.pem }, () => {
            handshakes++;
            seen.add(s.getPeerCertificate().fingerprint256);
            s.end();
            resolve();
          });
          s.on("error", () => {
            failed++;
            resolve();
          });
        });
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await waitFor("some handshakes", () => (handshakes > 50 ? true : undefined));
    makeLeaf(dir, ca, { cn: "a.example.com", sans: ["DNS:a.example.com"], type: "ec", file: "a" });
    await waitFor("the new certificate served", () => (seen.size > 1 ? true : undefined), 15_000);
    const at = handshakes;
    await waitFor("more handshakes after rotation", () => (handshakes > at + 50 ? true : undefined));
    stop = true;
    await Promise.all(workers);
    assert.equal(failed, 0, `failed handshakes during rotation (of ${handshakes})`);
    // The old connection is still open, still on the old certificate, and still proxies.
    const again = await new Promise<{ status: number; fingerprint: string; reused: boolean }>(
      (resolve, reject) => {
        const req = https.get(
          { host: "127.0.0.1", port, path: "/again", agent, servername: "a.example.com" },
          (res) => {
            res.resume();
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                fingerprint: (req.socket as tls.TLSSocket).getPeerCertificate().fingerprint256,
                reused: req.reusedSocket,
              }),
            );
          },
        );
        req.on("error", reject);
      },
    );
    agent.destroy();
    assert.deepEqual(again, { status: 200, fingerprint: oldFingerprint, reused: true });
    // A new handshake gets the new certificate: same name, not the old one's fingerprint.
    const fresh = await new Promise<{ cn: string; fingerprint: string }>((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port, servername: "a.example.com", ca: ca.pem }, () => {
        const cert = s.getPeerCertificate();
        s.end();
        resolve({ cn: String(cert.subject.CN), fingerprint: cert.fingerprint256 });
      });
      s.on("error", reject);
    });
    assert.equal(fresh.cn, "a.example.com");
    assert.notEqual(fresh.fingerprint, oldFingerprint);
    assert.ok(seen.has(fresh.fingerprint), "the certificate served after the rotation");
  });

  await t.test("a bad certificate is refused with a clear error and the old one keeps serving", async () => {
    const served = async () =>
      (
        await run("sh", [
          "-c",
          `openssl s_client -connect 127.0.0.1:${port} -servername c.example.com </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`,
        ])
      ).stdout;
    const good = await served();
    // What the control plane can check alone (PEM that parses, a key that matches) is a FILE:LINE config
    // error and never sent; the rest (validity dates, checked where the certificate serves) is NACKed.
    const cases: Array<[string, () => void, RegExp]> = [
      [
        "malformed PEM",
        () =>
          save(join(dir, "c.crt"), "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
        /config\.yaml:\d+ secrets\[\d+\]\.certificate: certificate 1 is malformed/,
      ],
      [
        "key of another certificate",
        () => {
          const other = makeLeaf(dir, ca, {
            cn: "c.example.com",
            sans: ["DNS:c.example.com"],
            file: "c-other",
          });
          save(join(dir, "c.crt"), other.certPem);
        },
        /config\.yaml:\d+ secrets\[\d+\]\.key: the key does not match the certificate/,
      ],
      [
        "expired",
        () => {
          const expired = makeLeaf(dir, ca, {
            cn: "c.example.com",
            sans: ["DNS:c.example.com"],
            file: "c-expired",
            notBefore: Date.now() - 3 * 86_400_000,
            notAfter: Date.now() - 86_400_000,
          });
          save(join(dir, "c.key"), expired.keyPem);
          save(join(dir, "c.crt"), expired.certPem);
        },
        /agw\.v1\.Secret c: certificate_chain_pem: certificate expired on /,
      ],
      [
        "not yet valid",
        () => {
          const future = makeLeaf(dir, ca, {
            cn: "c.example.com",
            sans: ["DNS:c.example.com"],
            file: "c-future",
            notBefore: Date.now() + 86_400_000,
            notAfter: Date.now() + 2 * 86_400_000,
          });
          save(join(dir, "c.key"), future.keyPem);
          save(join(dir, "c.crt"), future.certPem);
        },
        /agw\.v1\.Secret c: certificate_chain_pem: certificate is not valid yet/,
      ],
    ];
    const configErrors = async () =>
      (
        JSON.parse((await get(`http://127.0.0.1:${gw.cpAdminPort}/config_dump`)).body) as {
          config_errors: string[];
        }
      ).config_errors.join("\n");
    for (const [what, breakIt, expected] of cases) {
      const previous = (await secretNack(gw))?.version;
      breakIt();
      const message = await waitFor(
        `the error for ${what}`,
        async () => {
          const errors = await configErrors();
          if (expected.test(errors)) return errors;
          const n = await secretNack(gw);
          return n && n.version !== previous && expected.test(n.message) ? n.message : undefined;
        },
        15_000,
      );
      assert.doesNotMatch(message, /BEGIN|PRIVATE/, "the error never carries key material");
      assert.equal(await served(), good, `${what}: the previous certificate still serves`);
    }
    const dump = await get(`http://127.0.0.1:${gw.adminPort}/config_dump`);
    assert.doesNotMatch(dump.body, /BEGIN|PRIVATE KEY/);
    const cpDump = await get(`http://127.0.0.1:${gw.cpAdminPort}/config_dump`);
    assert.doesNotMatch(cpDump.body, /BEGIN|PRIVATE KEY/);
    assert.doesNotMatch(gw.proc.output(), /BEGIN|PRIVATE KEY/, "nothing logged key material");
  });
});
