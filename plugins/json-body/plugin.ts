/**
 * json-body: reads the request body (agw:plugin@0.2.0, `requestBody: true`) and lets a request
 * through only when its body is JSON the upstream can take: 415 for another content type (when
 * `requireJson`), 400 for a body that is not UTF-8 JSON or nests deeper than `maxDepth`, 422 when a
 * top-level field of `required` is missing. Requests without a body pass. A body over the plugin's
 * `bodyLimit` never reaches it: `overLimit: reject` answers 413 (the gateway does).
 *
 * Config: { "required": ["id"], "maxDepth": 32, "requireJson": true }
 */
import { get as getConfig } from "agw:plugin/config@0.2.0";

type Headers = [string, string][];

interface Config {
  required: string[];
  maxDepth: number;
  requireJson: boolean;
}

function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

function refuse(status: number, error: string, message: string) {
  return {
    tag: "respond",
    val: {
      status,
      headers: [["content-type", "application/json"]] as Headers,
      body: ascii(JSON.stringify({ error, message })),
    },
  };
}

/** UTF-8 → string; throws on invalid UTF-8. */
function utf8(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096)
    s += String.fromCharCode.apply(null, Array.from(bytes.subarray(i, i + 4096)));
  return decodeURIComponent(escape(s));
}

/** Deepest nesting of arrays and objects, counted on the text (strings skipped) before parsing it. */
function depth(text: string): number {
  let deepest = 0;
  let level = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") deepest = Math.max(deepest, ++level);
    else if (c === "}" || c === "]") level--;
  }
  return deepest;
}

export function onRequest(request: { method: string; headers: Headers; body?: Uint8Array | null }) {
  const raw = JSON.parse(getConfig()) as Partial<Config>;
  const cfg: Config = {
    required: (raw.required ?? []).map(String),
    maxDepth: Number(raw.maxDepth ?? 32),
    requireJson: raw.requireJson ?? true,
  };
  const body = request.body;
  if (body === undefined || body === null) throw new Error("json-body needs requestBody: true in its config");
  if (body.length === 0) return { tag: "continue" };
  const type = request.headers.find(([n]) => n === "content-type")?.[1] ?? "";
  if (!/^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i.test(type))
    return cfg.requireJson
      ? refuse(415, "unsupported_media_type", "expected application/json")
      : { tag: "continue" };
  let text: string;
  try {
    text = utf8(body);
  } catch {
    return refuse(400, "invalid_json", "the body is not UTF-8");
  }
  if (depth(text) > cfg.maxDepth) return refuse(400, "invalid_json", `nested deeper than ${cfg.maxDepth}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return refuse(400, "invalid_json", String((e as Error).message));
  }
  if (cfg.required.length > 0) {
    const obj =
      value !== null && typeof value === "object" && !Array.isArray(value) ? (value as object) : undefined;
    const missing = cfg.required.filter((f) => obj === undefined || !(f in obj));
    if (missing.length > 0) return refuse(422, "missing_fields", `missing: ${missing.join(", ")}`);
  }
  return { tag: "continue" };
}
