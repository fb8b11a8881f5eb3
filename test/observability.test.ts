/**
 * Metrics, access logs, traces and the admin API of a real gateway (control plane + data plane in this
 * process, real sockets, a real upstream and a tiny OTLP/HTTP receiver).
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { type ControlPlane, startControlPlane } from "@agw/control-plane";
import { type DataPlane, type DataPlaneOptions, startDataPlane } from "@agw/data-plane";
import { freePort, requireOrSkip, tempDir, waitFor } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

interface Received {
  traceparent: string | undefined;
}

async function listen(server: http.Server, host = "127.0.0.1"): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return (server.address() as AddressInfo).port;
}

/** GET with a plain HTTP/1.1 client; keep-alive off so each request is its own connection. */
function request(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; localAddress?: string; host?: string } = {},
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: options.host ?? "127.0.0.1",
        port,
        path,
        method: options.method ?? "GET",
        headers: options.headers,
        agent: false,
        ...(options.localAddress ? { localAddress: options.localAddress } : {}),
        timeout: 5000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout: ${path}`)));
    req.on("error", reject);
    req.end();
  });
}

interface Gateway {
  cp: ControlPlane;
  dp: DataPlane;
  port: number;
  dpAdmin: number;
  cpAdmin: number;
  accessLogFile: string;
  received: Received[];
  spans: Array<Record<string, unknown>>;
  keyPem: string;
  close(): Promise<void>;
}

/**
 * `observability` replaces the default: an access log (route "quiet" off by option, route "hushed" by
 * its config) and tracing to the receiver.
 */
async function startGateway(observability?: DataPlaneOptions["observability"]): Promise<Gateway> {
  const dir = tempDir("agw-obs-");
  const received: Received[] = [];
  const upstream = http.createServer((req, res) => {
    received.push({ traceparent: req.headers.traceparent as string | undefined });
    const status = req.url?.startsWith("/fail") ? 503 : 200;
    res.writeHead(status, { "content-type": "text/plain" });
    res.end(`upstream ${status}\n`);
  });
  const upstreamPort = await listen(upstream);
  const spans: Array<Record<string, unknown>> = [];
  const otlp = http.createServer((req, res) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      text += d;
    });
    req.on("end", () => {
      const doc = JSON.parse(text) as {
        resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<Record<string, unknown>> }> }>;
      };
      for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  const otlpPort = await listen(otlp);
  const ca = makeCa(dir, "obs-ca");
  const leaf = makeLeaf(dir, ca, { cn: "secure.example.com", sans: ["DNS:secure.example.com"] });
  const port = await freePort();
  const tlsPort = await freePort();
  const configFile = join(dir, "config.yaml");
  writeFileSync(
    configFile,
    `secrets:
  - name: secure
    certificate: { file: ${leaf.certFile} }
    key: { file: ${leaf.keyFile} }
listeners:
  - name: main
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: ok, match: { path: { prefix: /ok } }, cluster: up }
      - { name: fail, match: { path: { prefix: /fail } }, cluster: up }
      - { name: quiet, match: { path: { prefix: /quiet } }, cluster: up }
      - { name: hushed, match: { path: { prefix: /hushed } }, cluster: up, accessLog: false }
  - name: secure
    address: 127.0.0.1
    port: ${tlsPort}
    protocol: https
    tls: { certificates: [secure] }
    routes:
      - { name: secure-all, cluster: up }
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstreamPort}]
`,
  );
  const cp = await startControlPlane({
    configFile,
    xdsLocal: true,
    admin: { host: "127.0.0.1", port: 0 },
  });
  const accessLogFile = join(dir, "access.log");
  const dp = await startDataPlane({
    xds: `${cp.xdsLocal?.target}`,
    nodeId: "obs-dp",
    admin: { host: "127.0.0.1", port: 0 },
    observability: observability ?? {
      accessLog: { path: accessLogFile, disabledRoutes: ["quiet"] },
      tracing: { otlpEndpoint: `http://127.0.0.1:${otlpPort}/v1/traces`, exportDelayMs: 100 },
    },
  });
  assert.ok(await dp.ready(10_000), "data plane got its first config");
  let dpClosed = false;
  return {
    cp,
    dp,
    port,
    dpAdmin: (dp.admin as NonNullable<DataPlane["admin"]>).address.port,
    cpAdmin: (cp.admin as NonNullable<ControlPlane["admin"]>).address.port,
    accessLogFile,
    received,
    spans,
    keyPem: leaf.keyPem,
    async close() {
      if (!dpClosed) await dp.close();
      dpClosed = true;
      await cp.close();
      upstream.close();
      otlp.close();
    },
  };
}

