/** The `agw` command as a user runs it: the quickstart, validate, and every example config. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { agw, CLI, freePort, get, ROOT, tempDir, waitFor } from "./helpers.ts";

const run = promisify(execFile);

function exampleConfigs(): string[] {
  const dir = join(ROOT, "examples");
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => join(dir, f));
}

test("every example config passes agw validate", async () => {
  const files = exampleConfigs();
  assert.ok(files.length > 0);
  for (const file of files) {
    const { stdout } = await run(process.execPath, [CLI, "validate", "-c", file]);
    assert.match(stdout, /: valid$/m);
  }
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
  await waitFor(`"AGW is running"\n${proc.output()}`, () =>
    proc.output().includes("AGW is running") ? true : undefined,
  );
  assert.match(proc.output(), new RegExp(`curl http://localhost:${listenerPort}/`));
  assert.equal((await get(`http://127.0.0.1:${adminPort}/ready`)).status, 200);
  const { stdout } = await run("curl", ["-sS", "-i", `http://127.0.0.1:${listenerPort}/echo/hello`]);
  assert.match(stdout, /^HTTP\/1\.1 200 OK/);
  assert.match(stdout, /x-served-by: agw/i);
  assert.match(stdout, /"message": "Hello from the AGW demo upstream"/);
  assert.match(stdout, /"x-forwarded-for": "127\.0\.0\.1"/);
});
