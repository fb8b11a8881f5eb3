/**
 * Builds plugin components against wit/plugin.wit: TypeScript or JavaScript guests through
 * componentize-qjs (QuickJS; ~1.6 MB components, the fastest JS guests measured), WAT guests
 * through wasm-tools' parser and component encoder (a few KB; used for the tests' hostile guests).
 * After building, the component's imports and exports are checked against the world.
 */
import { readFile } from "node:fs/promises";
import { stripTypeScriptTypes } from "node:module";
import { fileURLToPath } from "node:url";
import {
  componentEmbed,
  componentNew,
  componentWit,
  parse,
} from "@bytecodealliance/jco-transpile/wasm-tools";

export const WIT_DIR = fileURLToPath(new URL("../../wit", import.meta.url));
export const WIT_FILE = `${WIT_DIR}/plugin.wit`;
export const WORLD = "plugin";

export async function buildWat(wat: string): Promise<Uint8Array> {
  const core = await parse(wat);
  const witSource = await readFile(WIT_FILE, "utf8");
  const embedded = await componentEmbed({ binary: core, witSource, world: WORLD });
  const component = await componentNew(embedded);
  await checkComponent(component);
  return component;
}

/** `source` is TypeScript when `typescript` is set (types are stripped: erasable syntax only). */
export async function buildJs(source: string, typescript: boolean): Promise<Uint8Array> {
  const js = typescript ? stripTypeScriptTypes(source, { mode: "strip" }) : source;
  const { componentize } = await import("componentize-qjs");
  const { component } = await componentize({
    witPath: WIT_DIR,
    jsSource: js,
    world: WORLD,
    stubWasi: true,
    sync: true,
  });
  const bytes = new Uint8Array(component);
  await checkComponent(bytes);
  return bytes;
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