/** The value of one sample line of a Prometheus text exposition, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] as string).split(",").sort();
    if (JSON.stringify(have) === JSON.stringify(want)) return Number(m[3]);
  }
  return 0;
}

test("known traffic shows as exact counts, access log lines and linked spans", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make the TLS secret")) return;
  const gw = await startGateway();
  t.after(() => gw.close());
  const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const clientSpan = "00f067aa0ba902b7";
  for (let i = 0; i < 5; i++) assert.equal((await request(gw.port, `/ok/${i}`)).status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await request(gw.port, "/fail")).status, 503);
  for (let i = 0; i < 2; i++) assert.equal((await request(gw.port, "/nowhere")).status, 404);
  assert.equal((await request(gw.port, "/quiet")).status, 200);
  assert.equal((await request(gw.port, "/hushed")).status, 200);
  const traced = await request(gw.port, "/ok/traced", {
    headers: { traceparent: `00-${clientTrace}-${clientSpan}-01`, "user-agent": "obs-test/1" },
  });
  assert.equal(traced.status, 200);

  const stats = await request(gw.dpAdmin, "/stats/prometheus");
  assert.equal(stats.status, 200);
  assert.match(String(stats.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
  const requests = (route: string, cluster: string, code_class: string) =>
    sample(stats.body, "agw_downstream_requests_total", { listener: "main", route, cluster, code_class });
  assert.equal(requests("ok", "up", "2xx"), 6);
  assert.equal(requests("fail", "up", "5xx"), 3);
  assert.equal(requests("", "", "4xx"), 2);
  assert.equal(requests("quiet", "up", "2xx"), 1);
  assert.equal(
    sample(stats.body, "agw_downstream_request_duration_seconds_count", { listener: "main", route: "ok" }),
    6,
  );
  assert.equal(sample(stats.body, "agw_upstream_request_duration_seconds_count", { cluster: "up" }), 11);
  assert.equal(sample(stats.body, "agw_cluster_endpoints", { cluster: "up" }), 1);
  assert.match(stats.body, /^agw_xds_connected 1$/m);
  assert.ok(sample(stats.body, "agw_xds_updates_total", { type: "Cluster", result: "ack" }) >= 1);

  // Traces: the upstream saw the gateway's client span as its parent, in the client's trace.
  const upstreamSaw = gw.received.at(-1)?.traceparent ?? "";
  const [, upTrace, upParent, upFlags] = upstreamSaw.split("-");
  assert.equal(upTrace, clientTrace);
  assert.notEqual(upParent, clientSpan);
  assert.equal(upFlags, "01");
  const inTrace = await waitFor("the traced request's spans at the OTLP receiver", () => {
    const found = gw.spans.filter((s) => s.traceId === clientTrace);
    return found.length >= 2 ? found : undefined;
  });
  const server = inTrace.find((s) => s.kind === 2);
  const client = inTrace.find((s) => s.kind === 3);
  assert.ok(server && client, `a server and a client span: ${JSON.stringify(inTrace)}`);
  assert.equal(server.parentSpanId, clientSpan);
  assert.equal(client.parentSpanId, server.spanId);
  assert.equal(client.spanId, upParent);
  assert.equal(server.name, "GET ok");

  // Access log: flushed at close; one line per request, none for the "quiet" and "hushed" routes.
  await gw.close();
  const lines = readFileSync(gw.accessLogFile, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 11);
  assert.equal(lines.filter((l) => l.route === "quiet" || l.route === "hushed").length, 0);
  const last = lines.at(-1) as Record<string, unknown>;
  assert.deepEqual(Object.keys(last), [
    "start_time",
    "method",
    "authority",
    "path",
    "protocol",
    "status",
    "response_flags",
    "duration_ms",
    "listener",
    "route",
    "upstream_cluster",
    "upstream_host",
    "bytes_received",
    "bytes_sent",
    "user_agent",
    "request_id",
    "trace_id",
    "client_address",
  ]);
  assert.equal(last.method, "GET");
  assert.equal(last.authority, `127.0.0.1:${gw.port}`);
  assert.equal(last.path, "/ok/traced");
  assert.equal(last.protocol, "HTTP/1.1");
  assert.equal(last.status, 200);
  assert.equal(last.response_flags, null);
  assert.equal(last.listener, "main");
  assert.equal(last.route, "ok");
  assert.equal(last.upstream_cluster, "up");
  assert.equal(last.upstream_host, `127.0.0.1:${new URL(`http://${last.upstream_host}`).port}`);
  assert.equal(last.user_agent, "obs-test/1");
  assert.equal(last.request_id, traced.headers["x-request-id"]);
  assert.equal(last.trace_id, clientTrace);
  assert.equal(last.client_address, "127.0.0.1");
  assert.ok(typeof last.duration_ms === "number" && last.duration_ms >= 0);
  assert.ok(Math.abs(Date.parse(String(last.start_time)) - Date.now()) < 60_000);
  assert.ok(Number(last.bytes_received) > 60, "the request head");
  assert.ok(Number(last.bytes_sent) > String(traced.body).length, "head and body");
  const notFound = lines.filter((l) => l.status === 404);
  assert.equal(notFound.length, 2);
  assert.equal(notFound[0]?.response_flags, "route_not_found");
  assert.equal(notFound[0]?.route, null);
  assert.equal(lines.filter((l) => l.status === 503 && l.response_flags === null).length, 3);
});

test("with request metrics off, requests are served and not counted; the gauges stay", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make the TLS secret")) return;
  const gw = await startGateway({ requestMetrics: false });
  t.after(() => gw.close());
  for (let i = 0; i < 3; i++) assert.equal((await request(gw.port, "/ok")).status, 200);
  const stats = (await request(gw.dpAdmin, "/stats/prometheus")).body;
  assert.doesNotMatch(stats, /^agw_downstream_requests_total\{/m);
  assert.doesNotMatch(stats, /^agw_upstream_request_duration_seconds_count\{/m);
  assert.equal(sample(stats, "agw_cluster_endpoints", { cluster: "up" }), 1);
});

test("admin: GET reads, POST changes state, no private key in /config_dump", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make the TLS secret")) return;
  const gw = await startGateway();
  t.after(() => gw.close());
  const keyBody = gw.keyPem.split("\n").filter((l) => l && !l.startsWith("-----"));
  for (const port of [gw.dpAdmin, gw.cpAdmin]) {
    const dump = await request(port, "/config_dump");
    assert.equal(dump.status, 200);
    assert.doesNotMatch(dump.body, /PRIVATE KEY/);
    for (const line of keyBody) assert.ok(!dump.body.includes(line), "a line of the key's base64");
  }
  const dpDump = JSON.parse((await request(gw.dpAdmin, "/config_dump")).body) as {
    resources: Record<string, { resources: unknown[] }>;
  };
  assert.deepEqual(dpDump.resources["agw.v1.Secret"]?.resources, [{ name: "secure", redacted: true }]);

  const clusters = JSON.parse((await request(gw.dpAdmin, "/clusters")).body) as Array<{
    name: string;
    endpoints: Array<{ address: string; health: string }>;
  }>;
  assert.equal(clusters[0]?.name, "up");
  assert.equal(clusters[0]?.endpoints[0]?.health, "unchecked");
  assert.equal((await request(gw.dpAdmin, "/healthz")).status, 200);
  assert.match((await request(gw.dpAdmin, "/server_info")).body, /"node_id": "obs-dp"/);

  assert.equal((await request(gw.dpAdmin, "/drain")).status, 405, "GET cannot drain");
  assert.equal((await request(gw.dpAdmin, "/ready")).status, 200);
  assert.equal((await request(gw.dpAdmin, "/drain", { method: "POST" })).status, 403, "no x-agw-admin");
  assert.equal((await request(gw.dpAdmin, "/ready")).status, 200);
  const drain = { method: "POST", headers: { "x-agw-admin": "1" } };
  assert.equal((await request(gw.dpAdmin, "/drain", drain)).status, 200);
  assert.equal((await request(gw.dpAdmin, "/ready")).status, 503);
  const served = await request(gw.port, "/ok/while-draining");
  assert.equal(served.status, 200, "draining still answers, without keep-alive");
  assert.equal(served.headers.connection, "close");
});

/** An IPv4 address of this host other than loopback: a client bound to it is not local. */
function nonLoopbackAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  return undefined;
}

