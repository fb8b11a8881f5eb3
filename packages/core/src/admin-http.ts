/** A small JSON admin server (control plane and data plane): GET routes only, localhost by default. */
import http from "node:http";
import type { AddressInfo } from "node:net";

export type AdminRoutes = Record<string, () => { status?: number; body: unknown }>;

export interface AdminServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

export async function startAdminServer(
  host: string,
  port: number,
  routes: AdminRoutes,
): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const route = routes[path];
    let status = 404;
    let body: unknown = { error: "not_found", paths: Object.keys(routes) };
    if (route && req.method !== "GET" && req.method !== "HEAD") {
      status = 405;
      body = { error: "method_not_allowed" };
    } else if (route) {
      const out = route();
      status = out.status ?? 200;
      body = out.body;
    }
    const text = typeof body === "string" ? body : `${JSON.stringify(body, null, 2)}\n`;
    res.writeHead(status, {
      "content-type": typeof body === "string" ? "text/plain; charset=utf-8" : "application/json",
      "content-length": Buffer.byteLength(text),
    });
    res.end(req.method === "HEAD" ? undefined : text);
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
