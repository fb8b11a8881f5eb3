/** curl as a user runs it against an `agw run` over HTTP/1.1, h2c and h2 over TLS (shared by end-to-end tests). */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);
/** The name the test certificates are for (curl --resolve sends it to 127.0.0.1). */
export const HOST = "gateway.example.com";

export type Protocol = "http/1.1" | "h2c" | "h2";
export const PROTOCOLS: readonly Protocol[] = ["http/1.1", "h2c", "h2"];

export interface Ports {
  plain: number;
  tls: number;
  caFile: string;
}

export interface CurlReply {
  status: number;
  version: string;
  headers: Record<string, string>;
}

/** curl as a user runs it: the response head only (`-D -`), body discarded unless `out` is given. */
export async function curl(
  protocol: Protocol,
  ports: Ports,
  path: string,
  args: string[] = [],
  out = "/dev/null",
): Promise<CurlReply> {
  const url =
    protocol === "h2" ? `https://${HOST}:${ports.tls}${path}` : `http://127.0.0.1:${ports.plain}${path}`;
  const proto =
    protocol === "http/1.1"
      ? ["--http1.1"]
      : protocol === "h2c"
        ? ["--http2-prior-knowledge"]
        : ["--http2", "--cacert", ports.caFile, "--resolve", `${HOST}:${ports.tls}:127.0.0.1`];
  const { stdout } = await run(
    "curl",
    ["-sS", "--max-time", "20", "-D", "-", "-o", out, ...proto, ...args, url],
    { encoding: "latin1" },
  );
  const lines = stdout.split("\r\n");
  const first = /^HTTP\/([\d.]+) (\d+)/.exec(lines[0] ?? "");
  if (first === null) throw new Error(`no status line in ${JSON.stringify(stdout)}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const at = line.indexOf(":");
    if (at > 0) {
      const name = line.slice(0, at).toLowerCase();
      const value = line.slice(at + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
  }
  return { status: Number(first[2]), version: first[1] as string, headers };
}

/** Makes a CA and a leaf for HOST; null without openssl. */
export function tlsFiles(dir: string): { caFile: string } | null {
  if (!hasOpenssl()) return null;
  const ca = makeCa(dir, "test-ca");
  makeLeaf(dir, ca, { cn: HOST, sans: [`DNS:${HOST}`], file: "site" });
  return { caFile: ca.certFile };
}

export async function hasCurl(): Promise<boolean> {
  return run("curl", ["--version"]).then(
    ({ stdout }) => stdout.includes("HTTP2"),
    () => false,
  );
}
