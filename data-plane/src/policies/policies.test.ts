import assert from "node:assert/strict";
import { test } from "node:test";
import { ipBytes, ipText, parseCidr } from "@agw/core/cidr";
import { RequestHead } from "../engine/http1-parser.ts";
import { resolveClientAddress } from "./client-address.ts";
import { IpRules } from "./ip-rules.ts";
import { IpSet } from "./ip-set.ts";
import { parseProxyHeader } from "./proxy-protocol.ts";

test("addresses: strict IPv4 and IPv6, v4-mapped IPv6 is IPv4", () => {
  assert.deepEqual([...(ipBytes("10.1.2.3") ?? [])], [10, 1, 2, 3]);
  assert.deepEqual([...(ipBytes("::ffff:10.1.2.3") ?? [])], [10, 1, 2, 3]);
  assert.equal(ipBytes("2001:db8::1")?.length, 16);
  assert.equal(ipText("::FFFF:192.0.2.1"), "192.0.2.1");
  for (const bad of [
    "010.1.1.1",
    "1.2.3",
    "1.2.3.4:80",
    "256.1.1.1",
    "1::2::3",
    "fe80::1%eth0",
    "",
    " 1.2.3.4",
    "::g",
  ])
    assert.equal(ipBytes(bad), undefined, bad);
});

test("CIDR prefixes: lengths, host bits, v4-mapped prefixes", () => {
  assert.deepEqual(parseCidr("10.0.0.0/8"), { bytes: new Uint8Array([10, 0, 0, 0]), bits: 8 });
  const mapped = parseCidr("::ffff:10.0.0.0/104");
  assert.ok(typeof mapped !== "string" && mapped.bits === 8 && mapped.bytes.length === 4);
  assert.match(String(parseCidr("10.0.0.1/8")), /bits set past/);
  assert.match(String(parseCidr("10.0.0.0/33")), /prefix length/);
  assert.match(String(parseCidr("10.0.0.0/08")), /prefix length/);
  assert.match(String(parseCidr("nope/8")), /not an IP/);
});

test("IP set: a trie agrees with a scan over random prefixes and addresses", () => {
  let seed = 42;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const prefixes: Array<{ n: number; bits: number }> = [];
  const texts: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const bits = 8 + (rnd() % 25);
    const n = bits === 0 ? 0 : ((rnd() << 1) >>> 0) & (~((1 << (32 - bits)) - 1) >>> 0);
    const v = n >>> 0;
    prefixes.push({ n: v, bits });
    texts.push(`${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}/${bits}`);
  }
  const set = new IpSet(texts);
  for (let i = 0; i < 20000; i++) {
    // Addresses near the prefixes, so that both answers occur.
    const p = prefixes[rnd() % prefixes.length] as { n: number; bits: number };
    const a = (p.n ^ (rnd() % 512)) >>> 0;
    const text = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
    const scan = prefixes.some((q) => q.bits === 0 || (a ^ q.n) >>> (32 - q.bits) === 0);
    assert.equal(set.has(text), scan, text);
  }
});

test("IP rules: deny wins, allow lists close, IPv6 and v4-mapped, unparsable refused", () => {
  const r = new IpRules(["10.0.0.0/8", "2001:db8::/32"], ["10.9.0.0/16"]);
  assert.equal(r.permits("10.1.2.3"), true);
  assert.equal(r.permits("::ffff:10.1.2.3"), true);
  assert.equal(r.permits("10.9.1.1"), false);
  assert.equal(r.permits("192.0.2.1"), false);
  assert.equal(r.permits("2001:db8:1::5"), true);
  assert.equal(r.permits("2001:db9::5"), false);
  assert.equal(r.permits(""), false);
  const denyOnly = new IpRules([], ["0.0.0.0/0"]);
  assert.equal(denyOnly.permits("1.2.3.4"), false);
  assert.equal(denyOnly.permits("::1"), true, "an IPv4 /0 is not every IPv6 address");
  assert.throws(() => new IpRules(["10.0.0.1/8"], []), /bits set/);
});

function head(...xff: string[]): RequestHead {
  const h = new RequestHead();
  for (const v of xff) {
    h.names.push("x-forwarded-for");
    h.rawNames.push("X-Forwarded-For");
    h.values.push(v);
  }
  return h;
}

