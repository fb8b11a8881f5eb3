/**
 * The one admin HTTP server (data plane, control plane and its dashboard, eBPF agent metrics). Reads
 * are GET, anything that changes state is POST. Every request passes `refusal()` first:
 * - the client: only local (loopback) clients are answered, unless a token is set: then a remote
 *   client that presents it (`Authorization: Bearer TOKEN`, or `?token=TOKEN` for a browser) is
 *   answered too (`allowRemote`: everyone, for read-only metrics);
 * - DNS rebinding: the Host header must be an IP address, `localhost`, the listen address, or a name
 *   the operator allowed (`allowedHosts`, `--admin-allow-host`);
 * - cross-site requests from a browser (`Origin` of another host, `Sec-Fetch-Site: cross-site` or
 *   `same-site`) are refused, except a plain navigation to a page;
 * - CSRF: a POST needs a request a web page cannot send without a CORS preflight (which is never
 *   granted): the `X-AGW-Admin` header, or the token in `Authorization: Bearer`.
 */
import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import { type AddressInfo, isIP } from "node:net";
import { redact } from "./redact.ts";

export interface AdminReply {
  status?: number;
  /** A string is sent as is (text/plain unless `contentType` says otherwise); anything else as JSON. */
  body: unknown;
  contentType?: string;
}

export type AdminHandler = (url: URL) => AdminReply | Promise<AdminReply>;

/** A bare handler answers GET/HEAD; `{ post }` answers POST only. */
export type AdminRoutes = Record<string, AdminHandler | { readonly post: AdminHandler }>;

export interface AdminOptions {
  /** Lets remote clients in when they present it; without it, only loopback clients are answered. */
  token?: string | undefined;
  /** Answers every client (read-only metrics endpoints meant to be scraped, e.g. the eBPF agent's). */
  allowRemote?: boolean;
  /**
   * Host header names answered besides IP addresses, `localhost` and the listen address (a name an
   * operator reaches the admin by, e.g. through a tunnel); lower case, without port.
   */
  allowedHosts?: readonly string[] | undefined;
}

/** The request header that makes a mutation non-simple (a web page cannot send it cross-origin). */
export const ADMIN_MUTATION_HEADER = "x-agw-admin";

export interface AdminServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return a === "::1" || a.startsWith("127.");
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function bearer(req: http.IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  return auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
}

function tokenMatches(expected: string, req: http.IncomingMessage, url: URL): boolean {
  return sameToken(bearer(req) ?? url.searchParams.get("token") ?? "", expected);
}

/** The host name of a Host header or an authority ("[::1]:9901" → "::1"), lower case; "" when malformed. */
export function hostName(authority: string): string {
  const text = authority.trim().toLowerCase();
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    return end > 0 ? text.slice(1, end) : "";
  }
  const colon = text.indexOf(":");
  const name = colon < 0 ? text : text.slice(0, colon);
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/**
 * Whether a Host header may be answered. IP literals cannot be rebound (a page's origin is the address
 * itself), `localhost` and `*.localhost` never leave the machine; any other name must be listed.
 */
export function hostAllowed(
  host: string | undefined,
  listenHost: string,
  allowed: readonly string[],
): boolean {
  if (host === undefined) return true; // HTTP/1.0 without Host: not a browser
  const name = hostName(host);
  if (name === "") return false;
  if (isIP(name) !== 0) return true;
  if (name === "localhost" || name.endsWith(".localhost")) return true;
  if (name === hostName(listenHost)) return true;
  return allowed.some((a) => hostName(a) === name);
}

/** Why a browser's cross-site request is refused, or undefined. */
function crossSite(req: http.IncomingMessage): string | undefined {
  const site = req.headers["sec-fetch-site"];
  const navigation =
    (req.method === "GET" || req.method === "HEAD") && req.headers["sec-fetch-mode"] === "navigate";
  if ((site === "cross-site" || site === "same-site") && !navigation)
    return `a ${site} request (Sec-Fetch-Site) from a web page`;
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  let originHost: string;
  try {
    originHost = new URL(origin).host;
  } catch {
    return `a request from the opaque origin "${origin}"`;
  }
  if (originHost.toLowerCase() !== (req.headers.host ?? "").toLowerCase())
    return `a cross-origin request from ${origin}`;
  return undefined;
}

export async function startAdminServer(
  host: string,
  port: number,
  routes: AdminRoutes,
  options: AdminOptions = {},
): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://admin");
    const send = (reply: AdminReply) => {
      const body = reply.body;
      // Every JSON answer (config dumps, /dataplanes and its NACK messages, the dashboard's state)
      // goes through the one redaction: keys, plugin configs, URL credentials (redact.ts).
      const text = typeof body === "string" ? body : `${JSON.stringify(redact(body), null, 2)}\n`;
      res.writeHead(reply.status ?? 200, {
        "content-type":
          reply.contentType ?? (typeof body === "string" ? "text/plain; charset=utf-8" : "application/json"),
        "content-length": Buffer.byteLength(text),
        "cache-control": "no-store",
      });
      res.end(req.method === "HEAD" ? undefined : text);
    };
    const forbidden = (message: string) => send({ status: 403, body: { error: "forbidden", message } });
    const local = isLoopback(req.socket.remoteAddress);
    if (!local && !options.allowRemote && !(options.token && tokenMatches(options.token, req, url))) {
      forbidden(
        options.token
          ? "remote admin clients must present the admin token (Authorization: Bearer TOKEN)"
          : "the admin API answers local clients only; set an admin token to allow remote clients",
      );
      return;
    }
    if (!hostAllowed(req.headers.host, host, options.allowedHosts ?? [])) {
      forbidden(
        `Host "${req.headers.host}" is not an address of this admin (DNS rebinding?); use an IP address or localhost, or allow the name with --admin-allow-host`,
      );
      return;
    }
    const site = crossSite(req);
    if (site !== undefined) {
      forbidden(`${site} is refused: the admin API does not answer other sites`);
      return;
    }
    const route = routes[url.pathname];
    if (route === undefined) {
      send({ status: 404, body: { error: "not_found", paths: Object.keys(routes) } });
      return;
    }
    const post = typeof route !== "function";
    const allowed = post ? req.method === "POST" : req.method === "GET" || req.method === "HEAD";
    if (!allowed) {
      res.setHeader("allow", post ? "POST" : "GET, HEAD");
      send({ status: 405, body: { error: "method_not_allowed", allow: post ? "POST" : "GET" } });
      return;
    }
    if (post) {
      const token = bearer(req);
      const authorized =
        options.token !== undefined && token !== undefined && sameToken(token, options.token);
      if (!authorized && req.headers[ADMIN_MUTATION_HEADER] === undefined) {
        forbidden(
          `a change needs the ${ADMIN_MUTATION_HEADER} header (curl -X POST -H '${ADMIN_MUTATION_HEADER}: 1' ...) or Authorization: Bearer TOKEN, which a web page cannot send`,
        );
        return;
      }
    }
    req.resume();
    Promise.resolve()
      .then(() => (post ? route.post(url) : route(url)))
      .then(send, (e: unknown) =>
        send({ status: 500, body: { error: "internal", message: (e as Error).message } }),
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
