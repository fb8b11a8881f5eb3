/**
 * Path normalisation before routing (issue 14), as an attacker tries it: every trick that once slipped
 * past a `/admin` prefix route answering 403 is sent with real curl (--path-as-is, so curl sends the
 * bytes as written) over HTTP/1.1, h2c (prior knowledge) and h2 over TLS, against `agw run`. Each is
 * either normalised into the 403 route or refused with 400, and nothing of it reaches the upstream;
 * ordinary requests reach it with the normalised path. A listener's `paths` options change the policy.
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

const TRICKS = [
  "/admin/x",
  "/%61dmin/x",
  "/%61%64%6D%69%6E/x",
  "/./admin/x",
  "//admin/x",
  "/public/../admin/x",
  "/public/%2e%2e/admin/x",
  "/public/.%2E/admin/x",
  "/../admin/x",
  "/public/..//admin/x",
  "/public%2F..%2Fadmin/x",
  "/public%2f..%2fadmin/x",
  "/public%5C..%5Cadmin/x",
  "/admin%00/x",
  "/%zzadmin/x",
];

test("path tricks over HTTP/1.1, h2c and h2: 403 route or 400, the upstream sees normalised paths", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates")) return;
  if (!requireOrSkip(t, curlHasHttp2(), "curl with HTTP/2 support is needed")) return;
  const dir = tempDir("agw-paths-");
  const ca = makeCa(dir, "paths-ca");
  makeLeaf(dir, ca, { cn: "gw.example.com", sans: ["DNS:gw.example.com"], file: "gw" });
  const seen: string[] = [];
  const origin = http.createServer((req, res) => {
    seen.push(String(req.url));
    res.end(`origin ${req.url}\n`);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const originPort = (origin.address() as AddressInfo).port;
  const [plain, secure, keep] = await Promise.all([freePort(), freePort(), freePort()]);
  const routes = `    routes:
      - { name: admin, match: { path: { prefix: /admin } }, directResponse: { status: 403, body: "admin is closed\\n" } }
      - { name: all, cluster: origin }
`;
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - name: gw
    certificate: { file: gw.crt }
    key: { file: gw.key }
listeners:
  - name: plain
    address: 127.0.0.1
    port: ${plain}
${routes}  - name: secure
    address: 127.0.0.1
    port: ${secure}
    protocol: https
    tls: { certificates: [gw], alpn: [h2, http/1.1] }
${routes}  - name: keep
    address: 127.0.0.1
    port: ${keep}
    paths: { escapedSlashes: keep, mergeSlashes: false }
${routes}clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`,
  );
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());

  const modes = [
    { name: "HTTP/1.1", args: ["--http1.1"], url: `http://127.0.0.1:${plain}`, version: "1.1" },
    { name: "h2c", args: ["--http2-prior-knowledge"], url: `http://127.0.0.1:${plain}`, version: "2" },
    {
      name: "h2 over TLS",
      args: ["--http2", "--cacert", ca.certFile, "--resolve", `gw.example.com:${secure}:127.0.0.1`],
      url: `https://gw.example.com:${secure}`,
      version: "2",
    },
  ];
  const curl = async (args: string[], url: string) => {
    const r = await run("curl", [
      "-sS",
      "--path-as-is",
      "--max-time",
      "10",
      "-o",
      "/dev/null",
      "-w",
      "%{http_version} %{http_code}",
      ...args,
      url,
    ]);
    const [version, code] = r.stdout.split(" ");
    return { version, code: Number(code) };
  };

  for (const m of modes) {
    await t.test(`${m.name}: every trick is the 403 route or a 400, never the upstream`, async () => {
      for (const path of TRICKS) {
        seen.length = 0;
        const r = await curl(m.args, m.url + path);
        assert.equal(r.version, m.version, `${path} went over ${m.name}`);
        assert.ok(r.code === 403 || r.code === 400, `${m.name} ${path}: ${r.code}`);
        assert.deepEqual(seen, [], `${m.name} ${path} reached the upstream`);
      }
    });

    await t.test(`${m.name}: the upstream receives the normalised path`, async () => {
      for (const [path, expected] of [
        ["/public/./a//b/../c?q=%2e%2e/x", "/public/a/c?q=%2e%2e/x"],
        ["/%7Euser/%70ublic%2a", "/~user/public%2A"],
        ["/a/b/..", "/a/"],
      ] as const) {
        seen.length = 0;
        const r = await curl(m.args, m.url + path);
        assert.equal(r.code, 200, `${m.name} ${path}`);
        assert.deepEqual(seen, [expected], `${m.name} ${path}`);
      }
    });
  }

  await t.test("a listener with escapedSlashes: keep, mergeSlashes: false passes them on", async () => {
    seen.length = 0;
    let r = await curl(["--http1.1"], `http://127.0.0.1:${keep}/files/a%2fb//c`);
    assert.equal(r.code, 200);
    assert.deepEqual(seen, ["/files/a%2Fb//c"]);
    // Dot segments are still removed: the 403 route holds.
    r = await curl(["--http2-prior-knowledge"], `http://127.0.0.1:${keep}/public/../admin/x`);
    assert.equal(r.code, 403);
  });
});
