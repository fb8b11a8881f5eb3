import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import { BucketTable, bucketMemory } from "./bucket-table.ts";
import { addressKey } from "./rate-limit.ts";

function take(t: BucketTable, key: string, rate: number, burst: number, now: number): boolean {
  t.keyStart("route\u0000limit");
  t.keyPart(key);
  return t.take(rate, burst, now);
}

test("a bucket holds burst tokens and refills at its rate", () => {
  const t = new BucketTable(bucketMemory(64));
  const rate = 2 / 1000; // 2 per second
  for (let i = 0; i < 5; i++) assert.equal(take(t, "a", rate, 5, 1000), true, `take ${i}`);
  assert.equal(take(t, "a", rate, 5, 1000), false);
  assert.ok(t.tokens < 1);
  assert.equal(take(t, "a", rate, 5, 1499), false, "half a second short of one token");
  assert.equal(take(t, "a", rate, 5, 1500), true, "one token after 500 ms");
  assert.equal(take(t, "a", rate, 5, 1500), false);
  assert.equal(take(t, "b", rate, 5, 1500), true, "another key has its own bucket");
  // Idle for an hour: back to burst, not more.
  for (let i = 0; i < 5; i++) assert.equal(take(t, "a", rate, 5, 3_600_000), true);
  assert.equal(take(t, "a", rate, 5, 3_600_000), false);
});

test("keys made of parts do not collide by concatenation", () => {
  const t = new BucketTable(bucketMemory(64));
  const two = (a: string, b: string) => {
    t.keyStart("r\u0000l");
    t.keyPart(a);
    t.keyPart(b);
    return t.take(1e-9, 1, 0);
  };
  assert.equal(two("ab", "c"), true);
  assert.equal(two("a", "bc"), true, '"ab"+"c" and "a"+"bc" are different buckets');
  assert.equal(two("ab", "c"), false);
});

test("a flood of made-up keys stays in the table's fixed memory and does not free a drained bucket", () => {
  const memory = bucketMemory(4096);
  const bytes = memory.buffer.byteLength;
  const t = new BucketTable(memory);
  const rate = 1 / 60_000; // one a minute
  // The victim drains its bucket.
  for (let i = 0; i < 10; i++) take(t, "victim", rate, 10, 0);
  assert.equal(take(t, "victim", rate, 10, 0), false);
  // An attacker makes up 200,000 keys, one request each, within the same second.
  for (let i = 0; i < 200_000; i++) take(t, `attacker-${i}`, rate, 10, 500);
  assert.equal(memory.buffer.byteLength, bytes, "the table did not grow");
  assert.ok(t.used() <= 4096);
  assert.equal(take(t, "victim", rate, 10, 600), false, "the drained bucket was not evicted");
});

test("idle buckets are evicted first: a refilled bucket loses nothing", () => {
  const t = new BucketTable(bucketMemory(8)); // one set of 8
  const rate = 1 / 1000;
  for (let i = 0; i < 8; i++) take(t, `k${i}`, rate, 2, 0);
  take(t, "busy", rate, 2, 0); // evicts one: every bucket is at 1 of 2
  for (let i = 0; i < 2; i++) take(t, "busy", rate, 2, 1);
  assert.equal(take(t, "busy", rate, 2, 1), false);
  // Later the 7 other buckets have refilled; 7 new keys evict those, not the drained one.
  for (let i = 0; i < 7; i++) take(t, `new${i}`, rate, 2, 1_002);
  // busy refilled one token since (not two: a new bucket would hold two).
  assert.equal(take(t, "busy", rate, 2, 1_002), true);
  assert.equal(take(t, "busy", rate, 2, 1_002), false, "busy kept its drained bucket");
});

test("two threads taking from one bucket admit exactly burst requests together", async () => {
  const memory = bucketMemory(1024);
  const start = new Int32Array(new SharedArrayBuffer(4));
  const url = new URL("./bucket-table.ts", import.meta.url).href;
  const code = `
    import { workerData, parentPort } from "node:worker_threads";
    const { BucketTable } = await import(${JSON.stringify(url)});
    const t = new BucketTable(workerData.memory);
    Atomics.wait(workerData.start, 0, 0);
    let ok = 0;
    for (let i = 0; i < 100000; i++) {
      t.keyStart("route\\u0000limit");
      t.keyPart("shared");
      if (t.take(1e-12, 50000, 0)) ok++;
    }
    parentPort.postMessage(ok);
  `;
  const run = () =>
    new Promise<number>((resolve, reject) => {
      const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), {
        workerData: { memory, start },
      });
      w.once("online", () =>
        setTimeout(() => {
          Atomics.store(start, 0, 1);
          Atomics.notify(start, 0);
        }, 200),
      );
      w.once("message", resolve);
      w.once("error", reject);
    });
  const [a, b] = await Promise.all([run(), run()]);
  // 200,000 takes at once from two threads: exactly the burst is admitted, not a token more.
  assert.equal(a + b, 50000, `worker shares ${a} + ${b}`);
});

test("client address keys: IPv4 whole, IPv4-mapped as IPv4, IPv6 by its /64", () => {
  assert.equal(addressKey("192.0.2.7", 64), "192.0.2.7");
  assert.equal(addressKey("::ffff:192.0.2.7", 64), "192.0.2.7");
  assert.equal(addressKey("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2:0:0:0:0/64");
  assert.equal(addressKey("2001:db8:1:2:ffff:1:2:3", 64), addressKey("2001:db8:1:2::9", 64));
  assert.notEqual(addressKey("2001:db8:1:3::1", 64), addressKey("2001:db8:1:2::1", 64));
  assert.equal(addressKey("2001:db8:1:2::1", 48), "2001:db8:1:0:0:0:0:0/48");
  assert.equal(addressKey("2001:db8::1", 128), "2001:db8::1");
});
