/**
 * YAML text → plain data, with every cost bounded by the input's size, so that no file can crash or
 * stall the process that reads it:
 * - the text is at most MAX_CONFIG_BYTES;
 * - nesting is at most MAX_NESTING levels, checked by a linear scan before the YAML parser (whose
 *   composer recurses once per level) sees the text;
 * - aliases and merge keys are expanded by our own walk, which charges every node and scalar
 *   character they add against MAX_ALIAS_EXPANSION: the limit is on the expanded SIZE, not on the
 *   number of aliases (an ordinary file may reuse an anchor as often as it likes; a billion-laughs file
 *   stops after a few million units of work);
 * - only JSON-like scalars are accepted (strings, finite numbers, booleans, null); YAML warnings
 *   (unknown tags) are errors; an alias cycle is an error; keys are own properties (`__proto__` is a
 *   key like any other).
 * Errors carry the offset of the offending node, for FILE:LINE messages.
 */
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  visit,
} from "yaml";

export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
export const MAX_NESTING = 64;
/** Nodes plus scalar characters that aliases and merge keys may add to a document. */
export const MAX_ALIAS_EXPANSION = 1_000_000;

export interface YamlProblem {
  /** 1-based line; 0 when the problem is not at a place in the text. */
  line: number;
  message: string;
}

export type YamlResult =
  | { ok: true; value: unknown; doc: Document; lines: LineCounter }
  | { ok: false; problems: YamlProblem[] };

class ExpansionError extends Error {
  readonly node: Node | undefined;
  constructor(message: string, node: Node | undefined) {
    super(message);
    this.node = node;
  }
}

/** 1-based line of a character offset. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/**
 * An upper bound on the nesting depth, from one pass over the characters: the block indentation
 * levels open on a line, its compact `- `/`? ` indicators, and open flow brackets. Quoted scalars,
 * comments and block scalars are skipped; a bracket inside a plain scalar of block context is text.
 * Returns the offset where the depth first exceeds `max`, or -1.
 */
export function nestingBeyond(text: string, max: number): number {
  const indents: number[] = [];
  let flow = 0;
  let i = 0;
  const n = text.length;
  let quote: '"' | "'" | undefined;
  /** Lines indented more than this belong to a block scalar (| or >); -1 when none is open. */
  let blockScalarAbove = -1;
  while (i < n) {
    // Start of a line.
    const lineStart = i;
    let col = 0;
    while (i + col < n && text[i + col] === " ") col++;
    const first = text[i + col];
    const blank = first === undefined || first === "\n" || first === "\r";
    if (blockScalarAbove >= 0 && (blank || col > blockScalarAbove)) {
      const end = text.indexOf("\n", i);
      i = end < 0 ? n : end + 1;
      continue;
    }
    blockScalarAbove = -1;
    let depth = 0;
    if (flow === 0 && quote === undefined && !blank && first !== "#") {
      while (indents.length > 0 && (indents[indents.length - 1] as number) > col) indents.pop();
      if (indents.length === 0 || (indents[indents.length - 1] as number) < col) indents.push(col);
      depth = indents.length;
    }
    i += col;
    let atNodeStart = true;
    /** Column of the node whose value may follow on this line (a key, or a `-`). */
    let owner = col;
    while (i < n && text[i] !== "\n") {
      const c = text[i] as string;
      if (quote !== undefined) {
        if (quote === '"' && c === "\\") i++;
        else if (c === quote) {
          if (quote === "'" && text[i + 1] === "'") i++;
          else {
            quote = undefined;
            atNodeStart = false;
          }
        }
        i++;
        continue;
      }
      const next = text[i + 1];
      const spaceNext = next === undefined || next === " " || next === "\t" || next === "\n" || next === "\r";
      if (c === "#" && (i === 0 || /\s/.test(text[i - 1] as string))) break;
      if (c === " " || c === "\t" || c === "\r") {
        i++;
        continue;
      }
      if (flow === 0 && atNodeStart && (c === "-" || c === "?") && spaceNext) {
        depth++;
        owner = i - lineStart;
      } else if (c === ":" && (spaceNext || flow > 0)) {
        atNodeStart = true;
      } else if (flow > 0 && c === ",") {
        atNodeStart = true;
      } else if ((c === "[" || c === "{") && (flow > 0 || atNodeStart)) {
        flow++;
        atNodeStart = true;
      } else if ((c === "]" || c === "}") && flow > 0) {
        flow--;
        atNodeStart = false;
      } else if (atNodeStart && (c === "&" || c === "!")) {
        while (i + 1 < n && !/[\s,[\]{}]/.test(text[i + 1] as string)) i++;
      } else if (atNodeStart && (c === '"' || c === "'")) {
        quote = c;
      } else if (flow === 0 && atNodeStart && (c === "|" || c === ">")) {
        blockScalarAbove = owner;
        break;
      } else {
        if (atNodeStart && flow === 0) owner = i - lineStart;
        atNodeStart = false;
      }
      if (depth + flow > max) return i;
      i++;
    }
    if (depth + flow > max) return i;
    const end = text.indexOf("\n", i);
    i = end < 0 ? n : end + 1;
  }
  return -1;
}

