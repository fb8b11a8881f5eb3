/**
 * The whole test suite, as `npm test` runs it: generated code up to date, types, lint, then every
 * unit test (*.test.ts beside the code) and end-to-end test (test/*.test.ts) with node:test.
 * Under AGW_TEST_STRICT=1 (CI) any skipped test fails the run, however it was skipped.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const tap = join(mkdtempSync(join(tmpdir(), "agw-test-report-")), "report.tap");

const steps: Array<[string, string[]]> = [
  ["node", ["scripts/gen.ts", "--check"]],
  ["tsc", ["--noEmit", "-p", "."]],
  ["biome", ["check", "."]],
  [
    "node",
    [
      "--test",
      "--test-concurrency=2",
      "--test-timeout=120000",
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      "--test-reporter=tap",
      `--test-reporter-destination=${tap}`,
      "packages/*/src/**/*.test.ts",
      "control-plane/src/**/*.test.ts",
      "data-plane/src/**/*.test.ts",
      "cli/src/**/*.test.ts",
      "test/**/*.test.ts",
      "bench/**/*.test.ts",
      ...process.argv.slice(2),
    ],
  ],
];

for (const [cmd, args] of steps) {
  console.log(`\n$ ${cmd} ${args.join(" ")}`);
  const result = spawnSync(cmd, args, { stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`\nFAILED: ${cmd} ${args.join(" ")}`);
    process.exit(result.status ?? 1);
  }
}

if (process.env.AGW_TEST_STRICT === "1") {
  const skipped = readFileSync(tap, "utf8")
    .split("\n")
    .filter((line) => /^\s*ok \d+ .*# SKIP/.test(line));
  if (skipped.length > 0) {
    console.error(
      `\nFAILED: AGW_TEST_STRICT=1 and ${skipped.length} test(s) skipped:\n${skipped.join("\n")}`,
    );
    process.exit(1);
  }
}
