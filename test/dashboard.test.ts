/**
 * The control plane's dashboard in a real headless Chromium (Debian's, driven by playwright-core),
 * looked at as a person would while load runs through a running gateway (agw run) and a separately
 * started data plane (agw data-plane): the charts draw the fleet stats, a route's rate follows the
 * load, a killed endpoint turns red in the topology, a config edit appears in the history with its
 * diff, and a config error shows while the last good config stays. Screenshots: test-artifacts/.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import type { Locator, Page } from "playwright-core";
import { agw, CHROMIUM, freePort, openChromium, ROOT, requireOrSkip, tempDir, waitFor } from "./helpers.ts";

const ARTEFACTS = join(ROOT, "test-artifacts");
/** The stats interval of these tests (the dashboard's resolution); the page polls every second. */
const INTERVAL_MS = 1000;

/** The text a user sees in the element (cells separated by tabs, rows by newlines). */
function shown(locator: Locator): Promise<string> {
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright Locator, not a DOM node
  return locator.innerText();
}

function config(port: number, endpoints: number[], searchPrefix = "/search"): string {
  return `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: shop, match: { path: { prefix: /shop } }, cluster: app }
      - { name: search, match: { path: { prefix: ${searchPrefix} } }, cluster: app }
clusters:
  - name: app
    endpoints: [${endpoints.map((p) => `127.0.0.1:${p}`).join(", ")}]
    healthCheck: { path: /, interval: 300ms, timeout: 250ms, healthyThreshold: 1, unhealthyThreshold: 1 }
`;
}

async function upstream(t: { after(fn: () => void): void }): Promise<http.Server> {
  const server = http.createServer((_req, res) => res.end("ok\n"));
  server.keepAliveTimeout = 500;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => server.close());
  return server;
}

/**
 * A small bounded load: `rate` requests/s to `url` from this process until stopped. `rate()` is the
 * rate it achieved over the last second.
 */
function load(url: string, rate: number) {
  let running = true;
  const done: number[] = [];
  const loop = (async () => {
    const start = Date.now();
    for (let i = 0; running; i++) {
      const due = start + (i * 1000) / rate;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      const res = await fetch(url).catch(() => undefined);
      await res?.arrayBuffer();
      done.push(Date.now());
    }
  })();
  return {
    rate: () => done.filter((at) => at > Date.now() - 1000).length,
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** The req/s the routes table shows for a route. */
async function routeRate(page: Page, route: string): Promise<number> {
  const text = await shown(page.locator(`#routes tr[data-key="route:web/${route}"] td.rps`));
  return Number(text.replace("k", "e3"));
}

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTEFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTEFACTS, name), fullPage: true });
}

