/**
 * Pipelined requests are read only while the response side is not backed up (docs/proxy.md, "Memory
 * per connection"): a client that stops reading stops the gateway from answering more, gets every
 * answer complete and in order once it reads again, and a graceful drain meanwhile flushes what was
 * answered instead of resetting the connection. The RSS bound itself is measured on a real `agw run`
 * in test/memory-per-connection.test.ts.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { cluster, config, endpoint, type Gateway, startGateway } from "../../test/gateway.ts";
import { type HttpOrigin, parseResponses, startHttpOrigin } from "../../test/net.ts";

const T = { timeout: 170_000 };
const BODY = Buffer.alloc(64 * 1024, "y");
// 37.5 MiB of responses: far more than what the kernel's loopback socket buffers can hold (tcp_wmem + tcp_rmem)
const N = 600;
/** Small answers: the client's stall then falls between two responses (ClientConn.awaitingDrain). */
const SMALL = Buffer.alloc(8 * 1024, "z");
const N_SMALL = 2000; // 16 MiB

/** Resolves once `count()` has not changed for `quietMs` (at most `maxMs`). */
async function settle(count: () => number, quietMs = 400, maxMs = 10_000): Promise<number> {
  const end = Date.now() + maxMs;
  let last = -1;
  let since = Date.now();
  while (Date.now() < end) {
    const n = count();
    if (n !== last) {
      last = n;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return count();
}

/** Resolves once `done()` holds (at most `maxMs`). */
async function until(done: () => boolean, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs;
  while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}

/** A client that writes N pipelined GETs and does not read until told to. */
async function nonReader(port: number, path = "/r", n = N) {
  const sock = net.connect(port, "127.0.0.1");
  await new Promise<void>((r) => sock.once("connect", r));
  sock.pause();
  const chunks: Buffer[] = [];
  let error = false;
  sock.on("error", () => {
    error = true;
  });
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  let ids = "";
  for (let i = 0; i < n; i++) ids += `GET ${path}?id=${i} HTTP/1.1\r\nHost: example.test\r\n\r\n`;
  sock.write(ids);
  return {
    sock,
    closed,
    get error() {
      return error;
    },
    read(): void {
      sock.on("data", (c: Buffer) => chunks.push(c));
      sock.resume();
    },
    data: () => Buffer.concat(chunks),
  };
}

describe("HTTP/1.1 backpressure between responses and pipelined requests", () => {
  let origin: HttpOrigin;
  let proxy: Gateway;

  before(async () => {
    origin = await startHttpOrigin((req, res) => res.end(req.url?.startsWith("/s") ? SMALL : BODY));
    const c = config("1", [{ prefix: "/", cluster: "o" }], [cluster("o", [endpoint(origin.port)])]);
    proxy = await startGateway(c);
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it("stops answering a client that does not read, then answers all in order when it does", T, async () => {
    const before = origin.requests.length;
    const c = await nonReader(proxy.port);
    const answered = (await settle(() => origin.requests.length)) - before;
    assert.ok(answered < N / 2, `${answered} of ${N} answered into a client that reads nothing`);
    c.read();
    await until(() => parseResponses(c.data()).responses.length >= N, 160_000);
    const rs = parseResponses(c.data()).responses;
    assert.equal(rs.length, N);
    for (const r of rs) {
      assert.equal(r.status, 200);
      assert.equal(r.body.length, BODY.length);
    }
    assert.deepEqual(
      origin.requests.slice(before).map((r) => r.url),
      Array.from({ length: N }, (_, i) => `/r?id=${i}`),
    );
    c.sock.destroy();
  });

  it("a drain flushes the answers already given, then ends the connection cleanly", T, async () => {
    const before = origin.requests.length;
    const c = await nonReader(proxy.port, "/s", N_SMALL);
    const answered = (await settle(() => origin.requests.length)) - before;
    proxy.serving.shutdown();
    c.read();
    await c.closed;
    assert.equal(c.error, false, "the connection was reset");
    const { responses: rs, rest } = parseResponses(c.data());
    assert.ok(rs.length >= answered && rs.length < N_SMALL, `${rs.length} responses, ${answered} answered`);
    for (const r of rs) assert.equal(r.body.length, SMALL.length);
    assert.equal(rest, 0, "the connection ended inside a response");
  });
});
