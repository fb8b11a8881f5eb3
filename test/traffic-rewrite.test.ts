/**
 * Rewriting, redirects, direct responses and CORS (docs/traffic/): config.yaml → xDS resources →
 * the data plane's engine, against a real upstream, driven by curl.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseConfig } from "@agw/core/config/loader";
import { type GatewayConfig, startGateway } from "../data-plane/test/gateway.ts";
import { curl, type HttpOrigin, startHttpOrigin } from "../data-plane/test/net.ts";
import { configFromYaml } from "./yaml-config.ts";

const T = { timeout: 30000 };

interface Seen {
  status: number;
  statusLine: string;
  headers: Map<string, string>;
  body: string;
}

/** One curl exchange: status, lower-cased headers (repeats joined with ", "), body. */
async function via(port: number, args: string[], path: string): Promise<Seen> {
  const r = await curl(["-i", ...args, `http://127.0.0.1:${port}${path}`]);
  assert.equal(r.code, 0, r.stderr);
  const text = r.stdout.toString("latin1");
  const split = text.indexOf("\r\n\r\n");
  const lines = text.slice(0, split).split("\r\n");
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  const statusLine = lines[0] ?? "";
  return { status: Number(statusLine.split(" ")[1]), statusLine, headers, body: text.slice(split + 4) };
}

