/** Shared helpers for tests that run real processes and sockets. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { type BrowserContext, chromium, type Page } from "playwright-core";

export const ROOT = new URL("..", import.meta.url).pathname;
export const CLI = join(ROOT, "cli/src/main.ts");

/**
 * Skips loudly when a prerequisite is missing; under AGW_TEST_STRICT=1 (CI) a missing prerequisite
 * fails the test instead, so CI can never pass by skipping.
 */
export function requireOrSkip(t: TestContext, ok: boolean, reason: string): boolean {
  if (ok) return true;
  if (process.env.AGW_TEST_STRICT === "1")
    throw new Error(`prerequisite missing (AGW_TEST_STRICT=1): ${reason}`);
  t.skip(`SKIPPED: ${reason}`);
  return false;
}

export function tempDir(prefix = "agw-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A port that was free a moment ago (for processes that must be told a port up front). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`,
  );
}

export interface Proc {
  child: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Keeps a child's output for assertions and failure messages, and stops it (SIGKILL after 5 s). */
export function tracked(child: ChildProcess): Proc {
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    output: () => out,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Starts `agw <args>` as a real process (in the repository, or in `cwd`). */
export function agw(args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): Proc {
  return tracked(
    spawn(process.execPath, [CLI, ...args], {
      cwd,
      env: { ...process.env, AGW_LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
}

export interface RunningGateway {
  proc: Proc;
  /** The data plane's admin port (/ready, /config_dump, /stats/prometheus). */
  adminPort: number;
  /** The control plane's admin port (/dataplanes). */
  cpAdminPort: number;
}

/**
 * `agw run -c file [extra]` on loopback ports of its own (both admins; xDS is a private Unix socket), returned once its data
 * plane answers /ready; on a timeout the process is stopped and its output is in the error.
 */
export async function startGateway(file: string, extra: string[] = []): Promise<RunningGateway> {
  const [adminPort, cpAdminPort] = await Promise.all([freePort(), freePort()]);
  const proc = agw([
    "run",
    "-c",
    file,
    "--admin",
    `127.0.0.1:${adminPort}`,
    "--cp-admin",
    `127.0.0.1:${cpAdminPort}`,
    ...extra,
  ]);
  try {
    await waitFor(
      "the data plane ready",
      async () => ((await get(`http://127.0.0.1:${adminPort}/ready`)).status === 200 ? true : undefined),
      30_000,
    );
  } catch (e) {
    await proc.stop();
    throw new Error(`${(e as Error).message}\n${proc.output()}`);
  }
  return { proc, adminPort, cpAdminPort };
}

/** Writes `dir`/config.yaml: one listener on 127.0.0.1:`port` whose one route goes to 127.0.0.1:`originPort`. */
export function singleRouteConfig(dir: string, port: number, route: string, originPort: number): string {
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: ${route}, cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`,
  );
  return file;
}

/** The JSON access log entry of `requestId`; fails with the whole log when there is none. */
export function accessLogEntry(file: string, requestId: string): Record<string, unknown> {
  const text = readFileSync(file, "utf8");
  const entry = text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l.request_id === requestId);
  if (entry === undefined) throw new Error(`no access log entry for ${requestId} in:\n${text}`);
  return entry;
}

/** An origin on 127.0.0.1 that answers every request with JSON of its path and the headers it got. */
export async function startHeaderEcho(): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ path: req.url, headers: req.headers }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** GET through the gateway with fetch; returns status, body and headers. */
export async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/**
 * Transpiles a component into this user's plugin transpile cache, which the gateways a test starts
 * share: a QuickJS guest takes seconds of CPU to transpile (tens on a busy machine), which would
 * otherwise be spent inside a gateway's start-up wait, once per data plane.
 */
export async function warmPluginCache(bytes: Uint8Array, memoryMaxBytes?: number): Promise<void> {
  const { compileComponent } = await import("../data-plane/src/plugins/compile.ts");
  const { PLUGIN_DEFAULTS } = await import("../data-plane/src/plugins/host.ts");
  await compileComponent(bytes, { memoryMaxBytes: memoryMaxBytes ?? PLUGIN_DEFAULTS.memoryMaxBytes });
}

/** A throwaway redis-server on 127.0.0.1:`port` (no persistence), resolved once it accepts connections. */
export async function startRedisServer(port: number): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: "ignore" },
  );
  await waitFor(
    `redis-server on ${port}`,
    () =>
      new Promise<true | undefined>((resolve) => {
        const s = net.connect(port, "127.0.0.1", () => {
          s.end();
          resolve(true);
        });
        s.on("error", () => resolve(undefined));
      }),
  );
  return child;
}

/** SIGKILL, then wait for the exit (a no-op when the process has already exited). */
export async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

/** Debian's Chromium, which the browser tests drive with playwright-core. */
export const CHROMIUM = "/usr/bin/chromium";

/**
 * A headless Chromium (a fresh profile, nothing fetched in the background), closed after the test;
 * its first page. `extraArgs` e.g. --host-resolver-rules; `viewport` for screenshots.
 */
export async function openChromium(
  t: { after(fn: () => unknown): void },
  extraArgs: string[] = [],
  viewport?: { width: number; height: number },
): Promise<{ browser: BrowserContext; page: Page }> {
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
      ...extraArgs,
    ],
    timeout: 30_000,
    ...(viewport ? { viewport } : {}),
  });
  t.after(() => browser.close());
  return { browser, page: browser.pages()[0] ?? (await browser.newPage()) };
}

/**
 * A config.yaml in `dir` with the same `routes` (YAML list items, indented 6) on a plain listener and
 * on an HTTPS listener (the `site` certificate in `dir`, ALPN h2 and http/1.1), one cluster `origin`.
 * Returns its path: the three protocols of one behaviour, in one gateway.
 */
export function plainAndTlsConfig(
  dir: string,
  ports: { plain: number; tls: number; origin: number },
  routes: string,
): string {
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `secrets:
  - { name: site, certificate: { file: site.crt }, key: { file: site.key } }
listeners:
  - name: plain
    address: 127.0.0.1
    port: ${ports.plain}
    routes:${routes}
  - name: secure
    address: 127.0.0.1
    port: ${ports.tls}
    protocol: https
    tls: { certificates: [site], alpn: [h2, http/1.1] }
    routes:${routes}
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${ports.origin}"]
`,
  );
  return file;
}
