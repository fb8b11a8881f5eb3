/**
 * Answers a route gives without an upstream (docs/traffic/): redirects, direct responses and CORS
 * preflights. Compiled once per config; `reply` runs right after routing, before plugins.
 */
import type { CorsPolicy, DirectResponse, Redirect } from "@agw/core/gen/agw/v1/route_pb.js";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type {
  LocalReply,
  LocalRequest,
  LocalResponder,
  RequestView,
  ResponseHeaderSink,
} from "../runtime/types.ts";

export type { LocalReply, LocalRequest, ResponseHeaderSink };

const EMPTY = new Uint8Array(0);
const VISIBLE = /^[\x21-\x7e]*$/;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)$/;

export class LocalAnswers implements LocalResponder {
  private readonly cors: Cors | null;
  private readonly fixed: ((req: LocalRequest, secure: boolean) => LocalReply) | null;

  constructor(cors: Cors | null, fixed: ((req: LocalRequest, secure: boolean) => LocalReply) | null) {
    this.cors = cors;
    this.fixed = fixed;
  }

  /**
   * A CORS preflight the route answers itself: browsers send no credentials with one, so the route's
   * authentication lets it through (Envoy runs its CORS filter before authentication too).
   */
  isPreflight(req: RequestView): boolean {
    return (
      this.cors !== null &&
      req.method === "OPTIONS" &&
      req.header("origin") !== undefined &&
      req.header("access-control-request-method") !== undefined
    );
  }

  /**
   * The local answer to `req`, or undefined to proxy it; `sink` (the request's traffic state, on
   * HTTP/1.1 and HTTP/2 alike) gets the CORS fields of a proxied response to a cross-origin request.
   */
  reply(req: LocalRequest, secure: boolean, sink: ResponseHeaderSink): LocalReply | undefined {
    const cors = this.cors;
    let corsHeaders: Array<[string, string]> = [];
    if (cors !== null) {
      const preflight = cors.preflight(req);
      if (preflight !== undefined) return preflight;
      corsHeaders = cors.actualHeaders(req);
    }
    if (this.fixed === null) {
      if (corsHeaders.length > 0) sink.responseFields = corsHeaders;
      return undefined;
    }
    const r = this.fixed(req, secure);
    return corsHeaders.length === 0 ? r : { ...r, headers: [...r.headers, ...corsHeaders] };
  }
}

export function compileDirectResponse(d: DirectResponse): (req: LocalRequest, secure: boolean) => LocalReply {
  if (d.status < 200 || d.status > 599) throw new Error(`direct response status ${d.status} out of range`);
  if (!/^[\t\x20-\x7e]*$/.test(d.contentType)) throw new Error("invalid direct response content type");
  const reply: LocalReply = {
    status: d.status,
    headers: d.contentType !== "" ? [["content-type", d.contentType]] : [],
    body: Buffer.from(d.body, "utf8"),
  };
  return () => reply;
}

