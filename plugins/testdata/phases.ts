/**
 * A guest for tests of both phases and of bodies (agw:plugin@0.2.0). Its config picks what it does:
 *
 *   name        its name in `x-order` (each on-response appends it: the order the phase ran in)
 *   request     "body"  → answer 200 with what it saw of the request body (x-body-seen: none|some,
 *                         x-body-len, x-body-fnv: FNV-1a 32 in hex)
 *               "mark"  → add `x-req-<name>: 1` and go on
 *               "verify"→ answer 200 with x-verified (calls that returned true) and x-verify-error
 *               else    → go on
 *   response    "mark"   → add `x-resp-<name>: 1`, `x-order`, and `x-resp-names` (the header names it saw)
 *               "body"   → like mark, plus x-resp-body-seen / -len / -fnv of the response body
 *               "status" → set the status to `status`
 *               "replace"→ replace the response: 203, `x-replaced-by: <name>`, body "replaced by <name>"
 *               "framing"→ try to set content-length (refused by the host)
 *               "throw"  → throw; "loop" → never return
 */
import { get as getConfig } from "agw:plugin/config@0.2.0";
import { verify } from "agw:plugin/crypto@0.2.0";

type Headers = [string, string][];

interface Config {
  name?: string;
  request?: string;
  response?: string;
  status?: number;
  /** request "verify": `verifies` crypto.verify calls of `signature` (hex) over "data" with the Ed25519 `key` (JWK). */
  verifies?: number;
  key?: string;
  signature?: string;
}

function fnv(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i] as number;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16);
}

function seen(prefix: string, body: Uint8Array | null | undefined): Headers {
  if (body === undefined || body === null) return [[`${prefix}-seen`, "none"]];
  return [
    [`${prefix}-seen`, "some"],
    [`${prefix}-len`, String(body.length)],
    [`${prefix}-fnv`, fnv(body)],
  ];
}

function text(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

export function onRequest(request: { headers: Headers; body?: Uint8Array }) {
  const cfg = JSON.parse(getConfig()) as Config;
  const name = cfg.name ?? "p";
  if (cfg.request === "body")
    return {
      tag: "respond",
      val: { status: 200, headers: seen("x-body", request.body), body: text("seen") },
    };
  if (cfg.request === "verify") {
    const sig = new Uint8Array((cfg.signature ?? "").length / 2);
    for (let i = 0; i < sig.length; i++) sig[i] = parseInt((cfg.signature ?? "").slice(2 * i, 2 * i + 2), 16);
    let verified = 0;
    let error = "";
    try {
      for (let i = 0; i < (cfg.verifies ?? 1); i++)
        if (verify("ed25519", { tag: "jwk", val: cfg.key ?? "" }, text("data"), sig)) verified++;
    } catch (e) {
      error = String((e as { payload?: unknown }).payload ?? e);
    }
    const headers: Headers = [
      ["x-verified", String(verified)],
      ["x-verify-error", error],
    ];
    return { tag: "respond", val: { status: 200, headers, body: text("") } };
  }
  if (cfg.request === "mark")
    return {
      tag: "mutate",
      val: { setHeaders: [[`x-req-${name}`, "1"]], removeHeaders: [], path: undefined },
    };
  return { tag: "continue" };
}

export function onResponse(response: { status: number; headers: Headers; body?: Uint8Array }) {
  const cfg = JSON.parse(getConfig()) as Config;
  const name = cfg.name ?? "p";
  const mode = cfg.response ?? "mark";
  if (mode === "throw") throw new Error(`${name} failed on purpose`);
  if (mode === "loop") for (;;) {}
  if (mode === "replace")
    return {
      tag: "respond",
      val: { status: 203, headers: [["x-replaced-by", name]], body: text(`replaced by ${name}`) },
    };
  if (mode === "status")
    return { tag: "mutate", val: { status: cfg.status, setHeaders: [], removeHeaders: [] } };
  if (mode === "framing")
    return {
      tag: "mutate",
      val: { status: undefined, setHeaders: [["content-length", "1"]], removeHeaders: [] },
    };
  const order = response.headers.find(([n]) => n === "x-order")?.[1];
  const set: Headers = [
    [`x-resp-${name}`, "1"],
    ["x-order", order === undefined ? name : `${order},${name}`],
    ["x-resp-names", response.headers.map(([n]) => n).join(",")],
  ];
  if (mode === "body") set.push(...seen("x-resp-body", response.body));
  return { tag: "mutate", val: { status: undefined, setHeaders: set, removeHeaders: [] } };
}
