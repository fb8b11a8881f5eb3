/**
 * A small admin server (control plane and data plane). Reads are GET, anything that changes state is
 * POST. Only local (loopback) clients are answered, unless a token is set: then a remote client that
 * presents it (`Authorization: Bearer TOKEN`, or `?token=TOKEN` for a browser) is answered too.
 */
import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

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
}

export interface AdminServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return a === "::1" || a.startsWith("127.");
}

function tokenMatches(expected: string, req: http.IncomingMessage, url: URL): boolean {
  const auth = req.headers.authorization;
  const given = auth?.startsWith("Bearer ") ? auth.slice(7) : (url.searchParams.get("token") ?? "");
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
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
      const text = typeof body === "string" ? body : `${JSON.stringify(body, null, 2)}\n`;
      res.writeHead(reply.status ?? 200, {
        "content-type":
          reply.contentType ?? (typeof body === "string" ? "text/plain; charset=utf-8" : "application/json"),
        "content-length": Buffer.byteLength(text),
        "cache-control": "no-store",
      });
      res.end(req.method === "HEAD" ? undefined : text);
    };
    const local = isLoopback(req.socket.remoteAddress);
    if (!local && !options.allowRemote && !(options.token && tokenMatches(options.token, req, url))) {
      send({
        status: 403,
        body: {
          error: "forbidden",
          message: options.token
            ? "remote admin clients must present the admin token (Authorization: Bearer TOKEN)"
            : "the admin API answers local clients only; set an admin token to allow remote clients",
        },
      });
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
