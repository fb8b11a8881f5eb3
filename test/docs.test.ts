/**
 * Executable docs: every walk-through in README.md, docs/ and examples/ runs as written, the way
 * rustdoc runs a crate's examples. A page marks its shell blocks with an HTML comment on the line
 * right above the fence (invisible on GitHub):
 *
 *   <!-- doc-test: run -->               run this block (also `run timeout=300s`; default 120 s)
 *   <!-- doc-test: output -->            on a ```text block: what the run block before it prints
 *   <!-- doc-test: not-run REASON -->    shown, never run, and the reason says why
 *   <!-- doc-test: pending REASON -->    a walk-through that does not work yet: reported as a TODO
 *
 * A page's run blocks go, in order, to one bash (`set -eo pipefail`: a failing command fails the
 * block) as a user's terminal session would: `cd`, variables and background servers started with
 * `&` carry over to the next block. The session starts in a fresh copy of the repository (the files
 * git knows, with node_modules linked) with node_modules/.bin first on PATH, as README.md asks of a
 * user, and inside a network namespace of its own, so the docs keep their literal ports (8080,
 * 9901, ...) and pages run side by side. The namespace has loopback and one other address,
 * 192.0.2.10 (`hostname -I`), as a machine has. Every process the page started lives in that
 * namespace and is killed with it when the page ends or a block overruns its time.
 *
 * Expected output: each line of the ```text block must appear in the block's output (stdout and
 * stderr, as a terminal shows them), in the order given; other lines may come between (`...` lines
 * say so to the reader and are otherwise ignored), and `...` inside a line matches any text.
 *
 * The last test reads every page and fails on a shell block without a marker, a fence without a
 * language, a marker without a reason where one is needed, or an output block with no run block.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { netnsUnavailableReason } from "../scripts/kube/netns.ts";
import { ROOT, requireOrSkip } from "./helpers.ts";

const SHELL_LANGUAGES = new Set(["sh", "bash", "shell", "console", "zsh"]);
const DEFAULT_TIMEOUT_MS = 120_000;
/** The one non-loopback address in a page's namespace (TEST-NET-1, never routed). */
const HOST_ADDRESS = "192.0.2.10";

export interface Block {
  page: string;
  /** 1-based line of the opening fence. */
  line: number;
  language: string;
  code: string;
  marker?: { kind: string; args: string; line: number };
  timeoutMs: number;
  /** For run blocks: the ```text block marked `output` that follows. */
  expected?: string;
}

