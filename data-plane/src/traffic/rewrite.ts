/**
 * Request rewriting (docs/traffic/rewrite.md): the path and Host sent upstream. Compiled once per
 * config; the engine calls `target` and `host` while it builds the upstream head.
 */
import type { RegexRewrite, RewritePolicy } from "@agw/core/gen/agw/v1/route_pb.js";
import { compileLinearRegex } from "@agw/core/regex";
import type { RequestRewrite, RewriteInput } from "../runtime/types.ts";

export type { RequestRewrite, RewriteInput };

/** Visible ASCII: what a request-target or Host may hold without breaking the request line. */
const VISIBLE = /^[\x21-\x7e]*$/;
const HOST_VALUE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?$/;

/**
 * `matchedPrefix` is the route's path prefix ("" when it does not match by prefix). Throws with a
 * message naming the bad field; the caller turns it into a NACK.
 */
export function compileRewrite(policy: RewritePolicy, matchedPrefix: string): RequestRewrite {
  const path = pathRewriter(policy, matchedPrefix);
  const h = policy.host;
  let host: RequestRewrite["host"];
  if (h.case === "hostValue") {
    if (!HOST_VALUE.test(h.value)) throw new Error(`invalid rewrite host "${h.value}"`);
    const value = h.value;
    host = () => value;
  } else if (h.case === "autoHost" && h.value) {
    // The port is left out when it is a scheme's default (80, 443), as clients send it.
    host = (_req, ep) => {
      const name = ep.host.includes(":") ? `[${ep.host}]` : ep.host;
      return ep.port === 80 || ep.port === 443 ? name : `${name}:${ep.port}`;
    };
  } else {
    host = (req) => req.rawHost;
  }
  if (path === null) return { target: (req) => req.originForm, host };
  return {
    target: (req) => {
      const p = path(req.path);
      return req.query === "" && !req.originForm.endsWith("?") ? p : `${p}?${req.query}`;
    },
    host,
  };
}

function pathRewriter(policy: RewritePolicy, matchedPrefix: string): ((path: string) => string) | null {
  const p = policy.path;
  if (p.case === "prefix") {
    if (matchedPrefix === "") throw new Error("a prefix rewrite needs a route that matches by path prefix");
    if (!VISIBLE.test(p.value) || !p.value.startsWith("/"))
      throw new Error(`invalid rewrite prefix "${p.value}"`);
    const replacement = p.value;
    const cut = matchedPrefix.length;
    return (path) => {
      if (!path.startsWith(matchedPrefix)) return path;
      const rest = path.slice(cut);
      // "/api" → "/" on "/api/x" must not give "//x".
      return replacement.endsWith("/") && rest.startsWith("/")
        ? replacement + rest.slice(1)
        : replacement + rest;
    };
  }
  if (p.case === "regex") return regexRewriter(p.value);
  return null;
}

function regexRewriter(r: RegexRewrite): (path: string) => string {
  if (!VISIBLE.test(r.substitution)) throw new Error("the regex rewrite substitution must be visible ASCII");
  let re: RegExp;
  try {
    re = compileLinearRegex(r.pattern, "g");
  } catch (e) {
    throw new Error(`invalid rewrite regex: ${(e as Error).message}`);
  }
  const substitution = r.substitution;
  return (path) => {
    const out = path.replace(re, substitution);
    return out.startsWith("/") ? out : `/${out}`;
  };
}
