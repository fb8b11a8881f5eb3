/**
 * The one redaction every dump and log goes through: the admin server applies it to every JSON
 * answer (control plane and data plane /config_dump, /dataplanes, the dashboard's state), and the
 * logger to every argument of every log call (log.ts). What it hides is hidden everywhere.
 *
 * - PEM material: any field whose name ends in `Pem`/`_pem` (certificates, keys, CA bundles), and
 *   any private key block found inside a string.
 * - Plugin configs: every value under a field named `config` (a plugin's or a route's plugin
 *   config: API keys, tokens, HMAC secrets); the field names stay, so the shape can be read.
 * - Credentials in URLs: the password (or a lone user, often a token) of any `scheme://user:pass@`,
 *   e.g. `redis://:s3cret@redis:6379` → `redis://:[redacted]@redis:6379`.
 */

export const REDACTED = "[redacted]";

const PEM_FIELD = /(Pem|_pem)$/;
const PRIVATE_KEY_BLOCK = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g;
/** scheme://userinfo@ ; userinfo without "/", "@" or whitespace. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/@:?#]*)(?::([^\s/@?#]*))?@/gi;

/** A string with private key blocks and URL credentials hidden. */
export function redactString(text: string): string {
  if (!text.includes("@") && !text.includes("PRIVATE KEY")) return text;
  return text
    .replace(PRIVATE_KEY_BLOCK, REDACTED)
    .replace(URL_USERINFO, (_m, scheme: string, user: string, password: string | undefined) =>
      password !== undefined ? `${scheme}${user}:${REDACTED}@` : `${scheme}${REDACTED}@`,
    );
}

function hideLeaves(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(hideLeaves);
  if (value !== null && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, hideLeaves(v)]));
  return value === undefined ? undefined : REDACTED;
}

/** A deep copy of `value` (JSON-like) with secrets hidden; the input is not changed. */
export function redact<T>(value: T): T {
  return walk(value, undefined) as T;
}

function walk(value: unknown, key: string | undefined): unknown {
  if (typeof value === "string") {
    if (key !== undefined && PEM_FIELD.test(key)) return value === "" ? "" : REDACTED;
    return redactString(value);
  }
  if (value === null || typeof value !== "object") return value;
  if (key === "config" && !Array.isArray(value)) return hideLeaves(value);
  if (Array.isArray(value)) return value.map((v) => walk(v, undefined));
  if (value instanceof Error) {
    const copy = new Error(redactString(value.message));
    copy.name = value.name;
    if (value.stack !== undefined) copy.stack = redactString(value.stack);
    for (const [k, v] of Object.entries(value)) (copy as unknown as Record<string, unknown>)[k] = walk(v, k);
    return copy;
  }
  if (ArrayBuffer.isView(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
}
