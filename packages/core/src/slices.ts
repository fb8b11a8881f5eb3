/**
 * Long builds in slices. Building a config of 20,000 routes is seconds of CPU (snapshot encoding in
 * the control plane, decoding and compiling in the data plane); run in one go on the event loop that
 * also proxies requests, it stalled `agw run`'s requests for 6.6 s. A build is written once, as a
 * generator that yields between units of work (a route, a resource), and is run either to the end at
 * once (`runToEnd`: tests, one-off conversions) or in slices of a few milliseconds with the event loop
 * free in between (`runSliced`: whenever a process may be serving).
 */
import { setImmediate as nextTurn } from "node:timers/promises";

/** Work done per slice before the event loop gets a turn. */
export const SLICE_MS = 8;

export type Steps<T> = Generator<void, T, void>;

/** Runs every step now. */
export function runToEnd<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Runs the steps in slices of about `sliceMs`, letting I/O and timers run between slices. */
export async function runSliced<T>(steps: Steps<T>, sliceMs = SLICE_MS): Promise<T> {
  let deadline = performance.now() + sliceMs;
  for (let n = 1; ; n++) {
    const r = steps.next();
    if (r.done) return r.value;
    // The clock is read every 16 steps: a step is a few microseconds, a clock read ~50 ns.
    if ((n & 15) === 0 && performance.now() >= deadline) {
      await nextTurn();
      deadline = performance.now() + sliceMs;
    }
  }
}
