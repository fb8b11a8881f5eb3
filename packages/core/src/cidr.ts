/**
 * IP addresses and CIDR prefixes as bytes: the one parser behind config checks (FILE:LINE errors),
 * the data plane's NACKs and its lookups (data-plane/src/policies). IPv4 and IPv4-mapped IPv6
 * (::ffff:a.b.c.d) are the same 4 bytes, so a v4 rule matches a client that arrives on a dual-stack
 * socket; any other IPv6 address is 16 bytes.
 */

const V4_OCTET = /^(?:0|[1-9]\d{0,2})$/;

function v4Into(text: string, out: Uint8Array, at: number): boolean {
  const parts = text.split(".");
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i] as string;
    if (!V4_OCTET.test(p)) return false; // no leading zeros: "010" is octal to some parsers
    const n = Number(p);
    if (n > 255) return false;
    out[at + i] = n;
  }
  return true;
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function v6(text: string): Uint8Array | undefined {
  const out = new Uint8Array(16);
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string): string[] => (s === "" ? [] : s.split(":"));
  const head = groups(halves[0] as string);
  const tail = halves.length === 2 ? groups(halves[1] as string) : [];
  // A trailing dotted quad takes two groups.
  const all = halves.length === 2 ? tail : head;
  let v4Tail: string | undefined;
  if (all.length > 0 && (all[all.length - 1] as string).includes(".")) v4Tail = all.pop();
  const words = head.length + tail.length + (v4Tail === undefined ? 0 : 2);
  if (halves.length === 1 ? words !== 8 : words > 7) return undefined;
  const put = (list: string[], from: number): boolean => {
    for (let i = 0; i < list.length; i++) {
      const g = list[i] as string;
      if (!HEX_GROUP.test(g)) return false;
      const n = Number.parseInt(g, 16);
      out[from + 2 * i] = n >> 8;
      out[from + 2 * i + 1] = n & 0xff;
    }
    return true;
  };
  if (!put(head, 0)) return undefined;
  const tailWords = tail.length + (v4Tail === undefined ? 0 : 2);
  if (halves.length === 2 && !put(tail, 16 - 2 * tailWords)) return undefined;
  if (v4Tail !== undefined && !v4Into(v4Tail, out, 12)) return undefined;
  return out;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * An address's bytes: 4 for IPv4 and v4-mapped IPv6, 16 for other IPv6; undefined when `text` is not
 * an address. Strict: no ports, no zone ids, no leading zeros in IPv4 octets.
 */
export function ipBytes(text: string): Uint8Array | undefined {
  if (text.includes(":")) {
    const b = v6(text);
    if (b === undefined) return undefined;
    return isV4Mapped(b) ? b.subarray(12) : b;
  }
  const out = new Uint8Array(4);
  return v4Into(text, out, 0) ? out : undefined;
}

/** The canonical text of an address: dotted IPv4 (v4-mapped IPv6 too), else IPv6 as given, lower-cased. */
export function ipText(text: string): string | undefined {
  const b = ipBytes(text);
  if (b === undefined) return undefined;
  return b.length === 4 ? `${b[0]}.${b[1]}.${b[2]}.${b[3]}` : text.toLowerCase();
}

export interface Cidr {
  /** 4 or 16 bytes, host bits zero. */
  readonly bytes: Uint8Array;
  /** Prefix length in bits of `bytes` (a v4-mapped /104 is an IPv4 /8). */
  readonly bits: number;
}

/** "10.0.0.0/8", "2001:db8::/32", "::ffff:10.0.0.0/104" or a bare address (/32, /128); a string says what is wrong. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? "" : text.slice(slash + 1);
  const v6Text = addr.includes(":");
  const full = v6Text ? v6(addr) : ipBytes(addr);
  if (full === undefined) return `"${text}" is not an IP address or CIDR prefix`;
  const max = full.length * 8;
  let bits = max;
  if (slash >= 0) {
    if (!/^(?:0|[1-9]\d{0,2})$/.test(lenText) || Number(lenText) > max)
      return `"${text}": the prefix length must be 0-${max}`;
    bits = Number(lenText);
  }
  let bytes = full;
  if (full.length === 16 && isV4Mapped(full) && bits >= 96) {
    bytes = full.subarray(12);
    bits -= 96;
  }
  for (let bit = bits; bit < bytes.length * 8; bit++)
    if (((bytes[bit >> 3] as number) >> (7 - (bit & 7))) & 1)
      return `"${text}" has bits set past its /${slash < 0 ? bits : lenText} prefix`;
  return { bytes, bits };
}
