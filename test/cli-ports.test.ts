/**
 * A port that is taken, in every command that listens (admin, control plane admin, metrics, xDS,
 * demo upstream): one line naming the address and the flag, exit 1, no stack trace (issue 25).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { CLI, ROOT, tempDir } from "./helpers.ts";

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

test("a taken port: one clear line and exit 1, in every command that listens", async (t) => {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
  t.after(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const at = `127.0.0.1:${port}`;
  const dir = tempDir("agw-ports-");
  const config = join(dir, "empty.yaml");
  writeFileSync(config, "listeners: []\nclusters: []\n");
  const cases: Array<[string, string[]]> = [
    ["--admin", ["run", "-c", config, "--admin", at, "--cp-admin", "127.0.0.1:0"]],
    ["--cp-admin", ["run", "-c", config, "--admin", "127.0.0.1:0", "--cp-admin", at]],
    [
      "--xds-listen",
      ["run", "-c", config, "--admin", "127.0.0.1:0", "--cp-admin", "127.0.0.1:0", "--xds-listen", at],
    ],
    ["--admin", ["control-plane", "-c", config, "--xds-listen", "127.0.0.1:0", "--admin", at]],
    ["--xds-listen", ["control-plane", "-c", config, "--xds-listen", at, "--admin", "127.0.0.1:0"]],
    ["--admin", ["data-plane", "--xds", "127.0.0.1:9", "--node-id", "n", "--admin", at]],
    ["--listen", ["demo-upstream", "--listen", at]],
    ["--port", ["demo-upstream", "--port", String(port)]],
    // A cgroup that does not exist: nothing is attached, the inert agent still serves metrics.
    [
      "--metrics",
      ["ebpf-agent", "--cgroup", "/nonexistent-agw-test", "--inert-if-unsupported", "--metrics", at],
    ],
  ];
  const results = await Promise.all(cases.map(([, args]) => run(args)));
  cases.forEach(([flag, args], i) => {
    const { code, stderr } = results[i] as { code: number | null; stderr: string };
    const where = `agw ${args.join(" ")}\n${stderr}`;
    assert.equal(code, 1, where);
    const line = stderr.split("\n").find((l) => l.startsWith("agw: "));
    assert.equal(
      line,
      `agw: cannot listen on ${at} (${flag}): the address is already in use (another agw, or another program, listens there); choose another address with ${flag}`,
      where,
    );
    assert.doesNotMatch(stderr, /^\s+at /m, `no stack trace: ${where}`);
  });
});
