/** The `agw` command as a user runs it: the quickstart, validate, and every example config. */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { agw, CLI, freePort, get, ROOT, requireOrSkip, tempDir, waitFor } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);

/**
 * Every example directory copied to a temp dir as a user would have it: certificates an example
 * reads are made there by its own make-certs.sh (never taken from the working tree).
 */
function preparedExamples(): Array<{ name: string; dir: string; configs: string[] }> {
  const root = join(ROOT, "examples");
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map(({ name }) => {
      const dir = join(tempDir(`agw-example-${name}-`), name);
      cpSync(join(root, name), dir, { recursive: true, filter: (src) => basename(src) !== "certs" });
      if (existsSync(join(dir, "make-certs.sh"))) execFileSync("sh", [join(dir, "make-certs.sh")]);
      const configs = readdirSync(dir, { recursive: true, encoding: "utf8" })
        .filter((f) => f.endsWith(".yaml"))
        .map((f) => join(dir, f));
      return { name, dir, configs };
    });
}

test("every example config passes agw validate", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command makes the certificates the HTTPS example reads"))
    return;
  const examples = preparedExamples();
  assert.ok(examples.some((e) => e.name === "https"));
  for (const { configs } of examples) {
    assert.ok(configs.length > 0);
    for (const file of configs) {
      const { stdout } = await run(process.execPath, [CLI, "validate", "-c", file]);
      assert.match(stdout, /: valid$/m);
    }
  }
});

test("the HTTPS example: make-certs.sh, agw run, curl trusting the example CA", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command makes the example's certificates")) return;
  const example = preparedExamples().find((e) => e.name === "https");
  assert.ok(example);
  const [httpsPort, demoPort] = await Promise.all([freePort(), freePort()]);
  const file = join(example.dir, "config.yaml");
  writeFileSync(
    file,
    readFileSync(file, "utf8")
      .replaceAll("port: 8443", `port: ${httpsPort}`)
      .replaceAll(":9080", `:${demoPort}`),
  );
  const proc = agw([
    "run",
    "-c",
    file,
    "--demo-upstream",
    `127.0.0.1:${demoPort}`,
    "--xds-listen",
    "127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
    "--cp-admin",
    "127.0.0.1:0",
  ]);
  t.after(() => proc.stop());
  const url = `https://localhost:${httpsPort}/`;
  const curl = () =>
    run("curl", ["-sS", "-i", "--max-time", "5", "--cacert", join(example.dir, "certs/ca.crt"), url]).then(
      (r) => r.stdout,
      () => undefined,
    );
  const out = await waitFor(`${url} answering\n${proc.output()}`, curl, 30_000);
  assert.match(out, /^HTTP\/1\.1 200 OK/);
  assert.match(out, /"message": "Hello from the AGW demo upstream"/);
  assert.match(out, /"x-forwarded-proto": "https"/);
});

