import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import type net from "node:net";
import { after, before, describe, it } from "node:test";
import { cluster, config, endpoint, type Gateway, startGateway } from "../../test/gateway.ts";
import { parseResponses, type RawOrigin, rawExchange, startRawOrigin } from "../../test/net.ts";
import { AGW_ERRORS } from "./errors.ts";

const T = { timeout: 20000 };
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/**
 * A WebSocket echo origin written against RFC 6455 (handshake, masked client frames, unmasked
 * replies, close handshake); `GET /refuse` is answered with a plain 403 instead of the upgrade.
 */
function wsEcho(socket: net.Socket): void {
  let buf = Buffer.alloc(0);
  let open = false;
  socket.on("error", () => socket.destroy());
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (!open) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      buf = buf.subarray(end + 4);
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1];
      if (head.startsWith("GET /refuse") || key === undefined || !/^upgrade:\s*websocket/im.test(head)) {
        socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno");
        return;
      }
      const accept = createHash("sha1")
        .update(key + WS_GUID)
        .digest("base64");
      socket.write(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${accept}\r\nX-Origin: ws-echo\r\n\r\n`,
      );
      open = true;
    }
    for (;;) {
      if (buf.length < 2) return;
      const opcode = (buf[0] as number) & 0x0f;
      let len = (buf[1] as number) & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i & 3] as number);
      buf = buf.subarray(off + 4 + len);
      const header =
        len < 126
          ? Buffer.from([0x80 | opcode, len])
          : len < 65536
            ? Buffer.from([0x80 | opcode, 126, len >> 8, len & 0xff])
            : Buffer.concat([Buffer.from([0x80 | opcode, 127]), bigLength(len)]);
      socket.write(Buffer.concat([header, payload]));
      if (opcode === 8) {
        socket.end();
        return;
      }
    }
  });
}

function bigLength(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** Opens a WebSocket (Node's built-in client) and resolves once it is open. */
function openSocket(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
  });
}

/** Sends `data` and resolves with the next message. */
function roundTrip(ws: WebSocket, data: string | Uint8Array): Promise<string | Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no echo within 5 s")), 5000);
    ws.onmessage = (e: MessageEvent) => {
      clearTimeout(timer);
      resolve(typeof e.data === "string" ? e.data : Buffer.from(e.data as ArrayBuffer));
    };
    ws.send(data);
  });
}

describe("Upgrade tunnels (WebSocket)", () => {
  let origin: RawOrigin;
  let proxy: Gateway;

  before(async () => {
    origin = await startRawOrigin(wsEcho);
    proxy = await startGateway(
      config("v1", [{ prefix: "/", cluster: "ws" }], [cluster("ws", [endpoint(origin.port)])]),
    );
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it("echoes text and large binary messages through the gateway", T, async () => {
    const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/chat`);
    assert.equal(await roundTrip(ws, "hello"), "hello");
    const big = randomBytes(300_000);
    assert.deepEqual(await roundTrip(ws, big), big);
    ws.close();
  });

  it("keeps an open WebSocket through 1000 config swaps", T, async () => {
    const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/chat`);
    assert.equal(await roundTrip(ws, "before"), "before");
    for (let i = 0; i < 1000; i++) {
      // Each push changes the route (a header to add), so each is a real build and swap.
      await proxy.push(
        config(
          `v${i + 2}`,
          [{ prefix: "/", cluster: "ws", requestHeaders: { set: [["x-push", String(i)]] } }],
          [cluster("ws", [endpoint(origin.port)])],
        ),
      );
    }
    assert.equal(await roundTrip(ws, "after"), "after");
    ws.close();
  });

  it("forwards the 101 with the upstream's headers and bytes the client sent early", T, async () => {
    const key = randomBytes(16).toString("base64");
    const frame = Buffer.from([0x81, 0x82, 1, 2, 3, 4, "h".charCodeAt(0) ^ 1, "i".charCodeAt(0) ^ 2]);
    const req = Buffer.concat([
      Buffer.from(
        "GET /chat HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
          `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
      ),
      frame,
    ]);
    const r = await rawExchange(proxy.port, req, { until: (b) => b.includes(Buffer.from([0x81, 2])) });
    const text = r.data.toString("latin1");
    assert.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(text, /\r\nupgrade: websocket\r\nconnection: upgrade\r\n/i);
    assert.match(text, /\r\nx-origin: ws-echo\r\n/i);
    assert.match(text, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
    const accept = createHash("sha1")
      .update(key + WS_GUID)
      .digest("base64");
    assert.ok(text.includes(`Sec-WebSocket-Accept: ${accept}`));
    assert.ok(text.endsWith("\x81\x02hi"));
  });

  it("relays a refused upgrade as a normal response", T, async () => {
    const req =
      "GET /refuse HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    const r = await rawExchange(proxy.port, req, { until: (b) => parseResponses(b).responses.length >= 1 });
    const [res] = parseResponses(r.data).responses;
    assert.equal(res?.status, 403);
    assert.equal(res?.body.toString(), "no");
  });
});

describe("Upgrade tunnels: upstream misbehaviour", () => {
  let origin: RawOrigin;
  let proxy: Gateway;

  before(async () => {
    // Answers every request with a 101, asked for or not.
    origin = await startRawOrigin((s) => {
      s.on("error", () => s.destroy());
      s.once("data", () =>
        s.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
      );
    });
    const cfg = config("v1", [{ prefix: "/", cluster: "c" }], [cluster("c", [endpoint(origin.port)])]);
    proxy = await startGateway(cfg);
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it("answers 502 to a 101 nobody asked for", T, async () => {
    const r = await rawExchange(proxy.port, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", {
      until: (b) => parseResponses(b).responses.length >= 1,
    });
    const [res] = parseResponses(r.data).responses;
    assert.equal(res?.status, 502);
    assert.equal(res?.headers.get("x-agw-error"), AGW_ERRORS.AGW_ERR_UPSTREAM_PROTOCOL_ERROR);
  });
});
