/**
 * api-key: lets a request through only with a known key in a header (default `x-api-key`).
 * Config: { "keys": ["k1", ...], "header": "x-api-key", "forward": false }. The key header is removed
 * before the upstream sees it unless `forward` is true. Refused: 401 with a JSON error.
 */
import { get as getConfig } from "agw:plugin/config@0.2.0";

interface ApiKeyConfig {
  keys: string[];
  header: string;
  forward: boolean;
}

let lastJson = "";
let config: ApiKeyConfig = { keys: [], header: "x-api-key", forward: false };

function currentConfig(): ApiKeyConfig {
  const json = getConfig();
  if (json !== lastJson) {
    const raw = JSON.parse(json) as Partial<ApiKeyConfig>;
    config = {
      keys: Array.isArray(raw.keys) ? raw.keys.map(String) : [],
      header: String(raw.header ?? "x-api-key").toLowerCase(),
      forward: raw.forward === true,
    };
    lastJson = json;
  }
  return config;
}

function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0x7f;
  return out;
}

const REFUSED = ascii('{"error":"invalid_api_key","message":"a valid API key is required"}');

export function onRequest(request: { headers: [string, string][] }) {
  const cfg = currentConfig();
  let key: string | undefined;
  for (const [name, value] of request.headers) if (name === cfg.header) key = value;
  if (key !== undefined && cfg.keys.includes(key)) {
    if (cfg.forward) return { tag: "continue" };
    return { tag: "mutate", val: { setHeaders: [], removeHeaders: [cfg.header], path: undefined } };
  }
  return {
    tag: "respond",
    val: {
      status: 401,
      headers: [
        ["content-type", "application/json"],
        ["www-authenticate", `ApiKey header="${cfg.header}"`],
      ],
      body: REFUSED,
    },
  };
}

export function onResponse() {
  return { tag: "continue" };
}