test("admin on 0.0.0.0 refuses clients that are not local, unless they present the token", async (t) => {
  const address = nonLoopbackAddress();
  if (!requireOrSkip(t, address !== undefined, "a non-loopback IPv4 interface address is needed")) return;
  if (address === undefined) return;
  const configFile = join(tempDir("agw-obs-admin-"), "config.yaml");
  writeFileSync(
    configFile,
    `listeners: [{ name: main, address: 127.0.0.1, port: ${await freePort()}, routes: [{ name: all, cluster: up }] }]\nclusters: [{ name: up, endpoints: [127.0.0.1:9] }]\n`,
  );
  const cp = await startControlPlane({
    configFile,
    xdsLocal: true,
  });
  t.after(() => cp.close());
  const open = await startDataPlane({
    xds: `${cp.xdsLocal?.target}`,
    nodeId: "open",
    admin: { host: "0.0.0.0", port: 0 },
    bindAddress: "127.0.0.1",
  });
  t.after(() => open.close());
  const port = (open.admin as NonNullable<DataPlane["admin"]>).address.port;
  const local = await request(port, "/healthz");
  assert.equal(local.status, 200);
  const remote = await request(port, "/healthz", { host: address, localAddress: address });
  assert.equal(remote.status, 403);
  assert.match(remote.body, /answers local clients only/);
  const remoteStats = await request(port, "/stats/prometheus", { host: address, localAddress: address });
  assert.equal(remoteStats.status, 403);

  const withToken = await startDataPlane({
    xds: `${cp.xdsLocal?.target}`,
    nodeId: "token",
    admin: { host: "0.0.0.0", port: 0 },
    adminToken: "s3cret-token",
    bindAddress: "127.0.0.1",
  });
  t.after(() => withToken.close());
  const tokenPort = (withToken.admin as NonNullable<DataPlane["admin"]>).address.port;
  const via = { host: address, localAddress: address };
  assert.equal((await request(tokenPort, "/healthz", via)).status, 403);
  assert.equal(
    (await request(tokenPort, "/healthz", { ...via, headers: { authorization: "Bearer wrong-token!" } }))
      .status,
    403,
  );
  assert.equal(
    (await request(tokenPort, "/healthz", { ...via, headers: { authorization: "Bearer s3cret-token" } }))
      .status,
    200,
  );
});
