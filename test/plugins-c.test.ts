/**
 * A plugin written in C, built through the official bindings generator (wit-bindgen c from
 * crates.io, cached outside the repo) and Debian's clang for wasm32-wasi, loaded through config.yaml
 * by a real gateway: the WIT contract serves non-JS guests.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { buildCGuest } from "../plugins/c-guest/build.ts";
import { agw, freePort, get, ROOT, requireOrSkip, tempDir, waitFor } from "./helpers.ts";

function toolchainMissing(): string | undefined {
  try {
    execFileSync("sh", ["-c", "command -v clang && (command -v cargo || test -x $HOME/.cargo/bin/cargo)"], {
      stdio: "ignore",
    });
  } catch {
    return "clang and cargo";
  }
  if (!existsSync("/usr/lib/wasm32-wasi/libc.a")) return "wasi-libc (Debian package wasi-libc)";
  if (!existsSync("/usr/bin/wasm-ld") && !existsSync("/usr/bin/wasm-ld-14"))
    return "wasm-ld (Debian package lld)";
  return undefined;
}

test("a C guest built with wit-bindgen c denies and mutates requests through the gateway", async (t) => {
  const missing = toolchainMissing();
  if (!requireOrSkip(t, missing === undefined, `the C guest needs ${missing}`)) return;
  const dir = tempDir();
  writeFileSync(join(dir, "c-guest.wasm"), await buildCGuest(join(ROOT, "plugins/c-guest/guest.c")));

  const origin = http.createServer((req, res) => res.end(String(req.headers["x-c-guest"] ?? "")));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const [port, xdsPort] = await Promise.all([freePort(), freePort()]);
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `plugins:
  - { name: c-guest, source: ${dir}/c-guest.wasm }
listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: guarded, match: { path: { prefix: /guarded } }, cluster: origin, plugins: [{ name: c-guest }] }
      - { name: open, cluster: origin }
clusters:
  - { name: origin, endpoints: ["127.0.0.1:${(origin.address() as AddressInfo).port}"] }
`,
  );
  const gateway = agw([
    "run",
    "-c",
    file,
    "--xds-listen",
    `127.0.0.1:${xdsPort}`,
    "--admin",
    "127.0.0.1:0",
    "--cp-admin",
    "127.0.0.1:0",
  ]);
  t.after(async () => {
    await gateway.stop();
    origin.close();
  });
  // Bounded for a busy machine: the component is transpiled on a worker thread at start-up.
  await waitFor(
    `the gateway\n${gateway.output()}`,
    () => (gateway.output().includes("AGW is running") ? true : undefined),
    60_000,
  );

  const base = `http://127.0.0.1:${port}`;
  const mutated = await get(`${base}/guarded/item?x=1`);
  assert.equal(mutated.status, 200);
  assert.equal(mutated.body, "GET /guarded/item", "the upstream saw the header the C guest set");

  const denied = await get(`${base}/guarded/item`, { "x-c-deny": "1" });
  assert.equal(denied.status, 403);
  assert.equal(denied.headers.get("x-agw-error"), "plugin_denied");

  const open = await get(`${base}/other`, { "x-c-deny": "1" });
  assert.equal(open.status, 200, "routes without the plugin are untouched");
  assert.equal(open.body, "");
});