function defineKey(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Converts the document, expanding aliases and merge keys within the budget. */
function toPlain(doc: Document): unknown {
  // Aliases name the nearest preceding anchor: resolve them all in one pass in document order.
  const anchors = new Map<string, Node>();
  const targets = new Map<Node, Node | undefined>();
  visit(doc, {
    Node(_key, node) {
      if (isAlias(node)) targets.set(node, anchors.get(node.source));
      else if (node.anchor) anchors.set(node.anchor, node);
    },
  });
  let budget = MAX_ALIAS_EXPANSION;
  let expanding = 0;
  /** The outermost alias being expanded: where a budget error points. */
  let via: Node | undefined;
  const open = new Set<Node>();
  const charge = (units: number) => {
    if (expanding === 0) return;
    budget -= units;
    if (budget < 0)
      throw new ExpansionError(
        `YAML: aliases and merge keys expand this document beyond ${MAX_ALIAS_EXPANSION} nodes and characters (a "billion laughs" file?)`,
        via,
      );
  };
  const convert = (node: unknown, depth: number): unknown => {
    if (node === null || node === undefined) return null;
    if (depth > MAX_NESTING)
      throw new ExpansionError(`YAML: nested deeper than ${MAX_NESTING} levels`, node as Node);
    if (isAlias(node)) {
      const target = targets.get(node);
      if (target === undefined) throw new ExpansionError(`YAML: unknown alias *${node.source}`, node);
      if (open.has(target))
        throw new ExpansionError(`YAML: alias *${node.source} refers to a node that contains it`, node);
      if (expanding++ === 0) via = node;
      try {
        return convert(target, depth);
      } finally {
        expanding--;
      }
    }
    if (isScalar(node)) {
      const v = node.value;
      if (typeof v === "string") {
        charge(1 + v.length);
        return v;
      }
      charge(1);
      if (v === null || typeof v === "boolean") return v;
      if (typeof v === "number" && Number.isFinite(v)) return v;
      throw new ExpansionError(
        `YAML: unsupported value${node.tag ? ` (tag ${node.tag})` : ""}; use a string, a finite number, true/false or null`,
        node,
      );
    }
    open.add(node as Node);
    try {
      if (isSeq(node)) {
        charge(1);
        return node.items.map((item) => convert(item, depth + 1));
      }
      if (isMap(node)) {
        charge(1);
        const out: Record<string, unknown> = {};
        const merged: Array<Record<string, unknown>> = [];
        for (const pair of node.items) {
          if (!isPair(pair)) continue;
          const key = pair.key;
          if (isScalar(key) && typeof key.value === "symbol") {
            // `<<: *base` or `<<: [*a, *b]`: the listed maps' keys, where the map does not set them.
            const sources = isSeq(pair.value) ? pair.value.items : [pair.value];
            for (const source of sources) {
              const value = convert(source, depth + 1);
              if (value === null || typeof value !== "object" || Array.isArray(value))
                throw new ExpansionError("YAML: a merge key (<<) takes a map or a list of maps", key);
              merged.push(value as Record<string, unknown>);
            }
            continue;
          }
          const k = convert(key, depth + 1);
          if (k !== null && typeof k === "object")
            throw new ExpansionError("YAML: a key must be a scalar", key as Node);
          defineKey(out, String(k), convert(pair.value, depth + 1));
        }
        for (const source of merged)
          for (const [k, v] of Object.entries(source)) if (!Object.hasOwn(out, k)) defineKey(out, k, v);
        return out;
      }
    } finally {
      open.delete(node as Node);
    }
    throw new ExpansionError("YAML: unsupported node", undefined);
  };
  return convert(doc.contents, 0);
}

/** Parses YAML text into plain data within the bounds above; never throws. */
export function readYaml(text: string): YamlResult {
  if (text.length > MAX_CONFIG_BYTES)
    return {
      ok: false,
      problems: [{ line: 0, message: `larger than ${MAX_CONFIG_BYTES} bytes (${text.length})` }],
    };
  const deep = nestingBeyond(text, MAX_NESTING);
  if (deep >= 0)
    return {
      ok: false,
      problems: [{ line: lineAt(text, deep), message: `YAML: nested deeper than ${MAX_NESTING} levels` }],
    };
  const lines = new LineCounter();
  try {
    const doc = parseDocument(text, {
      lineCounter: lines,
      prettyErrors: false,
      uniqueKeys: true,
      merge: true,
    });
    const issues = [...doc.errors, ...doc.warnings];
    if (issues.length > 0)
      return {
        ok: false,
        problems: issues.map((e) => ({
          line: lines.linePos(e.pos[0]).line,
          message: `YAML: ${e.message.split("\n")[0]}`,
        })),
      };
    try {
      return { ok: true, value: toPlain(doc), doc, lines };
    } catch (e) {
      if (!(e instanceof ExpansionError)) throw e;
      const at = e.node?.range?.[0];
      return {
        ok: false,
        problems: [{ line: at === undefined ? 1 : lines.linePos(at).line, message: e.message }],
      };
    }
  } catch (e) {
    // The YAML library's own faults (e.g. a stack overflow it did not catch) end here, not the process.
    return { ok: false, problems: [{ line: 1, message: `YAML: ${(e as Error).message}` }] };
  }
}
