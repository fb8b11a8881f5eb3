/**
 * The control plane's dashboard in a real headless Chromium (Debian's, driven by playwright-core):
 * it shows the routes of a running gateway (agw run) and follows a config change.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { chromium, type Locator } from "playwright-core";
import { agw, freePort, ROOT, requireOrSkip, tempDir, waitFor } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";

/** The text a user sees in the element (cells separated by tabs, rows by newlines). */
function shown(locator: Locator): Promise<string> {
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright Locator, not a DOM node
  return locator.innerText();
}
const ARTEFACTS = join(ROOT, "test-artifacts");

function config(port: number, upstream: number, routes: string[]): string {
  return `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
${routes.map((r) => `      - { name: ${r}, match: { path: { prefix: /${r} } }, cluster: app }`).join("\n")}
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstream}]
`;
}

test("the dashboard shows the gateway's routes and follows a config change", async (t) => {
  if (
    !requireOrSkip(
      t,
      existsSync(CHROMIUM),
      `Debian chromium (${CHROMIUM}) is needed: apt-get install chromium`,
    )
  )
    return;
  const upstream = http.createServer((_req, res) => res.end("ok\n"));
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  t.after(() => upstream.close());
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const dir = tempDir("agw-dashboard-");
  const configFile = join(dir, "config.yaml");
  const port = await freePort();
  writeFileSync(configFile, config(port, upstreamPort, ["first-route"]));
  const [cpAdmin, dpAdmin, xds] = [await freePort(), await freePort(), await freePort()];
  const gateway = agw([
    "run",
    "-c",
    configFile,
    "--xds-listen",
    `127.0.0.1:${xds}`,
    "--cp-admin",
    `127.0.0.1:${cpAdmin}`,
    "--admin",
    `127.0.0.1:${dpAdmin}`,
  ]);
  t.after(() => gateway.stop());
  await waitFor(
    "the gateway to serve",
    async () => ((await fetch(`http://127.0.0.1:${port}/first-route`)).status === 200 ? true : undefined),
    15_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${gateway.output()}`);
  });

  const browser = await chromium.launchPersistentContext(tempDir("agw-chromium-"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    timeout: 30_000,
  });
  t.after(() => browser.close());
  const page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(`http://127.0.0.1:${cpAdmin}/dashboard`, { timeout: 15_000 });
  const routes = page.locator("#routes");
  await routes.getByText("first-route", { exact: true }).waitFor({ timeout: 10_000 });
  assert.match(await shown(routes), /web :\d+\s+first-route\s+prefix \/first-route\s+app/);
  assert.match(await shown(page.locator("#clusters")), new RegExp(`127\\.0\\.0\\.1:${upstreamPort}`));
  assert.match(await shown(page.locator("#dataplanes")), /Listener \S+/);
  assert.match(await shown(page.locator("#errors")), /the latest config is in use/);

  // Traffic shows as a live rate.
  for (let i = 0; i < 20; i++) await fetch(`http://127.0.0.1:${port}/first-route`);
  await waitFor("a non-zero request rate", async () =>
    /requests\/s: [1-9]/.test(await shown(page.locator("#rps"))) ? true : undefined,
  );

  writeFileSync(configFile, config(port, upstreamPort, ["first-route", "added-route"]));
  await routes.getByText("added-route", { exact: true }).waitFor({ timeout: 15_000 });
  assert.equal((await fetch(`http://127.0.0.1:${port}/added-route`)).status, 200);

  writeFileSync(configFile, "listeners: [ { name: broken\n");
  await page
    .locator("#errors")
    .getByText(/config\.yaml/)
    .first()
    .waitFor({ timeout: 15_000 });
  assert.match(await shown(routes), /added-route/, "still showing the config in use");

  mkdirSync(ARTEFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTEFACTS, "dashboard.png"), fullPage: true });
});
