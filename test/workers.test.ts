/**
 * `agw run --workers 2`: two threads share each listener port (SO_REUSEPORT), both serve traffic,
 * a config edit reaches both through the one xDS stream; SIGTERM drains: a slow request in flight
 * finishes, new connections are refused, idle keep-alive connections close, HTTP/2 gets GOAWAY.
 */
import assert from "node:assert/strict";
import { renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { agw, freePort, type Proc, tempDir, waitFor } from "./helpers.ts";

interface WorkerRow {
  worker: number;
  accepted: number;
  connections: number;
  version: string;
  ready: boolean;
}

function config(port: number, originPort: number, routes: string[]): string {
  return `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
${routes
  .map(
    (r) => `      - name: ${r}
        match: { path: { prefix: /${r === "all" ? "" : r} } }
        cluster: origin
        responseHeaders: { set: { x-route: ${r} } }`,
  )
  .join("\n")}
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`;
}

function save(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

/** One request on a fresh connection (no keep-alive), so the kernel picks a worker each time. */
function getFresh(port: number, path: string): Promise<{ status: number; route: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false, timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, route: String(res.headers["x-route"] ?? ""), body }),
      );
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
  });
}

async function workers(adminPort: number): Promise<WorkerRow[]> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/workers`, { signal: AbortSignal.timeout(5_000) });
  return (await res.json()) as WorkerRow[];
}

async function startGateway(
  t: { after(fn: () => Promise<void>): void },
  routes: string[],
  extra: string[] = [],
) {
  const releases: Array<() => void> = [];
  let slowArrived = 0;
  const origin = http.createServer((req, res) => {
    if (req.url === "/slow") {
      slowArrived++;
      // Answers when the test says so: the request is in flight for as long as the test needs.
      releases.push(() => res.end("slow done\n"));
      return;
    }
    res.end(`origin ${req.url}\n`);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const originPort = (origin.address() as AddressInfo).port;
  const dir = tempDir();
  const file = join(dir, "config.yaml");
  const port = await freePort();
  save(file, config(port, originPort, routes));
  const adminPort = await freePort();
  const gw: Proc = agw([
    "run",
    "-c",
    file,
    "--workers",
    "2",
    "--xds-listen",
    "127.0.0.1:0",
    "--admin",
    `127.0.0.1:${adminPort}`,
    "--cp-admin",
    "127.0.0.1:0",
    ...extra,
  ]);
  t.after(async () => {
    await gw.stop("SIGKILL");
    origin.closeAllConnections();
    origin.close();
  });
  await waitFor(
    `both workers ready\n${gw.output()}`,
    async () => {
      const rows = await workers(adminPort);
      return rows.length === 2 && rows.every((w) => w.ready) ? rows : undefined;
    },
    20_000,
  );
  return {
    gw,
    file,
    port,
    originPort,
    adminPort,
    slowArrived: () => slowArrived,
    release: () => {
      for (const r of releases.splice(0)) r();
    },
  };
}

test("two workers both serve traffic, and a config edit reaches both", async (t) => {
  const g = await startGateway(t, ["all"]);
  const before = await workers(g.adminPort);
  assert.equal(before[0]?.version, before[1]?.version);

  // Fresh connections until the kernel has handed some to each worker.
  const served = await waitFor(
    "connections on both workers",
    async () => {
      for (let i = 0; i < 10; i++) {
        const res = await getFresh(g.port, "/");
        assert.equal(res.status, 200);
        assert.equal(res.route, "all");
      }
      const rows = await workers(g.adminPort);
      return rows.every((w) => w.accepted > 0) ? rows : undefined;
    },
    20_000,
  );
  t.diagnostic(`accepted per worker: ${served.map((w) => `${w.worker}=${w.accepted}`).join(", ")}`);

  save(g.file, config(g.port, g.originPort, ["all", "v2"]));
  const after = await waitFor(
    "the edit on both workers",
    async () => {
      const rows = await workers(g.adminPort);
      return rows.every((w) => w.version !== before[0]?.version && w.version === rows[0]?.version)
        ? rows
        : undefined;
    },
    15_000,
  );
  assert.equal(after.length, 2);
  const acceptedBefore = after.map((w) => w.accepted);
  // Every fresh connection, whichever worker takes it, routes with the new config.
  await waitFor(
    "requests on both workers after the edit",
    async () => {
      for (let i = 0; i < 10; i++) {
        const res = await getFresh(g.port, "/v2");
        assert.equal(res.status, 200);
        assert.equal(res.route, "v2");
      }
      const rows = await workers(g.adminPort);
      return rows.every((w, i) => w.accepted > (acceptedBefore[i] ?? 0)) ? true : undefined;
    },
    20_000,
  );

  // The admin's metrics are the sum over both workers.
  const metrics = await (await fetch(`http://127.0.0.1:${g.adminPort}/stats/prometheus`)).text();
  const total = [...metrics.matchAll(/^agw_downstream_requests_total\{[^}]*code_class="2xx"\} (\d+)$/gm)]
    .map((m) => Number(m[1]))
    .reduce((a, b) => a + b, 0);
  const accepted = (await workers(g.adminPort)).reduce((n, w) => n + w.accepted, 0);
  assert.equal(total, accepted, metrics);
});

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"));
  });
}

test("SIGTERM drains: the request in flight finishes, new connections are refused, idle ones close, h2 gets GOAWAY", async (t) => {
  const g = await startGateway(t, ["all"], ["--drain-timeout", "20"]);

  // An idle keep-alive connection and an HTTP/2 (h2c) session, both used once.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  // Wrapped: resolving with the bare promise would wait for the close itself.
  const { idleClosed } = await new Promise<{ idleClosed: Promise<void> }>((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port: g.port, path: "/", agent }, (res) => {
        const socket = res.socket;
        const closed = new Promise<void>((done) => socket.once("close", () => done()));
        res.resume();
        res.on("end", () => resolve({ idleClosed: closed }));
      })
      .on("error", reject);
  });
  const session = http2.connect(`http://127.0.0.1:${g.port}`);
  session.on("error", () => {});
  t.after(() => session.destroy());
  const goaway = new Promise<void>((resolve) => session.once("goaway", () => resolve()));
  const h2Status = await new Promise<number>((resolve, reject) => {
    const s = session.request({ ":path": "/" });
    s.on("response", (h) => resolve(Number(h[":status"])));
    s.on("error", reject);
    s.resume();
  });
  assert.equal(h2Status, 200);

  const slow = getFresh(g.port, "/slow");
  await waitFor("the slow request at the origin", () => (g.slowArrived() === 1 ? true : undefined));

  const exited = new Promise<number | null>((resolve) => g.gw.child.once("exit", (code) => resolve(code)));
  g.gw.child.kill("SIGTERM");
  await waitFor(`new connections refused\n${g.gw.output()}`, async () =>
    (await refused(g.port)) ? true : undefined,
  );
  await idleClosed;
  await goaway;
  // Still draining: the slow request holds the process.
  assert.equal(g.gw.child.exitCode, null);

  g.release();
  const res = await slow;
  assert.equal(res.status, 200);
  assert.equal(res.body, "slow done\n");
  assert.equal(await exited, 0);
  assert.match(g.gw.output(), /"cut":0,"msg":"drained"/);
});
