/**
 * The whole test suite, as `npm test` runs it: generated code up to date, types, lint, then every
 * unit test (*.test.ts beside the code, in every workspace, ebpf-agent/ and plugins/ included) and
 * end-to-end test (test/*.test.ts) with node:test (node_modules is skipped).
 * Under AGW_TEST_STRICT=1 (CI) any skipped test fails the run, however it was skipped.
 * `npm test -- FILE…` runs only those files (no gen, tsc or biome step); flags alone, such as
 * `npm test -- --test-name-pattern=POST`, apply to the whole suite.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const tap = join(mkdtempSync(join(tmpdir(), "agw-test-report-")), "report.tap");

const args = process.argv.slice(2);
/** Files named on the command line replace the suite's globs (appending them ran the whole suite). */
const files = args.filter((arg) => !arg.startsWith("-"));
const suite = [
  "packages/*/src/**/*.test.ts",
  "control-plane/src/**/*.test.ts",
  "data-plane/src/**/*.test.ts",
  "cli/src/**/*.test.ts",
  "ebpf-agent/**/*.test.ts",
  "plugins/**/*.test.ts",
  "test/**/*.test.ts",
  "bench/**/*.test.ts",
];
const testRun: [string, string[]] = [
  "node",
  [
    "--test",
    "--test-concurrency=2",
    "--test-timeout=120000",
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    "--test-reporter=tap",
    `--test-reporter-destination=${tap}`,
    ...(files.length > 0 ? args : [...suite, ...args]),
  ],
];
const steps: Array<[string, string[]]> =
  files.length > 0
    ? [testRun]
    : [
        ["node", ["scripts/gen.ts", "--check"]],
        ["tsc", ["--noEmit", "-p", "."]],
        ["biome", ["check", "."]],
        testRun,
      ];

/** The tests that skipped (TAP `# SKIP` lines, with their reasons). */
function skippedTests(): string[] {
  if (!existsSync(tap)) return [];
  return readFileSync(tap, "utf8")
    .split("\n")
    .filter((line) => /^\s*ok \d+ .*# SKIP/.test(line));
}

/** Outside CI a skip is allowed, but said plainly at the end, with the command that installs the tools. */
function reportSkipped(): void {
  const skipped = skippedTests();
  if (skipped.length === 0 || process.env.AGW_TEST_STRICT === "1") return;
  const missing = spawnSync("bash", ["scripts/install-tools.sh", "--check"], {
    encoding: "utf8",
  }).stdout?.trim();
  console.error(
    [
      `\n${skipped.length} test(s) SKIPPED, each with its reason:`,
      ...skipped.map((line) => `  ${line.trim().replace(/^ok \d+ - /, "")}`),
      missing
        ? `Debian packages missing here: ${missing}\nInstall them (as root): bash scripts/install-tools.sh`
        : "The Debian tools are all installed (bash scripts/install-tools.sh); see the reasons above.",
    ].join("\n"),
  );
}

for (const [cmd, args] of steps) {
  console.log(`\n$ ${cmd} ${args.join(" ")}`);
  const result = spawnSync(cmd, args, { stdio: "inherit" });
  if (result.status !== 0) {
    reportSkipped();
    console.error(`\nFAILED: ${cmd} ${args.join(" ")}`);
    process.exit(result.status ?? 1);
  }
}
reportSkipped();

if (process.env.AGW_TEST_STRICT === "1") {
  const skipped = skippedTests();
  if (skipped.length > 0) {
    console.error(
      `\nFAILED: AGW_TEST_STRICT=1 and ${skipped.length} test(s) skipped:\n${skipped.join("\n")}`,
    );
    process.exit(1);
  }
}
