/**
 * Secrets over xDS, as a user runs it (docs/security.md):
 *
 * - `agw run` opens no xDS TCP port: its data plane talks to its control plane over a Unix socket
 *   (0600, in a 0700 directory), and the HTTPS listener gets its certificate that way;
 * - a data plane on plaintext TCP gets no Secret, and says why in /ready and /config_dump, while the
 *   control plane logs once why it withheld them.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import https from "node:https";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { startControlPlane } from "@agw/control-plane";
import { createLogger } from "@agw/core";
import { startDataPlane } from "@agw/data-plane";
import { get, requireOrSkip, startGateway, tempDir, waitFor } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

/** TCP ports the process `pid` listens on, from /proc (IPv4 and IPv6). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is f[1] (ADDR:PORT in hex), st is f[3] (0A = LISTEN), inode is f[9].
      if (f[3] === "0A" && f[9] && inodes.has(f[9]))
        ports.add(Number.parseInt(f[1]?.split(":")[1] ?? "", 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

function httpsConfig(dir: string, port: number): { file: string; ca: string } {
  const ca = makeCa(dir, "site-ca");
  const leaf = makeLeaf(dir, ca, { cn: "site.example", sans: ["DNS:site.example"] });
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - name: site
    certificate: { file: ${leaf.certFile} }
    key: { file: ${leaf.keyFile} }
listeners:
  - name: secure
    address: 127.0.0.1
    port: ${port}
    protocol: https
    tls: { certificates: [site] }
    routes:
      - name: hello
        match: { path: { prefix: / } }
        directResponse: { status: 200, body: "over TLS\\n" }
`,
  );
  return { file, ca: ca.pem };
}

function httpsGet(port: number, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: "127.0.0.1", port, path: "/", servername: "site.example", ca, timeout: 5_000 },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
  });
}

test("agw run: no xDS TCP port; the data plane gets its certificate over a 0600 Unix socket", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make the listener's certificate")) return;
  if (!requireOrSkip(t, statSync("/proc/self/fd", { throwIfNoEntry: false }) !== undefined, "needs /proc"))
    return;
  const dir = tempDir("agw-run-xds-");
  const port = await (await import("./helpers.ts")).freePort();
  const { file, ca } = httpsConfig(dir, port);
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());

  const res = await httpsGet(port, ca);
  assert.equal(res.status, 200);
  assert.equal(res.body, "over TLS\n");

  const pid = gw.proc.child.pid as number;
  assert.deepEqual(
    listeningPorts(pid),
    [port, gw.adminPort, gw.cpAdminPort].sort((a, b) => a - b),
    "the HTTPS listener and the two admin ports, and no xDS port",
  );
  const socket = /xDS: unix:(\S+)/.exec(gw.proc.output())?.[1];
  assert.ok(socket, gw.proc.output());
  assert.equal(statSync(socket).mode & 0o777, 0o600);
  assert.equal(statSync(dirname(socket)).mode & 0o777, 0o700);
  const dataPlanes = (await (await fetch(`http://127.0.0.1:${gw.cpAdminPort}/dataplanes`)).json()) as Array<{
    transport: string;
  }>;
  assert.deepEqual(
    dataPlanes.map((d) => d.transport),
    ["unix"],
  );
});

test("a data plane on plaintext TCP gets no Secret and says why in /ready and /config_dump", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make the listener's certificate")) return;
  const dir = tempDir("agw-plain-xds-");
  const { file } = httpsConfig(dir, await (await import("./helpers.ts")).freePort());
  const lines: string[] = [];
  const log = createLogger("cp", {
    write: (line: string) => {
      lines.push(line);
      return true;
    },
  } as unknown as NodeJS.WritableStream);
  const quiet = createLogger("dp", { write: () => true } as unknown as NodeJS.WritableStream);
  const cp = await startControlPlane({ configFile: file, xdsHost: "127.0.0.1", xdsPort: 0, log });
  t.after(() => cp.close());
  const dp = await startDataPlane({
    xds: `${cp.xds?.target}`,
    nodeId: "plain",
    admin: { host: "127.0.0.1", port: 0 },
    bindAddress: "127.0.0.2",
    log: quiet,
  });
  t.after(() => dp.close());
  const admin = `http://127.0.0.1:${dp.admin?.address.port}`;
  const ready = await waitFor("the listener's rejection in /ready", async () => {
    const r = await get(`${admin}/ready`);
    return /rejected/.test(r.body) ? r : undefined;
  });
  assert.equal(ready.status, 503);
  assert.match(
    ready.body,
    /certificate secret "site" does not exist: not sent: this data plane's xDS is plaintext TCP \(unauthenticated\)/,
  );
  const dump = (await (await fetch(`${admin}/config_dump`)).json()) as {
    rejected: Record<string, string>;
    resources: Record<string, { resources: unknown[] }>;
  };
  assert.match(dump.rejected["agw.v1.Listener"] ?? "", /xDS is plaintext TCP/);
  assert.deepEqual(dump.resources["agw.v1.Secret"]?.resources, []);
  const withheld = lines.filter((l) => l.includes("secrets withheld"));
  assert.equal(withheld.length, 1, "the control plane says once why");
  assert.match(withheld[0] ?? "", /"node":"plain"/);
});
