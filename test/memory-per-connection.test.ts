/**
 * Memory per connection is bounded (issue 14), as an attacker tries it: a client that pipelines
 * thousands of requests (HTTP/1.1) or opens stream after stream with a huge flow-control window
 * (HTTP/2, h2c) and never reads a byte of the answers. The RSS of the real `agw run` process may not
 * grow by more than RSS_BOUND (docs/security.md, "Memory per connection is bounded"); before the fix
 * the HTTP/1.1 gateway kept answering into its write buffer, ~1 MiB per 32 requests.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { freePort, requireOrSkip, startGateway, tempDir } from "./helpers.ts";

/** Growth of the gateway's RSS allowed for one hostile connection (the documented bound). */
const RSS_BOUND = 32 * 1024 * 1024;
const BODY = Buffer.alloc(32 * 1024, "x");
const REQUESTS = 4000; // 125 MiB of responses if they were all buffered

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}

/** Waits until the origin has seen no new request for `quietMs` (bounded by `maxMs`). */
async function settle(count: () => number, quietMs: number, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs;
  let last = -1;
  let since = Date.now();
  while (Date.now() < end) {
    const n = count();
    if (n !== last) {
      last = n;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

test("a client that never reads cannot grow the gateway's memory without bound", async (t) => {
  if (!requireOrSkip(t, process.platform === "linux", "RSS is read from /proc")) return;
  let hits = 0;
  const origin = http.createServer((_req, res) => {
    hits++;
    res.end(BODY);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const dir = tempDir("agw-memory-");
  const port = await freePort();
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: main
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: all, cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${(origin.address() as AddressInfo).port}"]
`,
  );
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());
  const pid = gw.proc.child.pid as number;

  await t.test("HTTP/1.1: thousands of pipelined requests, responses never read", async () => {
    // Warm up so that the baseline includes the code paths and pools of an ordinary exchange.
    for (let i = 0; i < 20; i++) await fetch(`http://127.0.0.1:${port}/warm`).then((r) => r.arrayBuffer());
    const before = rssBytes(pid);
    hits = 0;
    const sock = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve) => sock.once("connect", resolve));
    sock.pause(); // never reads
    const req = Buffer.from(`GET /p HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`);
    sock.write(Buffer.concat(Array.from({ length: REQUESTS }, () => req)));
    await settle(() => hits, 1500, 30_000);
    const grown = rssBytes(pid) - before;
    sock.destroy();
    t.diagnostic(
      `${hits} of ${REQUESTS} requests reached the origin; RSS grew ${(grown / 1048576).toFixed(1)} MiB`,
    );
    assert.ok(hits < REQUESTS, `every request was answered into a client that reads nothing (${hits})`);
    assert.ok(grown < RSS_BOUND, `RSS grew ${(grown / 1048576).toFixed(1)} MiB`);
  });

  await t.test("h2c: streams opened with a 2^31-1 window, responses never read", async () => {
    const before = rssBytes(pid);
    hits = 0;
    const sock = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve) => sock.once("connect", resolve));
    sock.pause();
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(2 ** 31 - 1, 8);
    const windowUpdate = Buffer.alloc(4);
    windowUpdate.writeUInt32BE(2 ** 31 - 1 - 65535, 0);
    const authority = Buffer.from(`127.0.0.1:${port}`);
    // :method GET, :scheme http, :path / (static table), :authority as a literal with an indexed name.
    const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84, 0x01, authority.length]), authority]);
    const parts = [
      Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      frame(0x4, 0, 0, settings),
      frame(0x8, 0, 0, windowUpdate),
    ];
    sock.on("error", () => {}); // the gateway may reset a session that misbehaves: that is bounded too
    sock.write(Buffer.concat(parts));
    // Batches within SETTINGS_MAX_CONCURRENT_STREAMS (128), so that the streams are not refused as a flood.
    for (let b = 0; b < REQUESTS / 100 && !sock.destroyed; b++) {
      const batch = [];
      for (let i = b * 100; i < (b + 1) * 100; i++) batch.push(frame(0x1, 0x5, 2 * i + 1, block));
      sock.write(Buffer.concat(batch));
      await new Promise((r) => setTimeout(r, 50));
    }
    await settle(() => hits, 1500, 30_000);
    const grown = rssBytes(pid) - before;
    sock.destroy();
    t.diagnostic(
      `${hits} of ${REQUESTS} streams reached the origin; RSS grew ${(grown / 1048576).toFixed(1)} MiB`,
    );
    assert.ok(grown < RSS_BOUND, `RSS grew ${(grown / 1048576).toFixed(1)} MiB`);
  });
});
