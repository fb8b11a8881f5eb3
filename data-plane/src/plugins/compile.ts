/**
 * Component bytes → something the host can instantiate many times: jco transpiles the component to
 * an ES module plus core modules, the core modules are instrumented (fuel, memory cap) and compiled.
 * All of it happens once per digest and options, off the request path; the transpiled output is
 * cached on disk (transpiling a JS guest costs seconds of CPU), the compiled modules in memory.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { instrumentCoreModule } from "./instrument.ts";

/** Bump when the on-disk layout or the transpile/instrument options change. */
const CACHE_FORMAT = "agw-plugin-cache-3";

/** Host imports that may wait (on Redis, on the network): they suspend the guest through JSPI. */
export const ASYNC_IMPORTS: readonly string[] = [
  "agw:plugin/redis@0.1.0#get",
  "agw:plugin/redis@0.1.0#set",
  "agw:plugin/redis@0.1.0#incr",
  "agw:plugin/redis@0.1.0#pexpire",
  "agw:plugin/redis@0.1.0#eval-script",
  "agw:plugin/http-request@0.1.0#send",
];
const ASYNC_INTERFACES = ["agw:plugin/redis", "agw:plugin/http-request"];

export interface CompileOptions {
  readonly memoryMaxBytes: number;
  /** Directory for transpiled output; default $AGW_PLUGIN_CACHE or <tmpdir>/agw-plugin-cache. */
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
  /** Interfaces the component imports (without version), e.g. `agw:plugin/redis`. */
  readonly imports: readonly string[];
  /** Whether calls may suspend on an async import (the exports then return promises). */
  readonly async: boolean;
  instantiate(imports: ImportObject): GuestInstance;
}

type InstantiateFn = (
  getCoreModule: (name: string) => WebAssembly.Module,
  imports: ImportObject,
  instantiateCore: (module: WebAssembly.Module, imports?: WebAssembly.Imports) => WebAssembly.Instance,
) => GuestExports;

interface CacheMeta {
  format: string;
  imports: string[];
  async: boolean;
  modules: string[];
}

export function defaultCacheDir(): string {
  return process.env.AGW_PLUGIN_CACHE ?? join(tmpdir(), "agw-plugin-cache");
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
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

async function transpileToDir(bytes: Uint8Array, dir: string, options: CompileOptions): Promise<CacheMeta> {
  // jco is loaded by the first plugin compiled, not at start-up (~27 MiB RSS, ~170 ms).
  const { transpileBytes } = await import("@bytecodealliance/jco-transpile");
  const probe = await transpileBytes(bytes, { name: "component", instantiation: "sync", wasiShim: false });
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
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  const modules: string[] = [];
  for (const [name, file] of Object.entries(out.files)) {
    if (name.endsWith(".wasm")) {
      const { bytes: rewritten } = await instrumentCoreModule(file, options);
      await writeFile(join(tmp, name), rewritten);
      modules.push(name);
    } else if (name === "component.js") {
      await writeFile(join(tmp, "component.mjs"), withoutDebugLog(new TextDecoder().decode(file)));
    }
  }
  const meta: CacheMeta = { format: CACHE_FORMAT, imports: probe.imports, async: isAsync, modules };
  await writeFile(join(tmp, "meta.json"), JSON.stringify(meta));
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return meta;
}

async function readMeta(dir: string): Promise<CacheMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as CacheMeta;
    return meta.format === CACHE_FORMAT ? meta : undefined;
  } catch {
    return undefined;
  }
}

const compiled = new Map<string, Promise<CompiledComponent>>();

/** Compiles (or returns the cached compilation of) a component; the digest must be the bytes' sha256. */
export function compileComponent(bytes: Uint8Array, options: CompileOptions): Promise<CompiledComponent> {
  const digest = sha256Digest(bytes);
  const key = createHash("sha256")
    .update(`${CACHE_FORMAT}\n${digest}\n${options.memoryMaxBytes}`)
    .digest("hex")
    .slice(0, 32);
  let p = compiled.get(key);
  if (p === undefined) {
    p = load(bytes, digest, join(options.cacheDir ?? defaultCacheDir(), key), options);
    compiled.set(key, p);
    p.catch(() => compiled.delete(key));
  }
  return p;
}

async function load(
  bytes: Uint8Array,
  digest: string,
  dir: string,
  options: CompileOptions,
): Promise<CompiledComponent> {
  await mkdir(dirname(dir), { recursive: true });
  const meta = (await readMeta(dir)) ?? (await transpileToDir(bytes, dir, options));
  const present = new Set(await readdir(dir));
  const modules = new Map<string, WebAssembly.Module>();
  for (const name of meta.modules) {
    if (!present.has(name)) throw new Error(`plugin cache ${dir} is missing ${name}`);
    modules.set(name, await WebAssembly.compile(await readFile(join(dir, name))));
  }
  const mod = (await import(pathToFileURL(join(dir, "component.mjs")).href)) as {
    instantiate: InstantiateFn;
  };
  const getCoreModule = (name: string): WebAssembly.Module => {
    const m = modules.get(name);
    if (m === undefined) throw new Error(`component has no core module ${name}`);
    return m;
  };
  return {
    digest,
    imports: meta.imports,
    async: meta.async,
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
