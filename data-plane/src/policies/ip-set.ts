/**
 * A set of CIDR prefixes with a lookup in time bound by the address length (32 or 128 steps), not by
 * the number of prefixes: a binary trie in flat typed arrays, one per address family, built once per
 * config. IPv4-mapped IPv6 clients match IPv4 prefixes (packages/core/src/cidr.ts).
 */
import { type Cidr, ipBytes, parseCidr } from "@agw/core/cidr";

/** One family's trie: node i's children at 2i and 2i+1 of `next` (0: none), `end[i]` a prefix ends there. */
class Trie {
  next = new Int32Array(64);
  end = new Uint8Array(32);
  nodes = 1;

  add(c: Cidr): void {
    let node = 0;
    for (let bit = 0; bit < c.bits; bit++) {
      if (this.end[node] === 1) return; // a shorter prefix already covers it
      const side = ((c.bytes[bit >> 3] as number) >> (7 - (bit & 7))) & 1;
      let child = this.next[2 * node + side] as number;
      if (child === 0) {
        child = this.nodes++;
        if (child >= this.end.length) this.grow();
        this.next[2 * node + side] = child;
      }
      node = child;
    }
    this.end[node] = 1;
  }

  private grow(): void {
    const next = new Int32Array(this.next.length * 2);
    next.set(this.next);
    this.next = next;
    const end = new Uint8Array(this.end.length * 2);
    end.set(this.end);
    this.end = end;
  }

  has(b: Uint8Array): boolean {
    const next = this.next;
    const end = this.end;
    let node = 0;
    const bits = b.length * 8;
    for (let bit = 0; ; bit++) {
      if (end[node] === 1) return true;
      if (bit === bits) return false;
      node = next[2 * node + (((b[bit >> 3] as number) >> (7 - (bit & 7))) & 1)] as number;
      if (node === 0) return false;
    }
  }
}

export class IpSet {
  readonly size: number;
  private readonly v4 = new Trie();
  private readonly v6 = new Trie();

  /** Throws an Error naming the first entry that is not a CIDR prefix. */
  constructor(prefixes: readonly string[]) {
    for (const p of prefixes) {
      const c = parseCidr(p);
      if (typeof c === "string") throw new Error(c);
      (c.bytes.length === 4 ? this.v4 : this.v6).add(c);
    }
    this.size = prefixes.length;
  }

  /** Whether the address (bytes from ipBytes) is in one of the prefixes. */
  hasBytes(b: Uint8Array): boolean {
    return (b.length === 4 ? this.v4 : this.v6).has(b);
  }

  /** Whether the address text is in one of the prefixes; false when it is not an address. */
  has(address: string): boolean {
    const b = ipBytes(address);
    return b !== undefined && this.hasBytes(b);
  }
}
