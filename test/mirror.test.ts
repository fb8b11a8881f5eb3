/**
 * Request mirroring (docs/traffic/mirroring.md): the shadow cluster gets copies; the client's answer
 * never waits for it, and a dead mirror changes nothing the client sees.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MAX_IN_FLIGHT, mirrorCounters } from "@agw/data-plane/traffic/mirror";
import { type GatewayConfig, startGateway } from "../data-plane/test/gateway.ts";
import { closedPort, curl, type HttpOrigin, startHttpOrigin } from "../data-plane/test/net.ts";
import { waitFor } from "./helpers.ts";
import { configFromYaml } from "./yaml-config.ts";

const T = { timeout: 30000 };

function until(what: string, condition: () => boolean): Promise<true> {
  return waitFor(what, () => condition() || undefined, 5000);
}

describe("request mirroring", () => {
  let primary: HttpOrigin;
  let shadow: HttpOrigin;
  const shadowBodies: string[] = [];
  /** While set, the shadow holds each request until it is called. */
  let holdShadow: Promise<void> | null = null;
  let port = 0;
  let config: GatewayConfig;
  let close: () => Promise<void> = async () => {};

  before(async () => {
    primary = await startHttpOrigin((req, res) => {
      req.resume();
      req.on("end", () => res.end("primary"));
    });
    shadow = await startHttpOrigin((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => {
        body += c;
      });
      req.on("end", async () => {
        shadowBodies.push(body);
        if (holdShadow !== null) await holdShadow;
        res.end("shadow");
      });
    });
    const dead = await closedPort();
    config = configFromYaml(`
listeners:
  - name: l
    port: 8080
    routes:
      - name: mirrored
        match: { path: { prefix: /m/ } }
        cluster: primary
        rewrite: { pathPrefix: /v1/ }
        requestHeaders: { set: { x-env: prod } }
        mirror: { cluster: shadow, maxBodyBytes: 1024 }
      - name: to-dead
        match: { path: { prefix: /dead/ } }
        cluster: primary
        mirror: { cluster: dead }
      - name: never
        match: { path: { prefix: /none/ } }
        cluster: primary
        mirror: { cluster: shadow, percent: 0 }
clusters:
  - name: primary
    endpoints: ["127.0.0.1:${primary.port}"]
  - name: shadow
    endpoints: ["127.0.0.1:${shadow.port}"]
  - name: dead
    endpoints: ["127.0.0.1:${dead}"]
`);
    const proxy = await startGateway(config);
    port = proxy.port;
    close = async () => {
      await proxy.close();
      await primary.close();
      await shadow.close();
    };
  });
  after(() => close());

  it(
    "sends the shadow a copy with the rewritten path, route headers, body and a -shadow host",
    T,
    async () => {
      const seen = shadow.requests.length;
      const r = await curl([
        "-H",
        "host: shop.example:8080",
        "-d",
        "order=1",
        `http://127.0.0.1:${port}/m/orders?x=1`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), "primary");
      await until("shadow.requests.length > seen", () => shadow.requests.length > seen);
      const copy = shadow.requests.at(-1);
      assert.equal(copy?.method, "POST");
      assert.equal(copy?.url, "/v1/orders?x=1");
      assert.equal(copy?.headers.host, "shop.example-shadow:8080");
      assert.equal(copy?.headers["x-env"], "prod");
      assert.equal(shadowBodies.at(-1), "order=1");
      assert.equal(primary.requests.at(-1)?.url, "/v1/orders?x=1");
    },
  );

  it("over HTTP/2 copies bodyless requests and never a streamed body", T, async () => {
    const seen = shadow.requests.length;
    const h2 = ["--http2-prior-knowledge"];
    const posted = await curl([...h2, "-d", "a=1", `http://127.0.0.1:${port}/m/h2-post`]);
    assert.equal(posted.stdout.toString(), "primary");
    const got = await curl([...h2, `http://127.0.0.1:${port}/m/h2-get`]);
    assert.equal(got.stdout.toString(), "primary");
    await until("the GET's copy", () => shadow.requests.length > seen);
    assert.deepEqual(
      shadow.requests.slice(seen).map((q) => `${q.method} ${q.url}`),
      ["GET /v1/h2-get"],
    );
  });

  it("answers the client before a slow mirror has answered", T, async () => {
    let release = () => {};
    holdShadow = new Promise<void>((r) => {
      release = r;
    });
    const answeredBefore = mirrorCounters.answered;
    const seen = shadow.requests.length;
    const r = await curl([`http://127.0.0.1:${port}/m/slow`]);
    assert.equal(r.stdout.toString(), "primary");
    await until("shadow.requests.length > seen", () => shadow.requests.length > seen);
    // The client is done while the shadow still holds its copy.
    assert.equal(mirrorCounters.answered, answeredBefore);
    holdShadow = null;
    release();
    await until("mirrorCounters.answered > answeredBefore", () => mirrorCounters.answered > answeredBefore);
  });

  it("holds at most MAX_IN_FLIGHT copies: beyond that requests are served and not copied", T, async () => {
    let release = () => {};
    holdShadow = new Promise<void>((r) => {
      release = r;
    });
    const settled = () => mirrorCounters.sent === mirrorCounters.answered + mirrorCounters.failed;
    await until("earlier copies settled", settled);
    const dropped = mirrorCounters.dropped;
    const seen = shadow.requests.length;
    try {
      for (let i = 0; i < MAX_IN_FLIGHT + 10; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/m/flood-${i}`);
        assert.equal(await res.text(), "primary");
      }
      await until(
        "the shadow holding MAX_IN_FLIGHT copies",
        () => shadow.requests.length - seen >= MAX_IN_FLIGHT,
      );
      assert.equal(mirrorCounters.dropped, dropped + 10);
    } finally {
      holdShadow = null;
      release();
    }
    await until(
      "every held copy answered",
      () => mirrorCounters.sent === mirrorCounters.answered + mirrorCounters.failed,
    );
  });

  it("a dead mirror changes nothing for the client", T, async () => {
    const failed = mirrorCounters.failed;
    for (let i = 0; i < 5; i++) {
      const r = await curl(["-w", " %{http_code}", `http://127.0.0.1:${port}/dead/${i}`]);
      assert.equal(r.stdout.toString(), "primary 200");
    }
    await until("mirrorCounters.failed >= failed + 5", () => mirrorCounters.failed >= failed + 5);
  });

  it("skips bodies it cannot copy whole (over maxBodyBytes, chunked) and percent 0", T, async () => {
    const seen = shadow.requests.length;
    const skipped = mirrorCounters.bodySkipped;
    const big = await curl(["-d", "x".repeat(4096), `http://127.0.0.1:${port}/m/big`]);
    assert.equal(big.stdout.toString(), "primary");
    const chunked = await curl([
      "-H",
      "transfer-encoding: chunked",
      "-d",
      "abc",
      `http://127.0.0.1:${port}/m/chunked`,
    ]);
    assert.equal(chunked.stdout.toString(), "primary");
    for (let i = 0; i < 5; i++) await curl([`http://127.0.0.1:${port}/none/${i}`]);
    // A later mirrored request arrives first in line: nothing was queued before it.
    await curl([`http://127.0.0.1:${port}/m/marker`]);
    await until("shadow.requests.length > seen", () => shadow.requests.length > seen);
    assert.deepEqual(
      shadow.requests.slice(seen).map((q) => q.url),
      ["/v1/marker"],
    );
    assert.equal(mirrorCounters.bodySkipped, skipped + 2);
  });
});
