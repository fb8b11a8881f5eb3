import assert from "node:assert/strict";
import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { type ConfigError, createLogger, type Ir } from "@agw/core";
import { FileProvider } from "./file.ts";

const config = (port: number) =>
  `listeners: [{ name: a, port: ${port}, routes: [{ name: r, cluster: c }] }]\nclusters: [{ name: c, endpoints: ["127.0.0.1:1"] }]\n`;

test("a config that fails to apply is reported and the watcher keeps going", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "agw-file-provider-"));
  const file = join(dir, "config.yaml");
  writeFileSync(file, config(8080));
  const applied: Ir[] = [];
  const invalid: ConfigError[][] = [];
  let fail = true;
  const provider = new FileProvider(
    file,
    {
      onConfig(ir) {
        if (fail) {
          fail = false;
          throw new Error("boom");
        }
        applied.push(ir);
      },
      onInvalid: (errors) => invalid.push(errors),
    },
    createLogger("test"),
  );
  t.after(() => provider.stop());
  await provider.start();
  assert.deepEqual(
    invalid.map((e) => e.map(String)),
    [[`${file}: not applied: boom`]],
  );

  writeFileSync(`${file}.tmp`, config(8081));
  renameSync(`${file}.tmp`, file);
  const deadline = Date.now() + 60_000;
  while (applied.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(applied[0]?.listeners[0]?.port, 8081, "the next save still applies");
});
