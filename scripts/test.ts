/**
 * The whole test suite, as `npm test` runs it: generated code up to date, types, lint, then every
 * unit test (*.test.ts beside the code) and end-to-end test (test/*.test.ts) with node:test.
 */
import { spawnSync } from "node:child_process";

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
