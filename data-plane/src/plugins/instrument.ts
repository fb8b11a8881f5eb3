/**
 * Rewrites a guest's core WebAssembly modules before they are compiled, so the host can stop a guest
 * that runs away without leaving the event loop's thread:
 *
 * - fuel: every loop iteration decrements an exported global `agw_fuel` and traps at zero. The host
 *   refills it before each call, so a call can run at most `fuel` loop iterations; an endless loop
 *   becomes a trap (as wasmtime's fuel does). Measured: a few percent of a QuickJS guest's call time,
 *   against ~80 µs per call for a `vm` timeout or a worker round trip per call.
 * - memory: each memory a module defines gets a maximum, so `memory.grow` fails past the cap
 *   (V8 cannot cap wasm memory otherwise: worker resourceLimits do not cover it).
 *
 * The rewrite goes through wasm-tools' printer and parser (jco's build of them): the printed text has
 * one instruction per line, so a loop header is a line that starts with `loop`.
 */

export const FUEL_EXPORT = "agw_fuel";

const WASM_PAGE = 65536;

const LOOP_LINE = /^(\s*)loop\b/;
/** `(memory (;0;) 17)`, `(memory (;0;) 17 256)`; shared and 64-bit memories are left alone (refused below). */
const MEMORY_DEF = /^ {2}\(memory (\(;\d+;\) )?(\d+)(?: (\d+))?\)$/;

export interface InstrumentOptions {
  /** Largest linear memory a module may grow to, in bytes. */
  readonly memoryMaxBytes: number;
}

export interface InstrumentResult {
  readonly bytes: Uint8Array;
  /** Whether the module now exports the fuel global (modules without loops are left as they were). */
  readonly metered: boolean;
}

export async function instrumentCoreModule(
  bytes: Uint8Array,
  options: InstrumentOptions,
): Promise<InstrumentResult> {
  const { parse, print } = await import("@bytecodealliance/jco-transpile/wasm-tools");
  const text = await print(bytes);
  const lines = text.split("\n");
  const maxPages = Math.max(1, Math.floor(options.memoryMaxBytes / WASM_PAGE));
  let loops = 0;
  let memories = 0;
  const out: string[] = [];
  for (const line of lines) {
    const mem = MEMORY_DEF.exec(line);
    if (mem) {
      memories++;
      const initial = Number(mem[2]);
      const declaredMax = mem[3] === undefined ? Number.POSITIVE_INFINITY : Number(mem[3]);
      if (initial > maxPages)
        throw new Error(`the guest needs ${initial} memory pages at start, more than the cap of ${maxPages}`);
      out.push(`  (memory ${mem[1] ?? ""}${initial} ${Math.min(declaredMax, maxPages)})`);
      continue;
    }
    if (/^ {2}\(memory /.test(line)) throw new Error(`unsupported memory definition: ${line.trim()}`);
    out.push(line);
    const loop = LOOP_LINE.exec(line);
    if (loop) {
      loops++;
      const i = `${loop[1]}  `;
      out.push(
        `${i}global.get $agw_fuel`,
        `${i}i32.eqz`,
        `${i}if`,
        `${i}  unreachable`,
        `${i}end`,
        `${i}global.get $agw_fuel`,
        `${i}i32.const 1`,
        `${i}i32.sub`,
        `${i}global.set $agw_fuel`,
      );
    }
  }
  if (loops === 0 && memories === 0) return { bytes, metered: false };
  if (loops > 0) {
    // The module's closing parenthesis is its last non-empty line; new fields go before it.
    let end = out.length - 1;
    while (end > 0 && (out[end] as string).trim() === "") end--;
    out.splice(
      end,
      0,
      `  (global $agw_fuel (mut i32) i32.const 0)`,
      `  (export "${FUEL_EXPORT}" (global $agw_fuel))`,
    );
  }
  return { bytes: await parse(out.join("\n")), metered: loops > 0 };
}
