/**
 * Client addresses and IP rules (issue 18), end to end against `agw run` with real senders of PROXY
 * protocol headers: haproxy (send-proxy and send-proxy-v2) and curl --haproxy-protocol, over
 * HTTP/1.1, h2c and h2 over TLS. Loopback has every 127/8 address, so a client bound to 127.0.0.2
 * is told apart from the proxy in front (127.0.0.1). The attacks: a PROXY header on a listener that
 * did not enable it, a malformed or missing one, and an X-Forwarded-For spoofed beyond the trusted hops.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import {
  accessLogEntry,
  freePort,
  killAndWait,
  requireOrSkip,
  startGateway,
  startHeaderEcho,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);
const HAPROXY = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => existsSync(p));

function curlHasHttp2(): boolean {
  const r = spawnSync("curl", ["--version"], { encoding: "utf8" });
  return r.status === 0 && /HTTP2/.test(r.stdout);
}

interface Reply {
  code: number;
  version: string;
  error: string;
  body: string;
}

async function curl(args: string[], url: string): Promise<Reply> {
  const r = await run("curl", [
    "-sS",
    "--max-time",
    "10",
    "-D",
    "-",
    "-w",
    "\n%{http_version} %{http_code}",
    ...args,
    url,
  ]);
  const lines = r.stdout.trimEnd().split("\n");
  const [version, code] = (lines.pop() as string).split(" ");
  const text = lines.join("\n");
  const error = /x-agw-error: ([a-z_]+)/i.exec(text)?.[1] ?? "";
  return { code: Number(code), version: version as string, error, body: text.split("\r\n\r\n").pop() ?? "" };
}

/** Raw bytes to a port, everything it answers until it closes. */
function raw(port: number, bytes: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let out = "";
    s.setTimeout(10_000, () => s.destroy(new Error("no close within 10 s")));
    s.on("data", (d) => {
      out += d.toString("latin1");
    });
    s.on("error", reject);
    s.on("close", () => resolve(out));
    s.write(bytes);
  });
}

