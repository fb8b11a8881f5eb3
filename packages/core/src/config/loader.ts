/**
 * Reads config.yaml into a validated GatewayConfig. Every error names file, line and path, e.g.
 * `config.yaml:14 listeners[0].routes[2].match.path.regex: invalid regex: ...`, and all errors are
 * collected rather than stopping at the first.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Document, LineCounter } from "yaml";
import { isNode } from "yaml";
import { parseHtpasswd } from "../htpasswd.ts";
import { checkKeyPair, PemError, parseCertificates } from "../pem.ts";
import { componentDigest, isConfigMapSource } from "../xds/plugin-component.ts";
import { configSchema, type GatewayConfig } from "./schema.ts";
import { type InvalidNames, semanticErrors } from "./semantic.ts";
import { MAX_CONFIG_BYTES, readYaml } from "./yaml.ts";

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

/** Named resources: an error inside one sets that element aside, so that the rest is still checked. */
function resourceOf(path: ConfigPath): ConfigPath | undefined {
  if (path[0] === "listeners" && typeof path[1] === "number")
    return path[2] === "routes" && typeof path[3] === "number" ? path.slice(0, 4) : path.slice(0, 2);
  if (
    (path[0] === "clusters" || path[0] === "secrets" || path[0] === "plugins") &&
    typeof path[1] === "number"
  )
    return path.slice(0, 2);
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function copyRecord(
  from: Record<string, unknown>,
  skip: ReadonlySet<string> = new Set(),
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(from))
    if (!skip.has(k))
      Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
  return out;
}

interface Pruned {
  config: unknown;
  invalid: InvalidNames;
  /** A path in the pruned config → the same element's path in the file. */
  original(path: ConfigPath): ConfigPath;
}

/**
 * The document without the elements (routes, listeners, clusters, secrets, plugins) or top-level keys
 * that the schema rejected, so that the semantic checks can run on everything else. Undefined when the
 * document itself is not a map.
 */
function pruneInvalid(raw: unknown, issuePaths: readonly ConfigPath[]): Pruned | undefined {
  if (!isRecord(raw)) return undefined;
  const dropTop = new Set<string>();
  const dropItems = new Map<string, Set<number>>();
  for (const path of issuePaths) {
    const resource = resourceOf(path);
    if (resource) {
      const key = resource.slice(0, -1).join(".");
      const set = dropItems.get(key) ?? new Set<number>();
      set.add(resource[resource.length - 1] as number);
      dropItems.set(key, set);
    } else if (typeof path[0] === "string") dropTop.add(path[0]);
    else return undefined;
  }
  const out = copyRecord(raw, dropTop);
  const indexMaps = new Map<string, number[]>();
  const invalid: InvalidNames = {};
  const filter = (list: unknown, dropKey: string, mapKey: string, names?: Set<string>): unknown => {
    if (!Array.isArray(list)) return list;
    const drop = dropItems.get(dropKey);
    const index: number[] = [];
    const kept: unknown[] = [];
    list.forEach((item, i) => {
      if (drop?.has(i)) {
        if (names && isRecord(item) && typeof item.name === "string") names.add(item.name);
        return;
      }
      index.push(i);
      kept.push(item);
    });
    indexMaps.set(mapKey, index);
    return kept;
  };
  for (const kind of ["clusters", "secrets", "plugins"] as const) {
    const names = new Set<string>();
    if (dropTop.has(kind)) invalid[kind] = "all";
    else if (kind in out) {
      out[kind] = filter(out[kind], kind, kind, names);
      invalid[kind] = names;
    }
  }
  if (Array.isArray(out.listeners)) {
    const listeners = filter(out.listeners, "listeners", "listeners") as unknown[];
    const index = indexMaps.get("listeners") ?? [];
    out.listeners = listeners.map((listener, ni) => {
      const oi = index[ni] ?? ni;
      if (!isRecord(listener) || !dropItems.has(`listeners.${oi}.routes`)) return listener;
      const copy = copyRecord(listener);
      copy.routes = filter(listener.routes, `listeners.${oi}.routes`, `listeners.${ni}.routes`);
      return copy;
    });
  }
  const original = (path: ConfigPath): ConfigPath => {
    const out = [...path];
    const [kind, i] = path;
    if (typeof kind !== "string" || typeof i !== "number") return out;
    out[1] = indexMaps.get(kind)?.[i] ?? i;
    if (kind === "listeners" && path[2] === "routes" && typeof path[3] === "number")
      out[3] = indexMaps.get(`listeners.${i}.routes`)?.[path[3]] ?? path[3];
    return out;
  };
  return { config: out, invalid, original };
}

/**
 * `readPem`, when given, resolves `{ file }` secret sources (relative to `file`'s directory) into
 * `pem` and checks them (a certificate's key must match it); without it they are left unread.
 * Never throws: whatever the text, the result is a config or FILE:LINE errors. A schema error does
 * not hide the semantic errors of the rest of the document: the elements the schema rejects are set
 * aside and everything else is checked too.
 */
export function parseConfig(text: string, file: string, readPem?: PemReader): LoadResult {
  try {
    return parseChecked(text, file, readPem);
  } catch (e) {
    return { ok: false, errors: [new ConfigError(file, 1, [], `internal error: ${(e as Error).message}`)] };
  }
}

