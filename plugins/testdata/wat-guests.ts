/**
 * Small guests written in WAT against the agw:plugin world, for tests and benchmarks: a few KB each,
 * built in milliseconds (plugins/sdk/build.ts buildWat). The canonical ABI by hand: on-request takes
 * one pointer (its flattened parameters exceed 16) and returns a pointer to the action.
 */

/**
 * Memory layout: a static action at 128, a header list at 64, strings at 16 and 32, a bump heap from 4096.
 * on-response continues; its flattened parameters differ by version (0.2.0's response has a body).
 */
function guest(onRequestBody: string, extra = "", version: "0.1.0" | "0.2.0" = "0.2.0"): string {
  const responseParams = version === "0.1.0" ? 7 : 10;
  return `(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-wat")
  (data (i32.const 32) "1")
  (data (i32.const 64) "\\10\\00\\00\\00\\05\\00\\00\\00\\20\\00\\00\\00\\01\\00\\00\\00")
  ;; action = mutate { set-headers: [("x-wat", "1")], remove-headers: [], path: none }
  (data (i32.const 128) "\\01\\00\\00\\00\\40\\00\\00\\00\\01\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00")
  ;; action = continue
  (data (i32.const 192) "\\00")
  ;; action = deny(403)
  (data (i32.const 224) "\\03\\00\\93\\01")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  ${extra}
  (func (export "on-request") (param i32) (result i32)
    (global.set $heap (i32.const 4096))
    ${onRequestBody})
  (func (export "on-response") (param ${"i32 ".repeat(responseParams).trim()}) (result i32)
    (i32.const 192))
)`;
}

export const WAT_GUESTS = {
  /** Adds `x-wat: 1` to the request. */
  addHeader: guest("(i32.const 128)"),
  /** Lets every request through unchanged. */
  pass: guest("(i32.const 192)"),
  /** Denies every request with 403. */
  deny: guest("(i32.const 224)"),
  /** Traps on every call. */
  trap: guest("unreachable"),
  /** Never returns. */
  loop: guest("(loop $forever (br $forever)) (i32.const 192)"),
  /** Traps when the request path is 6 bytes long (e.g. "/c/abc"), lets other requests through. */
  trapOnSixBytePath: guest(
    "(if (i32.eq (i32.load offset=20 (local.get 0)) (i32.const 6)) (then unreachable)) (i32.const 192)",
  ),
  /** Loops forever when the request path is 6 bytes long (e.g. "/s/abc"), lets other requests through. */
  loopOnSixBytePath: guest(
    "(if (i32.eq (i32.load offset=20 (local.get 0)) (i32.const 6)) (then (loop $forever (br $forever)))) (i32.const 192)",
  ),
  /** Grows its memory a MiB at a time, touching each new page, until growth fails; then traps (as malloc aborting). */
  growMemory: guest(
    `(loop $more
      (if (i32.lt_s (memory.grow (i32.const 16)) (i32.const 0)) (then unreachable))
      (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4)) (i32.const 1))
      (br $more))
    (i32.const 192)`,
  ),
} as const;

/** Guests of the frozen agw:plugin@0.1.0 (build with `buildWat(wat, "0.1.0")`): 0.1.0 keeps running. */
export const WAT_GUESTS_V010 = {
  /** Adds `x-wat: 1` to the request. */
  addHeader: guest("(i32.const 128)", "", "0.1.0"),
} as const;