describe("rewriting and local answers", () => {
  let origin: HttpOrigin;
  let port = 0;
  let config: GatewayConfig;
  let close: () => Promise<void> = async () => {};

  before(async () => {
    origin = await startHttpOrigin((req, res) => {
      res.setHeader("x-seen-path", req.url ?? "");
      res.setHeader("x-seen-host", req.headers.host ?? "");
      res.end("upstream");
    });
    config = configFromYaml(`
listeners:
  - name: l
    port: 8080
    routes:
      - name: prefix
        match: { path: { prefix: /api/ } }
        cluster: app
        rewrite: { pathPrefix: /v2/, host: internal.example }
      - name: regex
        match: { path: { prefix: /users/ } }
        cluster: app
        rewrite: { pathRegex: { pattern: "^/users/(\\\\d+)/profile$", substitution: "/profiles/$1" }, autoHost: true }
      - name: to-https
        match: { hosts: [old.example], path: { prefix: / } }
        redirect: { scheme: https, host: new.example, status: 308 }
      - name: moved
        match: { path: { prefix: /docs/ } }
        redirect: { pathPrefix: /manual/, status: 302 }
      - name: gone
        match: { path: { exact: /legacy } }
        redirect: { path: /, stripQuery: true }
      - name: health
        match: { path: { exact: /healthz } }
        directResponse: { status: 200, body: "ok\\n" }
      - name: teapot
        match: { path: { exact: /brew } }
        directResponse: { status: 418 }
      - name: cors
        match: { path: { prefix: /cors/ } }
        cluster: app
        cors:
          allowOrigins: ["https://app.example"]
          allowMethods: [GET, PUT]
          allowHeaders: [content-type, x-token]
          exposeHeaders: [x-seen-path]
          allowCredentials: true
          maxAge: 10m
      - name: cors-any
        match: { path: { prefix: /public/ } }
        cluster: app
        cors: { allowOrigins: ["*"] }
clusters:
  - name: app
    endpoints: ["127.0.0.1:${origin.port}"]
`);
    const proxy = await startGateway(config);
    port = proxy.port;
    close = async () => {
      await proxy.close();
      await origin.close();
    };
  });
  after(() => close());

  it("replaces the matched prefix and the Host; the query stays", T, async () => {
    const r = await via(port, [], "/api/items?x=1");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-seen-path"), "/v2/items?x=1");
    assert.equal(r.headers.get("x-seen-host"), "internal.example");
    const seen = origin.requests.at(-1);
    assert.equal(seen?.headers["x-forwarded-host"], `127.0.0.1:${port}`, "the original host is forwarded");
  });

  it("rewrites by regex with capture groups and sends the endpoint's host:port", T, async () => {
    const r = await via(port, [], "/users/42/profile");
    assert.equal(r.headers.get("x-seen-path"), "/profiles/42");
    assert.equal(r.headers.get("x-seen-host"), `127.0.0.1:${origin.port}`);
    const other = await via(port, [], "/users/abc");
    assert.equal(other.headers.get("x-seen-path"), "/users/abc", "no match leaves the path");
  });

  it(
    "redirects: scheme and host with 308; prefix with 302 keeping the port and query; path with query stripped",
    T,
    async () => {
      const before = origin.requests.length;
      const a = await via(port, ["-H", "host: old.example"], "/a/b?q=1");
      assert.equal(a.statusLine, "HTTP/1.1 308 Permanent Redirect");
      assert.equal(a.headers.get("location"), "https://new.example/a/b?q=1");
      const b = await via(port, [], "/docs/intro?lang=en");
      assert.equal(b.status, 302);
      assert.equal(b.headers.get("location"), `http://127.0.0.1:${port}/manual/intro?lang=en`);
      const c = await via(port, [], "/legacy?x=y");
      assert.equal(c.status, 301);
      assert.equal(c.headers.get("location"), `http://127.0.0.1:${port}/`);
      assert.equal(origin.requests.length, before, "redirects never reach the upstream");
      // curl follows the 302 to where it points (no route there: 404 from the gateway).
      const followed = await curl([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{url_effective} %{http_code}",
        "-L",
        `http://127.0.0.1:${port}/docs/x`,
      ]);
      assert.equal(followed.stdout.toString(), `http://127.0.0.1:${port}/manual/x 404`);
    },
  );

  it("answers direct responses with status, body and content type", T, async () => {
    const ok = await via(port, [], "/healthz");
    assert.equal(ok.statusLine, "HTTP/1.1 200 OK");
    assert.equal(ok.body, "ok\n");
    assert.equal(ok.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.ok(ok.headers.get("x-request-id"));
    const tea = await via(port, [], "/brew");
    assert.equal(tea.status, 418);
    assert.equal(tea.body, "");
    const head = await curl(["-sS", "-I", `http://127.0.0.1:${port}/healthz`]);
    assert.match(head.stdout.toString(), /content-length: 3/i);
  });

  it(
    "answers CORS preflights at the gateway and adds headers to allowed cross-origin responses",
    T,
    async () => {
      const before = origin.requests.length;
      const pre = await via(
        port,
        [
          "-X",
          "OPTIONS",
          "-H",
          "origin: https://app.example",
          "-H",
          "access-control-request-method: PUT",
          "-H",
          "access-control-request-headers: x-token",
        ],
        "/cors/x",
      );
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get("access-control-allow-origin"), "https://app.example");
      assert.equal(pre.headers.get("access-control-allow-methods"), "GET, PUT");
      assert.equal(pre.headers.get("access-control-allow-headers"), "content-type, x-token");
      assert.equal(pre.headers.get("access-control-allow-credentials"), "true");
      assert.equal(pre.headers.get("access-control-max-age"), "600");
      assert.equal(origin.requests.length, before, "the preflight is not proxied");

      const denied = await via(
        port,
        ["-X", "OPTIONS", "-H", "origin: https://evil.example", "-H", "access-control-request-method: PUT"],
        "/cors/x",
      );
      assert.equal(denied.status, 403);
      assert.equal(denied.headers.get("access-control-allow-origin"), undefined);

      const actual = await via(port, ["-H", "origin: https://app.example"], "/cors/x");
      assert.equal(actual.status, 200);
      assert.equal(actual.body, "upstream");
      assert.equal(actual.headers.get("access-control-allow-origin"), "https://app.example");
      assert.equal(actual.headers.get("access-control-expose-headers"), "x-seen-path");
      assert.equal(actual.headers.get("vary"), "origin");
      const foreign = await via(port, ["-H", "origin: https://evil.example"], "/cors/x");
      assert.equal(foreign.status, 200, "CORS is the browser's check: the gateway still proxies");
      assert.equal(foreign.headers.get("access-control-allow-origin"), undefined);
      const plain = await via(port, [], "/cors/x");
      assert.equal(plain.headers.get("access-control-allow-origin"), undefined);
      // Keep-alive: the CORS headers of one request do not leak into the next one on the connection.
      const two = await curl([
        "-si",
        "-H",
        "origin: https://app.example",
        `http://127.0.0.1:${port}/cors/a`,
        `http://127.0.0.1:${port}/public/b`,
        `http://127.0.0.1:${port}/api/c`,
      ]);
      const text = two.stdout.toString();
      assert.equal((text.match(/access-control-allow-origin: https:\/\/app.example/gi) ?? []).length, 1);
      assert.equal((text.match(/access-control-allow-origin: \*/gi) ?? []).length, 1);
      assert.equal((text.match(/access-control-allow-origin/gi) ?? []).length, 2, "/api/ has no CORS policy");
    },
  );

  it("does the same over HTTP/2 (h2c)", T, async () => {
    const h2 = ["--http2-prior-knowledge"];
    const moved = await via(port, h2, "/docs/intro");
    assert.equal(moved.status, 302);
    assert.equal(moved.headers.get("location"), `http://127.0.0.1:${port}/manual/intro`);
    const rewritten = await via(port, h2, "/api/items");
    assert.equal(rewritten.headers.get("x-seen-path"), "/v2/items");
    assert.equal(rewritten.headers.get("x-seen-host"), "internal.example");
    const pre = await via(
      port,
      [
        ...h2,
        "-X",
        "OPTIONS",
        "-H",
        "origin: https://app.example",
        "-H",
        "access-control-request-method: GET",
      ],
      "/cors/x",
    );
    assert.equal(pre.status, 204);
    const actual = await via(port, [...h2, "-H", "origin: https://app.example"], "/cors/x");
    assert.equal(actual.headers.get("access-control-allow-origin"), "https://app.example");
  });
});

