/**
 * End to end with real processes: one control plane, two data planes (on 127.0.0.2 and 127.0.0.3),
 * a real origin; config edits, an invalid config, and a control plane that dies and comes back.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { agw, CLI, freePort, get, type Proc, tempDir, waitFor } from "./helpers.ts";

const run = promisify(execFile);

function config(
  listenerPort: number,
  originPort: number,
  routes: Array<{ name: string; prefix: string }>,
): string {
  return `listeners:
  - name: web
    address: 127.0.0.1
    port: ${listenerPort}
    routes:
${routes
  .map(
    (r) => `      - name: ${r.name}
        match: { path: { prefix: ${r.prefix} } }
        cluster: origin
        responseHeaders: { set: { x-route: ${r.name} } }`,
  )
  .join("\n")}
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`;
}

/** Writes like an editor that saves by rename, so the watcher must handle a replaced file. */
function save(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

async function routeOf(url: string): Promise<string | null> {
  const res = await get(url);
  return res.status === 200 ? res.headers.get("x-route") : `status ${res.status}`;
}

test("one control plane, two data planes: live edits, invalid config, control plane death and restart", async (t) => {
  const origin = http.createServer((_req, res) => res.end("origin\n"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const originPort = (origin.address() as AddressInfo).port;
  const dir = tempDir();
  const file = join(dir, "config.yaml");
  const port = await freePort();
  save(file, config(port, originPort, [{ name: "v1", prefix: "/" }]));

  const xdsPort = await freePort();
  const procs: Proc[] = [];
  t.after(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    origin.close();
  });
  const startControlPlane = () => {
    const cp = agw([
      "control-plane",
      "-c",
      file,
      "--xds-listen",
      `127.0.0.1:${xdsPort}`,
      "--admin",
      "127.0.0.1:0",
    ]);
    procs.push(cp);
    return cp;
  };
  let cp = startControlPlane();
  const dataPlanes = ["127.0.0.2", "127.0.0.3"].map((bind, i) => {
    const dp = agw([
      "data-plane",
      "--xds",
      `127.0.0.1:${xdsPort}`,
      "--node-id",
      `dp-${i + 1}`,
      "--admin",
      "127.0.0.1:0",
      "--bind-address",
      bind,
    ]);
    procs.push(dp);
    return { dp, url: `http://${bind}:${port}/` };
  });

  const allRoute = (name: string, timeoutMs: number) =>
    Promise.all(
      dataPlanes.map(({ url, dp }) =>
        waitFor(
          `route ${name} on ${url}\n${dp.output()}`,
          async () => ((await routeOf(url)) === name ? true : undefined),
          timeoutMs,
        ),
      ),
    );

  // Bounds, not expectations: three processes start on a machine that may be busy.
  await allRoute("v1", 30_000);

  // A live edit reaches both data planes.
  const editedAt = Date.now();
  save(file, config(port, originPort, [{ name: "v2", prefix: "/" }]));
  await allRoute("v2", 15_000);
  t.diagnostic(`config edit visible on both data planes after ${Date.now() - editedAt} ms`);

  // An invalid file: both keep serving v2; validate names the line.
  const invalid = config(port, originPort, [{ name: "v3", prefix: "no-slash" }]);
  save(file, invalid);
  await waitFor("the control plane to report the invalid config", () =>
    cp.output().includes("invalid config ignored") ? true : undefined,
  );
  for (const { url } of dataPlanes) assert.equal(await routeOf(url), "v2");
  const validation = await run(process.execPath, [CLI, "validate", "-c", file]).then(
    () => assert.fail("validate must exit 1 on an invalid config"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(validation.code, 1);
  assert.match(
    validation.stderr,
    new RegExp(`${file}:7 listeners\\[0\\]\\.routes\\[0\\]\\.match\\.path\\.prefix: a path starts with /`),
  );

  // The control plane dies: the data planes keep serving their last config, also once they have seen
  // their xDS stream go (their log says so; a wait would pass before they noticed).
  const lost = /xDS stream (closed by the control plane|failed)/g;
  const lostBefore = dataPlanes.map(({ dp }) => dp.output().match(lost)?.length ?? 0);
  await cp.stop("SIGKILL");
  for (const { url } of dataPlanes) assert.equal(await routeOf(url), "v2");
  save(file, config(port, originPort, [{ name: "v4", prefix: "/" }]));
  await Promise.all(
    dataPlanes.map(({ dp }, i) =>
      waitFor("the data plane to see its xDS stream go", () =>
        (dp.output().match(lost)?.length ?? 0) > (lostBefore[i] ?? 0) ? true : undefined,
      ),
    ),
  );
  for (const { url } of dataPlanes) assert.equal(await routeOf(url), "v2");

  // It comes back: the data planes reconnect and pick up the change made while it was down.
  cp = startControlPlane();
  await allRoute("v4", 30_000);
});
