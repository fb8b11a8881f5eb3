/**
 * Builds a C guest into a component: `wit-bindgen c` generates bindings from wit/, Debian's clang
 * compiles them with the guest for wasm32-wasi (wasi-libc for malloc; the guest imports nothing from
 * WASI), and wasm-tools' component encoder (jco's build of it) turns the core module into a component
 * using the component type wit-bindgen embeds.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { componentNew } from "@bytecodealliance/jco-transpile/wasm-tools";
import { checkComponent, WIT_DIR, WORLD } from "../sdk/build.ts";

const BUILD_TOOL = fileURLToPath(new URL("../../scripts/wasm/build-wit-bindgen.sh", import.meta.url));

/** The cached wit-bindgen binary (built from crates.io on first use). */
export function witBindgen(): string {
  return execFileSync("bash", [BUILD_TOOL], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  }).trim();
}

export async function buildCGuest(source: string): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), "agw-c-guest-"));
  try {
    const gen = join(dir, "gen");
    execFileSync(witBindgen(), ["c", WIT_DIR, "--world", WORLD, "--out-dir", gen], { stdio: "ignore" });
    const core = join(dir, "core.wasm");
    execFileSync("clang", [
      "--target=wasm32-wasi",
      "-O2",
      "-mexec-model=reactor",
      `-I${gen}`,
      join(gen, `${WORLD}.c`),
      join(gen, `${WORLD}_component_type.o`),
      source,
      "-o",
      core,
    ]);
    const component = await componentNew(readFileSync(core));
    await checkComponent(component);
    return component;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
