/**
 * Import circles among a tree's TypeScript sources (tests left out): every strongly connected group
 * of files that import each other, directly or around a loop, counting `import type` and re-exports
 * (a contract that imports its implementers is a circle even when only types cross). The imports
 * are read by TypeScript's own preProcessFile, so nothing is run.
 * Usage: node scripts/import-circles.ts [DIR ...]   (default data-plane/src); exit 1 if any.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

/** The relative imports of each non-test .ts file under `dir`, as absolute paths within it. */
export function importGraph(dir: string): Map<string, string[]> {
  const root = resolve(dir);
  const files = readdirSync(root, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.endsWith(".d.ts"))
    .map((f) => join(root, f));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
    graph.set(
      file,
      importedFiles
        .map((i) => i.fileName)
        .filter((name) => name.startsWith("."))
        .map((name) => resolve(dirname(file), name))
        .filter((target) => target.startsWith(root) && existsSync(target)),
    );
  }
  return graph;
}

/** Each circle: a group of two or more files (or one importing itself), by Tarjan's algorithm. */
export function importCircles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1 || (graph.get(v) ?? []).includes(v)) circles.push(group.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return circles;
}

if (import.meta.main) {
  const dirs = process.argv.slice(2);
  let found = 0;
  for (const dir of dirs.length > 0 ? dirs : ["data-plane/src"]) {
    for (const circle of importCircles(importGraph(dir))) {
      found++;
      console.log(`circle: ${circle.map((f) => relative(process.cwd(), f)).join(" ⇄ ")}`);
    }
  }
  if (found === 0) console.log("no import circle");
  process.exit(found > 0 ? 1 : 0);
}
