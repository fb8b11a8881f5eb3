/** The built-in demo upstream behind the quickstart: echoes what it received, as JSON. */
import http from "node:http";
import type { AddressInfo } from "node:net";

export async function startDemoUpstream(host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on("end", () => {
      const body = `${JSON.stringify(
        {
          message: "Hello from the AGW demo upstream",
          method: req.method,
          url: req.url,
          headers: req.headers,
          body_bytes: bytes,
        },
        null,
        2,
      )}\n`;
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

export function addressOf(server: http.Server): string {
  const a = server.address() as AddressInfo;
  return `${a.address}:${a.port}`;
}