test("client address: trusted hops take the Nth from the right, never a spoofed entry", () => {
  const one = { xffNumTrustedHops: 1, trustedProxies: null };
  assert.equal(resolveClientAddress(undefined, "10.0.0.1", head("6.6.6.6")), "10.0.0.1");
  assert.equal(resolveClientAddress(one, "10.0.0.1", head("6.6.6.6, 203.0.113.7")), "203.0.113.7");
  assert.equal(resolveClientAddress(one, "10.0.0.1", head("6.6.6.6", "203.0.113.7")), "203.0.113.7");
  assert.equal(resolveClientAddress(one, "10.0.0.1", head()), "10.0.0.1");
  const two = { xffNumTrustedHops: 2, trustedProxies: null };
  assert.equal(resolveClientAddress(two, "10.0.0.1", head("6.6.6.6, 203.0.113.7, 10.0.0.2")), "203.0.113.7");
  assert.equal(resolveClientAddress(one, "10.0.0.1", head("6.6.6.6, not-an-ip")), undefined);
});

test("client address: trusted proxies by CIDR skip trusted entries from the right", () => {
  const p = { xffNumTrustedHops: 0, trustedProxies: new IpSet(["10.0.0.0/8"]) };
  assert.equal(resolveClientAddress(p, "192.0.2.9", head("6.6.6.6")), "192.0.2.9", "peer not trusted");
  assert.equal(resolveClientAddress(p, "10.0.0.1", head("6.6.6.6, 203.0.113.7, 10.1.1.1")), "203.0.113.7");
  assert.equal(resolveClientAddress(p, "10.0.0.1", head("10.2.2.2, 10.1.1.1")), "10.2.2.2");
  assert.equal(resolveClientAddress(p, "10.0.0.1", head()), "10.0.0.1");
  assert.equal(resolveClientAddress(p, "10.0.0.1", head("x, 10.1.1.1")), undefined);
});

const b = (s: string) => Buffer.from(s, "latin1");
const SIG = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

test("PROXY v1: strict lines, UNKNOWN, partial input", () => {
  assert.deepEqual(parseProxyHeader(b("PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET")), {
    length: 42,
    source: "192.0.2.1",
  });
  assert.deepEqual(parseProxyHeader(b("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")), {
    length: 40,
    source: "2001:db8::1",
  });
  assert.deepEqual(parseProxyHeader(b("PROXY UNKNOWN\r\n")), { length: 15, source: null });
  assert.equal(parseProxyHeader(b("PROXY TCP4 192.0.2.1")), null);
  assert.equal(parseProxyHeader(b("PRO")), null);
  for (const bad of [
    "GET / HTTP/1.1\r\n",
    "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443 x\r\n",
    "PROXY TCP4  192.0.2.1 192.0.2.2 56324 443\r\n",
    "PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n",
    "PROXY TCP4 192.0.2.1 192.0.2.2 65536 443\r\n",
    "PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n",
    `PROXY TCP4 ${"1".repeat(120)}`,
  ])
    assert.equal(typeof parseProxyHeader(b(bad)), "string", bad);
});

test("PROXY v2: PROXY and LOCAL, TLVs skipped, bad version and family refused", () => {
  const v4 = Buffer.concat([
    SIG,
    Buffer.from([0x21, 0x11, 0, 15, 198, 51, 100, 7, 10, 0, 0, 1, 0, 80, 1, 187, 4, 0, 0]),
  ]);
  assert.deepEqual(parseProxyHeader(Buffer.concat([v4, b("GET")])), { length: 31, source: "198.51.100.7" });
  assert.equal(parseProxyHeader(v4.subarray(0, 20)), null);
  const v6 = Buffer.concat([SIG, Buffer.from([0x21, 0x21, 0, 36]), Buffer.alloc(36)]);
  v6[16] = 0x20;
  v6[17] = 0x01;
  v6[31] = 5;
  assert.deepEqual(parseProxyHeader(v6), { length: 52, source: "2001:0:0:0:0:0:0:5" });
  const local = Buffer.concat([SIG, Buffer.from([0x20, 0x00, 0, 0])]);
  assert.deepEqual(parseProxyHeader(local), { length: 16, source: null });
  assert.equal(typeof parseProxyHeader(Buffer.concat([SIG, Buffer.from([0x11, 0x11, 0, 12])])), "string");
  assert.equal(typeof parseProxyHeader(Buffer.concat([SIG, Buffer.from([0x21, 0x12, 0, 12])])), "string");
  assert.equal(
    typeof parseProxyHeader(Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0xff, 0xff])])),
    "string",
  );
  assert.equal(typeof parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])), "string");
});
