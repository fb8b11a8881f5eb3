/**
 * Plugins reach data planes without shared files (docs/plugins.md, "Delivery"): a separate
 * `agw data-plane`, started in an empty directory of its own after the component files are gone,
 * runs the plugins an `agw control-plane` pushes — a small WAT guest inline in the Plugin resource,
 * one padded past the inline limit fetched by digest over the xDS connection — on both of its
 * threads (QuickJS guests, 1.6 MB, take the fetch path in test/plugins.test.ts). A component
 * that does not match its digest is NACKed, naming the plugin, in the data plane and in the control
 * plane's /dataplanes, and the previous config keeps serving. With `--plugin-components
 * authenticated`, a plaintext data plane and an unauthenticated client get no component; over mTLS
 * a client without a certificate, or with one for another node, is refused, and the data plane
 * with its own certificate runs the fetched plugins.
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import type http from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { PluginComponentService } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { componentDigest, INLINE_COMPONENT_MAX_BYTES } from "@agw/core/xds/plugin-component";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { buildWat } from "../plugins/sdk/build.ts";
import { WAT_GUESTS } from "../plugins/testdata/wat-guests.ts";
import {
  agw,
  freePort,
  get,
  type Proc,
  requireOrSkip,
  startHeaderEcho,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

/** Several real processes each: up to 115 s seen at load 29 on 2 cores, past the suite's 120 s default. */
const SLOW = { timeout: 300_000 };
const dir = tempDir("agw-plugin-delivery-");
const components = join(dir, "components");
let addHeader: Uint8Array;
/** The deny guest with 320 KiB of data: past the inline limit, compiled in milliseconds. */
let bigDeny: Uint8Array;
let origin: http.Server;
let originPort = 0;

const PLUGIN_TYPE = "type.googleapis.com/agw.v1.Plugin";

before(async () => {
  ({ server: origin, port: originPort } = await startHeaderEcho());
  addHeader = await buildWat(WAT_GUESTS.addHeader as string);
  const padding = Array.from(
    { length: 320 * 1024 },
    (_, i) => `\\${((i * 131) & 0xff).toString(16).padStart(2, "0")}`,
  );
  bigDeny = await buildWat(
    (WAT_GUESTS.deny as string).replace(
      '(memory (export "memory") 1)',
      `(memory (export "memory") 7)\n  (data (i32.const 65536) "${padding.join("")}")`,
    ),
  );
});

after(() => origin.close());

function writeComponents(): void {
  mkdirSync(components, { recursive: true });
  writeFileSync(join(components, "add-header.wasm"), addHeader);
  writeFileSync(join(components, "deny.wasm"), bigDeny);
}

/** config.yaml with both plugins, their digests pinned (or overridden by `digests`). */
function config(port: number, digests: { addHeader?: string; deny?: string } = {}): string {
  return `plugins:
  - name: add-header
    source: components/add-header.wasm
    digest: ${digests.addHeader ?? componentDigest(addHeader)}
  - name: deny
    source: components/deny.wasm
    digest: ${digests.deny ?? componentDigest(bigDeny)}
listeners:
  - name: public
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: denied, match: { path: { prefix: /denied } }, cluster: origin, plugins: [{ name: add-header }, { name: deny }] }
      - { name: open, cluster: origin, plugins: [{ name: add-header }] }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`;
}

interface ControlPlane {
  proc: Proc;
  file: string;
  xdsPort: number;
  adminPort: number;
  dataplanes(): Promise<
    Array<{ node_id: string; types: Record<string, { last_nack?: { message: string } }> }>
  >;
}

async function startControlPlane(port: number, extra: string[] = []): Promise<ControlPlane> {
  const file = join(dir, `config-${port}.yaml`);
  writeFileSync(file, config(port));
  const [xdsPort, adminPort] = await Promise.all([freePort(), freePort()]);
  const proc = agw([
    "control-plane",
    "-c",
    file,
    "--xds-listen",
    `127.0.0.1:${xdsPort}`,
    "--admin",
    `127.0.0.1:${adminPort}`,
    ...extra,
  ]);
  await waitFor(
    `the control plane ready\n${proc.output()}`,
    async () => ((await get(`http://127.0.0.1:${adminPort}/ready`)).status === 200 ? true : undefined),
    30_000,
  );
  return {
    proc,
    file,
    xdsPort,
    adminPort,
    dataplanes: async () => JSON.parse((await get(`http://127.0.0.1:${adminPort}/dataplanes`)).body),
  };
}

