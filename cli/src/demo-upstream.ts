/**
 * The built-in demo upstream behind the quickstart and the examples: echoes what it received, as
 * JSON, and says which instance answered (`x-upstream-id` and `"upstream"` in the body). `status` and
 * `delayMs` make it a failing or slow upstream for the retry, health and timeout walk-throughs.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface DemoUpstreamOptions {
  host: string;
  port: number;
  /** Names this instance in the `x-upstream-id` header and the body; default its ADDR:PORT. */
  id?: string;
  /** Status of every response; default 200. */
  status?: number;
  /** Time before the response head is sent; default 0. */
  delayMs?: number;
  /** Called once per request with `ID METHOD URL host=HOST` (e.g. to print a request log). */
  log?: (line: string) => void;
}

export async function startDemoUpstream(options: DemoUpstreamOptions): Promise<http.Server> {
  const status = options.status ?? 200;
  const delayMs = options.delayMs ?? 0;
  let id = options.id ?? "";
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on("end", () => {
      options.log?.(`${id} ${req.method} ${req.url} host=${req.headers.host ?? ""}`);
      const respond = () => {
        if (res.destroyed) return;
        const body = `${JSON.stringify(
          {
            message: "Hello from the AGW demo upstream",
            upstream: id,
            method: req.method,
            url: req.url,
            headers: req.headers,
            body_bytes: bytes,
          },
          null,
          2,
        )}\n`;
        const noBody = status === 204 || status === 304;
        res.writeHead(status, {
          "x-upstream-id": id,
          ...(noBody
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(body) }),
        });
        res.end(noBody ? undefined : body);
      };
      if (delayMs > 0) {
        const timer = setTimeout(respond, delayMs);
        res.once("close", () => clearTimeout(timer));
      } else respond();
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  if (!id) id = addressOf(server);
  return server;
}

export function addressOf(server: http.Server): string {
  const a = server.address() as AddressInfo;
  return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
