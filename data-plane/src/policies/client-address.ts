/**
 * The client address of a request, as Envoy has it (docs/access-control.md): the connection's peer,
 * or the source a PROXY protocol header named on a listener that enabled it (proxy-protocol.ts),
 * then, when the listener trusts proxies in front of it, the X-Forwarded-For entry they vouch for:
 *
 * - `xffNumTrustedHops: N`: the Nth address from the right of X-Forwarded-For plus the peer (Envoy's
 *   xff_num_trusted_hops with use_remote_address); fewer entries than that: the peer.
 * - `trustedProxies: [CIDR]`: when the peer is in them, the rightmost X-Forwarded-For entry that is
 *   not (Envoy's xff_trusted_cidrs); the leftmost when all are; the peer when it is not trusted.
 *
 * The result feeds the access log, traces, IP rules, plugins and load-balancer hashing; the upstream's
 * X-Forwarded-For gets the peer appended, as Envoy does. An entry at the trusted position that is not
 * an IP address refuses the request (400 invalid_forwarded_for) instead of falling back to the peer,
 * which is the load balancer's address and may be one IP rules trust.
 */
import type net from "node:net";
import { ipText } from "@agw/core/cidr";
import type { IpSet } from "./ip-set.ts";

export interface ClientAddressPolicy {
  /** 0: X-Forwarded-For is not read by hop count. */
  readonly xffNumTrustedHops: number;
  /** null: no proxy is trusted by address. */
  readonly trustedProxies: IpSet | null;
}

/** Sources named by PROXY protocol headers, by the socket they arrived on (and its TLS socket). */
const proxiedSources = new WeakMap<object, string>();

/** The PROXY header of `socket` named `source` (already canonical). */
export function setProxiedSource(socket: object, source: string): void {
  proxiedSources.set(socket, source);
}

/**
 * The peer of a downstream connection: the PROXY protocol source when its listener read one, else
 * the socket's remote address (an IPv4-mapped IPv6 one as IPv4). A TLS socket answers for the TCP
 * socket it wraps (`_parent`, set by node:tls on a server-side socket it was handed).
 */
export function peerAddress(socket: net.Socket): string {
  const proxied =
    proxiedSources.get(socket) ?? proxiedSources.get((socket as { _parent?: object })._parent ?? socket);
  if (proxied !== undefined) return proxied;
  const a = socket.remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

/** The fields of a request head, as the HTTP/1.1 parser and the HTTP/2 stream keep them. */
interface Fields {
  readonly names: readonly string[];
  readonly values: readonly string[];
}

/** What X-Forwarded-For says, entries in order; the fields of a request joined. */
function forwardedFor(head: Fields): string[] {
  const out: string[] = [];
  const names = head.names;
  for (let i = 0; i < names.length; i++)
    if (names[i] === "x-forwarded-for")
      for (const e of (head.values[i] as string).split(",")) {
        const t = e.trim();
        if (t !== "") out.push(t);
      }
  return out;
}

/** The request's client address; undefined when the entry the policy trusts is not an IP address. */
export function resolveClientAddress(
  policy: ClientAddressPolicy | undefined,
  peer: string,
  head: Fields,
): string | undefined {
  if (policy === undefined) return peer;
  const hops = policy.xffNumTrustedHops;
  if (hops > 0) {
    const xff = forwardedFor(head);
    // The peer is the last of the chain: N trusted hops make the Nth from the right the client.
    if (xff.length < hops) return peer;
    return ipText(xff[xff.length - hops] as string);
  }
  const trusted = policy.trustedProxies;
  if (trusted === null || !trusted.has(peer)) return peer;
  const xff = forwardedFor(head);
  if (xff.length === 0) return peer;
  for (let i = xff.length - 1; i >= 0; i--) {
    const a = ipText(xff[i] as string);
    if (a === undefined) return undefined;
    if (i === 0 || !trusted.has(a)) return a;
  }
  return peer;
}