/** `agw data-plane` in a fresh, empty working directory of its own. */
async function startDataPlane(xdsPort: number, args: string[]): Promise<{ proc: Proc; adminPort: number }> {
  const cwd = tempDir("agw-dp-empty-");
  const adminPort = await freePort();
  const proc = agw(
    ["data-plane", "--xds", `127.0.0.1:${xdsPort}`, "--admin", `127.0.0.1:${adminPort}`, ...args],
    {},
    cwd,
  );
  return { proc, adminPort };
}

async function ready(adminPort: number, what: string, output: () => string): Promise<void> {
  await waitFor(
    `${what} ready\n${output()}`,
    async () => ((await get(`http://127.0.0.1:${adminPort}/ready`)).status === 200 ? true : undefined),
    90_000,
  );
}

async function assertPluginsRun(port: number, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    const open = await get(`http://127.0.0.1:${port}/open`);
    assert.equal(open.status, 200, open.body);
    assert.equal(JSON.parse(open.body).headers["x-wat"], "1", "the inline guest ran");
    const denied = await get(`http://127.0.0.1:${port}/denied`);
    assert.equal(denied.status, 403, "the fetched guest ran");
    assert.equal(denied.headers.get("x-agw-error"), "plugin_denied");
  }
}

async function nackOf(cp: ControlPlane, node: string): Promise<string> {
  return waitFor(
    `a Plugin NACK from ${node} in /dataplanes\n${cp.proc.output()}`,
    async () =>
      (await cp.dataplanes()).find((d) => d.node_id === node)?.types[PLUGIN_TYPE]?.last_nack?.message,
    60_000,
  );
}

test(
  "a data plane in an empty directory, the component files gone, runs the plugins pushed inline and fetched; a digest mismatch is NACKed",
  SLOW,
  async () => {
    assert.ok(addHeader.byteLength <= INLINE_COMPONENT_MAX_BYTES, "the WAT guest goes inline");
    assert.ok(bigDeny.byteLength > INLINE_COMPONENT_MAX_BYTES, "the padded guest is fetched");
    writeComponents();
    const port = await freePort();
    const cp = await startControlPlane(port);
    // The control plane holds the components now; no file of them is left anywhere.
    rmSync(components, { recursive: true, force: true });
    const dp = await startDataPlane(cp.xdsPort, ["--node-id", "edge-empty", "--workers", "2"]);
    const output = () => `${cp.proc.output()}\n${dp.proc.output()}`;
    try {
      await ready(dp.adminPort, "the data plane", output);
      await assertPluginsRun(port, 6);
      const dump = JSON.parse((await get(`http://127.0.0.1:${dp.adminPort}/config_dump`)).body);
      const dumped = (
        dump.resources["agw.v1.Plugin"].resources as Array<{
          name: string;
          component: Record<string, string>;
        }>
      )
        .map((p) => [p.name, p.component.inline ?? "fetched", p.component.size])
        .sort();
      assert.deepEqual(dumped, [
        ["add-header", `${addHeader.byteLength} bytes`, String(addHeader.byteLength)],
        ["deny", "fetched", String(bigDeny.byteLength)],
      ]);
      const served = cp.proc.output();
      assert.ok(served.includes(componentDigest(bigDeny)), "deny was fetched");
      assert.ok(
        !served
          .split("\n")
          .some((l) => l.includes("plugin component served") && l.includes(componentDigest(addHeader))),
        "add-header came inline, not fetched",
      );

      // An inline component that is not what its digest says: NACKed, naming the plugin.
      writeComponents();
      const wrong = componentDigest(new TextEncoder().encode("not the component"));
      writeFileSync(cp.file, config(port, { addHeader: wrong }));
      const inlineNack = await nackOf(cp, "edge-empty");
      assert.match(inlineNack, /agw\.v1\.Plugin add-header/);
      assert.match(
        inlineNack,
        /digest mismatch: the resource says sha256:[0-9a-f]{64}, the inline component is/,
      );
      await assertPluginsRun(port, 2); // the previous config keeps serving

      // A fetched one: the same.
      writeFileSync(cp.file, config(port, { deny: wrong }));
      const fetchedNack = await waitFor(
        `the fetched mismatch NACKed\n${output()}`,
        async () => {
          const m = await nackOf(cp, "edge-empty");
          return m.includes("deny") ? m : undefined;
        },
        60_000,
      );
      assert.match(fetchedNack, /agw\.v1\.Plugin deny/);
      assert.match(fetchedNack, /digest mismatch: .* the fetched component is/);
      assert.match(dp.proc.output(), /config rejected \(NACK\)/);
      await assertPluginsRun(port, 2);
    } finally {
      await Promise.all([dp.proc.stop(), cp.proc.stop()]);
    }
  },
);

