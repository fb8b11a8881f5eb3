/**
 * A control plane that stops answering (stopped, starved or wedged, its TCP connection still open) must
 * never take a data plane down: the xDS client's HTTP/2 PING times out, the stream fails, the data plane
 * keeps serving its last config and reconnects when the control plane answers again.
 * (connect-node destroys the session with "PING timed out"; an 'error' event with no listener left
 * killed `agw data-plane` — seen in every starved run of bench/xds.ts.)
 */
import assert from "node:assert/strict";
import { renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { agw, freePort, get, type Proc, tempDir, waitFor } from "./helpers.ts";

function config(port: number, originPort: number, name: string): string {
  return `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - name: ${name}
        match: { path: { prefix: / } }
        cluster: origin
        responseHeaders: { set: { x-route: ${name} } }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`;
}

test("a data plane outlives a control plane that stops answering, serves on, and resyncs", async (t) => {
  const origin = http.createServer((_req, res) => res.end("origin\n"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const originPort = (origin.address() as AddressInfo).port;
  const dir = tempDir();
  const file = join(dir, "config.yaml");
  const save = (text: string) => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  const [port, xdsPort] = await Promise.all([freePort(), freePort()]);
  save(config(port, originPort, "v1"));
  const procs: Proc[] = [];
  t.after(async () => {
    for (const p of procs) if (p.child.pid && p.child.exitCode === null) process.kill(p.child.pid, "SIGCONT");
    await Promise.all(procs.map((p) => p.stop()));
    origin.close();
  });
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
  const dp = agw([
    "data-plane",
    "--xds",
    `127.0.0.1:${xdsPort}`,
    "--node-id",
    "dp-1",
    "--admin",
    "127.0.0.1:0",
  ]);
  procs.push(dp);
  const url = `http://127.0.0.1:${port}/`;
  const routeIs = (name: string) => async () => {
    const res = await get(url).catch(() => null);
    return res?.status === 200 && res.headers.get("x-route") === name ? true : undefined;
  };
  await waitFor("route v1", routeIs("v1"), 30_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${cp.output()}\n${dp.output()}`);
  });

  // Stop the control plane: its socket stays open and unread, so the client's keep-alive PING goes
  // unanswered (a PING every 15 s, failed after 10 s more).
  const cpPid = cp.child.pid;
  assert.ok(cpPid);
  process.kill(cpPid, "SIGSTOP");
  const failuresBefore = dp.output().split("xDS stream failed").length;
  await waitFor(
    `the data plane to notice the silent control plane\n${dp.output()}`,
    () => (dp.output().split("xDS stream failed").length > failuresBefore ? true : undefined),
    60_000,
  );
  // Give a crash its chance: the 'error' event came with the failure, on the same turn or the next.
  await waitFor(`route v1 after the PING timeout\n${dp.output()}`, routeIs("v1"), 5_000);
  assert.equal(dp.child.exitCode, null, `the data plane exited:\n${dp.output()}`);
  assert.equal(dp.child.signalCode, null, `the data plane was killed:\n${dp.output()}`);
  assert.doesNotMatch(dp.output(), /Unhandled 'error' event|uncaught/i);

  // The control plane answers again: the data plane resyncs and takes a new edit.
  process.kill(cpPid, "SIGCONT");
  save(config(port, originPort, "v2"));
  await waitFor(`route v2 after the control plane came back\n${dp.output()}`, routeIs("v2"), 60_000);
  assert.equal(dp.child.exitCode, null);
});
