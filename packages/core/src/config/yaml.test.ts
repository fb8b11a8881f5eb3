/**
 * Hostile YAML against the config loader: each file gives FILE:LINE errors (never a throw, never an
 * unbounded stall), and ordinary files that reuse anchors are accepted.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConfig } from "./loader.ts";
import { MAX_NESTING, nestingBeyond } from "./yaml.ts";

const errorsOf = (text: string) => {
  const r = parseConfig(text, "config.yaml");
  assert.equal(r.ok, false, "expected the config to be rejected");
  return r.ok ? [] : r.errors.map(String);
};

/** One listener whose `count` routes all reuse one anchored timeout and one anchored header op. */
function anchored(count: number): string {
  let text = "listeners:\n  - name: main\n    port: 8080\n    routes:\n";
  text += "      - { name: r0, cluster: app, timeout: &t 2s, requestHeaders: &h { set: { x-env: prod } } }\n";
  for (let i = 1; i <= count; i++)
    text += `      - { name: r${i}, cluster: app, timeout: *t, requestHeaders: *h }\n`;
  return `${text}clusters:\n  - { name: app, endpoints: ["127.0.0.1:9000"] }\n`;
}

/** The classic: nine aliases of nine aliases … of nine strings, 9^levels strings when expanded. */
function billionLaughs(levels = 9): string {
  let text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  let prev = "a";
  for (let l = 1; l < levels; l++) {
    const name = String.fromCharCode(97 + l);
    text += `${name}: &${name} [${Array(9).fill(`*${prev}`).join(",")}]\n`;
    prev = name;
  }
  return text;
}

test("an ordinary config reusing one anchor 102 times (and 1000 times) is accepted", () => {
  for (const count of [102, 1000]) {
    const r = parseConfig(anchored(count), "config.yaml");
    assert.equal(r.ok, true, r.ok ? "" : r.errors.slice(0, 3).join("\n"));
    if (!r.ok) return;
    const routes = r.config.listeners?.[0]?.routes ?? [];
    assert.equal(routes.length, count + 1);
    assert.equal(routes[count]?.timeout, "2s");
    assert.deepEqual(routes[count]?.requestHeaders, { set: { "x-env": "prod" } });
  }
});

test("a billion-laughs file is refused by expanded size, with its line, quickly", () => {
  const started = Date.now();
  const errors = errorsOf(billionLaughs());
  assert.equal(errors.length, 1);
  assert.match(
    errors[0] ?? "",
    /^config\.yaml:\d+: YAML: aliases and merge keys expand this document beyond/,
  );
  // An attack bound, generous for a busy machine: the expansion stops at the budget.
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  // Aliases of a long string count its characters: 30 × 100 KiB strings are over the budget too.
  const big = `a: &a "${"x".repeat(100 * 1024)}"\nb: [${Array(30).fill("*a").join(", ")}]\n`;
  assert.match(errorsOf(big)[0] ?? "", /config\.yaml:2: YAML: aliases and merge keys expand/);
});

test("deep nesting is refused before the YAML parser recurses into it", () => {
  for (const [text, line] of [
    [`listeners: ${"[".repeat(100_000)}${"]".repeat(100_000)}\n`, 1],
    [`a: 1\nb: ${"{a: ".repeat(50_000)}1${"}".repeat(50_000)}\n`, 2],
    [`listeners:\n${"- ".repeat(10_000)}x\n`, 2],
    [Array.from({ length: 200 }, (_, i) => `${" ".repeat(i)}k${i}:`).join("\n"), MAX_NESTING + 1],
  ] as const) {
    const started = Date.now();
    const errors = errorsOf(text);
    assert.deepEqual(errors, [`config.yaml:${line}: YAML: nested deeper than ${MAX_NESTING} levels`]);
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  }
});

test("the nesting scan does not count brackets in strings, comments, plain scalars or block scalars", () => {
  const deep = "[".repeat(200);
  const text = `a: "${deep}"
b: '${deep}''${deep}'
c: x${deep}
d: # ${deep}
e: |
  ${deep}
   ${deep}
f: >-
  ${deep}
g: [ "${deep}", '${deep}' ]
h:
  - key: |
      ${deep}
    other: [[1]]
`;
  assert.equal(nestingBeyond(text, MAX_NESTING), -1);
  assert.equal(nestingBeyond(`a: [${deep}`, MAX_NESTING), 2 + MAX_NESTING);
});

test("merge keys work, and what they copy counts against the expansion budget", () => {
  const r = parseConfig(
    `x-defaults: &defaults { cluster: app, timeout: 3s }
listeners:
  - name: main
    port: 8080
    routes:
      - { <<: *defaults, name: a }
      - { <<: *defaults, name: b, timeout: 1s }
clusters: [{ name: app, endpoints: ["127.0.0.1:9000"] }]
`.replace("x-defaults", "$schema: s\nx"),
    "config.yaml",
  );
  // The top-level x-defaults key is not part of the schema, so it is reported; the merges themselves worked.
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(r.errors.map(String), ['config.yaml:2: Unrecognized key: "x"']);

  const good = parseConfig(
    `listeners:
  - name: main
    port: 8080
    routes:
      - &first { name: a, cluster: app, timeout: 3s }
      - { <<: *first, name: b }
      - { <<: [*first], name: c, timeout: 1s }
clusters: [{ name: app, endpoints: ["127.0.0.1:9000"] }]
`,
    "config.yaml",
  );
  assert.equal(good.ok, true, good.ok ? "" : good.errors.join("\n"));
  if (!good.ok) return;
  assert.deepEqual(
    good.config.listeners?.[0]?.routes?.map((r) => [r.name, r.timeout]),
    [
      ["a", "3s"],
      ["b", "3s"],
      ["c", "1s"],
    ],
  );
  const bomb = `a: &a { k0: "${"x".repeat(1000)}" }\n${Array.from({ length: 2000 }, (_, i) => `m${i}: { <<: *a }`).join("\n")}\n`;
  assert.match(errorsOf(bomb)[0] ?? "", /aliases and merge keys expand/);
});

test("alias cycles, unknown aliases, tags, non-scalar keys and __proto__ are errors with lines", () => {
  assert.match(
    errorsOf("a: &a [1, *a]\n")[0] ?? "",
    /^config\.yaml:1: YAML: alias \*a refers to a node that contains it/,
  );
  assert.match(errorsOf("a: 1\nb: *nope\n")[0] ?? "", /^config\.yaml:2: YAML: /);
  assert.match(
    errorsOf("listeners: !custom []\n")[0] ?? "",
    /^config\.yaml:1: YAML: Unresolved tag: !custom/,
  );
  assert.match(
    errorsOf("a: 1\nb: !!binary aGVsbG8=\n")[0] ?? "",
    /^config\.yaml:2: YAML: unsupported value \(tag tag:yaml\.org,2002:binary\)/,
  );
  assert.match(errorsOf("a: 1\n? [x, y]\n: 2\n")[0] ?? "", /^config\.yaml:2: YAML: a key must be a scalar/);
  assert.match(errorsOf("a: .inf\n")[0] ?? "", /^config\.yaml:1: YAML: unsupported value/);
  const proto = errorsOf("__proto__: { polluted: true }\nlisteners: []\n");
  assert.deepEqual(proto, ['config.yaml:1: Unrecognized key: "__proto__"']);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test("a file larger than the limit, or binary junk, is an error, not a crash", () => {
  const junk = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)).toString("latin1");
  const errors = errorsOf(junk);
  assert.ok(errors.length > 0);
  for (const e of errors) assert.match(e, /^config\.yaml(:\d+)?[: ]/);
});
