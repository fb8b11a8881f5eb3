/**
 * Request path normalisation before routing (docs/routing.md, "Path normalisation"): what the router
 * matches is what the upstream receives, so `/%61dmin`, `/./admin`, `//admin` and `/public/../admin`
 * cannot slip past a `/admin` route. Envoy's normalize_path + merge_slashes + path_with_escaped_slashes_action
 * and nginx's merge_slashes are the model. One function for HTTP/1.1 and HTTP/2 alike.
 */

import type { PathPolicy } from "../runtime/types.ts";

export type { PathPolicy };

/** Secure by default: every trick is normalised or refused. */
export const DEFAULT_PATH_POLICY: PathPolicy = {
  normalize: true,
  mergeSlashes: true,
  escapedSlashes: "reject",
};

/** A path the policy refuses: answered 400 bad_request with this message. */
export class PathRejection {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

const NUL = new PathRejection("the path contains an encoded NUL (%00)");
const BAD_ESCAPE = new PathRejection("the path contains an invalid percent-encoding");
const ESCAPED_SLASH = new PathRejection("the path contains an escaped slash (%2F or %5C) or a backslash");

const HEX_DIGITS = "0123456789ABCDEF";
/**
 * What only the slow path can deal with: a percent-encoding, a backslash, an empty segment or a dot
 * segment ("/./", "/../", at the end too). One native regex scan: cheaper than a charCodeAt loop
 * over the parser's sliced strings (bench/path.ts), and "/.well-known" stays on the fast path.
 */
const NEEDS_WORK = /[%\\]|\/\/|\/\.\.?(?:\/|$)/;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 §2.3). */
function unreserved(v: number): boolean {
  return (
    (v >= 97 && v <= 122) ||
    (v >= 65 && v <= 90) ||
    (v >= 48 && v <= 57) ||
    v === 45 ||
    v === 46 ||
    v === 95 ||
    v === 126
  );
}

/**
 * The path (without its query) as the router and the upstream will see it, or why it is refused.
 * `path` starts with "/". The common, already-normal path costs one scan and is returned as is.
 */
export function normalizePath(path: string, policy: PathPolicy): string | PathRejection {
  if (!NEEDS_WORK.test(path)) return path;
  return slowNormalize(path, policy);
}

function slowNormalize(path: string, policy: PathPolicy): string | PathRejection {
  const n = path.length;
  const segments: string[] = [];
  let seg = "";
  // The leading "/" opens the first segment.
  for (let i = 1; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c === 47) {
      segments.push(seg);
      seg = "";
      continue;
    }
    if (c === 92) {
      if (policy.escapedSlashes === "reject") return ESCAPED_SLASH;
      if (policy.escapedSlashes === "decode") {
        segments.push(seg);
        seg = "";
      } else seg += "\\";
      continue;
    }
    if (c !== 37) {
      seg += path[i];
      continue;
    }
    const hi = i + 2 < n ? hexValue(path.charCodeAt(i + 1)) : -1;
    const lo = hi >= 0 ? hexValue(path.charCodeAt(i + 2)) : -1;
    if (lo < 0) return BAD_ESCAPE;
    const v = hi * 16 + lo;
    i += 2;
    if (v === 0) return NUL;
    if (v === 0x2f || v === 0x5c) {
      if (policy.escapedSlashes === "reject") return ESCAPED_SLASH;
      if (policy.escapedSlashes === "decode") {
        segments.push(seg);
        seg = "";
        continue;
      }
    } else if (policy.normalize && unreserved(v)) {
      seg += String.fromCharCode(v);
      continue;
    }
    // Kept encoded; upper-case hex when normalising (RFC 3986 §6.2.2.1), else as received.
    seg += policy.normalize ? `%${HEX_DIGITS[hi]}${HEX_DIGITS[lo]}` : path.slice(i - 2, i + 1);
  }
  segments.push(seg);

  const out: string[] = [];
  const last = segments.length - 1;
  for (let k = 0; k <= last; k++) {
    const s = segments[k] as string;
    if (s === "" && k < last && policy.mergeSlashes) continue;
    if (policy.normalize && (s === "." || s === "..")) {
      // RFC 3986 §5.2.4: "." is dropped, ".." drops the segment before it (never above the root); a
      // path ending in either keeps its trailing slash.
      if (s === ".." && out.length > 0) out.pop();
      if (k === last) out.push("");
      continue;
    }
    out.push(s);
  }
  return `/${out.join("/")}`;
}
