/**
 * bin/agw.js, the npm bin, killed with SIGKILL (the OOM killer, a supervisor's last resort): a
 * launcher cannot pass that on, so the gateway it started must notice by itself and stop, not run
 * on orphaned and keep its ports. Run with the machine's node (Node 20 here), so the launcher
 * starts the pinned Node 24 as a child; with a Node 24 the launcher runs agw in its own process.
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { freePort, ROOT, requireOrSkip, waitFor } from "./helpers.ts";

const machine = {
  ...process.env,
  PATH: (process.env.PATH ?? "")
    .split(":")
    .filter((p) => !p.includes("node_modules"))
    .join(":"),
};
const machineNode = spawnSync("node", ["--version"], { env: machine, encoding: "utf8" });

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });

test("the launcher killed with SIGKILL: the gateway it started stops too", async (t) => {
  if (!requireOrSkip(t, machineNode.status === 0, "no node on the machine's PATH (outside node_modules)"))
    return;
  t.diagnostic(`machine node ${machineNode.stdout.trim()}`);
  const port = await freePort();
  const launcher = spawn("node", [join(ROOT, "cli/bin/agw.js"), "demo-upstream", "--port", String(port)], {
    env: machine,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  launcher.stdout.on("data", (d) => (output += d));
  launcher.stderr.on("data", (d) => (output += d));
  let children: number[] = [];
  t.after(() => {
    // Whatever the outcome, nothing this test started keeps running.
    if (launcher.exitCode === null) launcher.kill("SIGKILL");
    for (const pid of children)
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
  });
  await waitFor(
    "the demo upstream to listen",
    async () => ((await accepts(port)) ? true : undefined),
    30_000,
  );
  // The launcher's child, if it started one: known by id, to clean up after a failure.
  children = readFileSync(`/proc/${launcher.pid}/task/${launcher.pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
  launcher.kill("SIGKILL");
  await waitFor(
    "the gateway to stop after its launcher's SIGKILL",
    async () => ((await accepts(port)) ? undefined : true),
    15_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}; still listening on ${port}\n${output}`);
  });
});
