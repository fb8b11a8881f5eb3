/** Real origins and raw clients for the engine's tests: node:http and node:net servers, raw sockets, curl. */
import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { freePort } from "../../test/helpers.ts";

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: string[];
}

export interface HttpOrigin {
  readonly port: number;
  readonly requests: SeenRequest[];
  /** TCP connections accepted so far. */
  connections: number;
  close(): Promise<void>;
}

export async function startHttpOrigin(handler: http.RequestListener): Promise<HttpOrigin> {
  const origin: HttpOrigin = {
    port: 0,
    requests: [],
    connections: 0,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = http.createServer({ keepAliveTimeout: 30000 }, (req, res) => {
    origin.requests.push({
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      rawHeaders: req.rawHeaders,
    });
    handler(req, res);
  });
  server.on("connection", () => origin.connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  (origin as { port: number }).port = (server.address() as net.AddressInfo).port;
  return origin;
}

export interface RawOrigin {
  readonly port: number;
  connections: number;
  close(): Promise<void>;
}

/** A node:net origin: `onConnection` drives the socket by hand. */
export async function startRawOrigin(onConnection: (s: net.Socket) => void): Promise<RawOrigin> {
  const sockets = new Set<net.Socket>();
  const origin: RawOrigin = {
    port: 0,
    connections: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = net.createServer((s) => {
    origin.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    onConnection(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  (origin as { port: number }).port = (server.address() as net.AddressInfo).port;
  return origin;
}

/** A port nothing listens on. */
export const closedPort = freePort;

export interface RawResult {
  readonly data: Buffer;
  /** The proxy closed the connection (as opposed to the wait timing out). */
  readonly closed: boolean;
  /** The connection ended with an error (e.g. reset). */
  readonly error: boolean;
}

/**
 * Writes `data` on a fresh connection and collects everything until the peer closes, `until(data)` holds,
 * or `timeoutMs` passes.
 */
export function rawExchange(
  port: number,
  data: string | Buffer,
  opts: { timeoutMs?: number; until?: (b: Buffer) => boolean } = {},
): Promise<RawResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error = false;
    let done = false;
    const s = net.connect(port, "127.0.0.1");
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed, error });
    };
    const t = setTimeout(() => finish(false), opts.timeoutMs ?? 5000);
    s.on("data", (c: Buffer) => {
      chunks.push(c);
      if (opts.until?.(Buffer.concat(chunks))) finish(false);
    });
    s.on("error", () => {
      error = true;
    });
    s.on("close", () => finish(true));
    s.write(data);
  });
}

export interface ParsedResponse {
  readonly status: number;
  readonly headers: Map<string, string>;
  readonly body: Buffer;
}

/**
 * Splits complete responses out of a byte stream (Content-Length, chunked, or no body for HEAD/204/304 when
 * `noBody` says so). Returns the responses parsed and whether bytes were left over.
 */
export function parseResponses(buf: Buffer, noBody: (i: number, status: number) => boolean = () => false) {
  const out: ParsedResponse[] = [];
  let off = 0;
  for (;;) {
    const end = buf.indexOf("\r\n\r\n", off);
    if (end < 0) break;
    const lines = buf.toString("latin1", off, end).split("\r\n");
    const status = Number((lines[0] ?? "").split(" ")[1]);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const c = l.indexOf(":");
      const name = l.slice(0, c).toLowerCase();
      const v = l.slice(c + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${v}` : v);
    }
    let p = end + 4;
    let body: Buffer;
    if (status < 200) {
      off = p;
      continue;
    }
    if (noBody(out.length, status) || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (headers.get("transfer-encoding") === "chunked") {
      const parts: Buffer[] = [];
      let complete = false;
      for (;;) {
        const le = buf.indexOf("\r\n", p);
        if (le < 0) break;
        const size = Number.parseInt(buf.toString("latin1", p, le).split(";")[0] ?? "", 16);
        if (size === 0) {
          const te = buf.indexOf("\r\n\r\n", le);
          if (te >= 0) {
            p = te + 4;
            complete = true;
          }
          break;
        }
        if (le + 2 + size + 2 > buf.length) break;
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      if (!complete) break;
      body = Buffer.concat(parts);
    } else if (headers.has("content-length")) {
      const n = Number(headers.get("content-length"));
      if (p + n > buf.length) break;
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      body = buf.subarray(p);
      p = buf.length;
    }
    out.push({ status, headers, body });
    off = p;
  }
  return { responses: out, rest: buf.length - off };
}

export interface CurlResult {
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

export function curl(args: string[], timeoutMs = 10000): Promise<CurlResult> {
  return new Promise((resolve) => {
    const p = spawn("curl", ["-sS", "--max-time", String(timeoutMs / 1000), ...args]);
    const out: Buffer[] = [];
    let err = "";
    p.stdout.on("data", (c: Buffer) => out.push(c));
    p.stderr.on("data", (c: Buffer) => {
      err += c.toString();
    });
    p.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
  });
}
