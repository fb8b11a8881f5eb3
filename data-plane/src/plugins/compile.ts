/**
 * Component bytes → something the host can instantiate many times: jco transpiles the component to
 * an ES module plus core modules, the core modules are instrumented (fuel, memory cap) and compiled.
 * All of it happens once per digest and options, off the request path; the transpiled output is
 * cached on disk (transpiling a JS guest costs seconds of CPU), the compiled modules in memory.
 *
 * The cache holds code the gateway runs, so it is trusted only as far as it is private: the cache
 * directory must be a real directory (not a symlink) owned by this process's user with no access for
 * group or others (0700); a directory that is not is refused and the component is transpiled in
 * memory instead. Every cached file is checked against the sha256 recorded when it was written, and
 * what is compiled and imported are the bytes that were checked (the JS through a data: URL), never a
 * second read of the path; a file that fails the check is a miss and the entry is rewritten.
 */
import { createHash } from "node:crypto";
import { lstat, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { componentDigest } from "@agw/core/xds/plugin-component";
import { instrumentCoreModule } from "./instrument.ts";

/** Bump when the on-disk layout or the transpile/instrument options change. */
const CACHE_FORMAT = "agw-plugin-cache-5";

/** The versions of the agw:plugin package the host serves (wit/plugin.wit, wit/v0.1.0/plugin.wit). */
export const CONTRACT_VERSIONS = ["0.1.0", "0.2.0"] as const;
export type ContractVersion = (typeof CONTRACT_VERSIONS)[number];

/** Host imports that may wait (on Redis, on the network): they suspend the guest through JSPI. */
export const ASYNC_IMPORTS: readonly string[] = CONTRACT_VERSIONS.flatMap((v) => [
  `agw:plugin/redis@${v}#get`,
  `agw:plugin/redis@${v}#set`,
  `agw:plugin/redis@${v}#incr`,
  `agw:plugin/redis@${v}#pexpire`,
  `agw:plugin/redis@${v}#eval-script`,
  `agw:plugin/http-request@${v}#send`,
]);
const ASYNC_INTERFACES = ["agw:plugin/redis", "agw:plugin/http-request"];

export interface CompileOptions {
  readonly memoryMaxBytes: number;
  /** Directory for transpiled output; default `defaultCacheDir()`. */
  readonly cacheDir?: string;
}

/** Host imports by interface name without version, e.g. `agw:plugin/log`. */
export type ImportObject = Record<string, Record<string, unknown>>;

export interface GuestExports {
  onRequest(request: unknown, context: unknown): unknown;
  onResponse(response: unknown, context: unknown): unknown;
}

export interface GuestInstance {
  readonly exports: GuestExports;
  /** The fuel globals of the instance's metered core modules. */
  readonly fuel: readonly WebAssembly.Global[];
}

export interface CompiledComponent {
  readonly digest: string;
  /** The agw:plugin version the component targets. */
  readonly version: ContractVersion;
  /** Interfaces the component imports (without version), e.g. `agw:plugin/redis`. */
  readonly imports: readonly string[];
  /** Whether calls may suspend on an async import (the exports then return promises). */
  readonly async: boolean;
  /** How the disk cache served this compilation: "hit", "written", or why it was not used. */
  readonly cache: string;
  instantiate(imports: ImportObject): GuestInstance;
}

type InstantiateFn = (
  getCoreModule: (name: string) => WebAssembly.Module,
  imports: ImportObject,
  instantiateCore: (module: WebAssembly.Module, imports?: WebAssembly.Imports) => WebAssembly.Instance,
) => GuestExports;

export interface CacheMeta {
  format: string;
  version: ContractVersion;
  imports: string[];
  async: boolean;
  /** Core module file names, in jco's naming. */
  modules: string[];
  /** sha256 (hex) of every file of the entry: the core modules and component.mjs. */
  files: Record<string, string>;
}

/** What a load works from: the metadata and the (checked) bytes of every file. */
export interface Transpiled {
  meta: CacheMeta;
  files: Map<string, Uint8Array>;
}

const JS_FILE = "component.mjs";

/** `$AGW_PLUGIN_CACHE`, else `$XDG_CACHE_HOME/agw/plugins`, else `~/.cache/agw/plugins`. */
export function defaultCacheDir(): string {
  const env = process.env;
  if (env.AGW_PLUGIN_CACHE) return env.AGW_PLUGIN_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "agw", "plugins");
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Creates `dir` (0700) if it is missing and returns undefined when it is private to this user, or
 * why it is not: a symlink, not a directory, another owner, or access for group or others.
 */
export async function privateDirProblem(dir: string): Promise<string | undefined> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await lstat(dir);
    if (st.isSymbolicLink()) return `${dir} is a symbolic link`;
    if (!st.isDirectory()) return `${dir} is not a directory`;
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) return `${dir} is owned by uid ${st.uid}, not ${uid}`;
    if ((st.mode & 0o077) !== 0)
      return `${dir} has mode ${(st.mode & 0o777).toString(8)}; it must be 700 (no access for group or others)`;
    return undefined;
  } catch (e) {
    return `${dir}: ${(e as Error).message}`;
  }
}