/** The pages whose blocks are checked: README.md, docs/**, examples/** (Markdown). */
export function docPages(): string[] {
  const pages = ["README.md"];
  for (const dir of ["docs", "examples"])
    for (const f of readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" }))
      if (f.endsWith(".md")) pages.push(join(dir, f));
  return pages.sort();
}

const MARKER = /^\s*<!--\s*doc-test:\s*([a-z-]+)\s*(.*?)\s*-->\s*$/;
const FENCE = /^(\s*)(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;

/** The fenced blocks of a page, each with the doc-test marker on the line above it (if any). */
export function parsePage(page: string, text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] ?? "");
    if (!open) continue;
    const [, indent = "", fence = "", language = ""] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j] ?? "";
      if (l.trim().startsWith(fence) && l.trim().replace(/[`~]/g, "") === "") break;
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    const m = MARKER.exec(lines[i - 1] ?? "");
    const marker = m ? { kind: m[1] ?? "", args: m[2] ?? "", line: i } : undefined;
    const timeout = /\btimeout=(\d+)s\b/.exec(marker?.args ?? "");
    blocks.push({
      page,
      line: i + 1,
      language,
      code: body.join("\n"),
      ...(marker ? { marker } : {}),
      timeoutMs: timeout ? Number(timeout[1]) * 1000 : DEFAULT_TIMEOUT_MS,
    });
    i = j;
  }
  let lastRun: Block | undefined;
  for (const b of blocks) {
    if (b.marker?.kind === "run") lastRun = b;
    else if (b.marker?.kind === "output" && lastRun && lastRun.expected === undefined)
      lastRun.expected = b.code;
  }
  return blocks;
}

/** Everything wrong with a page's markup, one message per problem (empty: fine). */
export function checkPage(page: string, blocks: Block[]): string[] {
  const problems: string[] = [];
  const at = (b: Block) => `${page}:${b.line}`;
  let lastRun: Block | undefined;
  let outputs = 0;
  for (const b of blocks) {
    const kind = b.marker?.kind;
    if (b.language === "")
      problems.push(`${at(b)}: a fence without a language; name it (\`\`\`text for listings and output)`);
    if (SHELL_LANGUAGES.has(b.language) && !kind)
      problems.push(
        `${at(b)}: a \`\`\`${b.language} block without a doc-test marker: mark it <!-- doc-test: run --> or <!-- doc-test: not-run REASON -->`,
      );
    if (kind === undefined) continue;
    if (!["run", "output", "not-run", "pending"].includes(kind))
      problems.push(`${at(b)}: unknown doc-test marker "${kind}" (run, output, not-run, pending)`);
    if ((kind === "run" || kind === "not-run" || kind === "pending") && !SHELL_LANGUAGES.has(b.language))
      problems.push(`${at(b)}: doc-test ${kind} marks a \`\`\`${b.language} block; only shell blocks run`);
    if ((kind === "not-run" || kind === "pending") && b.marker?.args.trim() === "")
      problems.push(`${at(b)}: doc-test ${kind} needs a reason`);
    if (kind === "run" && b.marker && b.marker.args.replace(/\btimeout=\d+s\b/, "").trim() !== "")
      problems.push(`${at(b)}: doc-test run takes only timeout=Ns, got "${b.marker.args}"`);
    if (kind === "run") {
      lastRun = b;
      outputs = 0;
    }
    if (kind === "output") {
      if (b.language !== "text") problems.push(`${at(b)}: doc-test output marks a \`\`\`text block`);
      if (!lastRun) problems.push(`${at(b)}: doc-test output with no run block before it`);
      else if (++outputs > 1)
        problems.push(`${at(b)}: a second doc-test output for the run block at line ${lastRun.line}`);
    }
  }
  return problems;
}

/**
 * Why `expected` is not in `actual` (undefined: it is). Each expected line, in order, must match a
 * later line of the output; `...` inside a line matches anything, a line of `...` alone is ignored.
 */
export function outputMismatch(expected: string, actual: string): string | undefined {
  const actualLines = actual.split("\n").map((l) => l.replace(/\r$/, "").trimEnd());
  let from = 0;
  for (const raw of expected.split("\n")) {
    const want = raw.trimEnd();
    if (want.trim() === "" || want.trim() === "...") continue;
    const re = new RegExp(
      `^${want
        .split("...")
        .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
        .join(".*")}$`,
    );
    const found = actualLines.findIndex((l, i) => i >= from && re.test(l));
    if (found < 0)
      return `expected the line\n  ${want}\nafter output line ${from} (of ${actualLines.length}); the output was:\n${actual}`;
    from = found + 1;
  }
  return undefined;
}

/** Namespaces left by a docs test that was killed (its pid is gone): their processes and the namespace. */
function removeStaleNamespaces(): void {
  let names: string[] = [];
  try {
    names = execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
      .split("\n")
      .map((l) => l.split(" ")[0] ?? "");
  } catch {
    return;
  }
  for (const ns of names) {
    const pid = /^agwdoc(\d+)-\d+$/.exec(ns)?.[1];
    if (pid === undefined) continue;
    try {
      process.kill(Number(pid), 0);
      continue; // that test is still running
    } catch {}
    killNamespace(ns);
    try {
      execFileSync("ip", ["netns", "del", ns]);
    } catch {}
  }
}

/** Kills every process in the namespace (a page's shell, its background jobs and their children). */
function killNamespace(ns: string): void {
  for (let round = 0; round < 10; round++) {
    let pids: number[] = [];
    try {
      pids = execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8" })
        .split("\n")
        .filter(Boolean)
        .map(Number);
    } catch {}
    if (pids.length === 0) return;
    for (const pid of pids)
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    execFileSync("sleep", ["0.1"]);
  }
}

/** A copy of the repository's files (tracked and untracked, not ignored) with node_modules linked. */
function repositoryCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "agw-docs-"));
  const work = join(dir, "agw");
  const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: ROOT,
    encoding: "utf8",
  })
    .split("\0")
    .filter(Boolean);
  for (const f of files) {
    const src = join(ROOT, f);
    if (!existsSync(src)) continue; // deleted in the working tree
    mkdirSync(dirname(join(work, f)), { recursive: true });
    cpSync(src, join(work, f), { verbatimSymlinks: true });
  }
  symlinkSync(join(ROOT, "node_modules"), join(work, "node_modules"));
  return work;
}

