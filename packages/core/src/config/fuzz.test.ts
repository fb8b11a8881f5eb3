/**
 * Fuzzing the config loader: thousands of mutated copies of the examples/ configs plus hostile YAML
 * (deep nesting, huge scalars, alias bombs, merge keys, tags, binary junk). Whatever the input, the
 * loader returns a config or FILE:LINE errors: nothing throws past it, and each input is handled within
 * a bound. Seeded and reproducible: the seed is printed; AGW_FUZZ_SEED=N reruns it, AGW_FUZZ_RUNS=N
 * changes the count.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parseConfig } from "./loader.ts";

const EXAMPLES = new URL("../../../../examples/", import.meta.url).pathname;
const RUNS = Number(process.env.AGW_FUZZ_RUNS ?? 2000);
/** Per input, generous for a machine shared by many busy processes; the loader's bounds keep it far lower. */
const PER_INPUT_MS = 10_000;
/** The whole run stops early past this (the suite's per-test timeout is 120 s); the seed still replays it. */
const DEADLINE_MS = 90_000;

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function examples(): string[] {
  return readdirSync(EXAMPLES, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => readFileSync(join(EXAMPLES, f), "utf8"));
}

function laughs(levels: number, width: number): string {
  let text = `a: &a [${Array(width).fill('"lol"').join(",")}]\n`;
  for (let l = 1; l < levels; l++) {
    const [name, prev] = [String.fromCharCode(97 + l), String.fromCharCode(96 + l)];
    text += `${name}: &${name} [${Array(width).fill(`*${prev}`).join(",")}]\n`;
  }
  return text;
}

/** Hostile documents, each a function of the PRNG so that sizes vary with the seed. */
const HOSTILE: Array<(r: () => number) => string> = [
  (r) => laughs(6 + Math.floor(r() * 5), 5 + Math.floor(r() * 6)),
  (r) => `listeners: ${"[".repeat(50 + Math.floor(r() * 5000))}`,
  (r) => `listeners: ${"{a: ".repeat(50 + Math.floor(r() * 2000))}1${"}".repeat(10)}`,
  (r) => `listeners:\n${"- ".repeat(50 + Math.floor(r() * 5000))}x\n`,
  (r) => Array.from({ length: 40 + Math.floor(r() * 100) }, (_, i) => `${" ".repeat(i)}k${i}:`).join("\n"),
  (r) => `listeners:\n  - name: "${"x".repeat(Math.floor(r() * 2_000_000))}"\n    port: 1\n`,
  (r) =>
    `a: &a "${"y".repeat(50_000)}"\nb: [${Array(10 + Math.floor(r() * 100))
      .fill("*a")
      .join(",")}]\n`,
  (r) =>
    `d: &d { k: "${"z".repeat(2000)}" }\n${Array.from({ length: 100 + Math.floor(r() * 2000) }, (_, i) => `m${i}: { <<: *d }`).join("\n")}\n`,
  () => "a: &a [1, *a]\n",
  () => "a: &a { <<: *a }\n",
  () => "listeners: !!binary aGVsbG8=\n",
  () => "listeners: !custom { x: 1 }\n",
  () => "? [a, b]\n: c\n",
  () => "__proto__: { polluted: true }\nconstructor: { prototype: { polluted: true } }\n",
  () => "listeners: [{ name: a, port: .inf }]\n",
  () => "%YAML 1.1\n---\nlisteners: []\n...\n---\nclusters: []\n",
  () => "listeners: *undefined_alias\n",
  (r) =>
    Buffer.from(Array.from({ length: 1 + Math.floor(r() * 8192) }, () => Math.floor(r() * 256))).toString(
      "latin1",
    ),
  (r) =>
    Buffer.from(Array.from({ length: 1 + Math.floor(r() * 8192) }, () => Math.floor(r() * 256))).toString(
      "utf8",
    ),
];

const TOKENS = [
  "[",
  "]",
  "{",
  "}",
  ":",
  ": ",
  "- ",
  "? ",
  ",",
  "&x ",
  "*x",
  "&y ",
  "*y",
  "<<: *x\n",
  "!!str ",
  "!tag ",
  "|\n",
  ">-\n",
  "'",
  '"',
  "#",
  "\n",
  "\t",
  " ",
  "  ",
  "\u0000",
  "\ufeff",
  "%TAG ! tag:x:\n",
  "---\n",
  "...\n",
  "99999",
  "-1",
  "1e309",
  "0x10",
  "null",
  "~",
  "true",
  "{}",
  "[]",
  '"\\u0000"',
  "127.0.0.1:99999",
  "__proto__",
];