describe("rewrite, redirect, direct response, CORS and mirror config errors", () => {
  const routesYaml = (routes: string) => `listeners:
  - name: l
    port: 8080
    routes:
${routes}
clusters:
  - name: app
    endpoints: ["127.0.0.1:1"]
`;
  const errorsOf = (routes: string) => {
    const loaded = parseConfig(routesYaml(routes), "bad.yaml");
    assert.equal(loaded.ok, false);
    return loaded.ok ? [] : loaded.errors.map(String);
  };
  const expectAll = (messages: string[], expected: RegExp[]) => {
    for (const re of expected)
      assert.ok(
        messages.some((m) => re.test(m)),
        `${re} in\n${messages.join("\n")}`,
      );
  };

  it("names malformed fields with file, line and path", () => {
    expectAll(
      errorsOf(`      - name: bad-status
        redirect: { status: 200 }
      - name: bad-regex
        cluster: app
        rewrite: { pathRegex: { pattern: "(", substitution: "" } }
      - name: bad-cors
        cluster: app
        cors: { allowOrigins: [] }`),
      [
        /bad\.yaml:6 listeners\[0\]\.routes\[0\]\.redirect\.status: expected 301, 302, 303, 307 or 308/,
        /routes\[1\]\.rewrite\.pathRegex\.pattern: invalid regex/,
        /routes\[2\]\.cors\.allowOrigins/,
      ],
    );
  });

  it("names contradictions and unknown references", () => {
    expectAll(
      errorsOf(`      - name: both
        cluster: app
        directResponse: { status: 200 }
      - name: exact-prefix
        match: { path: { exact: /a } }
        cluster: app
        rewrite: { pathPrefix: /b }
      - name: shadow
        cluster: app
        mirror: { cluster: nowhere }`),
      [
        /routes\[0\]: a route needs exactly one of cluster, clusters, redirect or directResponse/,
        /routes\[1\]\.rewrite\.pathPrefix: pathPrefix needs a route that matches by path prefix/,
        /routes\[2\]\.mirror\.cluster: unknown cluster "nowhere"/,
      ],
    );
  });
});
