import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import { requireOrSkip } from "../../../test/helpers.ts";
import { cluster, config, endpoint, startGateway } from "../../test/gateway.ts";
import { curl, parseResponses, rawExchange, startHttpOrigin } from "../../test/net.ts";

const T = { timeout: 20000 };

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { timeout: 10000 });
    let out = "";
    p.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    p.stderr.on("data", (c: Buffer) => {
      out += c.toString();
    });
    p.on("error", () => resolve({ code: -1, out }));
    p.on("close", (code) => resolve({ code, out }));
  });
}

async function withGateway(fn: (port: number) => Promise<void>): Promise<void> {
  const origin = await startHttpOrigin((req, res) => {
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
    });
    req.on("end", () => res.end(`${req.method} ${req.url} body=${n} ua=${req.headers["user-agent"] ?? ""}`));
  });
  const p = await startGateway(
    config("v", [{ prefix: "/", cluster: "c" }], [cluster("c", [endpoint(origin.port)])]),
  );
  try {
    await fn(p.port);
  } finally {
    await p.close();
    await origin.close();
  }
}

describe("h2c via Upgrade", () => {
  it(
    "curl --http2 on http:// upgrades; the request is answered on stream 1, the next ones too",
    T,
    async (t) => {
      if (!requireOrSkip(t, (await curl(["--version"])).code === 0, "curl is not installed")) return;
      await withGateway(async (port) => {
        const url = `http://127.0.0.1:${port}`;
        const r = await curl(["-v", "--http2", `${url}/first?x=1`, `${url}/second`]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /< HTTP\/1\.1 101 Switching Protocols/);
        assert.match(r.stderr, /< HTTP\/2 200/);
        assert.match(
          r.stdout.toString(),
          /^GET \/first\?x=1 body=0 ua=curl\/[\d.]+GET \/second body=0 ua=curl\//,
        );
      });
    },
  );

  it("nghttp -u upgrades and gets stream 1's response", T, async (t) => {
    const probe = await run("nghttp", ["--version"]);
    if (!requireOrSkip(t, probe.code === 0, "nghttp (nghttp2-client) is not installed")) return;
    await withGateway(async (port) => {
      const r = await run("nghttp", ["-u", "-v", `http://127.0.0.1:${port}/up`]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /HTTP Upgrade success/);
      assert.match(r.out, /recv \(stream_id=1\) :status: 200/);
      assert.match(r.out, /GET \/up body=0 ua=nghttp2\//);
    });
  });

  it("a request with a body, or without HTTP2-Settings, stays HTTP/1.1", T, async () => {
    await withGateway(async (port) => {
      const up =
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n";
      const withBody = await rawExchange(
        port,
        `POST /p HTTP/1.1\r\nHost: a\r\n${up}Content-Length: 3\r\nConnection: close\r\n\r\nabc`,
      );
      const a = parseResponses(withBody.data).responses[0];
      assert.equal(a?.status, 200);
      assert.match(a?.body.toString() ?? "", /^POST \/p body=3/);
      const noSettings = await rawExchange(
        port,
        "GET /g HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        { until: (b) => parseResponses(b).responses.length === 1 },
      );
      assert.equal(parseResponses(noSettings.data).responses[0]?.status, 200);
    });
  });
});
