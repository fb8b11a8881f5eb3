/**
 * A plugin's `httpAllowHosts` entries, parsed once for the config validator and the data plane:
 *
 * - `name` or `name:port`: the plugin may call that host name, on `port` or (without one) on the
 *   scheme's default port (80 for http, 443 for https) only. The addresses the name resolves to
 *   must be public unless an address entry below covers them.
 * - `address` or `address:port` (`10.1.2.3`, `10.1.2.3:8080`, `[fd00::1]:8443`): the plugin may call
 *   that address literally (same port rule), and it may be a loopback/private/link-local address.
 * - `address/prefix` (`10.0.0.0/8`, `fd00::/8`): no host by itself; granted names may resolve into
 *   this range (an internal service behind a private address).
 */
import { isIP } from "node:net";

export type HttpGrant =
  | { readonly kind: "name"; readonly host: string; readonly port: number | undefined }
  | { readonly kind: "address"; readonly address: string; readonly port: number | undefined }
  | { readonly kind: "range"; readonly address: string; readonly prefix: number };

function parsePort(text: string, entry: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535)
    throw new Error(`httpAllowHosts entry "${entry}": port ${text} is not 1-65535`);
  return Number(text);
}

/** Parses one entry; throws with a message naming the entry. */
export function parseHttpGrant(entry: string): HttpGrant {
  const e = entry.trim().toLowerCase();
  const slash = e.indexOf("/");
  if (slash >= 0) {
    const address = e.slice(0, slash);
    const family = isIP(address);
    const bits = family === 4 ? 32 : 128;
    const prefix = e.slice(slash + 1);
    if (family === 0 || !/^\d{1,3}$/.test(prefix) || Number(prefix) > bits)
      throw new Error(`httpAllowHosts entry "${entry}": expected an address range such as 10.0.0.0/8`);
    return { kind: "range", address, prefix: Number(prefix) };
  }
  if (e.startsWith("[")) {
    const end = e.indexOf("]");
    const address = e.slice(1, end);
    const rest = e.slice(end + 1);
    if (end < 0 || isIP(address) !== 6 || (rest !== "" && !rest.startsWith(":")))
      throw new Error(`httpAllowHosts entry "${entry}": expected [IPv6] or [IPv6]:port`);
    return { kind: "address", address, port: rest === "" ? undefined : parsePort(rest.slice(1), entry) };
  }
  if (isIP(e) === 6) return { kind: "address", address: e, port: undefined };
  const colon = e.lastIndexOf(":");
  const host = colon >= 0 ? e.slice(0, colon) : e;
  const port = colon >= 0 ? parsePort(e.slice(colon + 1), entry) : undefined;
  if (isIP(host) === 4) return { kind: "address", address: host, port };
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$/.test(host))
    throw new Error(`httpAllowHosts entry "${entry}": expected host, host:port, an address or a range`);
  return { kind: "name", host: host.replace(/\.$/, ""), port };
}