function parseChecked(text: string, file: string, readPem?: PemReader): LoadResult {
  const yaml = readYaml(text);
  if (!yaml.ok)
    return { ok: false, errors: yaml.problems.map((p) => new ConfigError(file, p.line, [], p.message)) };
  const { doc, lines: counter } = yaml;
  const raw = yaml.value ?? {};
  const errors: ConfigError[] = [];
  const at = (path: ConfigPath) => lineOf(doc, counter, path);
  let config: GatewayConfig | undefined;
  let original = (path: ConfigPath) => path;
  let invalid: InvalidNames = {};
  const parsed = configSchema.safeParse(raw);
  if (parsed.success) config = parsed.data;
  else {
    const paths: ConfigPath[] = [];
    for (const issue of parsed.error.issues) {
      const path = issue.path.map((p) => (typeof p === "symbol" ? String(p) : p));
      const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
      const target = keys[0] ? [...path, keys[0]] : path;
      errors.push(new ConfigError(file, at(target), path, issue.message));
      if (keys.length > 0) for (const k of keys) paths.push([...path, k]);
      else paths.push(path);
    }
    const pruned = pruneInvalid(raw, paths);
    const again = pruned && configSchema.safeParse(pruned.config);
    if (pruned && again?.success) {
      config = again.data;
      original = pruned.original;
      invalid = pruned.invalid;
    }
  }
  if (config === undefined) return { ok: false, errors };
  for (const e of semanticErrors(config, invalid)) {
    const path = original(e.path);
    errors.push(new ConfigError(file, at(path), path, e.message));
  }
  // Like secret files, plugin components sit beside config.yaml: relative to it, not to the cwd.
  for (const plugin of config.plugins ?? []) {
    if (isConfigMapSource(plugin.source)) continue;
    if (!plugin.source.startsWith("file://") && !isAbsolute(plugin.source))
      plugin.source = resolve(dirname(resolve(file)), plugin.source);
  }
  const secretFiles: string[] = [];
  const pluginFiles: string[] = [];
  if (readPem) {
    // A component without a pinned digest gets the digest of the file as it is now, so a rebuilt
    // .wasm is a changed config (new digest → data planes load it); a missing file is left to the
    // data planes, which refuse a plugin without a digest.
    for (const plugin of config.plugins ?? []) {
      if (isConfigMapSource(plugin.source)) continue;
      const path = plugin.source.startsWith("file://") ? fileURLToPath(plugin.source) : plugin.source;
      pluginFiles.push(path);
      if (plugin.digest !== undefined) continue;
      try {
        plugin.digest = componentDigest(readFileSync(path));
      } catch {
        // reported by the data planes (no digest)
      }
    }
    (config.secrets ?? []).forEach((secret, i) => {
      const si = original(["secrets", i])[1] as number;
      let readable = true;
      for (const part of ["certificate", "key", "ca"] as const) {
        const source = secret[part];
        if (source?.file === undefined) continue;
        const path = resolve(dirname(file), source.file);
        try {
          source.pem = readPem(path);
          secretFiles.push(path);
        } catch (e) {
          readable = false;
          const where = ["secrets", si, part, "file"];
          // The OS error names the path; its message never contains file content.
          errors.push(new ConfigError(file, at(where), where, (e as Error).message));
        }
      }
      const htpasswd = secret.htpasswd;
      if (htpasswd?.file !== undefined) {
        const path = resolve(dirname(file), htpasswd.file);
        try {
          htpasswd.text = readPem(path);
          secretFiles.push(path);
        } catch (e) {
          readable = false;
          const where = ["secrets", si, "htpasswd", "file"];
          errors.push(new ConfigError(file, at(where), where, (e as Error).message));
        }
      }
      if (!readable) return;
      if (htpasswd?.text !== undefined)
        try {
          parseHtpasswd(htpasswd.text);
        } catch (e) {
          // The message names the line and the user, never a hash.
          const where = ["secrets", si, "htpasswd"];
          errors.push(new ConfigError(file, at(where), where, (e as Error).message));
        }
      try {
        if (secret.certificate?.pem !== undefined && secret.key?.pem !== undefined)
          checkKeyPair(secret.certificate.pem, secret.key.pem);
        else if (secret.ca?.pem !== undefined) parseCertificates(secret.ca.pem);
      } catch (e) {
        if (!(e instanceof PemError)) throw e;
        const part = e.part === "key" ? "key" : secret.ca !== undefined ? "ca" : "certificate";
        const where = ["secrets", si, part];
        errors.push(new ConfigError(file, at(where), where, e.message));
      }
    });
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, config, secretFiles, pluginFiles };
}

/** PEM files are small; a larger one (or a device that never ends) is refused, not read whole. */
export const MAX_PEM_BYTES = 1024 * 1024;

/** Reads at most `max` bytes of a file as UTF-8; throws when it holds more (e.g. /dev/zero). */
export function readFileBounded(path: string, max: number): string {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(Math.min(max + 1, 64 * 1024));
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      total += n;
      if (total > max) throw new Error(`${path}: larger than ${max} bytes; not read`);
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return Buffer.concat(chunks).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

export async function loadConfigFile(file: string): Promise<LoadResult> {
  let text: string;
  try {
    // A file too large to be a config is refused before it is read whole.
    text = readFileBounded(file, MAX_CONFIG_BYTES);
  } catch (e) {
    return { ok: false, errors: [new ConfigError(file, 0, [], (e as Error).message)] };
  }
  return parseConfig(text, file, (path) => readFileBounded(path, MAX_PEM_BYTES));
}
