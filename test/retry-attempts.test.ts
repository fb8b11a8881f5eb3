/**
 * docs/traffic/retries.md promises `x-agw-attempts` on every response of a route with a retry policy
 * (issue 25): the final `503 upstream_connect_failed` after every attempt was refused lacked it. Real
 * curl over HTTP/1.1 and h2c against `agw run`, with an endpoint where nothing listens.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { freePort, requireOrSkip, startGateway, tempDir } from "./helpers.ts";

const run = promisify(execFile);

test("a retried route's final 503 upstream_connect_failed says how many attempts were made", async (t) => {
  const v = spawnSync("curl", ["--version"], { encoding: "utf8" });
  if (!requireOrSkip(t, v.status === 0 && /HTTP2/.test(v.stdout), "curl with HTTP/2 support is needed"))
    return;
  const dir = tempDir("agw-attempts-");
  const [port, closed] = await Promise.all([freePort(), freePort()]);
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: main
    address: 127.0.0.1
    port: ${port}
    routes:
      - name: retried
        cluster: down
        retry: { retries: 2, retryOn: [connect-failure], backoffBase: 1ms }
clusters:
  - name: down
    endpoints: ["127.0.0.1:${closed}"]
`,
  );
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());
  for (const proto of ["--http1.1", "--http2-prior-knowledge"]) {
    await t.test(proto, async () => {
      const { stdout } = await run("curl", [
        "-sS",
        "-i",
        proto,
        "--max-time",
        "10",
        `http://127.0.0.1:${port}/x`,
      ]);
      assert.match(stdout, /^HTTP\/(1\.1|2) 503/);
      assert.match(stdout, /x-agw-error: upstream_connect_failed/i);
      assert.match(stdout, /x-agw-attempts: 3\r?\n/i);
    });
  }
});