function mutate(text: string, r: () => number): string {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(r() * list.length)] as T;
  const at = () => Math.floor(r() * (text.length + 1));
  let out = text;
  const edits = 1 + Math.floor(r() * 8);
  for (let e = 0; e < edits; e++) {
    const i = Math.floor(r() * (out.length + 1));
    switch (Math.floor(r() * 9)) {
      case 0:
        out = out.slice(0, i) + pick(TOKENS) + out.slice(i);
        break;
      case 1:
        out = out.slice(0, i) + out.slice(i + 1 + Math.floor(r() * 20));
        break;
      case 2: {
        const j = at();
        const [a, b] = i < j ? [i, j] : [j, i];
        out = out.slice(0, b) + out.slice(a, b) + out.slice(b);
        break;
      }
      case 3: {
        const lines = out.split("\n");
        const [x, y] = [Math.floor(r() * lines.length), Math.floor(r() * lines.length)];
        [lines[x], lines[y]] = [lines[y] as string, lines[x] as string];
        out = lines.join("\n");
        break;
      }
      case 4:
        out = out.slice(0, i) + String.fromCharCode(Math.floor(r() * 0x3000)) + out.slice(i + 1);
        break;
      case 5:
        out = out.slice(0, i);
        break;
      case 6:
        out = out.replace(/\d+/, () => pick(["0", "-1", "65536", "99999999999999999999", "1.5", "NaN"]));
        break;
      case 7:
        // Indentation shifts break block structure in interesting ways.
        out = out.replace(/\n( *)/, (_m, s: string) => `\n${r() < 0.5 ? s.slice(1) : `${s}   `}`);
        break;
      default:
        out = out.slice(0, i) + pick(HOSTILE)(r).slice(0, 2000) + out.slice(i);
    }
  }
  return out;
}

test("config loader fuzz: mutated examples and hostile YAML never throw past the loader", (t) => {
  const seed = Number(process.env.AGW_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const message = `fuzz seed ${seed} (rerun: AGW_FUZZ_SEED=${seed}), ${RUNS} inputs`;
  t.diagnostic(message);
  console.log(message);
  const r = prng(seed);
  const corpus = examples();
  assert.ok(corpus.length >= 5, `examples/ configs found: ${corpus.length}`);
  const pemReader = (path: string) => {
    if (r() < 0.5) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
    return "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
  };
  let accepted = 0;
  let slowest = 0;
  let runs = 0;
  const deadline = Date.now() + DEADLINE_MS;
  for (let run = 0; run < RUNS && Date.now() < deadline; run++) {
    runs++;
    const input = run % 10 === 9 ? pick(HOSTILE, r)(r) : mutate(pick(corpus, r), r);
    const started = performance.now();
    let result: ReturnType<typeof parseConfig>;
    try {
      result = parseConfig(input, "config.yaml", run % 2 === 0 ? pemReader : undefined);
    } catch (e) {
      assert.fail(
        `run ${run} (${message}) threw: ${(e as Error).stack}\ninput: ${JSON.stringify(input.slice(0, 500))}`,
      );
    }
    const ms = performance.now() - started;
    slowest = Math.max(slowest, ms);
    assert.ok(ms < PER_INPUT_MS, `run ${run} (${message}) took ${ms.toFixed(0)} ms`);
    if (result.ok) {
      accepted++;
      continue;
    }
    assert.ok(result.errors.length > 0, `run ${run}: rejected without an error`);
    const lines = input.split("\n").length;
    for (const e of result.errors) {
      assert.match(String(e), /^config\.yaml(:\d+)?[ :]/, `run ${run} (${message})`);
      assert.ok(e.line >= 0 && e.line <= lines + 1, `run ${run}: line ${e.line} of ${lines}`);
      assert.doesNotMatch(e.message, /^internal error/, `run ${run} (${message}): ${String(e)}`);
    }
  }
  t.diagnostic(`${runs} inputs run, ${accepted} were valid configs; slowest ${slowest.toFixed(0)} ms`);
  assert.ok(runs >= Math.min(RUNS, 500), `only ${runs} inputs ran before the deadline`);
  assert.ok(accepted > 0, "some mutations stay valid: the corpus is really parsed");
});

function pick<T>(list: readonly T[], r: () => number): T {
  return list[Math.floor(r() * list.length)] as T;
}
