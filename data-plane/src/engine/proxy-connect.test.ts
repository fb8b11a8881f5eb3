import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { requireOrSkip, waitFor } from "../../../test/helpers.ts";
import type { RuntimeConfig } from "../runtime/types.ts";
import {
  closedPort,
  cluster,
  config,
  curl,
  endpoint,
  parseResponses,
  rawExchange,
  startHttpOrigin,
  startProxy,
  startRawOrigin,
} from "./test-support.ts";

const T = { timeout: 20000 };

function until(what: string, cond: () => boolean): Promise<true> {
  return waitFor(what, () => cond() || undefined, 5000);
}

function connectTo(port: number, version: string, allow = true): RuntimeConfig {
  return config(
    `v${version}`,
    [{ prefix: "/", cluster: "c", connect: allow }],
    [cluster("c", [endpoint(port)])],
  );
}

/** A TCP echo origin that prefixes nothing: what a tunnel must carry byte for byte. */
function echoOrigin() {
  return startRawOrigin((s) => {
    s.on("data", (c: Buffer) => s.write(c));
    s.on("end", () => s.end());
  });
}

async function curlAvailable(): Promise<boolean> {
  return (await curl(["--version"])).code === 0;
}

describe("CONNECT", () => {
  it(
    "curl through the gateway as a proxy (-p -x): CONNECT by authority, then HTTP inside the tunnel",
    T,
    async (t) => {
      if (!requireOrSkip(t, await curlAvailable(), "curl is not installed")) return;
      const origin = await startHttpOrigin((req, res) => res.end(`origin saw ${req.method} ${req.url}`));
      const p = await startProxy(() => connectTo(origin.port, "1"));
      try {
        const r = await curl([
          "-sS",
          "-p",
          "-x",
          `http://127.0.0.1:${p.port}`,
          "http://backend.test:8080/hello",
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.toString(), "origin saw GET /hello");
        assert.deepEqual(
          origin.requests.map((x) => x.method),
          ["GET"],
        );
      } finally {
        await p.close();
        await origin.close();
      }
    },
  );

  it(
    "raw socket: 200 Connection Established, bytes spliced both ways, survives config pushes",
    T,
    async () => {
      const echo = await echoOrigin();
      let cfg = connectTo(echo.port, "1");
      const p = await startProxy(() => cfg);
      const s = net.connect(p.port, "127.0.0.1");
      let got = Buffer.alloc(0);
      s.on("data", (c: Buffer) => {
        got = Buffer.concat([got, c]);
      });
      try {
        // The first tunnel bytes ride with the CONNECT request (a client that does not wait for the 200).
        s.write("CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\nearly;");
        await until("200 and the early bytes", () => got.toString().endsWith("early;"));
        assert.match(
          got.toString(),
          /^HTTP\/1\.1 200 Connection Established\r\nx-request-id: [^\r]+\r\n\r\nearly;$/,
        );
        for (let i = 0; i < 20; i++) cfg = connectTo(await closedPort(), String(i + 2), i % 2 === 0);
        got = Buffer.alloc(0);
        const blob = Buffer.alloc(256 * 1024, 7);
        s.write(blob);
        await until("the blob echoed after 20 pushes", () => got.length === blob.length);
        assert.ok(got.equals(blob));
        s.end(); // the half-close goes through: the echo origin ends, so does the tunnel
        await until("tunnel closed", () => s.destroyed || s.readableEnded);
      } finally {
        s.destroy();
        await p.close();
        await echo.close();
      }
    },
  );

  it("a route without connect: 405 connect_not_allowed; CONNECT to a dead endpoint: 503", T, async () => {
    const echo = await echoOrigin();
    const dead = await closedPort();
    let cfg = connectTo(echo.port, "1", false);
    const p = await startProxy(() => cfg);
    try {
      const req = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
      const r = await rawExchange(p.port, req);
      const res = parseResponses(r.data).responses[0];
      assert.equal(res?.status, 405);
      assert.equal(res?.headers.get("x-agw-error"), "connect_not_allowed");
      assert.equal(JSON.parse(res?.body.toString() ?? "").error, "connect_not_allowed");
      assert.ok(r.closed);
      assert.equal(echo.connections, 0);
      cfg = connectTo(dead, "2");
      const r2 = await rawExchange(p.port, req);
      assert.equal(parseResponses(r2.data).responses[0]?.status, 503);
    } finally {
      await p.close();
      await echo.close();
    }
  });
});
