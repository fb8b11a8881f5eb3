/**
 * No import circle in data-plane/src (issue 15): contracts live in runtime/types.ts or a leaf
 * module and implementers import them, never the reverse. A circle that comes back fails here with
 * the files that form it (scripts/import-circles.ts prints the same from the command line).
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { importCircles, importGraph } from "../scripts/import-circles.ts";
import { ROOT, tempDir } from "./helpers.ts";

test("data-plane/src has no import circle (type-only imports and re-exports included)", () => {
  const circles = importCircles(importGraph(join(ROOT, "data-plane/src"))).map((c) =>
    c.map((f) => relative(ROOT, f)).join(" ⇄ "),
  );
  assert.deepEqual(circles, []);
});

test("runtime/types.ts imports nothing from cluster/, traffic/, plugins/ or tls/ (the contracts they implement)", () => {
  const src = join(ROOT, "data-plane/src");
  const imports = (importGraph(src).get(join(src, "runtime/types.ts")) ?? []).map((f) => relative(src, f));
  assert.ok(imports.length > 0, "the graph must see runtime/types.ts and its imports");
  assert.deepEqual(
    imports.filter((f) => /^(cluster|traffic|plugins|tls)\//.test(f)),
    [],
  );
});

test("the check finds a circle through a type-only import and a re-export", () => {
  const dir = tempDir("agw-circles-");
  mkdirSync(join(dir, "runtime"));
  mkdirSync(join(dir, "cluster"));
  writeFileSync(
    join(dir, "runtime/types.ts"),
    'import type { Spec } from "../cluster/spec.ts";\nexport type X = Spec;\n',
  );
  writeFileSync(
    join(dir, "cluster/spec.ts"),
    'export type { Endpoint } from "./impl.ts";\nexport interface Spec {}\n',
  );
  writeFileSync(
    join(dir, "cluster/impl.ts"),
    'import type { X } from "../runtime/types.ts";\nexport type Endpoint = X;\n',
  );
  writeFileSync(join(dir, "leaf.ts"), 'import type { X } from "./runtime/types.ts";\nexport type Y = X;\n');
  const circles = importCircles(importGraph(dir)).map((c) => c.map((f) => relative(dir, f)));
  assert.deepEqual(circles, [["cluster/impl.ts", "cluster/spec.ts", "runtime/types.ts"]]);
});
