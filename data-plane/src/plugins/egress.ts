/**
 * The http-request host import: a guest reaches exactly the hosts its `httpAllowHosts` grants
 * (packages/core/src/config/http-grant.ts) and nothing behind them.
 *
 * - The URL's host and port must match a grant; a grant without a port means the scheme's default
 *   port, so `localhost` never reaches an admin API on another port.
 * - Every address a name resolves to must be public (not loopback, private, link-local, CGNAT,
 *   unique-local, multicast, reserved, ...) unless an address or range grant covers it.
 * - The check runs inside the connection's own DNS lookup, so the address checked is the address
 *   connected to (a second resolution cannot rebind it), and the socket's peer address is checked
 *   again once connected. No connection is reused (no agent).
 * - Redirects are not followed (the guest gets the 3xx); the response body is capped.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { type HttpGrant, parseHttpGrant } from "@agw/core";

/** Largest response body a guest may receive. */
export const MAX_RESPONSE_BYTES = 4 << 20;

/** Addresses that are not the public internet (IANA special-purpose registries). */
const NON_PUBLIC = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const)
  NON_PUBLIC.addSubnet(net, prefix, "ipv4");
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["64:ff9b:1::", 48],
  ["100::", 64],
  ["2001::", 23],
  ["2001:db8::", 32],
  ["2002::", 16],
  ["fc00::", 7],
  ["fe80::", 10],
  ["fec0::", 10],
  ["ff00::", 8],
] as const)
  NON_PUBLIC.addSubnet(net, prefix, "ipv6");