test("agw validate lists every error with its line and exits 1", async () => {
  const file = join(tempDir(), "config.yaml");
  writeFileSync(
    file,
    "listeners:\n  - name: a\n    port: 70000\nclusters:\n  - name: c\n    endpoints: [nope]\n",
  );
  const failure = await run(process.execPath, [CLI, "validate", "-c", file]).then(
    () => assert.fail("expected exit 1"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(failure.code, 1);
  assert.match(failure.stderr, new RegExp(`${file}:3 listeners\\[0\\]\\.port: Too big`));
  // The schema error does not hide the semantic one (issue 25).
  assert.match(
    failure.stderr,
    new RegExp(`${file}:6 clusters\\[0\\]\\.endpoints\\[0\\]: missing port in "nope"`),
  );
  assert.match(failure.stderr, /2 errors in/);
});

/** `agw validate -c FILE` → exit code and stderr. */
async function validateFile(file: string): Promise<{ code: number; stderr: string; stdout: string }> {
  return run(process.execPath, [CLI, "validate", "-c", file], { timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
}

test("agw validate: a certificate whose key does not match, and a bad port, are named with their line", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "the openssl command makes the certificates")) return;
  const dir = tempDir("agw-validate-pem-");
  const ca = makeCa(dir, "ca");
  makeLeaf(dir, ca, { cn: "a.example", sans: ["DNS:a.example"] });
  makeLeaf(dir, ca, { cn: "b.example", sans: ["DNS:b.example"] });
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: web
    port: 8443
    protocol: https
    tls: { certificates: [mixed] }
    routes: [{ name: all, cluster: app }]
clusters:
  - name: app
    endpoints: ["localhost:99999", "localhost:80x"]
secrets:
  - name: mixed
    certificate: { file: a.example.crt }
    key: { file: b.example.key }
`,
  );
  const failure = await validateFile(file);
  assert.equal(failure.code, 1, failure.stdout);
  const lines = failure.stderr.trim().split("\n");
  assert.deepEqual(lines, [
    `${file}:9 clusters[0].endpoints[0]: port 99999 in "localhost:99999" is out of range (1-65535)`,
    `${file}:9 clusters[0].endpoints[1]: bad port "80x" in "localhost:80x": expected a number 1-65535`,
    `${file}:13 secrets[0].key: the key does not match the certificate`,
    `3 errors in ${file}`,
  ]);

  // The same pair from one key is valid.
  writeFileSync(
    file,
    readFileSync(file, "utf8")
      .replace("b.example.key", "a.example.key")
      .replace(/"localhost:99999", "localhost:80x"/, '"localhost:9999"'),
  );
  const ok = await validateFile(file);
  assert.equal(ok.code, 0, ok.stderr);
});

test("agw --help and unknown commands", async () => {
  const { stdout } = await run(process.execPath, [CLI, "--help"]);
  assert.match(stdout, /Usage: agw <command>/);
  for (const cmd of ["run", "control-plane", "data-plane", "validate"]) {
    const help = await run(process.execPath, [CLI, cmd, "--help"]);
    assert.match(help.stdout, /^Usage: agw /);
  }
  const bad = await run(process.execPath, [CLI, "frobnicate"]).then(
    () => assert.fail("expected a usage error"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown command "frobnicate"/);
});

test("quickstart: agw run with the demo upstream answers curl through the gateway", async (t) => {
  const [listenerPort, demoPort, xdsPort, adminPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const file = join(tempDir(), "config.yaml");
  const quickstart = readFileSync(join(ROOT, "examples/quickstart/config.yaml"), "utf8");
  writeFileSync(
    file,
    quickstart.replaceAll("port: 8080", `port: ${listenerPort}`).replaceAll(":9080", `:${demoPort}`),
  );
  const proc = agw([
    "run",
    "-c",
    file,
    "--demo-upstream",
    `127.0.0.1:${demoPort}`,
    "--xds-listen",
    `127.0.0.1:${xdsPort}`,
    "--admin",
    `127.0.0.1:${adminPort}`,
    "--cp-admin",
    "127.0.0.1:0",
  ]);
  t.after(() => proc.stop());
  await waitFor(
    `"AGW is running"\n${proc.output()}`,
    () => (proc.output().includes("AGW is running") ? true : undefined),
    30_000,
  );
  assert.match(proc.output(), new RegExp(`curl http://localhost:${listenerPort}/`));
  assert.equal((await get(`http://127.0.0.1:${adminPort}/ready`)).status, 200);
  const { stdout } = await run("curl", ["-sS", "-i", `http://127.0.0.1:${listenerPort}/echo/hello`]);
  assert.match(stdout, /^HTTP\/1\.1 200 OK/);
  assert.match(stdout, /x-served-by: agw/i);
  assert.match(stdout, /"message": "Hello from the AGW demo upstream"/);
  assert.match(stdout, /"x-forwarded-for": "127\.0\.0\.1"/);
});

test("agw demo-upstream: several --port instances, --id, --status, --delay, --log, and usage errors", async (t) => {
  const [a, b, c] = await Promise.all([freePort(), freePort(), freePort()]);
  const pair = agw(["demo-upstream", "--port", String(a), "--port", String(b)]);
  const failing = agw([
    "demo-upstream",
    "--port",
    String(c),
    "--id",
    "slow-one",
    "--status",
    "503",
    "--delay",
    "300ms",
    "--log",
  ]);
  t.after(() => Promise.all([pair.stop(), failing.stop()]));
  await waitFor("both demo upstreams", () =>
    pair.output().split("listening").length === 3 && failing.output().includes("listening")
      ? true
      : undefined,
  );
  for (const port of [a, b]) {
    const res = await get(`http://127.0.0.1:${port}/x`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-upstream-id"), `127.0.0.1:${port}`);
    assert.equal(JSON.parse(res.body).upstream, `127.0.0.1:${port}`);
  }
  const started = Date.now();
  const res = await get(`http://127.0.0.1:${c}/y?z=1`);
  assert.ok(Date.now() - started >= 300, "--delay 300ms holds the response head back");
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("x-upstream-id"), "slow-one");
  assert.equal(JSON.parse(res.body).upstream, "slow-one");
  await waitFor("the request log line", () =>
    failing.output().includes(`slow-one GET /y?z=1 host=127.0.0.1:${c}`) ? true : undefined,
  );

  for (const [args, message] of [
    [["--status", "700"], /--status: expected a status within 200\.\.599, got "700"/],
    [["--delay", "soon"], /--delay: expected a duration such as 500ms or 3s, got "soon"/],
    [["--port", "99999"], /--port: expected a port number within 0\.\.65535, got "99999"/],
    [["--port", "1", "--port", "2", "--id", "x"], /--id names one instance/],
  ] as const) {
    const e = await run(process.execPath, [CLI, "demo-upstream", ...args]).then(
      () => assert.fail(`expected a usage error for ${args.join(" ")}`),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(e.code, 2);
    assert.match(e.stderr, message);
  }
});
