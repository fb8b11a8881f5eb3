/**
 * Builds plugin components against wit/plugin.wit: TypeScript or JavaScript guests through
 * componentize-qjs (QuickJS; ~1.6 MB components, the fastest JS guests measured), WAT guests
 * through wasm-tools' parser and component encoder (a few KB; used for the tests' hostile guests).
 * After building, the component's imports and exports are checked against the world.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { stripTypeScriptTypes } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  componentEmbed,
  componentNew,
  componentWit,
  parse,
} from "@bytecodealliance/jco-transpile/wasm-tools";

export const WIT_DIR = fileURLToPath(new URL("../../wit", import.meta.url));
export const WIT_FILE = `${WIT_DIR}/plugin.wit`;
/** The frozen 0.1.0 contract, for building the guests that show 0.1.0 still runs. */
export const WIT_FILE_V010 = `${WIT_DIR}/v0.1.0/plugin.wit`;
export const WORLD = "plugin";

/** A WAT guest as a component of agw:plugin@0.2.0, or of 0.1.0 with `version: "0.1.0"`. */
export async function buildWat(wat: string, version: "0.1.0" | "0.2.0" = "0.2.0"): Promise<Uint8Array> {
  const core = await parse(wat);
  const witSource = await readFile(version === "0.1.0" ? WIT_FILE_V010 : WIT_FILE, "utf8");
  const embedded = await componentEmbed({ binary: core, witSource, world: WORLD });
  const component = await componentNew(embedded);
  await checkComponent(component);
  return component;
}

/**
 * The component's entry module: it calls the guest's exports (a guest without `onResponse` gets one
 * that continues: the host calls it only when the plugin's config sets `onResponse: true`) and, when one throws, logs the
 * exception (message and stack) before rethrowing. QuickJS reports an uncaught exception by
 * writing to WASI stderr, which a plugin does not have, so without this the host saw only
 * `wasm trap: unreachable`. The host keeps a line at level error that starts with `uncaught: `
 * as the failed call's reason (wit/plugin.wit, interface log).
 */
const ENTRY = `import * as guest from "./guest.js";
import { log } from "agw:plugin/log@0.2.0";
function report(e) {
  try {
    const stack = e && typeof e.stack === "string" ? e.stack : "";
    log("error", "uncaught: " + String(e) + (stack ? "\\n" + stack : ""));
  } catch (_) {}
}
export function onRequest(request, context) {
  try { return guest.onRequest(request, context); } catch (e) { report(e); throw e; }
}
export function onResponse(response, context) {
  if (typeof guest.onResponse !== "function") return { tag: "continue" };
  try { return guest.onResponse(response, context); } catch (e) { report(e); throw e; }
}
`;

/** `source` is TypeScript when `typescript` is set (types are stripped: erasable syntax only). */
export async function buildJs(source: string, typescript: boolean): Promise<Uint8Array> {
  const js = typescript ? stripTypeScriptTypes(source, { mode: "strip" }) : source;
  const { componentize } = await import("componentize-qjs");
  const dir = await mkdtemp(join(tmpdir(), "agw-plugin-build-"));
  try {
    await writeFile(join(dir, "guest.js"), js);
    await writeFile(join(dir, "entry.js"), ENTRY);
    const { component } = await componentize({
      witPath: WIT_DIR,
      jsSource: ENTRY,
      jsPath: join(dir, "entry.js"),
      moduleRoot: dir,
      world: WORLD,
      stubWasi: true,
      sync: true,
    });
    const bytes = new Uint8Array(component);
    await checkComponent(bytes);
    return bytes;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Fails unless the component exports the world's functions and imports nothing outside agw:plugin. */
export async function checkComponent(component: Uint8Array): Promise<void> {
  const wit = await componentWit(component);
  for (const name of ["on-request", "on-response"])
    if (!new RegExp(`export ${name}: func`).test(wit))
      throw new Error(`the component does not export ${name}`);
  const foreign = [...wit.matchAll(/^\s*import ([^;\s]+);/gm)]
    .map((m) => m[1] as string)
    .filter((i) => !i.startsWith("agw:plugin/"));
  if (foreign.length > 0)
    throw new Error(`the component imports interfaces the host does not provide: ${foreign.join(", ")}`);
}
