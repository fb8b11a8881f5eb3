/**
 * Mutation testing (docs/testing.md): Stryker over the modules where a silent bug costs most, each
 * against its own fast tests, one module at a time at low priority. Not part of CI.
 *
 *   npm run mutation                 # every module, in turn
 *   npm run mutation -- router       # one module (router, http1-parser, cluster-state, cluster-health,
 *                                    # cluster-lb, xds)
 *
 * Reports: reports/mutation/<module>.html and .json (git-ignored); the score is printed at the end.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

interface Module {
  /** Files mutated. */
  readonly mutate: string[];
  /** Test files run against each mutant (those that cover it). */
  readonly tests: string[];
}

export const MODULES: Record<string, Module> = {
  router: {
    mutate: ["data-plane/src/runtime/router.ts"],
    tests: ["data-plane/src/runtime/router.test.ts"],
  },
  "http1-parser": {
    mutate: ["data-plane/src/engine/http1-parser.ts"],
    tests: ["data-plane/src/engine/http1-parser.test.ts"],
  },
  // The cluster policies, in three runs so each reports on its own (data-plane/src/cluster).
  "cluster-state": {
    // Circuit breaking, retry budget, outlier detection, retry conditions, the per-request accounting.
    mutate: [
      "data-plane/src/cluster/state.ts",
      "data-plane/src/cluster/retry.ts",
      "data-plane/src/cluster/traffic.ts",
    ],
    tests: ["data-plane/src/cluster/cluster.test.ts", "data-plane/src/cluster/traffic.test.ts"],
  },
  "cluster-health": {
    mutate: ["data-plane/src/cluster/health-check.ts"],
    tests: ["data-plane/src/cluster/probe.test.ts"],
  },
  "cluster-lb": {
    mutate: ["data-plane/src/cluster/load-balancer.ts", "data-plane/src/cluster/hash.ts"],
    tests: [
      "data-plane/src/cluster/cluster.test.ts",
      "data-plane/src/cluster/load-balancer.test.ts",
      "data-plane/src/cluster/traffic.test.ts",
    ],
  },
  // The ACK/NACK decisions: what the store accepts, rejects or keeps warming. (xds-client.ts turns a
  // rejection into a NACK on the wire; test/xds-protocol.test.ts covers that end to end, too slow here.)
  xds: {
    mutate: ["data-plane/src/config-store.ts"],
    tests: ["data-plane/src/config-store.test.ts"],
  },
};

const root = join(dirname(new URL(import.meta.url).pathname), "..");
const asked = process.argv.slice(2);
for (const name of asked)
  if (!(name in MODULES)) throw new Error(`unknown module ${name}: ${Object.keys(MODULES).join(", ")}`);
const names = asked.length > 0 ? asked : Object.keys(MODULES);
const dir = join(root, "reports", "mutation");
mkdirSync(dir, { recursive: true });
// The tap runner spawns `node` from PATH: it must be this Node (24, which runs .ts), not the system's.
const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` };
let failed = false;
for (const name of names) {
  const m = MODULES[name] as Module;
  const config = join(dir, `${name}.stryker.json`);
  writeFileSync(
    config,
    JSON.stringify(
      {
        $schema: "../../node_modules/@stryker-mutator/core/schema/stryker-schema.json",
        testRunner: "tap",
        plugins: ["@stryker-mutator/tap-runner"],
        tap: { testFiles: m.tests, nodeArgs: ["--test-reporter=tap"] },
        // STRYKER_MUTATE_FROM=<file>: only the mutants in these ranges ("path:line:col-line:col", one a
        // line), e.g. the survivors of the last run, to check that new tests kill them.
        mutate: process.env.STRYKER_MUTATE_FROM
          ? readFileSync(process.env.STRYKER_MUTATE_FROM, "utf8").split("\n").filter(Boolean)
          : m.mutate,
        coverageAnalysis: "perTest",
        // 2 cores shared with other work: one test process at a time unless told (STRYKER_CONCURRENCY).
        concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 1),
        // A mutant that loops forever is stopped at 2x the dry run's time + 5 s (it counts as killed):
        // the tests of one module take about a second, so 20 s per such mutant only wasted the machine.
        timeoutFactor: 2,
        timeoutMS: Number(process.env.STRYKER_TIMEOUT_MS ?? 5000),
        reporters: ["clear-text", "progress-append-only", "html", "json"],
        htmlReporter: { fileName: `reports/mutation/${name}.html` },
        jsonReporter: { fileName: `reports/mutation/${name}.json` },
        // One sandbox root per module, so two modules may run at once without cleaning up each other.
        tempDirName: `.stryker-tmp/${name}`,
        cleanTempDir: "always",
        // Anchored (gitignore syntax): an unanchored "plugins" also dropped data-plane/src/plugins from
        // the sandbox, and every test that starts the gateway failed to import it.
        ignorePatterns: [
          "/bench",
          "/deploy",
          "/examples",
          "/docs",
          "/ebpf-agent",
          "/plugins",
          "/reports",
          "/.cache",
          // Other modules' sandboxes (a run copied them into its own).
          "/.stryker-tmp",
        ],
        thresholds: { high: 90, low: 80, break: null },
      },
      null,
      2,
    ),
  );
  console.log(`\n== ${name}: ${m.mutate.join(", ")} against ${m.tests.join(", ")}`);
  const r = spawnSync(
    "nice",
    [
      "-n",
      // 10 by default, to leave a shared machine to its other work; at nice 10 among busy processes
      // at 0 a run gets a tenth of their share (STRYKER_NICE=0 for a run in reasonable time).
      process.env.STRYKER_NICE ?? "10",
      process.execPath,
      join(root, "node_modules/@stryker-mutator/core/bin/stryker.js"),
      "run",
      config,
    ],
    { cwd: root, stdio: "inherit", env },
  );
  if (r.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