/** An IPv4 address embedded in an IPv6 one (mapped, compatible, NAT64) is judged as IPv4. */
function embeddedV4(address: string): string | undefined {
  const m = /^(?:::ffff:|::|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (m) return m[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return undefined;
  const hi = Number.parseInt(hex[1] as string, 16);
  const lo = Number.parseInt(hex[2] as string, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

export class EgressPolicy {
  private readonly names: Array<{ host: string; port: number | undefined }> = [];
  private readonly addresses: Array<{ address: string; port: number | undefined }> = [];
  /** Private addresses the grants allow. */
  private readonly granted = new BlockList();

  /** Throws on an entry that does not parse (the config validator reports the same message). */
  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const g: HttpGrant = parseHttpGrant(entry);
      if (g.kind === "name") this.names.push({ host: g.host, port: g.port });
      else if (g.kind === "address") {
        this.addresses.push({ address: normalize(g.address), port: g.port });
        this.granted.addAddress(g.address, isIP(g.address) === 6 ? "ipv6" : "ipv4");
      } else this.granted.addSubnet(g.address, g.prefix, isIP(g.address) === 6 ? "ipv6" : "ipv4");
    }
  }

  get empty(): boolean {
    return this.names.length === 0 && this.addresses.length === 0;
  }

  /** Why the URL's host:port is not granted, or undefined when it is. */
  hostProblem(url: URL): string | undefined {
    if (url.protocol !== "http:" && url.protocol !== "https:") return `scheme ${url.protocol} is not http(s)`;
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
    const ok = (granted: number | undefined) => (granted ?? (url.protocol === "https:" ? 443 : 80)) === port;
    if (isIP(host) !== 0) {
      const a = normalize(host);
      if (this.addresses.some((g) => g.address === a && ok(g.port))) return undefined;
    } else if (this.names.some((g) => g.host === host.replace(/\.$/, "") && ok(g.port))) return undefined;
    return `${url.host} is not granted (httpAllowHosts; a host without a port grants only the scheme's default port)`;
  }

  /** Why the plugin may not connect to `address`, or undefined when it may. */
  addressProblem(address: string): string | undefined {
    const v4 = isIP(address) === 6 ? embeddedV4(address) : undefined;
    const [a, family] =
      v4 !== undefined
        ? [v4, "ipv4" as const]
        : [address, isIP(address) === 6 ? ("ipv6" as const) : ("ipv4" as const)];
    if (this.granted.check(a, family) || (a !== address && this.granted.check(address, "ipv6")))
      return undefined;
    if (NON_PUBLIC.check(a, family)) return `${address} is not a public address and no grant covers it`;
    return undefined;
  }

  /** A dns.lookup for http.request that fails unless every address the name has is allowed. */
  lookup(): LookupFunction {
    return (hostname, options, callback) => {
      dnsLookup(hostname, { ...options, all: true }, (err, found: LookupAddress[]) => {
        if (err) return callback(err, "", 4);
        const problem = found.map((f) => this.addressProblem(f.address)).find((p) => p !== undefined);
        if (problem !== undefined || found.length === 0) {
          const e = Object.assign(new Error(problem ?? `${hostname} has no address`), { code: "EACCES" });
          return callback(e, "", 4);
        }
        if ((options as { all?: boolean }).all)
          return (callback as (e: null, a: LookupAddress[]) => void)(null, found);
        const first = found[0] as LookupAddress;
        callback(null, first.address, first.family);
      });
    };
  }
}

function normalize(address: string): string {
  return isIP(address) === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

export interface Outgoing {
  method: string;
  url: string;
  headers: [string, string][];
  body: Uint8Array;
  timeoutMs: number;
}

export interface Incoming {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

/** Fields the host sets itself: a guest cannot aim a granted connection at another virtual host or frame the body. */
const HOST_OWNED = new Set([
  "host",
  "connection",
  "content-length",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
]);

/** Sends one request under `policy`; rejects with a message for the guest. */
export function send(policy: EgressPolicy, req: Outgoing, defaultTimeoutMs: number): Promise<Incoming> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return Promise.reject(new Error(`invalid url ${req.url}`));
  }
  const problem = policy.hostProblem(url);
  if (problem !== undefined) return Promise.reject(new Error(problem));
  const literal = url.hostname.replace(/^\[|\]$/g, "");
  if (isIP(literal) !== 0) {
    const p = policy.addressProblem(literal);
    if (p !== undefined) return Promise.reject(new Error(p));
  }
  // An object, not raw pairs: node then writes Host (from the URL) itself.
  const headers: Record<string, string> = {};
  for (const [name, value] of req.headers) {
    const lower = name.toLowerCase();
    if (HOST_OWNED.has(lower)) continue;
    headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`;
  }
  if (req.body.length > 0) headers["content-length"] = String(req.body.length);
  const timeoutMs = req.timeoutMs || defaultTimeoutMs;
  return new Promise<Incoming>((resolve, reject) => {
    const mod = url.protocol === "https:" ? https : http;
    const outgoing = mod.request(url, {
      method: req.method || "GET",
      headers,
      agent: false,
      lookup: policy.lookup(),
      timeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    outgoing.on("socket", (socket) => {
      // Before the request's own connect listener writes anything to the peer.
      socket.prependOnceListener("connect", () => {
        const peer = socket.remoteAddress;
        const p = peer === undefined ? "no peer address" : policy.addressProblem(peer);
        if (p !== undefined) outgoing.destroy(new Error(p));
      });
    });
    outgoing.on("timeout", () => outgoing.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    outgoing.on("error", (e) => reject(new Error(`request to ${url.host} failed: ${e.message}`)));
    outgoing.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) {
          res.destroy();
          outgoing.destroy(new Error(`response body over ${MAX_RESPONSE_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on("error", (e) => reject(new Error(`request to ${url.host} failed: ${e.message}`)));
      res.on("end", () => {
        const out: [string, string][] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2)
          out.push([(res.rawHeaders[i] as string).toLowerCase(), res.rawHeaders[i + 1] as string]);
        resolve({ status: res.statusCode ?? 0, headers: out, body: new Uint8Array(Buffer.concat(chunks)) });
      });
    });
    outgoing.end(req.body.length > 0 ? req.body : undefined);
  });
}