/** `matchedPrefix`: the route's path prefix ("" when it does not match by prefix). */
export function compileRedirect(
  r: Redirect,
  matchedPrefix: string,
): (req: LocalRequest, secure: boolean) => LocalReply {
  const status = r.status === 0 ? 301 : r.status;
  if (!REDIRECT_STATUSES.has(status))
    throw new Error(`redirect status ${status} is not 301, 302, 303, 307 or 308`);
  if (r.scheme !== "" && r.scheme !== "http" && r.scheme !== "https")
    throw new Error(`redirect scheme "${r.scheme}" is not http or https`);
  if (r.host !== "" && !HOST.test(r.host)) throw new Error(`invalid redirect host "${r.host}"`);
  if (r.port > 65535) throw new Error(`redirect port ${r.port} out of range`);
  const p = r.path;
  if (p.case !== undefined && (!p.value.startsWith("/") || !VISIBLE.test(p.value)))
    throw new Error(`invalid redirect path "${p.value}"`);
  if (p.case === "prefix" && matchedPrefix === "")
    throw new Error("a prefix redirect needs a route that matches by path prefix");
  const path: (req: LocalRequest) => string =
    p.case === "pathValue"
      ? () => p.value
      : p.case === "prefix"
        ? (req) =>
            (req.path.startsWith(matchedPrefix)
              ? p.value + req.path.slice(matchedPrefix.length)
              : req.path
            ).replace(/^\/\//, "/")
        : (req) => req.path;
  return (req, secure) => {
    const from = secure ? "https" : "http";
    const scheme = r.scheme !== "" ? r.scheme : from;
    const host = r.host !== "" ? r.host : hostOf(req.rawHost);
    // The request's port is kept only when neither the scheme nor the host changes.
    let port = r.port !== 0 ? r.port : scheme === from && r.host === "" ? portOf(req.rawHost) : 0;
    if (port === (scheme === "https" ? 443 : 80)) port = 0;
    const query = r.stripQuery || req.query === "" ? "" : `?${req.query}`;
    const location = `${scheme}://${host}${port !== 0 ? `:${port}` : ""}${path(req)}${query}`;
    return { status, headers: [["location", location]], body: EMPTY };
  };
}

function hostOf(rawHost: string): string {
  if (rawHost.startsWith("[")) return rawHost.slice(0, rawHost.indexOf("]") + 1);
  const colon = rawHost.indexOf(":");
  return colon < 0 ? rawHost : rawHost.slice(0, colon);
}

function portOf(rawHost: string): number {
  const end = rawHost.startsWith("[") ? rawHost.indexOf("]") + 1 : 0;
  const colon = rawHost.indexOf(":", end);
  return colon < 0 ? 0 : Number(rawHost.slice(colon + 1)) || 0;
}

/** CORS (Fetch standard §3.2): preflights answered here, allowed origins get headers on responses. */
export class Cors {
  private readonly anyOrigin: boolean;
  private readonly origins: ReadonlySet<string>;
  private readonly methods: string;
  private readonly headers: string;
  private readonly expose: string;
  private readonly credentials: boolean;
  private readonly maxAgeSeconds: number;

  constructor(p: CorsPolicy) {
    if (p.allowOrigins.length === 0) throw new Error("cors needs allowOrigins");
    for (const value of [...p.allowOrigins, ...p.allowMethods, ...p.allowHeaders, ...p.exposeHeaders])
      if (!VISIBLE.test(value) || value.includes(",")) throw new Error(`invalid cors value "${value}"`);
    this.anyOrigin = p.allowOrigins.includes("*");
    this.origins = new Set(p.allowOrigins.map((o) => o.toLowerCase()));
    this.methods = (p.allowMethods.length > 0 ? p.allowMethods : ["GET", "HEAD", "POST"]).join(", ");
    this.headers = p.allowHeaders.join(", ");
    this.expose = p.exposeHeaders.join(", ");
    this.credentials = p.allowCredentials;
    this.maxAgeSeconds = p.maxAge ? Math.floor(durationMs(p.maxAge) / 1000) : 0;
  }

  private allowed(origin: string): boolean {
    return this.anyOrigin || this.origins.has(origin.toLowerCase());
  }

  /** With credentials the origin is echoed: browsers refuse "*" on a credentialed response. */
  private originHeaders(origin: string): Array<[string, string]> {
    if (this.anyOrigin && !this.credentials) return [["access-control-allow-origin", "*"]];
    const h: Array<[string, string]> = [
      ["access-control-allow-origin", origin],
      ["vary", "origin"],
    ];
    if (this.credentials) h.push(["access-control-allow-credentials", "true"]);
    return h;
  }

  /** The answer to a preflight (OPTIONS with Origin and Access-Control-Request-Method), else undefined. */
  preflight(req: RequestView): LocalReply | undefined {
    if (req.method !== "OPTIONS") return undefined;
    const origin = req.header("origin");
    const method = req.header("access-control-request-method");
    if (origin === undefined || method === undefined) return undefined;
    if (!this.allowed(origin)) return { status: 403, headers: [], body: EMPTY };
    const h = this.originHeaders(origin);
    h.push(["access-control-allow-methods", this.methods]);
    const asked = req.header("access-control-request-headers");
    const allowHeaders = this.headers !== "" ? this.headers : (asked ?? "");
    if (allowHeaders !== "") h.push(["access-control-allow-headers", allowHeaders]);
    if (this.maxAgeSeconds > 0) h.push(["access-control-max-age", String(this.maxAgeSeconds)]);
    return { status: 204, headers: h, body: EMPTY };
  }

  /** Headers for the response to an actual cross-origin request; none when the origin is not allowed. */
  actualHeaders(req: RequestView): Array<[string, string]> {
    const origin = req.header("origin");
    if (origin === undefined || !this.allowed(origin)) return [];
    const h = this.originHeaders(origin);
    if (this.expose !== "") h.push(["access-control-expose-headers", this.expose]);
    return h;
  }
}
