/** The ClientHello reader on real ClientHellos (Node's TLS client) and on the attacks around them. */
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import tls from "node:tls";
import { ClientHelloReader, type HelloResult } from "./client-hello.ts";

/** The first flight of a real TLS client (one ClientHello record), caught by a plain TCP server. */
async function realHello(servername?: string): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  const got = new Promise<Buffer>((resolve) => {
    server.once("connection", (s) => {
      let buf = Buffer.alloc(0);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          resolve(buf.subarray(0, 5 + buf.readUInt16BE(3)));
          s.destroy();
        }
      });
    });
  });
  const client = tls.connect({ host: "127.0.0.1", port, ...(servername !== undefined && { servername }) });
  client.on("error", () => {});
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

function feed(chunks: Buffer[], max = 16384): HelloResult {
  const r = new ClientHelloReader(max);
  let last: HelloResult = { state: "more" };
  for (const c of chunks) last = r.push(c);
  return last;
}

/** The same handshake bytes re-framed in records of `size` bytes each. */
function reframe(hello: Buffer, size: number): Buffer {
  const hs = hello.subarray(5);
  const out: Buffer[] = [];
  for (let i = 0; i < hs.length; i += size) {
    const part = hs.subarray(i, i + size);
    const header = Buffer.from([22, 3, 1, 0, 0]);
    header.writeUInt16BE(part.length, 3);
    out.push(header, part);
  }
  return Buffer.concat(out);
}

test("the server name of a real ClientHello, whole, byte by byte, and in 1-byte records", async () => {
  const hello = await realHello("App.Example.com");
  assert.deepEqual(feed([hello]), { state: "done", serverName: "app.example.com" });
  assert.deepEqual(feed([...hello].map((b) => Buffer.from([b]))), {
    state: "done",
    serverName: "app.example.com",
  });
  const fragmented = reframe(hello, 1);
  assert.deepEqual(feed([fragmented], 65536), { state: "done", serverName: "app.example.com" });
  // Fragments count against the size limit with their record headers: 6x the bytes here.
  assert.equal((feed([fragmented], hello.length * 3) as { code: string }).code, "client_hello_too_large");
  // Without SNI (an IP address as host): done, no name.
  assert.deepEqual(feed([await realHello()]), { state: "done", serverName: "" });
  // Everything short of the last byte waits for more.
  assert.deepEqual(feed([hello.subarray(0, hello.length - 1)]), { state: "more" });
});

test("lengths that lie, wrong types and bad names are refused, not guessed at", async () => {
  const hello = await realHello("a.example.com");
  const invalid = (b: Buffer, why: RegExp) => {
    const r = feed([b]);
    assert.equal(r.state, "error", `expected an error for ${why}`);
    assert.equal((r as { code: string }).code, "client_hello_invalid");
    assert.match((r as { reason: string }).reason, why);
  };
  invalid(Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), /record type 71/);
  invalid(Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02]), /SSLv2/);
  invalid(Buffer.from([22, 3, 1, 0, 0]), /empty handshake record/);
  invalid(Buffer.from([22, 3, 1, 0x40, 0x01]), /more than 16384/);
  // The handshake header announces one byte more than the record carries, then the next record
  // is an application data record: refused at its type.
  const longer = Buffer.from(hello);
  longer.writeUIntBE(longer.readUIntBE(6, 3) + 1, 6, 3);
  invalid(Buffer.concat([longer, Buffer.from([23, 3, 3, 0, 1, 0])]), /record type 23/);
  // The handshake header announces one byte less: the record has a byte after the hello.
  const shorter = Buffer.from(hello);
  shorter.writeUIntBE(shorter.readUIntBE(6, 3) - 1, 6, 3);
  invalid(shorter, /after the ClientHello|bytes announced|extensions of/);
  // The server name's length grows by one: every enclosing length now disagrees.
  const at = hello.indexOf(Buffer.from("a.example.com"));
  const nameLen = Buffer.from(hello);
  nameLen.writeUInt16BE(nameLen.readUInt16BE(at - 2) + 1, at - 2);
  invalid(nameLen, /bytes announced|server name/);
  // A NUL inside the name.
  const nul = Buffer.from(hello);
  nul[at + 1] = 0;
  invalid(nul, /not a DNS name/);
  // Not a ClientHello (a ServerHello type).
  const type = Buffer.from(hello);
  type[5] = 2;
  invalid(type, /handshake type 2/);
});

test("a declared size beyond the limit is refused before its bytes arrive", () => {
  // A record header and a handshake header announcing 70000 bytes: no need to wait for them.
  const r = feed([Buffer.from([22, 3, 1, 0x40, 0x00, 1, 0x01, 0x11, 0x70])], 16384);
  assert.equal((r as { code: string }).code, "client_hello_too_large");
});
