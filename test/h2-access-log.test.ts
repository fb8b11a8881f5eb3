/**
 * HTTP/2 clients with an access log on: h2load stopping with streams in flight must not take the
 * gateway down (reading the session socket's counters after node:http2 unbinds it threw
 * ERR_HTTP2_SOCKET_UNBOUND and crashed `agw run --access-log`), and an HTTP/2 exchange logs its own
 * DATA bytes, not the shared connection's.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import {
  accessLogEntry,
  freePort,
  requireOrSkip,
  singleRouteConfig,
  startGateway,
  tempDir,
} from "./helpers.ts";

const run = promisify(execFile);
const BODY = "hello over h2\n";

test("h2load cut off mid-flight with --access-log: the gateway keeps serving; h2 lines carry the stream's bytes", async (t) => {
  const hasH2load = spawnSync("h2load", ["--version"], { stdio: "ignore" }).status === 0;
  if (!requireOrSkip(t, hasH2load, "h2load (Debian nghttp2-client) is needed")) return;
  const origin = http.createServer((_req, res) => res.end(BODY));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const dir = tempDir();
  const port = await freePort();
  const file = singleRouteConfig(dir, port, "all", (origin.address() as AddressInfo).port);
  const accessLog = join(dir, "access.log");
  const { proc: gw } = await startGateway(file, ["--access-log", accessLog]);
  t.after(() => gw.stop());

  const url = `http://127.0.0.1:${port}/`;
  // -D: a timed run that ends by closing its connections with streams still open, three times over.
  for (let i = 0; i < 3; i++)
    await run("h2load", ["-D", "1", "-c", "8", "-m", "8", url], { timeout: 20_000 });

  assert.equal(gw.child.exitCode, null, `the gateway exited:\n${gw.output()}`);
  const { stdout } = await run("curl", [
    "-sS",
    "--http2-prior-knowledge",
    "-H",
    "x-request-id: after-h2load",
    "--max-time",
    "10",
    url,
  ]);
  assert.equal(stdout, BODY);

  // The access log is flushed when the gateway drains on SIGTERM.
  assert.equal(await gw.stop(), 0, gw.output());
  const line = accessLogEntry(accessLog, "after-h2load");
  assert.equal(line.status, 200);
  assert.equal(
    line.protocol,
    "HTTP/2",
    "an HTTP/2 stream is logged as HTTP/2, not as the HTTP/1.1 head it is built on",
  );
  assert.equal(line.bytes_sent, BODY.length, "an HTTP/2 line counts its stream's DATA bytes");
  assert.equal(line.bytes_received, 0);
});
