/**
 * Reads config.yaml into a validated GatewayConfig. Every error names file, line and path, e.g.
 * `config.yaml:14 listeners[0].routes[2].match.path.regex: invalid regex: ...`, and all errors are
 * collected rather than stopping at the first.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Document, isNode, LineCounter, parseDocument } from "yaml";
import { configSchema, type GatewayConfig } from "./schema.ts";
import { semanticErrors } from "./semantic.ts";

export type ConfigPath = ReadonlyArray<string | number>;

export class ConfigError {
  readonly file: string;
  readonly line: number;
  readonly path: string;
  readonly message: string;

  constructor(file: string, line: number, path: ConfigPath, message: string) {
    this.file = file;
    this.line = line;
    this.path = formatPath(path);
    this.message = message;
  }

  toString(): string {
    const where = this.line > 0 ? `${this.file}:${this.line}` : this.file;
    return this.path ? `${where} ${this.path}: ${this.message}` : `${where}: ${this.message}`;
  }
}

export type LoadResult =
  | {
      ok: true;
      config: GatewayConfig;
      secretFiles: string[];
      /** Plugin components read for their digest: watched like secret files, so a rebuild reloads. */
      pluginFiles: string[];
    }
  | { ok: false; errors: ConfigError[] };

/** Reads a secret's PEM file (absolute path); throws with the OS error. */
export type PemReader = (path: string) => string;

export function formatPath(path: ConfigPath): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${part}` : part;
  }
  return out;
}

/** Line of the deepest node that exists along `path` (the key itself when the value is missing). */
function lineOf(doc: Document, counter: LineCounter, path: ConfigPath): number {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth), true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
  }
  return 1;
}

/**
 * `readPem`, when given, resolves `{ file }` secret sources (relative to `file`'s directory) into
 * `pem`; without it they are left unread.
 */
export function parseConfig(text: string, file: string, readPem?: PemReader): LoadResult {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => {
        const line = counter.linePos(e.pos[0]).line;
        return new ConfigError(file, line, [], `YAML: ${e.message.split("\n")[0]}`);
      }),
    };
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      errors: parsed.error.issues.map((issue) => {
        const path = issue.path.map((p) => (typeof p === "symbol" ? String(p) : p));
        const target = issue.code === "unrecognized_keys" && issue.keys[0] ? [...path, issue.keys[0]] : path;
        return new ConfigError(file, lineOf(doc, counter, target), path, issue.message);
      }),
    };
  }
  const semantic = semanticErrors(parsed.data);
  if (semantic.length > 0) {
    return {
      ok: false,
      errors: semantic.map((e) => new ConfigError(file, lineOf(doc, counter, e.path), e.path, e.message)),
    };
  }
  // Like secret files, plugin components sit beside config.yaml: relative to it, not to the cwd.
  for (const plugin of parsed.data.plugins ?? []) {
    if (!plugin.source.startsWith("file://") && !isAbsolute(plugin.source))
      plugin.source = resolve(dirname(resolve(file)), plugin.source);
  }
  const secretFiles: string[] = [];
  const pluginFiles: string[] = [];
  if (readPem) {
    // A component without a pinned digest gets the digest of the file as it is now, so a rebuilt
    // .wasm is a changed config (new digest → data planes load it); a missing file is left to the
    // data planes, which refuse a plugin without a digest.
    for (const plugin of parsed.data.plugins ?? []) {
      const path = plugin.source.startsWith("file://") ? fileURLToPath(plugin.source) : plugin.source;
      pluginFiles.push(path);
      if (plugin.digest !== undefined) continue;
      try {
        plugin.digest = `sha256:${createHash("sha256").update(readFileSync(path)).digest("hex")}`;
      } catch {
        // reported by the data planes (no digest)
      }
    }
    const errors: ConfigError[] = [];
    (parsed.data.secrets ?? []).forEach((secret, i) => {
      for (const part of ["certificate", "key", "ca"] as const) {
        const source = secret[part];
        if (source?.file === undefined) continue;
        const path = resolve(dirname(file), source.file);
        try {
          source.pem = readPem(path);
          secretFiles.push(path);
        } catch (e) {
          const at = ["secrets", i, part, "file"];
          // The OS error names the path; its message never contains file content.
          errors.push(new ConfigError(file, lineOf(doc, counter, at), at, (e as Error).message));
        }
      }
    });
    if (errors.length > 0) return { ok: false, errors };
  }
  return { ok: true, config: parsed.data, secretFiles, pluginFiles };
}

export async function loadConfigFile(file: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    return { ok: false, errors: [new ConfigError(file, 0, [], (e as Error).message)] };
  }
  return parseConfig(text, file, (path) => readFileSync(path, "utf8"));
}