/**
 * jco's generated `_debugLog` reads `process.env.JCO_DEBUG` on every call (~20% of a small guest's
 * call time); the host never turns jco's debug output on, so it is compiled out.
 */
function withoutDebugLog(js: string): string {
  return js.replace(
    /const _debugLog = \(\.\.\.args\) => \{\n\s*if \(!globalThis\?\.process\?\.env\?\.JCO_DEBUG\) \{ return; \}\n\s*console\.debug\(\.\.\.args\);\n\s*\};/g,
    "const _debugLog = () => {};",
  );
}

/** Transpiles and instruments on the calling thread; the host calls it on a worker (transpileOffThread). */
export async function transpile(bytes: Uint8Array, options: CompileOptions): Promise<Transpiled> {
  // jco is loaded by the first plugin compiled, not at start-up (~27 MiB RSS, ~170 ms).
  const { transpileBytes } = await import("@bytecodealliance/jco-transpile");
  const { componentWit } = await import("@bytecodealliance/jco-transpile/wasm-tools");
  const probe = await transpileBytes(bytes, { name: "component", instantiation: "sync", wasiShim: false });
  const version = contractVersion(await componentWit(bytes));
  const isAsync = probe.imports.some((i) => ASYNC_INTERFACES.includes(i));
  const out = isAsync
    ? await transpileBytes(bytes, {
        name: "component",
        instantiation: "sync",
        wasiShim: false,
        asyncMode: "jspi",
        asyncImports: [...ASYNC_IMPORTS],
        asyncExports: ["on-request", "on-response"],
      })
    : probe;
  const files = new Map<string, Uint8Array>();
  const modules: string[] = [];
  for (const [name, file] of Object.entries(out.files)) {
    if (name.endsWith(".wasm")) {
      const { bytes: rewritten } = await instrumentCoreModule(file, options);
      files.set(name, rewritten);
      modules.push(name);
    } else if (name === "component.js") {
      files.set(JS_FILE, new TextEncoder().encode(withoutDebugLog(new TextDecoder().decode(file))));
    }
  }
  const hashes: Record<string, string> = {};
  for (const [name, b] of files) hashes[name] = sha256Hex(b);
  return {
    meta: { format: CACHE_FORMAT, version, imports: probe.imports, async: isAsync, modules, files: hashes },
    files,
  };
}

/**
 * The agw:plugin version a component's WIT names (its exports use the package's types, so every
 * guest names it); a component naming none, an unknown one or two versions is refused.
 */
export function contractVersion(wit: string): ContractVersion {
  const found = new Set(
    [
      ...wit.matchAll(
        /\bagw:plugin\/[a-z][a-z0-9-]*@(\d+\.\d+\.\d+(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)/g,
      ),
    ].map((m) => m[1]),
  );
  if (found.size === 0) throw new Error("the component does not target the agw:plugin world");
  if (found.size > 1) throw new Error(`the component mixes agw:plugin versions ${[...found].join(", ")}`);
  const v = [...found][0] as string;
  if (!(CONTRACT_VERSIONS as readonly string[]).includes(v))
    throw new Error(
      `the component targets agw:plugin@${v}; this host serves ${CONTRACT_VERSIONS.join(", ")}`,
    );
  return v as ContractVersion;
}

/** `transpile` on a worker thread (transpile-worker.ts): the event loop keeps serving meanwhile. */
function transpileOffThread(bytes: Uint8Array, options: CompileOptions): Promise<Transpiled> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./transpile-worker.ts", import.meta.url), {
      workerData: { bytes, memoryMaxBytes: options.memoryMaxBytes },
    });
    let done = false;
    worker.once("message", (m: { meta: CacheMeta; files: Array<[string, Uint8Array]> }) => {
      done = true;
      resolve({ meta: m.meta, files: new Map(m.files) });
    });
    worker.once("error", (e) => {
      done = true;
      reject(e);
    });
    worker.once("exit", (code) => {
      if (!done) reject(new Error(`the transpile worker exited with code ${code}`));
    });
  });
}

