/** How the agent encodes addresses for the BPF maps: the kernel compares these bytes, so they must be exact. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ip16, prefixKey } from "@agw/ebpf-agent/agent";

test("IPv4 and v4-mapped IPv6 encode to the same 16 bytes", () => {
  assert.equal(ip16("127.0.0.1").toString("hex"), "00000000000000000000ffff7f000001");
  assert.deepEqual(ip16("::ffff:127.0.0.1"), ip16("127.0.0.1"));
});

test("IPv6 addresses expand around ::", () => {
  assert.equal(ip16("::1").toString("hex"), "00000000000000000000000000000001");
  assert.equal(ip16("fd00::2").toString("hex"), "fd000000000000000000000000000002");
  assert.equal(ip16("fe80::fc:ff:fe00:1").toString("hex"), "fe8000000000000000fc00fffe000001");
  assert.equal(ip16("::").toString("hex"), "0".repeat(32));
});

test("bad addresses and prefixes are refused with the offending text", () => {
  for (const bad of ["300.0.0.1", "1::2::3", "12345::", "1:2:3", "localhost"])
    assert.throws(() => ip16(bad), new RegExp(`not an IP address: ${bad.replace(/[.:]/g, "\\$&")}`));
  assert.throws(() => prefixKey("10.0.0.0/33"), /bad prefix length in 10\.0\.0\.0\/33/);
});

test("LPM keys put IPv4 prefixes under ::ffff:0:0/96", () => {
  const key = prefixKey("127.0.0.0/8");
  assert.equal(key.readUInt32LE(0), 104);
  assert.deepEqual(key.subarray(4), ip16("127.0.0.0"));
  assert.equal(prefixKey("::1/128").readUInt32LE(0), 128);
  assert.equal(prefixKey("192.0.2.2").readUInt32LE(0), 128);
});