test("client address: PROXY protocol from haproxy and curl, trusted X-Forwarded-For hops, IP rules", async (t) => {
  if (!requireOrSkip(t, HAPROXY !== undefined, "haproxy is needed as a real PROXY protocol sender")) return;
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates")) return;
  if (!requireOrSkip(t, curlHasHttp2(), "curl with HTTP/2 support is needed")) return;
  const dir = tempDir("agw-client-address-");
  const ca = makeCa(dir, "ca");
  makeLeaf(dir, ca, { cn: "gw.example.com", sans: ["DNS:gw.example.com"], file: "gw" });
  const origin = await startHeaderEcho();
  t.after(() => origin.server.close());
  const ports = await Promise.all(Array.from({ length: 8 }, () => freePort()));
  const [pp, pps, plain, lb, closed, v1Port, v2Port, v2sPort] = ports as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  // /admin admits 127.0.0.2 and 203.0.113.0/24 only; everything else is open.
  const routes = `    routes:
      - name: admin
        match: { path: { prefix: /admin } }
        cluster: origin
        ipRules: { allow: [127.0.0.2/32, 203.0.113.0/24], deny: [203.0.113.66] }
      - { name: all, cluster: origin }
`;
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - { name: gw, certificate: { file: gw.crt }, key: { file: gw.key } }
listeners:
  - name: pp
    address: 127.0.0.1
    port: ${pp}
    proxyProtocol: { timeout: 2s }
${routes}  - name: pps
    address: 127.0.0.1
    port: ${pps}
    protocol: https
    tls: { certificates: [gw], alpn: [h2, http/1.1] }
    proxyProtocol: {}
${routes}  - name: plain
    address: 127.0.0.1
    port: ${plain}
${routes}  - name: lb
    address: 127.0.0.1
    port: ${lb}
    clientAddress: { xffNumTrustedHops: 1 }
${routes}  - name: closed
    address: 127.0.0.1
    port: ${closed}
    ipRules: { deny: [127.0.0.0/8, "::1"] }
${routes}clusters:
  - name: origin
    endpoints: ["127.0.0.1:${origin.port}"]
`,
  );
  const accessLog = join(dir, "access.log");
  const gw = await startGateway(file, ["--access-log", accessLog]);
  t.after(() => gw.proc.stop());

  // haproxy in TCP mode in front: v1 and v2 to the plain listener, v2 to the TLS one.
  const haCfg = join(dir, "haproxy.cfg");
  writeFileSync(
    haCfg,
    `global
  maxconn 200
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend v1
  bind 127.0.0.1:${v1Port}
  default_backend v1
backend v1
  server gw 127.0.0.1:${pp} send-proxy
frontend v2
  bind 127.0.0.1:${v2Port}
  default_backend v2
backend v2
  server gw 127.0.0.1:${pp} send-proxy-v2
frontend v2s
  bind 127.0.0.1:${v2sPort}
  default_backend v2s
backend v2s
  server gw 127.0.0.1:${pps} send-proxy-v2
`,
  );
  const ha: ChildProcess = spawn(HAPROXY as string, ["-db", "-f", haCfg], { stdio: "ignore" });
  t.after(() => killAndWait(ha));
  await waitFor(
    "haproxy listening",
    () =>
      new Promise<true | undefined>((resolve) => {
        const s = net.connect(v2sPort, "127.0.0.1", () => {
          s.destroy();
          resolve(true);
        });
        s.on("error", () => resolve(undefined));
      }),
    15_000,
  );

  const tlsArgs = ["--cacert", ca.certFile, "--resolve", `gw.example.com:${v2sPort}:127.0.0.1`];
  const modes = [
    {
      name: "HTTP/1.1 via haproxy send-proxy",
      args: ["--http1.1"],
      url: `http://127.0.0.1:${v1Port}`,
      v: "1.1",
    },
    {
      name: "h2c via haproxy send-proxy-v2",
      args: ["--http2-prior-knowledge"],
      url: `http://127.0.0.1:${v2Port}`,
      v: "2",
    },
    {
      name: "h2 over TLS via haproxy send-proxy-v2",
      args: ["--http2", ...tlsArgs],
      url: `https://gw.example.com:${v2sPort}`,
      v: "2",
    },
  ];
  for (const m of modes) {
    await t.test(
      `${m.name}: the PROXY source is the client for logs, IP rules and X-Forwarded-For`,
      async () => {
        const id = `pp-${m.v}-${Math.random().toString(36).slice(2)}`;
        let r = await curl(
          [...m.args, "--interface", "127.0.0.2", "-H", `x-request-id: ${id}`],
          `${m.url}/admin/x`,
        );
        assert.equal(r.version, m.v);
        assert.equal(r.code, 200, r.body);
        const echoed = JSON.parse(r.body) as { headers: Record<string, string> };
        // The upstream learns the client, not haproxy (127.0.0.1).
        assert.equal(echoed.headers["x-forwarded-for"], "127.0.0.2");
        await waitFor(
          "the access log entry",
          () => {
            try {
              return accessLogEntry(accessLog, id);
            } catch {
              return undefined;
            }
          },
          10_000,
        );
        assert.equal(accessLogEntry(accessLog, id).client_address, "127.0.0.2");
        r = await curl([...m.args, "--interface", "127.0.0.3"], `${m.url}/admin/x`);
        assert.equal(r.code, 403);
        assert.equal(r.error, "client_address_denied");
        r = await curl([...m.args, "--interface", "127.0.0.3"], `${m.url}/open`);
        assert.equal(r.code, 200);
      },
    );
  }

  await t.test("curl --haproxy-protocol (v1) to the PROXY listener over HTTP/1.1 and h2c", async () => {
    for (const args of [["--http1.1"], ["--http2-prior-knowledge"]]) {
      let r = await curl(
        [...args, "--haproxy-protocol", "--interface", "127.0.0.2"],
        `http://127.0.0.1:${pp}/admin/`,
      );
      assert.equal(r.code, 200, `${args}: ${r.body}`);
      r = await curl(
        [...args, "--haproxy-protocol", "--interface", "127.0.0.4"],
        `http://127.0.0.1:${pp}/admin/`,
      );
      assert.equal(r.code, 403, String(args));
    }
  });

  await t.test(
    "a PROXY header on a listener that did not enable it names no one: 400, the route unreached",
    async () => {
      const r = await curl(
        ["--http1.1", "--haproxy-protocol", "--interface", "127.0.0.2"],
        `http://127.0.0.1:${plain}/admin/`,
      );
      assert.equal(r.code, 400);
      const direct = await raw(
        plain,
        "PROXY TCP4 127.0.0.2 127.0.0.1 1111 80\r\nGET /admin/ HTTP/1.1\r\nhost: x\r\n\r\n",
      );
      assert.match(direct, /^HTTP\/1\.1 400 /);
      assert.doesNotMatch(direct, /"path"/, "nothing reached the upstream");
    },
  );

  await t.test(
    "a malformed, missing or late PROXY header: 400 invalid_proxy_protocol, then the listener serves on",
    async () => {
      for (const bad of [
        "PROXY TCP4 127.0.0.2 127.0.0.1 1111\r\nGET / HTTP/1.1\r\n\r\n",
        "PROXY TCP4 999.0.0.2 127.0.0.1 1111 80\r\n",
        "GET /admin/ HTTP/1.1\r\nhost: x\r\n\r\n",
        Buffer.concat([Buffer.from("0d0a0d0a000d0a515549540a", "hex"), Buffer.from([0x21, 0x12, 0, 12])]),
      ]) {
        const out = await raw(pp, bad);
        assert.match(out, /^HTTP\/1\.1 400 /, String(bad));
        assert.match(out, /x-agw-error: invalid_proxy_protocol/);
      }
      // Half a header, then silence: closed after the listener's 2 s.
      const started = Date.now();
      const late = await raw(pp, "PROXY TCP4 127.0.0.2 ");
      assert.match(late, /invalid_proxy_protocol/);
      assert.ok(Date.now() - started >= 1500, "closed by the header timeout");
      // A plain HTTPS client without the header is closed (no HTTP answer is possible there).
      const tlsOut = await raw(pps, Buffer.from("160301", "hex"));
      assert.equal(tlsOut, "");
      const r = await curl(["--http1.1", "--haproxy-protocol"], `http://127.0.0.1:${pp}/ok`);
      assert.equal(r.code, 200);
    },
  );

  for (const args of [["--http1.1"], ["--http2-prior-knowledge"]]) {
    await t.test(`${args[0]}: X-Forwarded-For is trusted for one hop only`, async () => {
      // One trusted proxy appended 203.0.113.9; what the client claimed before it is not believed.
      let r = await curl(
        [...args, "-H", "x-forwarded-for: 6.6.6.6, 203.0.113.9"],
        `http://127.0.0.1:${lb}/admin/`,
      );
      assert.equal(r.code, 200, r.body);
      assert.equal(
        (JSON.parse(r.body) as { headers: Record<string, string> }).headers["x-forwarded-for"],
        "6.6.6.6, 203.0.113.9, 127.0.0.1",
      );
      r = await curl(
        [...args, "-H", "x-forwarded-for: 203.0.113.9, 6.6.6.6"],
        `http://127.0.0.1:${lb}/admin/`,
      );
      assert.equal(r.code, 403);
      assert.equal(r.error, "client_address_denied");
      r = await curl([...args, "-H", "x-forwarded-for: 203.0.113.66"], `http://127.0.0.1:${lb}/admin/`);
      assert.equal(r.code, 403, "the deny list wins over the allow list");
      r = await curl([...args, "-H", "x-forwarded-for: 203.0.113.9:443"], `http://127.0.0.1:${lb}/admin/`);
      assert.equal(r.code, 400);
      assert.equal(r.error, "invalid_forwarded_for");
      // Without a trusted hop, a spoofed X-Forwarded-For is only appended to.
      r = await curl([...args, "-H", "x-forwarded-for: 203.0.113.9"], `http://127.0.0.1:${plain}/admin/`);
      assert.equal(r.code, 403);
    });
  }

  await t.test("a listener's deny list refuses before routing, over HTTP/1.1 and h2c", async () => {
    for (const args of [["--http1.1"], ["--http2-prior-knowledge"]]) {
      const r = await curl(args, `http://127.0.0.1:${closed}/anything`);
      assert.equal(r.code, 403);
      assert.equal(r.error, "client_address_denied");
    }
  });
});