/** Writes an entry next to `dir` and renames it into place, so a reader never sees half of one. */
async function writeEntry(dir: string, t: Transpiled): Promise<void> {
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { mode: 0o700 });
  for (const [name, b] of t.files) await writeFile(join(tmp, name), b, { mode: 0o600, flag: "wx" });
  await writeFile(join(tmp, "meta.json"), JSON.stringify(t.meta), { mode: 0o600, flag: "wx" });
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
}

/** The entry in `dir` when every file it records is there with the recorded hash; else undefined. */
async function readEntry(dir: string): Promise<Transpiled | undefined> {
  let meta: CacheMeta;
  try {
    meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as CacheMeta;
  } catch {
    return undefined;
  }
  if (meta.format !== CACHE_FORMAT || typeof meta.files !== "object" || meta.files === null) return undefined;
  if (!CONTRACT_VERSIONS.includes(meta.version)) return undefined;
  const names = [...meta.modules, JS_FILE];
  const files = new Map<string, Uint8Array>();
  for (const name of names) {
    const expected = meta.files[name];
    if (typeof expected !== "string" || name.includes("/") || name.startsWith(".")) return undefined;
    let b: Uint8Array;
    try {
      b = new Uint8Array(await readFile(join(dir, name)));
    } catch {
      return undefined;
    }
    if (sha256Hex(b) !== expected) return undefined;
    files.set(name, b);
  }
  return { meta, files };
}

const compiled = new Map<string, Promise<CompiledComponent>>();

/** The name of a compilation's entry in the cache directory. */
export function cacheKey(digest: string, options: CompileOptions): string {
  return createHash("sha256")
    .update(`${CACHE_FORMAT}\n${digest}\n${options.memoryMaxBytes}`)
    .digest("hex")
    .slice(0, 32);
}

/** Compiles (or returns the cached compilation of) a component; the digest must be the bytes' sha256. */
export function compileComponent(bytes: Uint8Array, options: CompileOptions): Promise<CompiledComponent> {
  const digest = componentDigest(bytes);
  const key = cacheKey(digest, options);
  let p = compiled.get(key);
  if (p === undefined) {
    p = load(bytes, digest, options.cacheDir ?? defaultCacheDir(), key, options);
    compiled.set(key, p);
    p.catch(() => compiled.delete(key));
  }
  return p;
}

/** Forgets the in-memory compilations of a digest no config uses any more (the disk cache stays). */
export function forgetCompiled(digest: string, options: CompileOptions): void {
  compiled.delete(cacheKey(digest, options));
}

async function load(
  bytes: Uint8Array,
  digest: string,
  root: string,
  key: string,
  options: CompileOptions,
): Promise<CompiledComponent> {
  const refused = await privateDirProblem(root);
  const dir = join(root, key);
  let cache: string;
  let t = refused === undefined ? await readEntry(dir) : undefined;
  if (t !== undefined) cache = "hit";
  else {
    t = await transpileOffThread(bytes, options);
    if (refused !== undefined) cache = `not used: ${refused}`;
    else {
      try {
        await writeEntry(dir, t);
        cache = "written";
      } catch (e) {
        cache = `not written: ${(e as Error).message}`;
      }
    }
  }
  const { meta, files } = t;
  const modules = new Map<string, WebAssembly.Module>();
  for (const name of meta.modules)
    modules.set(name, await WebAssembly.compile(files.get(name) as Uint8Array));
  // The checked bytes themselves are imported: nothing can swap the file between check and load.
  // sourceURL names the module in stack traces (instead of the whole data: URL).
  const source = Buffer.concat([
    files.get(JS_FILE) as Uint8Array,
    Buffer.from(`\n//# sourceURL=agw-plugin/${digest}/component.mjs\n`),
  ]);
  const js = source.toString("base64");
  const mod = (await import(`data:text/javascript;base64,${js}`)) as { instantiate: InstantiateFn };
  const getCoreModule = (name: string): WebAssembly.Module => {
    const m = modules.get(name);
    if (m === undefined) throw new Error(`component has no core module ${name}`);
    return m;
  };
  return {
    digest,
    version: meta.version,
    imports: meta.imports,
    async: meta.async,
    cache,
    instantiate(imports) {
      const fuel: WebAssembly.Global[] = [];
      const exports = mod.instantiate(getCoreModule, imports, (module, coreImports) => {
        const instance = new WebAssembly.Instance(module, coreImports);
        const g = instance.exports.agw_fuel;
        if (g instanceof WebAssembly.Global) fuel.push(g);
        return instance;
      });
      return { exports, fuel };
    },
  };
}
