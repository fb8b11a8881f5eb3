#!/usr/bin/env node
// The `agw` command as npm installs it (bin): starts the TypeScript entry point with the Node 24 of
// the `node` package this package depends on, whatever `node` is first on PATH. Plain JavaScript
// that any Node ≥ 18 can run, so a machine whose default node is older still gets a working agw.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
// through the package name, so the root package's copy of this file (its bin) finds it too
const main = require.resolve("@agw/cli/main");
const argv = process.argv.slice(2);
// Installed from the package (not a checkout): the sources are under node_modules, where Node
// strips no types by itself; bin/strip-types.js does.
const installed = main.split(/[\\/]/).includes("node_modules");

if (Number(process.versions.node.split(".")[0]) === 24 && !installed) {
  // Already the right Node (the container image, npm scripts): no second process.
  process.argv = [process.argv[0], main, ...argv];
  await import(main);
} else {
  let node = process.execPath;
  if (Number(process.versions.node.split(".")[0]) !== 24) {
    try {
      node = join(dirname(require.resolve("node/package.json")), "bin", "node");
    } catch {
      node = "";
    }
    if (!node || !existsSync(node)) {
      console.error(
        `agw: the Node 24 binary of the "node" package was not found (${node || "not installed"}); ` +
          `this is Node ${process.versions.node}. Reinstall agw (npm install), or run it with Node 24.`,
      );
      process.exit(1);
    }
  }
  const hooks = installed
    ? ["--disable-warning=ExperimentalWarning", "--import", new URL("strip-types.js", import.meta.url).href]
    : [];
  // fd 3: a pipe the child watches (src/launcher-pipe.ts). A SIGKILL of this launcher cannot be passed
  // on; the kernel closes our end, and the child stops as on SIGTERM instead of running on orphaned.
  const child = spawn(node, [...hooks, main, ...argv], {
    stdio: ["inherit", "inherit", "inherit", "pipe"],
    env: { ...process.env, AGW_LAUNCHER_FD: "3" },
  });
  // The child is the gateway: signals meant for agw (Ctrl-C, kill, a supervisor's SIGTERM) go to it,
  // and its drain decides when agw exits.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
  child.on("error", (e) => {
    console.error(`agw: cannot start ${node}: ${e.message}`);
    process.exit(1);
  });
  child.on("exit", (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
}
