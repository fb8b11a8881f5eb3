/**
 * The admin server as a web page would attack it: a cross-site form POST (CSRF) and a request for a
 * rebound DNS name. Real sockets; requests are written with node:http so Host and Origin are ours.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import { type AdminServer, hostAllowed, startAdminServer } from "./admin-http.ts";

interface Reply {
  status: number;
  body: string;
}

function send(
  admin: AdminServer,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body = "",
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: admin.address.port, method, path, headers, timeout: 5_000 },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

async function drainable(options: Parameters<typeof startAdminServer>[3] = {}) {
  const state = { drained: 0 };
  const admin = await startAdminServer(
    "127.0.0.1",
    0,
    {
      "/ready": () => ({ body: "ready\n" }),
      "/drain": { post: () => ({ body: { draining: ++state.drained } }) },
    },
    options,
  );
  return { admin, state };
}

test("CSRF: a cross-site form POST /drain is refused and does not drain", async (t) => {
  const { admin, state } = await drainable();
  t.after(() => admin.close());
  const form = { "content-type": "application/x-www-form-urlencoded" };
  // What a page on evil.example sends with an auto-submitted <form method=post>.
  const csrf = await send(
    admin,
    "POST",
    "/drain",
    { ...form, origin: "http://evil.example", "sec-fetch-site": "cross-site" },
    "a=1",
  );
  assert.equal(csrf.status, 403, csrf.body);
  // Older browsers send no Sec-Fetch-Site; Origin alone is enough to refuse.
  assert.equal((await send(admin, "POST", "/drain", { ...form, origin: "http://evil.example" })).status, 403);
  // A simple request without Origin (e.g. a browser that strips it) still lacks the custom header.
  const simple = await send(admin, "POST", "/drain", form, "a=1");
  assert.equal(simple.status, 403);
  assert.match(simple.body, /x-agw-admin/);
  // Even with the header, another site's origin is refused (a preflight would be needed anyway).
  assert.equal(
    (await send(admin, "POST", "/drain", { "x-agw-admin": "1", origin: "http://evil.example" })).status,
    403,
  );
  assert.equal(
    (await send(admin, "POST", "/drain", { "x-agw-admin": "1", "sec-fetch-site": "same-site" })).status,
    403,
  );
  assert.equal((await send(admin, "POST", "/drain", { origin: "null" })).status, 403);
  assert.equal(state.drained, 0, "nothing above drained");

  // The operator's curl: the custom header.
  const ok = await send(admin, "POST", "/drain", { "x-agw-admin": "1" });
  assert.equal(ok.status, 200, ok.body);
  // The page's own origin may send it too.
  const port = admin.address.port;
  const own = await send(admin, "POST", "/drain", {
    "x-agw-admin": "1",
    origin: `http://127.0.0.1:${port}`,
    "sec-fetch-site": "same-origin",
  });
  assert.equal(own.status, 200, own.body);
  assert.equal(state.drained, 2);
});

test("a bearer token makes a mutation non-simple too; a token in the query does not", async (t) => {
  const { admin, state } = await drainable({ token: "s3cret-token" });
  t.after(() => admin.close());
  assert.equal((await send(admin, "POST", "/drain", { authorization: "Bearer s3cret-token" })).status, 200);
  assert.equal((await send(admin, "POST", "/drain?token=s3cret-token")).status, 403);
  assert.equal((await send(admin, "POST", "/drain", { authorization: "Bearer wrong-token!" })).status, 403);
  assert.equal(state.drained, 1);
});

test("DNS rebinding: a foreign Host is refused, reads included", async (t) => {
  const { admin } = await drainable({ allowedHosts: ["admin.internal"] });
  t.after(() => admin.close());
  const port = admin.address.port;
  const rebound = await send(admin, "GET", "/ready", { host: `attacker.example:${port}` });
  assert.equal(rebound.status, 403);
  assert.match(rebound.body, /attacker\.example.*--admin-allow-host/);
  assert.equal(
    (await send(admin, "POST", "/drain", { host: "attacker.example", "x-agw-admin": "1" })).status,
    403,
  );
  for (const host of [
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    "LOCALHOST",
    `[::1]:${port}`,
    "10.1.2.3:9901",
    `admin.internal:${port}`,
  ]) {
    assert.equal((await send(admin, "GET", "/ready", { host })).status, 200, host);
  }
});

test("a link from another site opens a page; a cross-site fetch of it does not", async (t) => {
  const { admin } = await drainable();
  t.after(() => admin.close());
  const navigate = { "sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate" };
  assert.equal((await send(admin, "GET", "/ready", navigate)).status, 200);
  const fetchMode = { "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" };
  assert.equal((await send(admin, "GET", "/ready", fetchMode)).status, 403);
  assert.equal((await send(admin, "GET", "/ready", { origin: "http://evil.example" })).status, 403);
});

test("hostAllowed", () => {
  assert.equal(hostAllowed(undefined, "127.0.0.1", []), true);
  assert.equal(hostAllowed("gw.example:9901", "gw.example", []), true, "the listen address");
  assert.equal(hostAllowed("GW.example.:9901", "gw.example", []), true);
  assert.equal(hostAllowed("app.localhost", "127.0.0.1", []), true);
  assert.equal(hostAllowed("localhost.evil.example", "127.0.0.1", []), false);
  assert.equal(hostAllowed("127.0.0.1.nip.io", "127.0.0.1", []), false);
  assert.equal(hostAllowed("", "127.0.0.1", []), false);
  assert.equal(hostAllowed("[::1", "127.0.0.1", []), false);
});
