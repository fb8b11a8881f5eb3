/**
 * response-headers: sets and removes headers of the upstream's responses in the response_filter
 * phase (agw:plugin@0.2.0 on-response), e.g. security headers and dropping what leaks the stack.
 * Needs `onResponse: true` in the plugin's config.yaml entry. Framing headers (content-length,
 * transfer-encoding, ...) cannot be set or removed: the gateway refuses such an action.
 *
 * Config: { "set": { "strict-transport-security": "max-age=31536000", "x-content-type-options": "nosniff" },
 *           "remove": ["server", "x-powered-by"],
 *           "statuses": [500, 502] (only responses with these statuses; default all) }
 */
import { get as getConfig } from "agw:plugin/config@0.2.0";

type Headers = [string, string][];

interface Config {
  set: Headers;
  remove: string[];
  statuses: number[];
}

let lastJson = "";
let config: Config = { set: [], remove: [], statuses: [] };

function currentConfig(): Config {
  const json = getConfig();
  if (json !== lastJson) {
    const raw = JSON.parse(json) as {
      set?: Record<string, unknown>;
      remove?: unknown[];
      statuses?: unknown[];
    };
    config = {
      set: Object.entries(raw.set ?? {}).map(([name, value]) => [name.toLowerCase(), String(value)]),
      remove: (raw.remove ?? []).map((n) => String(n).toLowerCase()),
      statuses: (raw.statuses ?? []).map(Number),
    };
    lastJson = json;
  }
  return config;
}

export function onRequest() {
  return { tag: "continue" };
}

export function onResponse(response: { status: number; headers: Headers }) {
  const cfg = currentConfig();
  if (cfg.statuses.length > 0 && !cfg.statuses.includes(response.status)) return { tag: "continue" };
  return { tag: "mutate", val: { status: undefined, setHeaders: cfg.set, removeHeaders: cfg.remove } };
}
