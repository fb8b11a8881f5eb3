/** The http-request grant check (egress.ts): what a grant names, and which addresses a name may reach. */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { parseHttpGrant } from "@agw/core";
import { EgressPolicy, send } from "./egress.ts";

test("grants parse into names, addresses and ranges; bad entries are refused with the entry named", () => {
  assert.deepEqual(parseHttpGrant("API.example.com"), {
    kind: "name",
    host: "api.example.com",
    port: undefined,
  });
  assert.deepEqual(parseHttpGrant("api.example.com:8443"), {
    kind: "name",
    host: "api.example.com",
    port: 8443,
  });
  assert.deepEqual(parseHttpGrant("10.1.2.3:8080"), { kind: "address", address: "10.1.2.3", port: 8080 });
  assert.deepEqual(parseHttpGrant("[fd00::1]:443"), { kind: "address", address: "fd00::1", port: 443 });
  assert.deepEqual(parseHttpGrant("10.0.0.0/8"), { kind: "range", address: "10.0.0.0", prefix: 8 });
  for (const bad of ["localhost:99999", "http://x", "a b", "10.0.0.0/33", "[::1", "x:"])
    assert.throws(() => parseHttpGrant(bad), new RegExp(`"${bad.replace(/[[\]/.:]/g, "\\$&")}"`));
});

test("a name without a port grants the scheme's default port only", () => {
  const p = new EgressPolicy(["localhost", "api.example.com:8443", "127.0.0.1:9000"]);
  assert.equal(p.hostProblem(new URL("http://localhost/")), undefined);
  assert.equal(p.hostProblem(new URL("https://localhost/")), undefined);
  assert.match(p.hostProblem(new URL("http://localhost:9901/config_dump")) ?? "", /not granted/);
  assert.match(p.hostProblem(new URL("http://localhost:443/")) ?? "", /not granted/);
  assert.equal(p.hostProblem(new URL("https://api.example.com:8443/")), undefined);
  assert.match(p.hostProblem(new URL("https://api.example.com/")) ?? "", /not granted/);
  assert.equal(p.hostProblem(new URL("http://127.0.0.1:9000/")), undefined);
  assert.match(p.hostProblem(new URL("http://[::ffff:127.0.0.1]:9000/")) ?? "", /not granted/);
  assert.match(p.hostProblem(new URL("file:///etc/passwd")) ?? "", /not http/);
});

test("addresses that are not public need a grant, however they are written", () => {
  const p = new EgressPolicy(["api.example.com"]);
  for (const a of [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "::",
    "fd00::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "64:ff9b::a00:1",
  ])
    assert.match(p.addressProblem(a) ?? "", /not a public address/, a);
  for (const a of ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
    assert.equal(p.addressProblem(a), undefined, a);

  const granted = new EgressPolicy(["internal.example", "10.0.0.0/8", "127.0.0.1:8080"]);
  assert.equal(granted.addressProblem("10.9.8.7"), undefined);
  assert.equal(granted.addressProblem("::ffff:10.9.8.7"), undefined);
  assert.equal(granted.addressProblem("127.0.0.1"), undefined);
  assert.match(granted.addressProblem("127.0.0.2") ?? "", /not a public address/);
  assert.match(granted.addressProblem("192.168.0.1") ?? "", /not a public address/);
});

test("send: a granted name that resolves to loopback is refused in the connection's own lookup; an address grant reaches it", async (t) => {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    res.end(`host=${req.headers.host}`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const req = (url: string) => ({
    method: "GET",
    url,
    headers: [["host", "evil.example"]] as [string, string][],
    body: new Uint8Array(0),
    timeoutMs: 0,
  });

  const byName = new EgressPolicy([`localhost:${port}`]);
  await assert.rejects(send(byName, req(`http://localhost:${port}/`), 2000), /is not a public address/);
  assert.equal(hits, 0, "nothing reached the server");

  const withRange = new EgressPolicy([`localhost:${port}`, "127.0.0.0/8", "::1"]);
  const ok = await send(withRange, req(`http://localhost:${port}/`), 2000);
  assert.equal(ok.status, 200);
  assert.equal(new TextDecoder().decode(ok.body), `host=localhost:${port}`, "the guest's Host is replaced");
});
