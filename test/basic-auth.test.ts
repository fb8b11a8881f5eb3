/**
 * Basic auth on a route (issue 18) against `agw run`, with real curl over HTTP/1.1, h2c and h2 over
 * TLS: missing, wrong and unknown-user credentials get 401 with a Basic challenge and x-agw-error
 * unauthorized; good ones reach the upstream without the Authorization header; a CORS preflight
 * passes; nothing of the credentials reaches the access log. The hashes are bcrypt, made by the same
 * library htpasswd -B's format is checked against; a {SHA} or MD5 line is a FILE:LINE error.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { hashSync } from "@node-rs/bcrypt";
import { agw, freePort, requireOrSkip, startGateway, startHeaderEcho, tempDir } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);

function curlHasHttp2(): boolean {
  const r = spawnSync("curl", ["--version"], { encoding: "utf8" });
  return r.status === 0 && /HTTP2/.test(r.stdout);
}

async function curl(args: string[], url: string) {
  const r = await run("curl", [
    "-sS",
    "--max-time",
    "15",
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
  return {
    code: Number(code),
    version,
    error: /x-agw-error: ([a-z_]+)/i.exec(text)?.[1] ?? "",
    challenge: /www-authenticate: (.*)\r/i.exec(text)?.[1] ?? "",
    body: text.split("\r\n\r\n").pop() ?? "",
  };
}

const PASSWORD = "correct horse battery staple";

test("basic auth over HTTP/1.1, h2c and h2: 401 with a challenge, the upstream never sees credentials", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command is needed to make certificates")) return;
  if (!requireOrSkip(t, curlHasHttp2(), "curl with HTTP/2 support is needed")) return;
  const dir = tempDir("agw-basic-auth-");
  const ca = makeCa(dir, "ca");
  makeLeaf(dir, ca, { cn: "gw.example.com", sans: ["DNS:gw.example.com"], file: "gw" });
  writeFileSync(
    join(dir, "users.htpasswd"),
    `# shop users\nalice:${hashSync(PASSWORD, 6)}\nbob:${hashSync("other", 6)}\n`,
  );
  const origin = await startHeaderEcho();
  t.after(() => origin.server.close());
  const [plain, secure] = await Promise.all([freePort(), freePort()]);
  const routes = `    routes:
      - name: private
        match: { path: { prefix: /private } }
        cluster: origin
        basicAuth: { users: shop-users, realm: shop }
        cors: { allowOrigins: ["https://app.example"] }
      - { name: public, cluster: origin }
`;
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - { name: gw, certificate: { file: gw.crt }, key: { file: gw.key } }
  - { name: shop-users, htpasswd: { file: users.htpasswd } }
listeners:
  - name: plain
    address: 127.0.0.1
    port: ${plain}
${routes}  - name: secure
    address: 127.0.0.1
    port: ${secure}
    protocol: https
    tls: { certificates: [gw], alpn: [h2, http/1.1] }
${routes}clusters:
  - name: origin
    endpoints: ["127.0.0.1:${origin.port}"]
`,
  );
  const accessLog = join(dir, "access.log");
  const gw = await startGateway(file, ["--access-log", accessLog]);
  t.after(() => gw.proc.stop());

  const modes = [
    { name: "HTTP/1.1", args: ["--http1.1"], url: `http://127.0.0.1:${plain}`, v: "1.1" },
    { name: "h2c", args: ["--http2-prior-knowledge"], url: `http://127.0.0.1:${plain}`, v: "2" },
    {
      name: "h2 over TLS",
      args: ["--http2", "--cacert", ca.certFile, "--resolve", `gw.example.com:${secure}:127.0.0.1`],
      url: `https://gw.example.com:${secure}`,
      v: "2",
    },
  ];
  for (const m of modes) {
    await t.test(
      `${m.name}: no, wrong and unknown credentials get 401; good ones reach the upstream`,
      async () => {
        let r = await curl(m.args, `${m.url}/private/x`);
        assert.equal(r.version, m.v);
        assert.equal(r.code, 401);
        assert.equal(r.error, "unauthorized");
        assert.equal(r.challenge, 'Basic realm="shop", charset="UTF-8"');
        for (const user of ["alice:wrong", "carol:x", `bob:${PASSWORD}`, "alice:", `alice:${PASSWORD}x`]) {
          r = await curl([...m.args, "-u", user], `${m.url}/private/x`);
          assert.equal(r.code, 401, user);
          assert.equal(r.error, "unauthorized");
        }
        // Two Authorization fields are refused, not guessed at.
        r = await curl(
          [
            ...m.args,
            "-u",
            `alice:${PASSWORD}`,
            "-H",
            `authorization: Basic ${Buffer.from("x:y").toString("base64")}`,
          ],
          `${m.url}/private/x`,
        );
        assert.equal(r.code, 401);
        for (let i = 0; i < 2; i++) {
          // The second one comes from the verification cache.
          r = await curl([...m.args, "-u", `alice:${PASSWORD}`], `${m.url}/private/x`);
          assert.equal(r.code, 200, r.body);
          const seen = JSON.parse(r.body) as { headers: Record<string, string> };
          assert.equal(seen.headers.authorization, undefined, "the credentials went upstream");
        }
        r = await curl(m.args, `${m.url}/public`);
        assert.equal(r.code, 200);
        // Path tricks do not step around the route.
        r = await curl([...m.args, "--path-as-is"], `${m.url}/public/../private/x`);
        assert.equal(r.code, 401);
        r = await curl([...m.args, "--path-as-is"], `${m.url}/%70rivate/x`);
        assert.equal(r.code, 401);
        // A CORS preflight carries no credentials and is answered.
        r = await curl(
          [
            ...m.args,
            "-X",
            "OPTIONS",
            "-H",
            "origin: https://app.example",
            "-H",
            "access-control-request-method: GET",
          ],
          `${m.url}/private/x`,
        );
        assert.equal(r.code, 204);
      },
    );
  }

  await t.test("the access log holds no credential", () => {
    const log = readFileSync(accessLog, "utf8");
    assert.ok(log.includes('"unauthorized"'), "the refusals are logged");
    assert.ok(!log.includes(PASSWORD));
    assert.ok(!log.includes(Buffer.from(`alice:${PASSWORD}`).toString("base64")));
  });
});

test("agw validate: {SHA}, MD5 and plaintext htpasswd lines are errors at their line, naming no hash", async () => {
  const dir = tempDir("agw-basic-auth-bad-");
  writeFileSync(join(dir, "sha.htpasswd"), "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - name: sha
    htpasswd: { file: sha.htpasswd }
  - name: md5
    htpasswd: { text: "bob:$apr1$abc$0123456789abcdefghijkl" }
  - name: plain
    htpasswd: { text: "carol:hunter2" }
listeners:
  - name: web
    port: 8080
    routes:
      - { name: r, cluster: c, basicAuth: { users: sha } }
      - { name: s, cluster: c, basicAuth: { users: nope } }
clusters:
  - { name: c, endpoints: ["127.0.0.1:1"] }
`,
  );
  const p = agw(["validate", "-c", file]);
  const code = await new Promise<number | null>((resolve) => p.child.once("exit", resolve));
  const out = p.output();
  assert.notEqual(code, 0);
  assert.match(out, /config\.yaml:3 secrets\[0\]\.htpasswd: htpasswd line 1 \(alice\): \{SHA\}/);
  assert.match(out, /config\.yaml:5 secrets\[1\]\.htpasswd: htpasswd line 1 \(bob\): MD5/);
  assert.match(out, /config\.yaml:7 secrets\[2\]\.htpasswd: htpasswd line 1 \(carol\): not a bcrypt hash/);
  assert.match(out, /unknown secret "nope"/);
  assert.doesNotMatch(out, /W6ph5Mm5|hunter2|0123456789abcdef/);
});
