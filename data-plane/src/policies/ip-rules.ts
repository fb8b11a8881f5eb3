/**
 * IP allow and deny rules (docs/access-control.md) of a listener or a route, on the request's client
 * address (client-address.ts): a denied prefix refuses, then a non-empty allow list must hold the
 * address. An address that does not parse (a Unix socket's "") is refused by any rule: fail closed.
 */
import { ipBytes } from "@agw/core/cidr";
import { IpSet } from "./ip-set.ts";

export class IpRules {
  private readonly allow: IpSet | null;
  private readonly deny: IpSet | null;

  /** Throws an Error naming the first entry that is not a CIDR prefix. */
  constructor(allow: readonly string[], deny: readonly string[]) {
    this.allow = allow.length > 0 ? new IpSet(allow) : null;
    this.deny = deny.length > 0 ? new IpSet(deny) : null;
  }

  permits(address: string): boolean {
    const b = ipBytes(address);
    if (b === undefined) return false;
    if (this.deny?.hasBytes(b) === true) return false;
    return this.allow === null || this.allow.hasBytes(b);
  }
}
