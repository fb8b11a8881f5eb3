/**
 * A route's local rate limits (agw.v1 LocalRateLimit; docs/traffic/rate-limits.md): token buckets
 * keyed by the client address, a header, the route, or a combination, after Envoy's local_ratelimit
 * descriptors; held in the data plane's shared BucketTable, so every worker thread takes from the
 * same buckets. Asked by the exchange right after the local-response phase (CORS preflights and
 * redirects are not counted), before the request filter: a refused request costs no plugin call.
 */
import type { LocalRateLimit } from "@agw/core/gen/agw/v1/shaping_pb.js";
import type { RateLimiter, RequestView, ShapingTarget } from "../runtime/types.ts";

export type { ShapingTarget };

import type { BucketTable } from "./bucket-table.ts";

const K_ADDRESS = 0;
const K_ROUTE = 1;
const K_HEADER = 2;
/** A request without the keyed header: one bucket for all of them (Envoy would not limit them). */
const ABSENT = "\u0001";

interface Limit {
  /** Route and limit name: the same on every worker thread, so the same buckets. */
  readonly identity: string;
  readonly kinds: readonly number[];
  /** Lower-case header names, by position in kinds (unused for the other kinds). */
  readonly headers: readonly string[];
  /** Tokens per millisecond, and the most a bucket holds. */
  readonly rate: number;
  readonly burst: number;
  readonly ipv6Prefix: number;
  /** `"name";q=requests;w=seconds`: this limit's item of RateLimit-Policy. */
  readonly policyItem: string;
  readonly quotedName: string;
}

export class RouteRateLimit implements RateLimiter {
  private readonly limits: readonly Limit[];
  private readonly table: BucketTable;
  private readonly headers: boolean;
  private readonly policy: string;
  /** Decisions, kept across configs by the table (agw_rate_limit_decisions_total). */
  private readonly counts: { admitted: number; refused: number };

  /** Throws naming the bad field (the route is NACKed). */
  /** `identity`: the route resource's unique name, the same on every worker thread (and its metrics label). */
  constructor(spec: LocalRateLimit, identity: string, table: BucketTable) {
    if (spec.limits.length === 0) throw new Error("localRateLimit has no limits");
    const names = new Set<string>();
    this.limits = spec.limits.map((l, i) => {
      const name = l.name === "" ? `limit-${i}` : l.name;
      if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) throw new Error(`rate limit name "${name}" is invalid`);
      if (names.has(name)) throw new Error(`rate limit name "${name}" is used twice`);
      names.add(name);
      const perMs = l.per ? Number(l.per.seconds) * 1000 + Math.floor(l.per.nanos / 1e6) : 0;
      if (l.requests < 1 || perMs < 1)
        throw new Error(`rate limit "${name}" needs requests ≥ 1 and per ≥ 1ms`);
      const burst = l.burst === 0 ? l.requests : l.burst;
      const prefix = l.ipv6Prefix === 0 ? 64 : l.ipv6Prefix;
      if (prefix > 128) throw new Error(`rate limit "${name}": ipv6Prefix ${prefix} is above 128`);
      const kinds: number[] = [];
      const headers: string[] = [];
      for (const k of l.key) {
        const s = k.source;
        if (s.case === "header") {
          if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(s.value))
            throw new Error(`rate limit "${name}": header "${s.value}" is not a lower-case header name`);
          kinds.push(K_HEADER);
          headers.push(s.value);
        } else {
          kinds.push(s.case === "clientAddress" ? K_ADDRESS : K_ROUTE);
          headers.push("");
        }
      }
      const seconds = Math.max(1, Math.ceil(perMs / 1000));
      return {
        identity: `${identity}\u0000${name}`,
        kinds,
        headers,
        rate: l.requests / perMs,
        burst,
        ipv6Prefix: prefix,
        // The draft's quota per window: the sustained rate, in whole seconds.
        policyItem: `"${name}";q=${Math.round((l.requests * seconds * 1000) / perMs)};w=${seconds}`,
        quotedName: `"${name}"`,
      };
    });
    this.table = table;
    this.counts = table.counts(identity);
    this.headers = !spec.headersOff;
    this.policy = this.limits.map((l) => l.policyItem).join(", ");
  }

  /**
   * Takes a token from each limit's bucket, in order; false at the first empty one (the tokens taken
   * before it stay taken, as Envoy's descriptors do). Sets `x.shapingFields` to the fields the
   * answer carries: RateLimit-Policy and RateLimit, and Retry-After when refused.
   */
  admit(x: ShapingTarget, head: RequestView, clientIp: string): boolean {
    const table = this.table;
    const now = Date.now();
    const limits = this.limits;
    let state = "";
    for (let i = 0; i < limits.length; i++) {
      const l = limits[i] as Limit;
      table.keyStart(l.identity);
      const kinds = l.kinds;
      for (let k = 0; k < kinds.length; k++) {
        const kind = kinds[k];
        if (kind === K_ADDRESS) table.keyPart(addressKey(clientIp, l.ipv6Prefix));
        else if (kind === K_HEADER) table.keyPart(head.header(l.headers[k] as string) ?? ABSENT);
      }
      const ok = table.take(l.rate, l.burst, now);
      const tokens = table.tokens;
      if (!ok) {
        this.counts.refused++;
        // Whole seconds until one token is back (at least 1: "Retry-After: 0" invites a retry storm).
        const wait = Math.max(1, Math.ceil((1 - tokens) / l.rate / 1000));
        const f = ["retry-after", String(wait)];
        if (this.headers)
          f.push("ratelimit-policy", this.policy, "ratelimit", `${l.quotedName};r=0;t=${wait}`);
        x.shapingFields = f;
        return false;
      }
      if (this.headers) {
        const full = Math.ceil((l.burst - tokens) / l.rate / 1000);
        const item = `${l.quotedName};r=${Math.floor(tokens)};t=${full}`;
        state = state === "" ? item : `${state}, ${item}`;
      }
    }
    this.counts.admitted++;
    if (this.headers) x.shapingFields = ["ratelimit-policy", this.policy, "ratelimit", state];
    return true;
  }
}

/**
 * The client address as a key: IPv4 (also IPv4-mapped IPv6) whole; IPv6 by its first `prefix` bits,
 * since one client commonly holds a whole /64 and could otherwise make up 2^64 keys.
 */
export function addressKey(ip: string, prefix: number): string {
  if (ip.indexOf(":") < 0) return ip;
  if (ip.startsWith("::ffff:") && ip.indexOf(".") > 0) return ip.slice(7);
  if (prefix >= 128) return ip;
  const groups = expandIpv6(ip);
  if (groups === null) return ip;
  let out = "";
  let bits = prefix;
  for (let i = 0; i < 8; i++) {
    const keep = Math.min(16, Math.max(bits, 0));
    bits -= keep;
    const g = keep === 0 ? 0 : (groups[i] as number) & ((0xffff << (16 - keep)) & 0xffff);
    out += i === 0 ? g.toString(16) : `:${g.toString(16)}`;
  }
  return `${out}/${prefix}`;
}

function expandIpv6(ip: string): number[] | null {
  const zone = ip.indexOf("%");
  const text = zone < 0 ? ip : ip.slice(0, zone);
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((g) => Number.parseInt(g, 16)));
  const head = parse(halves[0] as string);
  const tail = halves.length === 2 ? parse(halves[1] as string) : [];
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const groups = [...head, ...new Array<number>(fill).fill(0), ...tail];
  return groups.some((g) => Number.isNaN(g)) ? null : groups;
}
