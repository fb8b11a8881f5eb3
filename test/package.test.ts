/**
 * `agw` outside the checkout, as a user installs it: `npm pack`, then `npm install -g` of the tarball
 * into a temporary prefix with the machine's default node and npm first on PATH (Node 20 on these
 * machines, which cannot run the TypeScript sources): the installed `agw` must start the pinned Node 24
 * of the `node` package it depends on, from any directory. And the checkout's node_modules/.bin/agw,
 * run from elsewhere with the machine's node, does the same.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { freePort, get, ROOT, requireOrSkip, tempDir, waitFor } from "./helpers.ts";

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  workspaces: string[];
  dependencies: Record<string, string>;
  files: string[];
};
/** The machine's PATH without any node_modules/.bin (npm test puts ours first). */
const machinePath = (process.env.PATH ?? "")
  .split(":")
  .filter((p) => !p.includes("node_modules"))
  .join(":");
const machine = { ...process.env, PATH: machinePath };
const machineNode = spawnSync("node", ["--version"], { env: machine, encoding: "utf8" });

/** Run by the shipped package only in a checkout: `agw plugin build` uses plugins/sdk (not shipped). */
const CHECKOUT_ONLY = new Set(["@bytecodealliance/jco"]);

test("the package's dependencies: every workspace's runtime dependency, at its version", () => {
  // npm installs a file: dependency's own dependencies only in the project it belongs to, not in a
  // package installed from a tarball: so the root lists them all.
  for (const ws of pkg.workspaces) {
    const manifest = JSON.parse(readFileSync(join(ROOT, ws, "package.json"), "utf8"));
    assert.equal(
      pkg.dependencies[manifest.name],
      `file:./${ws}`,
      `package.json dependencies: ${manifest.name}`,
    );
    for (const [name, version] of Object.entries(manifest.dependencies ?? {})) {
      if (name.startsWith("@agw/") || CHECKOUT_ONLY.has(name)) continue;
      assert.equal(
        pkg.dependencies[name],
        version,
        `${ws}/package.json depends on ${name}@${version}: add "${name}": "${version}" to the root package.json dependencies (the packed agw installs those)`,
      );
    }
  }
  assert.match(pkg.dependencies.node ?? "", /^24\./, "the launcher's Node 24 is a dependency");
});

test("npm pack, npm install -g with the machine's node, then agw --version, validate and run from elsewhere", {
  timeout: 600_000,
}, async (t) => {
  if (!requireOrSkip(t, machineNode.status === 0, "no node on the machine's PATH (outside node_modules)"))
    return;
  const dir = tempDir("agw-package-");
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const npm = (args: string[], cwd: string) => {
    const r = spawnSync("npm", [...args, "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], {
      cwd,
      env: machine,
      encoding: "utf8",
      timeout: 480_000,
    });
    assert.equal(r.status, 0, `npm ${args.join(" ")}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const [packed] = JSON.parse(npm(["pack", "--json", "--pack-destination", dir], ROOT)) as [
    { filename: string; files: Array<{ path: string }> },
  ];
  const shipped = packed.files.map((f) => f.path);
  assert.ok(
    shipped.includes("cli/bin/agw.js") && shipped.includes("data-plane/src/index.ts"),
    shipped.join(" "),
  );
  assert.deepEqual(
    shipped.filter((f) => /\.test\.ts$|^test\/|^bench\/|^scripts\/|^docs\//.test(f)),
    [],
    "no tests, bench, scripts or docs in the package",
  );

  const prefix = join(dir, "prefix");
  npm(["install", "--global", "--prefix", prefix, join(dir, packed.filename)], dir);
  const agwBin = join(prefix, "bin/agw");
  assert.ok(existsSync(agwBin), `npm install -g made ${agwBin}`);

  const elsewhere = tempDir("agw-elsewhere-");
  t.after(() => rmSync(elsewhere, { recursive: true, force: true }));
  const agw = (bin: string, args: string[]) =>
    spawnSync(bin, args, { cwd: elsewhere, env: machine, encoding: "utf8", timeout: 60_000 });

  for (const bin of [agwBin, join(ROOT, "node_modules/.bin/agw")]) {
    const version = agw(bin, ["--version"]);
    assert.equal(version.status, 0, `${bin} --version: ${version.stderr}`);
    assert.equal(version.stdout.trim(), `agw ${pkg.version} (node v${pkg.dependencies.node})`, bin);
  }

  const upstream = await freePort();
  const port = await freePort();
  writeFileSync(
    join(elsewhere, "config.yaml"),
    readFileSync(join(ROOT, "examples/quickstart/config.yaml"), "utf8")
      .replace("port: 8080", `port: ${port}\n    address: 127.0.0.1`)
      .replace("127.0.0.1:9080", `127.0.0.1:${upstream}`),
  );
  const valid = agw(agwBin, ["validate", "-c", "config.yaml"]);
  assert.equal(valid.status, 0, valid.stderr);
  assert.equal(valid.stdout.trim(), "config.yaml: valid");
  writeFileSync(join(elsewhere, "bad.yaml"), "listeners: [{ name: x, port: 99999 }]\n");
  const invalid = agw(agwBin, ["validate", "-c", "bad.yaml"]);
  assert.equal(invalid.status, 1);
  assert.match(invalid.stderr, /bad\.yaml:1/);

  const [adminPort, cpAdminPort] = [await freePort(), await freePort()];
  const run = spawn(
    agwBin,
    [
      "run",
      "-c",
      "config.yaml",
      "--demo-upstream",
      `127.0.0.1:${upstream}`,
      "--admin",
      `127.0.0.1:${adminPort}`,
      "--cp-admin",
      `127.0.0.1:${cpAdminPort}`,
    ],
    { cwd: elsewhere, env: machine, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  run.stdout.on("data", (d) => (output += d));
  run.stderr.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => run.once("exit", (code) => resolve(code)));
  t.after(async () => {
    // SIGTERM reaches the gateway through the launcher (a SIGKILL would leave it running)
    if (run.exitCode === null) run.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  });
  const res = await waitFor(
    "agw run (installed) to proxy",
    async () => {
      if (run.exitCode !== null) throw new Error(`agw run exited ${run.exitCode}: ${output}`);
      const r = await get(`http://127.0.0.1:${port}/echo`);
      return r.status === 200 ? r : undefined;
    },
    60_000,
  );
  assert.equal(res.headers.get("x-served-by"), "agw");
  // The launcher hands SIGTERM to the gateway, which drains and exits 0.
  run.kill("SIGTERM");
  assert.equal(await exited, 0, output);
});
