/**
 * mTLS between control plane and data plane, with real processes and certificates made by openssl
 * at test time: a data plane with a certificate from the control plane's CA gets its config (node
 * id = the certificate's CN); one from another CA is refused in the handshake; one claiming another
 * node id is refused by the control plane; plaintext off loopback is refused unless asked for.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { agw, freePort, get, type Proc, requireOrSkip, tempDir, waitFor } from "./helpers.ts";

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

function makeCa(dir: string, name: string): void {
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-keyout",
      join(dir, `${name}.key`),
      "-out",
      join(dir, `${name}.crt`),
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    { stdio: "pipe" },
  );
}

function makeCert(dir: string, ca: string, name: string, san?: string): void {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  execFileSync(
    "openssl",
    [
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-subj",
      `/CN=${name}`,
      "-keyout",
      key,
      "-out",
      csr,
    ],
    { stdio: "pipe" },
  );
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, san ? `subjectAltName=${san}\n` : "extendedKeyUsage=clientAuth\n");
  execFileSync(
    "openssl",
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      join(dir, `${ca}.crt`),
      "-CAkey",
      join(dir, `${ca}.key`),
      "-CAcreateserial",
      "-days",
      "1",
      "-out",
      join(dir, `${name}.crt`),
      "-extfile",
      ext,
    ],
    { stdio: "pipe" },
  );
}

test("xDS over mTLS: the right CA gets config, another CA and a borrowed identity are refused", async (t) => {
  if (!requireOrSkip(t, hasOpenssl, "openssl is not installed (needed to make test certificates)")) return;
  const dir = tempDir("agw-mtls-");
  makeCa(dir, "ca");
  makeCa(dir, "other-ca");
  makeCert(dir, "ca", "control-plane", "DNS:localhost,IP:127.0.0.1");
  makeCert(dir, "ca", "edge-1");
  makeCert(dir, "other-ca", "edge-2");
  const pem = (name: string) => [
    "--xds-cert",
    join(dir, `${name}.crt`),
    "--xds-key",
    join(dir, `${name}.key`),
  ];

  const origin = http.createServer((_req, res) => res.end("origin\n"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const listenerPort = await freePort();
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    `listeners:
  - name: web
    address: 127.0.0.1
    port: ${listenerPort}
    routes:
      - name: all
        match: { path: { prefix: / } }
        cluster: origin
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${(origin.address() as AddressInfo).port}"]
`,
  );
  const xdsPort = await freePort();
  const cpAdmin = await freePort();
  const procs: Proc[] = [];
  t.after(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    origin.close();
  });
  const start = (args: string[]) => {
    const p = agw(args);
    procs.push(p);
    return p;
  };
  const cp = start([
    "control-plane",
    "-c",
    config,
    "--xds-listen",
    `127.0.0.1:${xdsPort}`,
    "--admin",
    `127.0.0.1:${cpAdmin}`,
    ...pem("control-plane"),
    "--xds-ca",
    join(dir, "ca.crt"),
  ]);
  const dataPlanes = async () =>
    (await (await fetch(`http://127.0.0.1:${cpAdmin}/dataplanes`)).json()) as Array<{
      node_id: string;
      identity: string;
    }>;
  await waitFor("the control plane", () => dataPlanes().then(() => true), 15_000).catch((e) => {
    throw new Error(`${e.message}\n${cp.output()}`);
  });

  // The good data plane names the control plane by DNS name (verified against the certificate's SAN)
  // and takes its node id from its certificate: no --node-id (it used to default to the host name,
  // which the control plane refused).
  const good = start([
    "data-plane",
    "--xds",
    `localhost:${xdsPort}`,
    ...pem("edge-1"),
    "--xds-ca",
    join(dir, "ca.crt"),
    "--admin",
    "127.0.0.1:0",
  ]);
  await waitFor(
    "traffic through the mTLS-configured data plane",
    async () => {
      const res = await get(`http://127.0.0.1:${listenerPort}/`);
      return res.status === 200 ? res.body : undefined;
    },
    60_000,
  ).catch((e) => {
    throw new Error(`${e.message}\n${good.output()}\n${cp.output()}`);
  });
  const connected = await dataPlanes();
  assert.deepEqual(
    connected.map((d) => [d.node_id, d.identity]),
    [["edge-1", "edge-1"]],
  );

  const foreign = start([
    "data-plane",
    "--xds",
    `127.0.0.1:${xdsPort}`,
    ...pem("edge-2"),
    "--xds-ca",
    join(dir, "ca.crt"),
    "--admin",
    "127.0.0.1:0",
    "--node-id",
    "edge-2",
    "--bind-address",
    "127.0.0.2",
  ]);
  // Its own --xds-ca is another CA than the one that signed the control plane's certificate.
  const distrustful = start([
    "data-plane",
    "--xds",
    `127.0.0.1:${xdsPort}`,
    ...pem("edge-1"),
    "--xds-ca",
    join(dir, "other-ca.crt"),
    "--admin",
    "127.0.0.1:0",
    "--bind-address",
    "127.0.0.4",
  ]);
  const impostor = start([
    "data-plane",
    "--xds",
    `127.0.0.1:${xdsPort}`,
    ...pem("edge-1"),
    "--xds-ca",
    join(dir, "ca.crt"),
    "--admin",
    "127.0.0.1:0",
    "--node-id",
    "edge-9",
    "--bind-address",
    "127.0.0.3",
  ]);
  await waitFor(
    "the foreign data plane's refusal",
    () => (/xDS stream failed/.test(foreign.output()) ? true : undefined),
    30_000,
  ).catch((e) => {
    throw new Error(`${e.message}\n${foreign.output()}\n${cp.output()}`);
  });
  await waitFor(
    "the impostor's refusal",
    () => (/does not match the client certificate's identity/.test(impostor.output()) ? true : undefined),
    30_000,
  ).catch((e) => {
    throw new Error(`${e.message}\n${impostor.output()}`);
  });
  assert.doesNotMatch(foreign.output(), /xDS stream established/);
  // Both sides say what is wrong: not a bare "read ECONNRESET" and silence.
  assert.match(
    foreign.output(),
    /the control plane does not trust this data plane's client certificate \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): it must be signed by the CA the control plane was given \(--xds-ca\)/,
  );
  assert.match(
    cp.output(),
    /"peer":"127\.0\.0\.1:\d+","reason":"UNABLE_TO_VERIFY_LEAF_SIGNATURE","msg":"xDS client certificate refused/,
  );
  await waitFor(
    "the distrustful data plane's message",
    () => (/xDS stream failed/.test(distrustful.output()) ? true : undefined),
    30_000,
  );
  assert.match(
    distrustful.output(),
    /the control plane's certificate is not trusted \(SELF_SIGNED_CERT_IN_CHAIN\): --xds-ca must be the CA that signed the control plane's certificate/,
  );
  assert.doesNotMatch(distrustful.output(), /use-system-ca|ECONNRESET/);
  assert.deepEqual(
    (await dataPlanes()).map((d) => d.node_id),
    ["edge-1"],
    "only the data plane with a certificate from the CA and its own identity is connected",
  );

  // Plaintext off loopback needs an explicit --xds-plaintext.
  const refused = spawnSync(
    process.execPath,
    [
      join(import.meta.dirname, "../cli/src/main.ts"),
      "control-plane",
      "-c",
      config,
      "--xds-listen",
      "0.0.0.0:0",
    ],
    { encoding: "utf8", timeout: 20_000 },
  );
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /would talk xDS in plaintext with 0\.0\.0\.0: give --xds-cert/);
});