const DRIVER = `
set -o pipefail
while IFS= read -r n; do
  set -e
  source "$AGW_DOCTEST_BLOCKS/$n.sh" </dev/null >"$AGW_DOCTEST_BLOCKS/$n.out" 2>&1 3>&-
  set +e
  echo "$n" >&3
done
`;

/** One page's bash session in its own network namespace. */
class Session {
  readonly ns: string;
  readonly work: string;
  readonly blocks: string;
  private readonly shell: ChildProcess;
  private readonly reports: string[] = [];
  private waiting: (() => void) | undefined;
  private exit?: number | string;

  constructor(index: number) {
    this.ns = `agwdoc${process.pid}-${index}`;
    this.work = repositoryCopy();
    this.blocks = mkdtempSync(join(tmpdir(), "agw-docs-blocks-"));
    execFileSync("ip", ["netns", "add", this.ns]);
    // lo, and one address besides loopback as a machine has (`hostname -I`), e.g. for endpoints that
    // must not be loopback (Kubernetes EndpointSlices): a veth pair with both ends in the namespace.
    for (const args of [
      ["link", "set", "lo", "up"],
      ["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
      ["addr", "add", `${HOST_ADDRESS}/24`, "dev", "eth0"],
      ["link", "set", "eth0", "up"],
      ["link", "set", "eth1", "up"],
    ])
      execFileSync("ip", ["-n", this.ns, ...args]);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${join(this.work, "node_modules/.bin")}:${process.env.PATH ?? ""}`,
      AGW_DOCTEST_BLOCKS: this.blocks,
      NPM_CONFIG_UPDATE_NOTIFIER: "false",
    };
    delete env.NODE_TEST_CONTEXT;
    delete env.NODE_OPTIONS;
    this.shell = spawn("ip", ["netns", "exec", this.ns, "bash", "--noprofile", "--norc", "-c", DRIVER], {
      cwd: this.work,
      env,
      stdio: ["pipe", "ignore", "ignore", "pipe"],
    });
    const reports = this.shell.stdio[3];
    let buffered = "";
    reports?.on("data", (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      this.reports.push(...lines);
      this.waiting?.();
    });
    this.shell.once("exit", (code, signal) => {
      this.exit = code ?? signal ?? "?";
      this.waiting?.();
    });
  }

  /** Runs block `n`; resolves with its output, rejects on a failure or after `timeoutMs`. */
  async run(n: number, code: string, timeoutMs: number): Promise<string> {
    writeFileSync(join(this.blocks, `${n}.sh`), `${code}\n`);
    const out = () => {
      try {
        return readFileSync(join(this.blocks, `${n}.out`), "utf8");
      } catch {
        return "";
      }
    };
    if (this.exit !== undefined) throw new Error(`the session ended before this block (${this.exit})`);
    this.shell.stdin?.write(`${n}\n`);
    const outcome = await new Promise<"done" | "exit" | "timeout">((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), timeoutMs);
      this.waiting = () => {
        if (this.reports.includes(String(n))) resolve("done");
        else if (this.exit !== undefined) resolve("exit");
        else return;
        clearTimeout(timer);
      };
      this.waiting();
    });
    this.waiting = undefined;
    if (outcome === "done") return out();
    if (outcome === "timeout") {
      this.kill();
      throw new Error(`the block did not finish within ${timeoutMs / 1000} s; its output:\n${out()}`);
    }
    throw new Error(`a command failed (exit status ${this.exit}); the block's output:\n${out()}`);
  }

  kill(): void {
    killNamespace(this.ns);
  }

  close(): void {
    this.kill();
    try {
      execFileSync("ip", ["netns", "del", this.ns]);
    } catch {}
    rmSync(dirname(this.work), { recursive: true, force: true });
    rmSync(this.blocks, { recursive: true, force: true });
  }
}

const pages = docPages().map((page) => ({
  page,
  blocks: parsePage(page, readFileSync(join(ROOT, page), "utf8")),
}));
/** Pages with a walk-through, the slow ones (a longer block timeout) first so they start early. */
const walkThroughs = pages
  .filter(({ blocks }) => blocks.some((b) => b.marker?.kind === "run" || b.marker?.kind === "pending"))
  .sort((a, b) => slowest(b.blocks) - slowest(a.blocks));

function slowest(blocks: Block[]): number {
  return Math.max(0, ...blocks.filter((b) => b.marker?.kind === "run").map((b) => b.timeoutMs));
}

let staleRemoved = false;

// Each block is bounded by its own timeout (Session.run); the test runner's timeouts (npm test
// passes --test-timeout) are set from those, as a page may run longer than any one test elsewhere.
describe("walk-throughs", { concurrency: 3, timeout: 60 * 60_000 }, () => {
  walkThroughs.forEach(({ page, blocks }, index) => {
    const budget = blocks.reduce((sum, b) => sum + (b.marker?.kind === "run" ? b.timeoutMs : 0), 60_000);
    test(page, { timeout: budget }, async (t) => {
      for (const b of blocks.filter((b) => b.marker?.kind === "pending"))
        await t.test(`${page}:${b.line}`, { todo: `pending: ${b.marker?.args}` }, () => {});
      const runs = blocks.filter((b) => b.marker?.kind === "run");
      if (runs.length === 0) return;
      const unavailable = netnsUnavailableReason();
      if (!requireOrSkip(t, unavailable === undefined, unavailable ?? "")) return;
      if (!staleRemoved) {
        staleRemoved = true;
        removeStaleNamespaces();
      }
      assert.ok(
        existsSync(join(ROOT, "node_modules/.bin/agw")),
        "node_modules/.bin/agw is missing: run npm ci (the cli workspace's bin, which the docs call as agw)",
      );
      const session = new Session(index);
      t.after(() => session.close());
      for (const [n, b] of runs.entries()) {
        await t.test(`${page}:${b.line}`, { timeout: b.timeoutMs + 30_000 }, async () => {
          let output: string;
          try {
            output = await session.run(n, b.code, b.timeoutMs);
          } catch (e) {
            throw new Error(`${page}:${b.line}:\n${b.code}\n--- ${(e as Error).message}`);
          }
          if (b.expected !== undefined) {
            const mismatch = outputMismatch(b.expected, output);
            if (mismatch !== undefined) assert.fail(`${page}:${b.line}:\n${b.code}\n--- ${mismatch}`);
          }
        });
      }
    });
  });
});

test("every shell block in the docs is run or says why not; every fence names its language", () => {
  const problems = pages.flatMap(({ page, blocks }) => checkPage(page, blocks));
  assert.deepEqual(problems, [], `\n${problems.join("\n")}`);
  const covered = walkThroughs.map((w) => w.page);
  for (const page of [
    "README.md",
    "docs/tls.md",
    "docs/xds.md",
    "docs/plugins.md",
    "docs/kubernetes.md",
    "docs/config.md",
    "docs/operability.md",
    ...readdirSync(join(ROOT, "docs/traffic")).map((f) => `docs/traffic/${f}`),
  ])
    assert.ok(covered.includes(page), `${page} has no walk-through that runs`);
});

test("the output check: lines in order, ... for any text", () => {
  assert.equal(outputMismatch("a\n...\nc", "a\nb\nc\n"), undefined);
  assert.equal(
    outputMismatch("x-upstream-id: 127.0.0.1:...", "HTTP/1.1 200 OK\r\nx-upstream-id: 127.0.0.1:9001\r\n"),
    undefined,
  );
  assert.match(outputMismatch("c\na", "a\nb\nc") ?? "", /expected the line\n {2}a/);
  assert.match(outputMismatch("HTTP/1.1 200 OK", "HTTP/1.1 503 Service Unavailable") ?? "", /200 OK/);
});