/** A PluginComponentService client; `tls` for mTLS (a client certificate is optional). */
function componentClient(xdsPort: number, tls?: { ca: string; cert?: string; key?: string }) {
  return createClient(
    PluginComponentService,
    createGrpcTransport({
      baseUrl: `${tls ? "https" : "http"}://127.0.0.1:${xdsPort}`,
      ...(tls && { nodeOptions: { ca: tls.ca, ...(tls.cert && { cert: tls.cert, key: tls.key }) } }),
    }),
  );
}

async function fetchAll(
  client: ReturnType<typeof componentClient>,
  nodeId: string,
  digest: string,
): Promise<Uint8Array | Code> {
  try {
    const parts: Uint8Array[] = [];
    for await (const { chunk } of client.fetchComponent({ nodeId, digest }, { timeoutMs: 30_000 }))
      parts.push(chunk);
    return Buffer.concat(parts);
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

test(
  "plaintext: by default any xDS peer may fetch a snapshot's component and nothing else; with --plugin-components authenticated none is, and the data plane NACKs",
  SLOW,
  async () => {
    writeComponents();
    const open = await startControlPlane(await freePort());
    try {
      const client = componentClient(open.xdsPort);
      const got = await fetchAll(client, "anyone", componentDigest(bigDeny));
      assert.ok(got instanceof Uint8Array && componentDigest(got) === componentDigest(bigDeny));
      const elsewhere = componentDigest(new TextEncoder().encode("/etc/passwd"));
      assert.equal(await fetchAll(client, "anyone", elsewhere), Code.NotFound);
      assert.equal(await fetchAll(client, "anyone", "../../etc/passwd"), Code.InvalidArgument);
    } finally {
      await open.proc.stop();
    }

    const port = await freePort();
    const cp = await startControlPlane(port, ["--plugin-components", "authenticated"]);
    const dp = await startDataPlane(cp.xdsPort, ["--node-id", "edge-plain"]);
    try {
      assert.equal(
        await fetchAll(componentClient(cp.xdsPort), "intruder", componentDigest(addHeader)),
        Code.Unauthenticated,
      );
      const nack = await nackOf(cp, "edge-plain");
      assert.match(nack, /agw\.v1\.Plugin add-header/);
      assert.match(nack, /plugin components go only to authenticated data planes/);
      assert.match(cp.proc.output(), /plugin component refused: plaintext TCP is unauthenticated/);
      assert.equal((await get(`http://127.0.0.1:${dp.adminPort}/ready`)).status, 503);
    } finally {
      await Promise.all([dp.proc.stop(), cp.proc.stop()]);
    }
  },
);

test(
  "mTLS with --plugin-components authenticated: no certificate or another node's is refused; the data plane with its own certificate runs the fetched plugins",
  SLOW,
  async (t) => {
    if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make certificates")) return;
    const pki = tempDir("agw-plugin-delivery-pki-");
    const ca = makeCa(pki, "xds-ca");
    const server = makeLeaf(pki, ca, { cn: "control-plane", sans: ["IP:127.0.0.1"] });
    const edge = makeLeaf(pki, ca, { cn: "edge-mtls", clientAuth: true });
    const other = makeLeaf(pki, ca, { cn: "edge-other", clientAuth: true });
    writeComponents();
    const port = await freePort();
    const cp = await startControlPlane(port, [
      "--xds-cert",
      server.certFile,
      "--xds-key",
      server.keyFile,
      "--xds-ca",
      ca.certFile,
      "--plugin-components",
      "authenticated",
    ]);
    rmSync(components, { recursive: true, force: true });
    const dp = await startDataPlane(cp.xdsPort, [
      "--xds-cert",
      edge.certFile,
      "--xds-key",
      edge.keyFile,
      "--xds-ca",
      ca.certFile,
    ]);
    try {
      const digest = componentDigest(addHeader);
      assert.equal(
        await fetchAll(componentClient(cp.xdsPort, { ca: ca.pem }), "edge-mtls", digest),
        Code.Unauthenticated,
      );
      const asOther = componentClient(cp.xdsPort, { ca: ca.pem, cert: other.certPem, key: other.keyPem });
      assert.equal(await fetchAll(asOther, "edge-mtls", digest), Code.PermissionDenied);
      await ready(dp.adminPort, "the mTLS data plane", () => `${cp.proc.output()}\n${dp.proc.output()}`);
      await assertPluginsRun(port, 3);
      // Under "authenticated" nothing is inlined: both components were fetched, by this node.
      for (const bytes of [addHeader, bigDeny])
        assert.ok(
          cp.proc
            .output()
            .split("\n")
            .some(
              (l) =>
                l.includes("plugin component served") &&
                l.includes(componentDigest(bytes)) &&
                l.includes("edge-mtls"),
            ),
        );
    } finally {
      await Promise.all([dp.proc.stop(), cp.proc.stop()]);
    }
  },
);
