/**
 * The admin APIs of a running `agw run` attacked from a web page the operator opens: a cross-site form
 * POST /drain (CSRF) and a rebound DNS name (a page at evil.example whose name now resolves to
 * 127.0.0.1). Raw requests first, then the same attacks from a real headless Chromium, in which
 * evil.example is mapped to 127.0.0.1 by --host-resolver-rules.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import {
  CHROMIUM,
  freePort,
  openChromium,
  type RunningGateway,
  requireOrSkip,
  singleRouteConfig,
  startGateway,
  tempDir,
} from "./helpers.ts";

function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method, path, headers, agent: false, timeout: 5_000 },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout: ${path}`)));
    req.on("error", reject);
    req.end(method === "POST" ? "drain=1" : undefined);
  });
}

async function gateway(t: { after(fn: () => unknown): void }): Promise<RunningGateway> {
  const origin = http.createServer((_req, res) => res.end("origin\n"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const file = singleRouteConfig(
    tempDir("agw-sec-admin-"),
    await freePort(),
    "all",
    (origin.address() as AddressInfo).port,
  );
  const gw = await startGateway(file);
  t.after(() => gw.proc.stop());
  return gw;
}

const ready = async (gw: RunningGateway) => (await send(gw.adminPort, "GET", "/ready")).status;

test("CSRF and DNS rebinding requests to agw run's admins are refused; the documented curl drains", async (t) => {
  const gw = await gateway(t);
  const csrf = await send(gw.adminPort, "POST", "/drain", {
    origin: "http://evil.example",
    "content-type": "application/x-www-form-urlencoded",
  });
  assert.equal(csrf.status, 403, csrf.body);
  assert.equal(await ready(gw), 200, "the CSRF request did not drain");

  for (const [port, path] of [
    [gw.adminPort, "/config_dump"],
    [gw.adminPort, "/ready"],
    [gw.cpAdminPort, "/config_dump"],
    [gw.cpAdminPort, "/dashboard"],
    [gw.cpAdminPort, "/dashboard/state"],
  ] as const) {
    const rebound = await send(port, "GET", path, { host: `attacker.example:${port}` });
    assert.equal(rebound.status, 403, `${path} for Host attacker.example`);
    assert.doesNotMatch(rebound.body, /"listeners"|"ir"|<html/i);
  }

  // docs/operability.md's command.
  const out = execFileSync(
    "curl",
    ["-sS", "-X", "POST", "-H", "X-AGW-Admin: 1", `http://127.0.0.1:${gw.adminPort}/drain`],
    { encoding: "utf8", timeout: 10_000 },
  );
  assert.match(out, /"draining": true/);
  assert.equal(await ready(gw), 503);
});

test("a page on another site cannot drain the gateway or read its admin through a rebound name (Chromium)", async (t) => {
  if (
    !requireOrSkip(
      t,
      existsSync(CHROMIUM),
      `Debian chromium (${CHROMIUM}) is needed: apt-get install chromium`,
    )
  )
    return;
  const gw = await gateway(t);
  const drainUrl = `http://127.0.0.1:${gw.adminPort}/drain`;
  // The attacker's page: an auto-submitted form (a simple request, no preflight) and a no-cors fetch.
  const evil = http.createServer((_req, res) => {
    res.setHeader("content-type", "text/html");
    res.end(`<!doctype html><title>cats</title>
<form id="f" method="POST" action="${drainUrl}"><input name="drain" value="1"></form>
<script>
  fetch(${JSON.stringify(drainUrl)}, { method: "POST", mode: "no-cors", body: "drain=1" })
    .finally(() => { document.title = "fetched"; document.getElementById("f").submit(); });
</script>`);
  });
  await new Promise<void>((resolve) => evil.listen(0, "127.0.0.1", resolve));
  t.after(() => evil.close());
  const evilPort = (evil.address() as AddressInfo).port;

  // evil.example resolves to 127.0.0.1: the rebinding attacker's DNS, without a DNS server.
  const { page } = await openChromium(t, ["--host-resolver-rules=MAP evil.example 127.0.0.1"]);

  const submitted = page.waitForURL(drainUrl, { timeout: 15_000 });
  await page.goto(`http://evil.example:${evilPort}/`, { timeout: 15_000 });
  await submitted;
  assert.match(await page.content(), /forbidden/, "the form POST landed on a 403");
  assert.equal(await ready(gw), 200, "the cross-site form POST and fetch did not drain");

  // Rebinding: evil.example now names 127.0.0.1, so a page at http://evil.example:ADMIN/ is "same
  // origin" with the admin. The admin refuses that Host.
  const rebound = await page.goto(`http://evil.example:${gw.cpAdminPort}/config_dump`, { timeout: 15_000 });
  assert.equal(rebound?.status(), 403);
  const dashboard = await page.goto(`http://evil.example:${gw.cpAdminPort}/dashboard`, { timeout: 15_000 });
  assert.equal(dashboard?.status(), 403);
  // The same page by address works (the dashboard test covers it in full).
  const own = await page.goto(`http://127.0.0.1:${gw.cpAdminPort}/dashboard`, { timeout: 15_000 });
  assert.equal(own?.status(), 200);
});
