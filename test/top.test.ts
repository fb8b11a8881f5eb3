/**
 * `agw top` in a real terminal (tmux), as an operator over SSH would use it: it starts, shows the
 * routes under load sorted by rate, sorts by errors on a key press, filters, and quits cleanly with
 * the terminal restored (the shell's screen back, cooked mode, exit 0).
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { agw, CLI, freePort, ROOT, requireOrSkip, tempDir, waitFor } from "./helpers.ts";

const hasTmux = spawnSync("tmux", ["-V"]).status === 0;

/** `rate` requests/s to `url` until stopped (a small bounded load). */
function load(url: string, rate: number) {
  let running = true;
  const loop = (async () => {
    while (running) {
      await fetch(url)
        .then((r) => r.arrayBuffer())
        .catch(() => undefined);
      await new Promise((r) => setTimeout(r, 1000 / rate));
    }
  })();
  return async () => {
    running = false;
    await loop;
  };
}

test("agw top in tmux: routes under load, sorting on a key, a filter, and a clean quit", async (t) => {
  if (!requireOrSkip(t, hasTmux, "tmux is needed: apt-get install tmux")) return;
  const origin = http.createServer((_req, res) => res.end("ok\n"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const port = await freePort();
  const deadPort = await freePort();
  const file = join(tempDir("agw-top-"), "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: busy, match: { path: { prefix: /busy } }, cluster: app }
      - { name: broken, match: { path: { prefix: /broken } }, cluster: gone }
      - { name: idle, match: { path: { prefix: /idle } }, cluster: app }
clusters:
  - name: app
    endpoints: [127.0.0.1:${(origin.address() as AddressInfo).port}]
  - name: gone
    endpoints: [127.0.0.1:${deadPort}]
`,
  );
  const cpAdmin = await freePort();
  const gateway = agw([
    "run",
    "-c",
    file,
    "--cp-admin",
    `127.0.0.1:${cpAdmin}`,
    "--admin",
    `127.0.0.1:${await freePort()}`,
    "--stats-interval",
    "1000",
  ]);
  t.after(() => gateway.stop());
  await waitFor(
    "the gateway",
    async () => ((await fetch(`http://127.0.0.1:${port}/busy`)).status === 200 ? true : undefined),
    45_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${gateway.output()}`);
  });
  const stops = [load(`http://127.0.0.1:${port}/busy`, 40), load(`http://127.0.0.1:${port}/broken`, 4)];
  t.after(() => Promise.all(stops.map((s) => s())));

  const socket = `agw-top-${process.pid}`;
  const tmux = (...args: string[]) =>
    execFileSync("tmux", ["-L", socket, "-f", "/dev/null", ...args], { encoding: "utf8" });
  t.after(() => {
    spawnSync("tmux", ["-L", socket, "kill-server"]);
  });
  const command = [
    "echo BEFORE-TOP",
    `'${process.execPath}' '${CLI}' top --cp-admin 127.0.0.1:${cpAdmin}`,
    "echo EXIT=$?",
    "stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo",
    "echo STTY-DONE",
    "sleep 120",
  ].join("; ");
  tmux("new-session", "-d", "-s", "top", "-x", "150", "-y", "40", "-c", ROOT, `sh -c "${command}"`);
  const screen = () => tmux("capture-pane", "-p", "-t", "top");
  /** The route lines, top to bottom, as the screen shows them. */
  const routeOrder = (text: string) =>
    text
      .split("\n")
      .filter((l) => l.startsWith("web/"))
      .map((l) => l.split(/\s+/)[0]);

  const first = await waitFor(
    "agw top to show the busy route first (sorted by rate)",
    () => {
      const text = screen();
      const order = routeOrder(text);
      const busy = text.split("\n").find((l) => l.startsWith("web/busy"));
      return order[0] === "web/busy" && busy && Number(busy.split(/\s+/)[1]) > 5 ? text : undefined;
    },
    30_000,
  );
  assert.match(first, /sort: rate/);
  assert.match(first, /ROUTES \(3\)/);
  assert.match(first, /CLUSTERS \(2\)/);
  assert.match(first, /data planes 1\/1 in sync/);

  tmux("send-keys", "-t", "top", "e");
  const byErrors = await waitFor("sorting by errors", () => {
    const text = screen();
    return /sort: errors/.test(text) && routeOrder(text)[0] === "web/broken" ? text : undefined;
  });
  assert.match(byErrors.split("\n").find((l) => l.startsWith("web/broken")) ?? "", /100\.0/);

  tmux("send-keys", "-t", "top", "/", "i", "d", "l", "Enter");
  await waitFor("the filter", () => {
    const text = screen();
    return /filter: idl/.test(text) && routeOrder(text).join() === "web/idle" ? true : undefined;
  });

  tmux("send-keys", "-t", "top", "q");
  const after = await waitFor("agw top to quit", () => {
    const text = screen();
    return /STTY-DONE/.test(text) ? text : undefined;
  });
  assert.match(after, /EXIT=0/);
  assert.match(after, /BEFORE-TOP/, "the shell's screen is back (alternate screen left)");
  assert.doesNotMatch(after, /ROUTES/, "nothing of top's screen is left");
  assert.match(after, /^icanon$/m, "the terminal is back in cooked mode");
  assert.match(after, /^echo$/m, "echo is back on");
});
