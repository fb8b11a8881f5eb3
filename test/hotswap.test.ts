/**
 * Hot swap under load: 1000 config pushes through a real ADS server to a real `agw data-plane
 * --workers 2`, each waited for until the data plane ACKs it, while client loops keep requesting
 * (keep-alive connections and fresh ones) → not one failed request; a WebSocket opened before the
 * pushes still echoes after them.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { irToSnapshot } from "@agw/control-plane/xds/resources";
import { createLogger, TYPE_URL } from "@agw/core";
import type { Ir, IrRoute } from "@agw/core/ir";
import { agw, freePort, waitFor } from "./helpers.ts";

const PUSHES = 1000;

/** A minimal RFC 6455 echo: the handshake, then every (small, masked) client frame sent back unmasked. */
function webSocketEcho(socket: net.Socket, head: Buffer): void {
  const request = head.toString("latin1");
  const key = /^sec-websocket-key:\s*(\S+)/im.exec(request)?.[1] ?? "";
  const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  let buf = Buffer.alloc(0);
  socket.on("error", () => socket.destroy());
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 6) {
      const opcode = (buf[0] as number) & 0x0f;
      const len = (buf[1] as number) & 0x7f; // the test sends frames under 126 bytes
      if (buf.length < 6 + len) return;
      const mask = buf.subarray(2, 6);
      const payload = Buffer.from(buf.subarray(6, 6 + len));
      for (let i = 0; i < len; i++) payload[i] = (payload[i] as number) ^ (mask[i % 4] as number);
      buf = buf.subarray(6 + len);
      if (opcode === 8) {
        socket.end(Buffer.from([0x88, 0]));
        return;
      }
      socket.write(Buffer.concat([Buffer.from([0x80 | opcode, len]), payload]));
    }
  });
}

function route(name: string, order: number, prefix: string, cluster: string, push: number): IrRoute {
  return {
    name,
    order,
    hosts: [],
    path: { kind: "prefix", value: prefix },
    methods: [],
    headers: [],
    query: [],
    target: { cluster },
    timeoutMs: 10_000,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [["x-push", String(push)]], remove: [] },
    plugins: [],
  };
}

function ir(listenerPort: number, originPort: number, push: number): Ir {
  const cluster = (name: string) => ({
    name,
    lb: "round_robin" as const,
    connectTimeoutMs: 2000,
    idleTimeoutMs: 30_000,
    maxIdlePerEndpoint: 64,
    maxRequestsPerConnection: 0,
    endpoints: [{ address: "127.0.0.1", port: originPort, weight: 1 }],
  });
  return {
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: listenerPort,
        protocol: "http",
        routes: [route("ws", 0, "/ws", "ws", push), route("all", 1, "/", "origin", push)],
      },
    ],
    // A spare cluster comes and goes with every push, so pushes also add and remove clusters.
    clusters: [cluster("origin"), cluster("ws"), ...(push % 2 === 0 ? [cluster("spare")] : [])],
  };
}

/** A GET loop until `stop()`; every non-200 or error is a failure. */
function loadLoop(port: number, agent: http.Agent | false, stats: { ok: number; failed: string[] }) {
  let running = true;
  const done = (async () => {
    while (running) {
      await new Promise<void>((resolve) => {
        const req = http.get({ host: "127.0.0.1", port, path: "/load", agent, timeout: 10_000 }, (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode === 200) stats.ok++;
            else stats.failed.push(`status ${res.statusCode} ${res.headers["x-agw-error"] ?? ""}`);
            resolve();
          });
          res.on("error", (e) => {
            stats.failed.push(`response: ${e.message}`);
            resolve();
          });
        });
        req.on("timeout", () => req.destroy(new Error("timed out")));
        req.on("error", (e) => {
          stats.failed.push(`request: ${e.message}`);
          resolve();
        });
      });
    }
  })();
  return async () => {
    running = false;
    await done;
  };
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no echo of ${text}`)), 5_000);
    ws.addEventListener(
      "message",
      (e) => {
        clearTimeout(timer);
        resolve(String(e.data));
      },
      { once: true },
    );
    ws.send(text);
  });
}

test(`${PUSHES} config pushes under load: no failed request, a WebSocket survives`, async (t) => {
  const origin = http.createServer((req, res) => res.end(`origin ${req.url}\n`));
  origin.on("upgrade", (req, socket: net.Socket, head: Buffer) => {
    const raw = `GET ${req.url} HTTP/1.1\r\n${Object.entries(req.headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join("\r\n")}\r\n\r\n`;
    webSocketEcho(socket, Buffer.from(raw));
    if (head.length > 0) socket.unshift(head);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const originPort = (origin.address() as AddressInfo).port;
  const listenerPort = await freePort();
  const adminPort = await freePort();

  const cache = new SnapshotCache({ minIntervalMs: 0 });
  const registry = new DataPlaneRegistry();
  let snapshot = irToSnapshot(ir(listenerPort, originPort, 0));
  cache.set(snapshot);
  const silent = createLogger("control-plane", { write() {} });
  const server = await startAdsServer("127.0.0.1", 0, createAdsService(cache, registry, silent));
  const dp = agw(
    [
      "data-plane",
      "--xds",
      `127.0.0.1:${server.address.port}`,
      "--node-id",
      "hotswap",
      "--admin",
      `127.0.0.1:${adminPort}`,
      "--workers",
      "2",
    ],
    { AGW_LOG_LEVEL: "warn" },
  );
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  t.after(async () => {
    agent.destroy();
    await dp.stop("SIGKILL");
    await server.close();
    cache.close();
    origin.closeAllConnections();
    origin.close();
  });
  const acked = (version: string | undefined) =>
    registry.list()[0]?.types.get(TYPE_URL.route)?.ackedVersion === version ? true : undefined;
  await waitFor(
    `the first config ACKed\n${dp.output()}`,
    () => acked(snapshot.get(TYPE_URL.route)?.version),
    20_000,
  );

  const ws = new WebSocket(`ws://127.0.0.1:${listenerPort}/ws`);
  t.after(() => ws.close());
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error("WebSocket did not open")), { once: true });
  });
  assert.equal(await echo(ws, "before"), "before");

  const stats = { ok: 0, failed: [] as string[] };
  const loops = [
    ...[1, 2, 3, 4].map(() => loadLoop(listenerPort, agent, stats)),
    ...[1, 2].map(() => loadLoop(listenerPort, false, stats)),
  ];
  const started = Date.now();
  for (let i = 1; i <= PUSHES; i++) {
    snapshot = irToSnapshot(ir(listenerPort, originPort, i));
    cache.set(snapshot);
    await waitFor(
      `push ${i} ACKed\n${dp.output()}`,
      () => acked(snapshot.get(TYPE_URL.route)?.version),
      10_000,
    );
  }
  const elapsed = Date.now() - started;
  for (const stop of loops) await stop();
  t.diagnostic(
    `${PUSHES} pushes ACKed in ${elapsed} ms; ${stats.ok} requests answered meanwhile, ${stats.failed.length} failed`,
  );

  assert.deepEqual(stats.failed.slice(0, 10), []);
  assert.ok(stats.ok > 0);
  assert.equal(await echo(ws, "after"), "after");
  const last = await new Promise<string>((resolve, reject) =>
    http
      .get({ host: "127.0.0.1", port: listenerPort, path: "/", agent: false }, (res) => {
        res.resume();
        resolve(String(res.headers["x-push"]));
      })
      .on("error", reject),
  );
  assert.equal(last, String(PUSHES));
  const nacks = registry.list()[0]?.types.get(TYPE_URL.route)?.lastNack;
  assert.equal(nacks, undefined);
});
