/**
 * Hostile files saved over the live config.yaml of a running `agw run`: each one is logged as
 * FILE:LINE errors, the process stays up, and the last good config keeps answering. Then a good file
 * still applies.
 */
import assert from "node:assert/strict";
import { renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { freePort, get, singleRouteConfig, startGateway, tempDir, waitFor } from "./helpers.ts";

function billionLaughs(): string {
  let text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  for (let l = 1; l < 9; l++) {
    const [name, prev] = [String.fromCharCode(97 + l), String.fromCharCode(96 + l)];
    text += `${name}: &${name} [${Array(9).fill(`*${prev}`).join(",")}]\n`;
  }
  return text;
}

test("hostile files over a live config.yaml: FILE:LINE errors, the old routes keep answering", async (t) => {
  const origin = http.createServer((_req, res) => res.end("origin\n"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const originPort = (origin.address() as AddressInfo).port;
  const port = await freePort();
  const dir = tempDir("agw-sec-config-");
  const file = singleRouteConfig(dir, port, "first", originPort);
  const good = `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: first, cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`;
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());
  const serving = async () => {
    try {
      return (await get(`http://127.0.0.1:${port}/x`)).status;
    } catch (e) {
      throw new Error(`${(e as Error).message}: ${(e as Error).cause}\n${gw.proc.output().slice(-6000)}`);
    }
  };
  assert.equal(await serving(), 200);

  const hostile: Array<[string, string, RegExp | RegExp[]]> = [
    ["billion laughs", billionLaughs(), /:\d+: YAML: aliases and merge keys expand this document beyond/],
    [
      "a billion-laughs file over 256 KiB (parsed in the worker thread)",
      `# ${"x".repeat(300 * 1024)}\n${billionLaughs()}`,
      /:\d+: YAML: aliases and merge keys expand this document beyond/,
    ],
    ["deep flow nesting", `listeners: ${"[".repeat(200_000)}\n`, /:1: YAML: nested deeper than 64 levels/],
    ["deep block nesting", `listeners:\n${"- ".repeat(50_000)}x\n`, /:2: YAML: nested deeper than 64 levels/],
    ["an alias cycle", "listeners: &l [*l]\n", /:1: YAML: alias \*l refers to a node that contains it/],
    ["a YAML syntax error", "listeners: [ { name: broken\n", /:\d+: YAML: /],
    ["binary junk", "\u0000\u0001\u00ff\ufffe\u0007garbage: [\u0000", /:\d+: YAML: /],
    ["an unknown tag", "listeners: !evil []\n", /:1: YAML: Unresolved tag: !evil/],
    [
      "a schema error and a semantic error at once",
      good.replace(
        "      - { name: first, cluster: origin }\n",
        "      - { name: first, cluster: origin, timeout: soon }\n      - { name: second, cluster: nowhere }\n",
      ),
      [
        /:6 listeners\[0\]\.routes\[0\]\.timeout: expected a duration/,
        /:7 listeners\[0\]\.routes\[1\]\.cluster: unknown cluster \\"nowhere\\"/,
      ],
    ],
    [
      "a bad port",
      good.replace(`127.0.0.1:${originPort}`, "127.0.0.1:99999"),
      /:9 clusters\[0\]\.endpoints\[0\]: port 99999/,
    ],
    [
      "a file larger than 16 MiB",
      `# ${"x".repeat(17 * 1024 * 1024)}\n`,
      /: larger than 16777216 bytes; not read/,
    ],
  ];
  for (const [what, text, expected] of hostile) {
    const errors = Array.isArray(expected) ? expected : [expected];
    const before = gw.proc.output().length;
    // Saved as editors do (a temp file renamed over it): a watcher that fires in the middle of a slow
    // in-place write of the 17 MiB file could read a prefix that is a valid, empty config.
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
    await waitFor(
      `the error for ${what}`,
      () => {
        const logged = gw.proc.output().slice(before);
        return logged.includes(file) && errors.every((e) => e.test(logged)) ? true : undefined;
      },
      60_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${gw.proc.output().slice(before, before + 4000)}`);
    });
    assert.equal(gw.proc.child.exitCode, null, `agw run is still running after ${what}`);
    assert.equal(await serving(), 200, `the last good config answers after ${what}`);
  }

  // A good file still applies after all that.
  writeFileSync(file, good.replace("{ name: first, cluster: origin }", "{ name: second, cluster: origin }"));
  await waitFor(
    "the good config",
    async () => {
      const dump = await get(`http://127.0.0.1:${gw.cpAdminPort}/config_dump`);
      return dump.body.includes('"second"') ? true : undefined;
    },
    30_000,
  );
  assert.equal(await serving(), 200);
});
