/**
 * An Upgrade (WebSocket) through `agw run` is observed like any exchange: counted under 1xx in the
 * request metrics and written to the access log with status 101 when the tunnel opens.
 */
import assert from "node:assert/strict";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import {
  accessLogEntry,
  freePort,
  get,
  singleRouteConfig,
  startGateway,
  tempDir,
  waitFor,
} from "./helpers.ts";

test("a WebSocket upgrade is counted (1xx) and access-logged (101) when its tunnel opens", async (t) => {
  // The origin accepts any upgrade, then echoes bytes.
  const origin = net.createServer((socket) => {
    socket.on("error", () => socket.destroy());
    socket.once("data", () => {
      socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
      socket.on("data", (chunk) => socket.write(chunk));
    });
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const dir = tempDir();
  const port = await freePort();
  const file = singleRouteConfig(dir, port, "ws", (origin.address() as AddressInfo).port);
  const accessLog = join(dir, "access.log");
  const { proc: gw, adminPort } = await startGateway(file, ["--access-log", accessLog]);
  t.after(() => gw.stop());

  const client = net.connect(port, "127.0.0.1");
  t.after(() => client.destroy());
  let received = "";
  client.setEncoding("latin1");
  client.on("data", (d: string) => {
    received += d;
  });
  client.write(
    "GET /chat HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Request-Id: ws-1\r\n\r\n",
  );
  await waitFor("the 101", () => (received.includes("\r\n\r\n") ? true : undefined));
  assert.match(received, /^HTTP\/1\.1 101 /);
  client.write("ping through the tunnel");
  await waitFor("the echo", () => (received.endsWith("ping through the tunnel") ? true : undefined));

  // Counted while the tunnel is still open.
  const metrics = await waitFor("the upgrade in the metrics", async () => {
    const text = (await get(`http://127.0.0.1:${adminPort}/stats/prometheus`)).body;
    return /agw_downstream_requests_total\{listener="web",route="ws",cluster="origin",code_class="1xx"\} 1/.test(
      text,
    )
      ? text
      : undefined;
  });
  assert.ok(metrics);
  client.end();

  // The access log is flushed when the gateway drains on SIGTERM.
  assert.equal(await gw.stop(), 0, gw.output());
  const line = accessLogEntry(accessLog, "ws-1");
  assert.equal(line.status, 101);
  assert.equal(line.route, "ws");
});
