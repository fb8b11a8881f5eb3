/** The `agw` command line as a user meets it: each command's own flags, --version, shell completion. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { CLI, ROOT } from "./helpers.ts";

const agw = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 30_000 });

test("a flag of another command is an error naming it and the commands it belongs to", () => {
  const misplaced = agw("data-plane", "-c", "config.yaml", "--xds", "127.0.0.1:18000");
  assert.equal(misplaced.status, 2);
  assert.match(
    misplaced.stderr,
    /-c is not an option of agw data-plane \(it belongs to agw run, agw control-plane, agw validate\); see 'agw data-plane --help'/,
  );
  const validate = agw("validate", "-c", "x.yaml", "--workers", "2");
  assert.equal(validate.status, 2);
  assert.match(
    validate.stderr,
    /--workers is not an option of agw validate \(it belongs to agw run, agw data-plane\)/,
  );
  const unknown = agw("run", "--no-such-flag");
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /Unknown option '--no-such-flag'/);
  // every flag a command's --help names, it takes
  const help = agw("control-plane", "--help");
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--xds-tls-secret/);
});

test("agw --version: the package's version and the Node running it", () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  for (const flag of ["--version", "-V", "version"]) {
    const r = agw(flag);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `agw ${version} (node ${process.version})`);
  }
});

test("agw completion bash: real bash completes commands, then the command's own flags", (t) => {
  const script = agw("completion", "bash");
  assert.equal(script.status, 0, script.stderr);
  const complete = (line: string) => {
    const words = line.split(" ");
    const r = spawnSync(
      "bash",
      [
        "-c",
        `eval "$(cat)"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _agw; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      { input: script.stdout, encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim().split("\n").sort();
  };
  if (spawnSync("bash", ["--version"]).status !== 0) return t.skip("SKIPPED: bash is not installed");
  assert.deepEqual(complete("agw con"), ["config", "control-plane"]);
  assert.deepEqual(complete("agw data-plane --xds"), [
    "--xds",
    "--xds-ca",
    "--xds-cert",
    "--xds-key",
    "--xds-plaintext",
    "--xds-protocol",
  ]);
  assert.deepEqual(complete("agw validate --"), ["--config", "--help"]);
  assert.deepEqual(complete("agw completion z"), ["zsh"]);
  assert.deepEqual(complete("agw config "), ["dump"]);
  assert.deepEqual(complete("agw config dump --"), ["--admin-token", "--cp-admin", "--help", "--output"]);

  const zsh = agw("completion", "zsh");
  assert.equal(zsh.status, 0);
  assert.match(zsh.stdout, /^#compdef agw\n/);
  assert.match(
    zsh.stdout,
    /validate\) \[\[ \$PREFIX == -\* \]\] && \{ compadd -- --help --config; return \} ;;/,
  );
  assert.equal(agw("completion", "fish").status, 2, "an unknown shell is a usage error");
});
