/**
 * Regular expressions from config (route path, header and query matches, regex rewrites) run in
 * linear time, as RE2 guarantees for Envoy: a route's pattern is chosen by whoever writes routes (a
 * namespace tenant on Kubernetes) and its input by anyone on the internet, so a pattern such as
 * `/(a+)+` must not let a 35-character path hold the event loop for seconds.
 *
 * The engine is V8's own linear-time engine (an NFA simulation, RE2's approach), in its
 * fall-back mode: a match runs on the usual backtracking engine until it has backtracked
 * BACKTRACKS_BEFORE_FALLBACK times, then is run again on the linear engine. Typical route regexes
 * keep the backtracking engine's speed, and a hostile input costs at most that many backtracks plus a
 * linear pass. The fall-back only exists for patterns the linear engine can run, so a pattern is
 * accepted only if it compiles with the `l` (linear) flag: backreferences, lookahead and counted
 * repetitions too large to unroll are refused here, at validation, by the one function below that
 * the config schema, the Kubernetes translator and the data plane's build all call.
 *
 * Measured (bench/regex.ts, bench/RESULTS.md), CPU per match of four typical route regexes and of
 * `^(?:/(a+)+)$` against "/" + 35 × "a" + "!":
 *   backtracking (before)     75–90 ns       attack: seconds (doubles with each "a"; 24 a's: 7 s)
 *   V8 linear, this mode      75–90 ns       attack: ~0.1 ms (10,000 backtracks, then linear)
 *   V8 linear, `l` always     0.8–3.5 µs     attack: 0.03 ms
 *   re2js (pure JS RE2 port)  0.3–1.4 µs     attack: 0.2 ms
 *   re2-wasm                  2.7–5.6 µs     attack: 0.3 ms
 *   re2 (native binding)      needs a C++ build of RE2 + Abseil at install (no prebuilt binary is
 *                             reachable here): minutes of CI per fresh machine, for no gain over the above.
 *
 * The flags are process-wide: setting them when this module loads covers the worker threads of a
 * data plane started with several workers too (each worker imports this module anyway).
 */
import { setFlagsFromString } from "node:v8";

/** Backtracks one match may make before it is rerun on the linear engine (~0.1 ms of CPU). */
export const BACKTRACKS_BEFORE_FALLBACK = 10_000;

setFlagsFromString("--enable-experimental-regexp-engine");
setFlagsFromString("--enable-experimental-regexp-engine-on-excessive-backtracks");
setFlagsFromString(`--regexp-backtracks-before-fallback=${BACKTRACKS_BEFORE_FALLBACK}`);

/** Why the pattern cannot be used (not a valid regex, or not runnable in linear time); undefined when it can. */
export function linearRegexError(source: string, flags = ""): string | undefined {
  try {
    new RegExp(source, flags);
  } catch (e) {
    return `invalid regex: ${(e as Error).message}`;
  }
  try {
    new RegExp(source, `${flags}l`);
  } catch {
    return `regex /${source}/ cannot run in linear time (no backreferences, lookahead, (?i:) or counts above 16)`;
  }
  return undefined;
}

/**
 * Compiles a config regex to run in linear time; throws an Error with linearRegexError's message
 * when it cannot. Every regex that comes from config is compiled here, never with `new RegExp`.
 */
export function compileLinearRegex(source: string, flags = ""): RegExp {
  const error = linearRegexError(source, flags);
  if (error !== undefined) throw new Error(error);
  return new RegExp(source, flags);
}