test("the dashboard, as an operator sees it under load", async (t) => {
  if (
    !requireOrSkip(
      t,
      existsSync(CHROMIUM),
      `Debian chromium (${CHROMIUM}) is needed: apt-get install chromium`,
    )
  )
    return;
  const [up1, up2] = [await upstream(t), await upstream(t)];
  const endpoints = [up1, up2].map((s) => (s.address() as AddressInfo).port);
  const dir = tempDir("agw-dashboard-");
  const configFile = join(dir, "config.yaml");
  const port = await freePort();
  writeFileSync(configFile, config(port, endpoints));
  const [cpAdmin, dpAdmin, dp2Admin, xds] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
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
    "--node-id",
    "gw-main",
    "--stats-interval",
    String(INTERVAL_MS),
  ]);
  t.after(() => gateway.stop());
  await waitFor(
    "the gateway to serve",
    async () => ((await fetch(`http://127.0.0.1:${port}/shop`)).status === 200 ? true : undefined),
    45_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${gateway.output()}`);
  });

  const { page } = await openChromium(t, [], { width: 1400, height: 900 });
  await page.goto(`http://127.0.0.1:${cpAdmin}/dashboard`, { timeout: 15_000 });
  const routes = page.locator("#routes");
  await routes.getByText("shop", { exact: true }).waitFor({ timeout: 10_000 });
  assert.match(await shown(routes), /web :\d+\s+shop\s+prefix \/shop\s+app/);
  assert.match(await shown(page.locator("#dataplanes")), /gw-main\s+unix \(unix, delta\)\s+in sync/);
  assert.match(await shown(page.locator("#errors")), /the latest config is in use/);

  // Load on /shop: the route's rate follows it within two refreshes of the stats (and the page).
  const shop = load(`http://127.0.0.1:${port}/shop`, 40);
  t.after(() => shop.stop());
  await waitFor("a steady load", () => (shop.rate() >= 20 ? true : undefined), 10_000);
  const followWithin = 2 * INTERVAL_MS + 2 * 1000;
  const started = Date.now();
  await waitFor(
    "the shop route's rate to follow the load",
    async () => {
      const shownRate = await routeRate(page, "shop");
      const actual = shop.rate();
      return shownRate > actual * 0.5 && shownRate < actual * 1.5 ? true : undefined;
    },
    // Two stats intervals and two page refreshes, plus room for a machine shared by busy builds.
    followWithin + 8_000,
  );
  t.diagnostic(
    `shop rate followed the load in ${Date.now() - started} ms (two refreshes: ${followWithin} ms)`,
  );

  // The charts have drawn data, not empty axes.
  await waitFor("the requests/s chart to draw the load", async () => {
    const path = page.locator("#chart-rps path.series");
    const points = Number(await path.getAttribute("data-points"));
    const max = Number(await path.getAttribute("data-max"));
    return points >= 3 && max > 10 ? true : undefined;
  });
  assert.ok(Number(await page.locator("#chart-latency path.series").first().getAttribute("data-max")) > 0);
  // A route's own charts.
  await routes.locator('tr[data-key="route:web/shop"]').click();
  assert.match(await shown(page.locator("#selected")), /route shop/);
  await waitFor("the shop route's chart", async () =>
    Number(await page.locator("#chart-rps path.series").getAttribute("data-max")) > 10 ? true : undefined,
  );
  await screenshot(page, "dashboard-load.png");

  // A separately started data plane: its traffic shows up, as a data plane and on its route.
  const edge = agw([
    "data-plane",
    "--xds",
    `127.0.0.1:${xds}`,
    "--node-id",
    "edge-2",
    "--bind-address",
    "127.0.0.2",
    "--admin",
    `127.0.0.1:${dp2Admin}`,
  ]);
  t.after(() => edge.stop());
  await waitFor(
    "the second data plane to serve",
    async () => ((await fetch(`http://127.0.0.2:${port}/search`)).status === 200 ? true : undefined),
    45_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${edge.output()}`);
  });
  const search = load(`http://127.0.0.2:${port}/search`, 25);
  t.after(() => search.stop());
  const edgeRow = page.locator('#dataplanes tr[data-key="node:edge-2"]');
  await waitFor(
    "edge-2's traffic on the dashboard",
    async () => {
      const rate = Number(await shown(edgeRow.locator("td.rps")).catch(() => "0"));
      return rate > 5 && (await routeRate(page, "search")) > 5 ? true : undefined;
    },
    20_000,
  );
  assert.match(await shown(edgeRow), /edge-2\s+127\.0\.0\.1:\d+ \(plaintext, delta\)\s+in sync/);
  await search.stop();

  // Stopping the load: the rate falls to zero.
  await shop.stop();
  await waitFor(
    "the shop rate to fall to 0",
    async () => ((await routeRate(page, "shop")) === 0 ? true : undefined),
    10_000,
  );

  // Killing an endpoint turns it red in the topology (health checks fail on every data plane).
  const dead = `endpoint:app 127.0.0.1:${endpoints[1]}`;
  const alive = `endpoint:app 127.0.0.1:${endpoints[0]}`;
  await page.locator(`#topology g[data-node="${alive}"].h-healthy`).waitFor({ timeout: 10_000 });
  up2.closeAllConnections();
  await new Promise<void>((resolve) => up2.close(() => resolve()));
  await page.locator(`#topology g[data-node="${dead}"].h-unhealthy`).waitFor({ timeout: 15_000 });
  type Styled = { getComputedStyle(e: unknown): { stroke: string } };
  const stroke = await page
    .locator(`#topology g[data-node="${dead}"] rect`)
    .evaluate((r) => (globalThis as unknown as Styled).getComputedStyle(r).stroke);
  assert.equal(stroke, "rgb(198, 40, 40)", "red");
  assert.match(
    await shown(page.locator("#clusters")),
    new RegExp(`127\\.0\\.0\\.1:${endpoints[1]} \\(unhealthy\\)`),
  );
  await screenshot(page, "dashboard-endpoint-down.png");

  // A config edit appears in the history, with what changed.
  writeFileSync(configFile, config(port, endpoints, "/find"));
  const latest = page.locator("#history details.entry").first();
  await latest.locator("li.change", { hasText: "changed route web/search" }).waitFor({ timeout: 30_000 });
  const entry = await shown(latest);
  assert.match(entry, /file .*config\.yaml/);
  assert.match(entry, /changed route web\/search/);
  assert.match(entry, /- +"value": "\/search"/);
  assert.match(entry, /\+ +"value": "\/find"/);
  await screenshot(page, "dashboard-history.png");

  // A broken file: the error shows and the config in use stays.
  writeFileSync(configFile, "listeners: [ { name: broken\n");
  await page
    .locator("#errors")
    .getByText(/config\.yaml/)
    .first()
    .waitFor({ timeout: 15_000 });
  assert.match(await shown(routes), /prefix \/find/, "still showing the config in use");
  await screenshot(page, "dashboard.png");
});
