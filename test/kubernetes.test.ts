/**
 * The Kubernetes source against a real etcd + kube-apiserver (scripts/kube): Services,
 * EndpointSlices and GatewayRoutes → control plane → xDS → a data plane that routes real requests
 * to real upstreams on 127.0.0.x; TLS Secrets in the snapshot and served, through rotation, by a
 * config.yaml HTTPS listener; schema and status for bad routes; an API server restart; status
 * written by the Lease holder only.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { join } from "node:path";
import { test } from "node:test";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { promisify } from "node:util";
import { type ControlPlane, startControlPlane } from "@agw/control-plane";
import { KubeApiError, KubeClient, loadKubeConfig } from "@agw/control-plane/providers/kubernetes/client";
import type { GatewayRoute } from "@agw/control-plane/providers/kubernetes/types";
import { TYPE_URL } from "@agw/core/xds/types";
import { type DataPlane, startDataPlane } from "@agw/data-plane";
import { parse, parseAllDocuments } from "yaml";
import type { TestApiServer } from "../scripts/kube/apiserver.ts";
import type { PodNetwork } from "../scripts/kube/netns.ts";
import {
  agw,
  CHROMIUM,
  freePort,
  openChromium,
  ROOT,
  requireOrSkip,
  tempDir,
  tracked,
  waitFor,
} from "./helpers.ts";
import { installGatewayRouteCrd, useKubeApiServer } from "./kube-support.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const NS = "agw-test";
const run = promisify(execFile);
let api: TestApiServer | undefined;
let client: KubeClient;
/** Upstream "Pods": EndpointSlices refuse loopback addresses. */
let pods: PodNetwork | undefined;

const quiet = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet } as never;

const ready = useKubeApiServer({ pods: 6, timeoutMs: 150_000 }, async (kube) => {
  ({ api, client, pods } = kube);
  await installGatewayRouteCrd(client);
  await client.request("POST", "/api/v1/namespaces", { metadata: { name: NS } });
});

const ns = (plural: string, group = "/api/v1") => `${group}/namespaces/${NS}/${plural}`;
const SLICES = "/apis/discovery.k8s.io/v1";
const GR = "/apis/gateway.agw.dev/v1alpha1";

function slice(
  name: string,
  service: string,
  port: number,
  endpoints: Array<{ ip: string; ready?: boolean }>,
) {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name, namespace: NS, labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    ports: [{ name: "http", port, protocol: "TCP" }],
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready ?? true } })),
  };
}

function gatewayRoute(name: string, listenerPort: number, spec: Record<string, unknown>): GatewayRoute {
  return {
    apiVersion: "gateway.agw.dev/v1alpha1",
    kind: "GatewayRoute",
    metadata: { name, namespace: NS },
    spec: { listener: { name: `port-${listenerPort}`, port: listenerPort }, ...spec },
  } as GatewayRoute;
}

let nextBindAddress = 1;

/**
 * A control plane and its data plane. Each data plane binds its own loopback address, so several
 * replicas serve the same listener ports side by side; `host` is that address.
 */
async function startPair(
  kubeconfig: string,
  identity: string,
): Promise<{ cp: ControlPlane; dp: DataPlane; host: string; close: () => Promise<void> }> {
  const host = `127.0.1.${nextBindAddress++}`;
  const cp = await startControlPlane({
    xdsLocal: true,
    log: quiet,
    kubernetes: {
      kubeconfig,
      namespace: NS,
      leaderElection: { identity, leaseDurationSeconds: 3, renewMs: 500 },
    },
  });
  const dp = await startDataPlane({
    xds: `${cp.xdsLocal?.target}`,
    nodeId: identity,
    bindAddress: host,
    log: quiet,
  });
  let closed = false;
  return {
    cp,
    dp,
    host,
    async close() {
      if (closed) return;
      closed = true;
      await dp.close();
      await cp.close();
    },
  };
}

async function servedBy(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  return `${res.status} ${await res.text()}`;
}

/** Which upstreams answer over `n` requests. */
async function spread(url: string, n: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) seen.add(await servedBy(url));
  return seen;
}

/**
 * Milliseconds from `since` until the gateway's answers satisfy `ok` for `streak` requests in a
 * row (the time of the first of them): how long routing took to follow a change.
 */
async function followTime(
  url: string,
  since: number,
  ok: (body: string) => boolean,
  streak = 12,
): Promise<number> {
  let firstGood = 0;
  let good = 0;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const at = Date.now();
    if (ok(await servedBy(url))) {
      if (good++ === 0) firstGood = at;
      if (good >= streak) return firstGood - since;
    } else good = 0;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`routing did not follow within 20 s (${url})`);
}

function snapshotVersions(cp: ControlPlane): Record<string, string> {
  return Object.fromEntries([...(cp.cache.snapshot ?? [])].map(([t, s]) => [t, s.version]));
}

const timings: Record<string, number> = {};

test("Service + two EndpointSlices + GatewayRoute: the data plane routes to every endpoint; named ports resolve", async (t) => {
  if (!ready(t) || !api || !pods) return;
  const [ip1 = "", ip2 = "", ip3 = "", ip4 = ""] = pods.addresses;
  const { port, stop } = await pods.serve([ip1, ip2, ip3, ip4]);
  t.after(stop);
  const listenerPort = await freePort();
  await client.request("POST", ns("services"), {
    metadata: { name: "echo", namespace: NS },
    spec: { ports: [{ name: "http", port: 80, targetPort: "web", protocol: "TCP" }] },
  });
  await client.request(
    "POST",
    ns("endpointslices", SLICES),
    slice("echo-a", "echo", port, [{ ip: ip1 }, { ip: ip2 }]),
  );
  await client.request("POST", ns("endpointslices", SLICES), slice("echo-b", "echo", port, [{ ip: ip3 }]));
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("echo", listenerPort, {
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: "/by-name" } }],
          backendRefs: [{ name: "echo", port: "http" }],
        },
        {
          matches: [{ path: { type: "PathPrefix", value: "/by-number" } }],
          backendRefs: [{ name: "echo", port: 80 }],
        },
      ],
    }),
  );

  const pair = await startPair(api.kubeconfig, "replica-a");
  t.after(() => pair.close());
  assert.ok(await pair.dp.ready(15_000), "data plane got a config");
  const base = `http://${pair.host}:${listenerPort}`;
  await waitFor("the listener", () => servedBy(`${base}/by-name`).catch(() => undefined), 10_000);
  assert.deepEqual([...(await spread(`${base}/by-name`, 18))].sort(), [
    `200 ${ip1}`,
    `200 ${ip2}`,
    `200 ${ip3}`,
  ]);
  assert.deepEqual([...(await spread(`${base}/by-number`, 18))].sort(), [
    `200 ${ip1}`,
    `200 ${ip2}`,
    `200 ${ip3}`,
  ]);

  // Added endpoint.
  let since = Date.now();
  await client.request("PUT", `${ns("endpointslices", SLICES)}/echo-b`, {
    ...slice("echo-b", "echo", port, [{ ip: ip3 }, { ip: ip4 }]),
  });
  timings.added = await followTime(`${base}/by-name`, since, (b) => b === `200 ${ip4}`, 1);
  assert.deepEqual([...(await spread(`${base}/by-name`, 24))].sort(), [
    `200 ${ip1}`,
    `200 ${ip2}`,
    `200 ${ip3}`,
    `200 ${ip4}`,
  ]);

  // Not ready: the first Pod stays in its slice but must stop getting traffic.
  since = Date.now();
  await client.request("PUT", `${ns("endpointslices", SLICES)}/echo-a`, {
    ...slice("echo-a", "echo", port, [{ ip: ip1, ready: false }, { ip: ip2 }]),
  });
  timings.notReady = await followTime(`${base}/by-name`, since, (b) => b !== `200 ${ip1}`);

  // Removed: a whole slice goes.
  since = Date.now();
  await client.request("DELETE", `${ns("endpointslices", SLICES)}/echo-b`);
  timings.removed = await followTime(`${base}/by-name`, since, (b) => b === `200 ${ip2}`);
  assert.deepEqual([...(await spread(`${base}/by-name`, 12))], [`200 ${ip2}`]);
  t.diagnostic(`routing followed: ${JSON.stringify(timings)} ms after the API write returned`);
  for (const [what, ms] of Object.entries(timings)) assert.ok(ms < 10_000, `${what} took ${ms} ms`);

  // Resync relists everything and lands on the snapshot it already had. Not decided by a wait: a
  // sentinel change after the resync (echo-b back) is translated after anything the resync changed,
  // so once its snapshot is out, only the endpoints may differ.
  const beforeResync = snapshotVersions(pair.cp);
  const setBefore = pair.cp.cache.stats.set;
  await pair.cp.kubernetes?.resync();
  await client.request("POST", ns("endpointslices", SLICES), slice("echo-b", "echo", port, [{ ip: ip3 }]));
  await waitFor("the sentinel's snapshot", () => (pair.cp.cache.stats.set > setBefore ? true : undefined));
  assert.equal(pair.cp.cache.stats.set, setBefore + 1, "one snapshot: the sentinel's");
  const { [TYPE_URL.endpoints]: endpointsAfter, ...others } = snapshotVersions(pair.cp);
  const { [TYPE_URL.endpoints]: endpointsBefore, ...othersBefore } = beforeResync;
  assert.deepEqual(others, othersBefore);
  assert.notEqual(endpointsAfter, endpointsBefore);
});

function tlsPair(cn: string): { cert: string; key: string } {
  const dir = tempDir("agw-tls-");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "k.pem",
      "-out",
      "c.pem",
      "-subj",
      `/CN=${cn}`,
      "-days",
      "1",
    ],
    { cwd: dir, stdio: "ignore" },
  );
  return { cert: readFileSync(join(dir, "c.pem"), "utf8"), key: readFileSync(join(dir, "k.pem"), "utf8") };
}

function tlsSecret(name: string, cert: string, key: string) {
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/tls",
    metadata: { name, namespace: NS },
    data: { "tls.crt": Buffer.from(cert).toString("base64"), "tls.key": Buffer.from(key).toString("base64") },
  };
}

/** The Secrets a data plane holds: what it received over xDS (its config dump lists them by name). */
function secretsHeld(dp: DataPlane): string[] {
  const dump = dp.store.dump() as Record<string, { resources?: Array<{ name?: string }> }>;
  return (dump["agw.v1.Secret"]?.resources ?? []).map((r) => r.name ?? "").sort();
}

/** The subject CN a TLS handshake with host:port presents. */
function handshakeCommonName(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host, port, rejectUnauthorized: false, timeout: 3_000 }, () => {
      resolve(String(socket.getPeerCertificate().subject?.CN ?? ""));
      socket.end();
    });
    socket.on("timeout", () => socket.destroy());
    socket.on("error", () => resolve(""));
  });
}

test("TLS Secrets: a data plane receives only those a listener references in its own namespace; an unreferenced one and another tenant's are never sent", async (t) => {
  if (!ready(t) || !api) return;
  const TENANT_B = "agw-tenant-b";
  await client.request("POST", "/api/v1/namespaces", { metadata: { name: TENANT_B } });
  const site = tlsPair("site.example");
  const vault = tlsPair("vault.example");
  await client.request("POST", ns("secrets"), tlsSecret("site", site.cert, site.key));
  await client.request("POST", ns("secrets"), tlsSecret("unused", vault.cert, vault.key));
  await client.request("POST", `/api/v1/namespaces/${TENANT_B}/secrets`, {
    ...tlsSecret("vault", vault.cert, vault.key),
    metadata: { name: "vault", namespace: TENANT_B },
  });
  const [ownPort, thiefPort] = [await freePort(), await freePort()];
  const tlsRoute = (name: string, port: number, ref: { name: string; namespace?: string }) =>
    gatewayRoute(name, port, {
      listener: { name: `tls-${name}`, port, tls: { certificateRefs: [ref] } },
      rules: [{ directResponse: { status: 200, body: name } }],
    });
  await client.request("POST", ns("gatewayroutes", GR), tlsRoute("own", ownPort, { name: "site" }));
  // A tenant of agw-test names another namespace's Secret: it must not get that key served, or sent.
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    tlsRoute("thief", thiefPort, { name: "vault", namespace: TENANT_B }),
  );
  t.after(async () => {
    for (const name of ["own", "thief"])
      await client.request("DELETE", `${ns("gatewayroutes", GR)}/${name}`).catch(() => undefined);
    for (const name of ["site", "unused"])
      await client.request("DELETE", `${ns("secrets")}/${name}`).catch(() => undefined);
    await client.request("DELETE", `/api/v1/namespaces/${TENANT_B}`).catch(() => undefined);
  });

  // Every namespace watched, so the control plane does see the other tenant's Secret.
  const cp = await startControlPlane({
    xdsLocal: true,
    log: quiet,
    kubernetes: {
      kubeconfig: api.kubeconfig,
      leaderElection: { identity: "replica-secrets", leaseDurationSeconds: 3, renewMs: 500 },
    },
  });
  t.after(() => cp.close());
  const host = `127.0.1.${nextBindAddress++}`;
  const dp = await startDataPlane({
    xds: `${cp.xdsLocal?.target}`,
    nodeId: "dp-secrets",
    bindAddress: host,
    log: quiet,
  });
  t.after(() => dp.close());
  assert.ok(await dp.ready(15_000), "data plane got a config");
  assert.equal(
    await waitFor("own's certificate", async () =>
      (await handshakeCommonName(host, ownPort)) === "site.example" ? "site.example" : undefined,
    ),
    "site.example",
  );
  assert.deepEqual(secretsHeld(dp), [`${NS}/site`], "only the referenced Secret reached the data plane");
  assert.deepEqual([...(cp.cache.snapshot?.get(TYPE_URL.secret)?.resources.keys() ?? [])], [`${NS}/site`]);
  assert.equal(await handshakeCommonName(host, thiefPort), "", "nothing listens for the thief");

  const thief = await waitFor("thief's status", async () => {
    const c = (await client.request<GatewayRoute>("GET", `${ns("gatewayroutes", GR)}/thief`)).status
      ?.conditions;
    return c?.find((x) => x.type === "ResolvedRefs") ? c : undefined;
  });
  const resolved = thief.find((x) => x.type === "ResolvedRefs");
  assert.equal(resolved?.status, "False");
  assert.equal(resolved?.reason, "RefNotPermitted");
  assert.match(resolved?.message ?? "", new RegExp(`Secret ${TENANT_B}/vault is in another namespace`));
  assert.equal(thief.find((x) => x.type === "Accepted")?.status, "False");

  // No listener references it any more: the data plane is told to drop it.
  await client.request("DELETE", `${ns("gatewayroutes", GR)}/own`);
  await waitFor("site dropped from the data plane", () => (secretsHeld(dp).length === 0 ? true : undefined));
});

test("an invalid GatewayRoute is rejected by the schema, or served nowhere and reported in status", async (t) => {
  if (!ready(t) || !api) return;
  const listenerPort = await freePort();
  const rejected = await client
    .request(
      "POST",
      ns("gatewayroutes", GR),
      gatewayRoute("bad-path", listenerPort, {
        rules: [
          {
            matches: [{ path: { type: "PathPrefix", value: "no-slash" } }],
            backendRefs: [{ name: "echo", port: 80 }],
          },
        ],
      }),
    )
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  assert.ok(rejected instanceof KubeApiError, "the API server refused it");
  assert.equal(rejected.status, 422);
  assert.match(rejected.message, /an Exact or PathPrefix path starts with \//);
  const noBackends = await client
    .request(
      "POST",
      ns("gatewayroutes", GR),
      gatewayRoute("no-backends", listenerPort, { rules: [{ backendRefs: [] }] }),
    )
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  assert.ok(noBackends instanceof KubeApiError && noBackends.status === 422);

  const pair = await startPair(api.kubeconfig, "replica-status");
  t.after(() => pair.close());
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("bad-regex", listenerPort, {
      rules: [
        {
          matches: [{ path: { type: "RegularExpression", value: "/(" } }],
          backendRefs: [{ name: "echo", port: 80 }],
        },
      ],
    }),
  );
  // A tenant's pattern that only a backtracking engine could run: refused, never sent to a data plane.
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("backtracking-regex", listenerPort, {
      rules: [
        {
          matches: [{ headers: [{ name: "x-id", type: "RegularExpression", value: "(a+)\\1" }] }],
          backendRefs: [{ name: "echo", port: 80 }],
        },
      ],
    }),
  );
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("missing-svc", listenerPort, {
      rules: [{ backendRefs: [{ name: "nowhere", port: 80 }] }],
    }),
  );
  const badRegex = await waitFor("bad-regex status", async () => {
    const c = await conditionsOf("bad-regex");
    return c.find((x) => x.type === "Accepted") ? c : undefined;
  });
  const accepted = badRegex.find((x) => x.type === "Accepted");
  assert.equal(accepted?.status, "False");
  assert.match(accepted?.message ?? "", /matches\[0\]\.path: invalid regex: Invalid regular expression/);
  assert.equal(badRegex.find((x) => x.type === "Programmed")?.status, "False");
  const routes = pair.cp.cache.snapshot?.get(TYPE_URL.route)?.resources;
  assert.ok(
    ![...(routes?.keys() ?? [])].some((k) => k.includes("/bad-regex/")),
    "the bad route is not served",
  );
  const backtracking = await waitFor("backtracking-regex status", async () => {
    const c = await conditionsOf("backtracking-regex");
    return c.find((x) => x.type === "Accepted") ? c : undefined;
  });
  assert.equal(backtracking.find((x) => x.type === "Accepted")?.status, "False");
  assert.match(
    backtracking.find((x) => x.type === "Accepted")?.message ?? "",
    /matches\[0\]\.headers\[0\]: regex \/\(a\+\)\\1\/ cannot run in linear time/,
  );
  assert.ok(
    ![...(pair.cp.cache.snapshot?.get(TYPE_URL.route)?.resources.keys() ?? [])].some((k) =>
      k.includes("/backtracking-regex/"),
    ),
    "the route is not sent to data planes",
  );

  const missing = await waitFor("missing-svc status", async () => {
    const c = await conditionsOf("missing-svc");
    return c.find((x) => x.type === "ResolvedRefs") ? c : undefined;
  });
  assert.equal(missing.find((x) => x.type === "ResolvedRefs")?.status, "False");
  assert.match(
    missing.find((x) => x.type === "ResolvedRefs")?.message ?? "",
    /Service agw-test\/nowhere not found/,
  );
  await client.request("DELETE", `${ns("gatewayroutes", GR)}/bad-regex`);
  await client.request("DELETE", `${ns("gatewayroutes", GR)}/backtracking-regex`);
  await client.request("DELETE", `${ns("gatewayroutes", GR)}/missing-svc`);
});

const conditionsOf = async (name: string) =>
  (await client.request<GatewayRoute>("GET", `${ns("gatewayroutes", GR)}/${name}`)).status?.conditions ?? [];
const conditionOf = async (name: string, type: string) =>
  (await conditionsOf(name)).find((c) => c.type === type);

test("a GatewayRoute naming a plugin nothing defines: its status says why, it is left out, the other routes serve; Programmed only once the data plane ACKed", async (t) => {
  if (!ready(t) || !api || !pods) return;
  const [ip1 = ""] = pods.addresses;
  const { port, stop } = await pods.serve([ip1]);
  t.after(stop);
  const listenerPort = await freePort();
  await client.request("POST", ns("services"), {
    metadata: { name: "plain", namespace: NS },
    spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] },
  });
  await client.request("POST", ns("endpointslices", SLICES), slice("plain-a", "plain", port, [{ ip: ip1 }]));
  const rule = (path: string) => ({
    matches: [{ path: { type: "PathPrefix", value: path } }],
    backendRefs: [{ name: "plain", port: 80 }],
  });
  // The example docs/kubernetes.md used to give: under `agw run --kube` no config.yaml defines it.
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("keyed", listenerPort, {
      rules: [
        rule("/public"),
        { ...rule("/keyed"), plugins: [{ name: "api-key", config: { header: "x-api-key" } }] },
      ],
    }),
  );
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("open", listenerPort, { rules: [rule("/open")] }),
  );
  t.after(async () => {
    for (const name of ["keyed", "open"])
      await client.request("DELETE", `${ns("gatewayroutes", GR)}/${name}`).catch(() => undefined);
  });

  // The control plane alone: no data plane has anything, so nothing is Programmed.
  const cp = await startControlPlane({
    xdsLocal: true,
    log: quiet,
    kubernetes: {
      kubeconfig: api.kubeconfig,
      namespace: NS,
      leaderElection: { identity: "replica-programmed", leaseDurationSeconds: 3, renewMs: 500 },
    },
  });
  t.after(() => cp.close());
  const keyed = await waitFor("keyed refused in status", async () => {
    const c = await conditionOf("keyed", "Accepted");
    return c?.status === "False" ? c : undefined;
  });
  assert.match(keyed.message, /rules\[1\]: unknown plugin "api-key"/);
  assert.equal((await conditionOf("keyed", "Programmed"))?.status, "False");
  const pending = await waitFor("open's Programmed", () => conditionOf("open", "Programmed"));
  assert.equal((await conditionOf("open", "Accepted"))?.status, "True");
  assert.deepEqual([pending.status, pending.reason], ["False", "Pending"]);
  assert.match(pending.message, /No data plane is connected/);
  const routes = [...(cp.cache.snapshot?.get(TYPE_URL.route)?.resources.keys() ?? [])];
  assert.ok(
    routes.some((k) => k.includes(`/k8s/${NS}/open/`)),
    "open is in the snapshot",
  );
  assert.ok(!routes.some((k) => k.includes(`/k8s/${NS}/keyed/`)), "keyed is not, not even its good rule");

  // A data plane: it accepts everything it is sent, serves open, and then open is Programmed.
  const host = `127.0.1.${nextBindAddress++}`;
  const dp = await startDataPlane({
    xds: `${cp.xdsLocal?.target}`,
    nodeId: "dp-programmed",
    bindAddress: host,
    log: quiet,
  });
  t.after(() => dp.close());
  assert.ok(await dp.ready(15_000), "the data plane took the config (before: it NACKed every route)");
  assert.equal(await servedBy(`http://${host}:${listenerPort}/open`), `200 ${ip1}`);
  assert.equal((await fetch(`http://${host}:${listenerPort}/keyed`)).status, 404);
  assert.equal((await fetch(`http://${host}:${listenerPort}/public`)).status, 404);
  const programmed = await waitFor("open Programmed", async () => {
    const c = await conditionOf("open", "Programmed");
    return c?.status === "True" ? c : undefined;
  });
  assert.match(programmed.message, /Acknowledged by 1 data plane/);
  const nacks = cp.dataPlanes.list().flatMap((d) => [...d.types.values()].map((x) => x.nacks));
  assert.deepEqual(
    nacks.filter((n) => n > 0),
    [],
    "no data plane refused anything",
  );
  assert.equal((await conditionOf("keyed", "Programmed"))?.status, "False");
});

test("a route a data plane refuses (NACK) is reported on that route: Programmed=False, Rejected, with the data plane's reason", async (t) => {
  if (!ready(t) || !api) return;
  const listenerPort = await freePort();
  const answer = (name: string, address: string) =>
    gatewayRoute(name, listenerPort, {
      listener: { name: `nack-${name}`, port: listenerPort, address },
      rules: [{ directResponse: { status: 200, body: name } }],
    });
  // Two addresses, one port: the control plane cannot see a clash, but a data plane started with
  // --bind-address binds both on one address, and refuses the second listener.
  await client.request("POST", ns("gatewayroutes", GR), answer("first", "127.0.0.1"));
  await client.request("POST", ns("gatewayroutes", GR), answer("second", "127.0.0.2"));
  t.after(async () => {
    for (const name of ["first", "second"])
      await client.request("DELETE", `${ns("gatewayroutes", GR)}/${name}`).catch(() => undefined);
  });
  const pair = await startPair(api.kubeconfig, "replica-nack");
  t.after(() => pair.close());
  const refused = await waitFor("second's NACK in status", async () => {
    const c = await conditionOf("second", "Programmed");
    return c?.reason === "Rejected" ? c : undefined;
  });
  assert.equal(refused.status, "False");
  assert.match(
    refused.message,
    /replica-nack: agw\.v1\.Listener nack-second: address .* is also used by listener nack-first/,
  );
  // The update was refused whole: first's listener is not acknowledged either, and says so.
  const first = await conditionOf("first", "Programmed");
  assert.deepEqual([first?.status, first?.reason], ["False", "Pending"]);
  assert.equal((await conditionOf("second", "Accepted"))?.status, "True");
});

test("status is written by the Lease holder only; the other replica takes over when it leaves", async (t) => {
  if (!ready(t) || !api) return;
  const a = await startPair(api.kubeconfig, "replica-1");
  t.after(() => a.close());
  await waitFor("replica-1 leads", () => (a.cp.kubernetes?.leading ? true : undefined));
  const b = await startPair(api.kubeconfig, "replica-2");
  t.after(() => b.close());
  const listenerPort = await freePort();
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("leader-check", listenerPort, {
      rules: [{ backendRefs: [{ name: "echo", port: 80 }] }],
    }),
  );
  const generation1 = await waitFor("status by the leader", async () => {
    const r = await client.request<GatewayRoute>("GET", `${ns("gatewayroutes", GR)}/leader-check`);
    return r.status?.observedGeneration;
  });
  assert.equal(generation1, 1);
  // Both replicas serve the route over xDS.
  for (const p of [a, b])
    await waitFor(
      "route in every replica's snapshot",
      () =>
        [...(p.cp.cache.snapshot?.get(TYPE_URL.route)?.resources.keys() ?? [])].some((k) =>
          k.includes("/leader-check/"),
        ) || undefined,
    );
  assert.equal(b.cp.kubernetes?.leading, false);
  assert.equal(b.cp.kubernetes?.statusWriteCount, 0, "the follower wrote no status");

  await a.close();
  await waitFor("replica-2 takes over", () => (b.cp.kubernetes?.leading ? true : undefined), 15_000);
  // The new leader may write status between this GET and PUT (Programmed follows the data planes'
  // ACKs): a 409 Conflict is retried with the latest object, as kubectl does.
  await waitFor("the spec update", async () => {
    const current = await client.request<GatewayRoute>("GET", `${ns("gatewayroutes", GR)}/leader-check`);
    await client.request("PUT", `${ns("gatewayroutes", GR)}/leader-check`, {
      ...current,
      spec: { ...current.spec, hostnames: ["leader.example"] },
    });
    return true;
  });
  const generation2 = await waitFor("status by the new leader", async () => {
    const r = await client.request<GatewayRoute>("GET", `${ns("gatewayroutes", GR)}/leader-check`);
    return r.status?.observedGeneration === 2 ? 2 : undefined;
  });
  assert.equal(generation2, 2);
  assert.ok((b.cp.kubernetes?.statusWriteCount ?? 0) > 0);
  await client.request("DELETE", `${ns("gatewayroutes", GR)}/leader-check`);
});

test("kube-apiserver restarted mid-watch: the controller converges to the cold-start snapshot", async (t) => {
  if (!ready(t) || !api || !pods) return;
  const listenerPort = await freePort();
  const [, , , , ip5 = "", ip6 = ""] = pods.addresses;
  const { port, stop } = await pods.serve([ip5, ip6]);
  t.after(stop);
  await client.request("POST", ns("services"), {
    metadata: { name: "restart", namespace: NS },
    spec: { ports: [{ name: "http", port: 8080, targetPort: 8080, protocol: "TCP" }] },
  });
  await client.request(
    "POST",
    ns("endpointslices", SLICES),
    slice("restart-a", "restart", port, [{ ip: ip5 }]),
  );
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("restart", listenerPort, {
      rules: [{ backendRefs: [{ name: "restart", port: 8080 }] }],
    }),
  );
  const running = await startPair(api.kubeconfig, "replica-running");
  t.after(() => running.close());
  const base = `http://${running.host}:${listenerPort}`;
  await waitFor("routing before the restart", async () =>
    (await servedBy(base)) === `200 ${ip5}` ? true : undefined,
  );

  // Restart with etcd's history compacted meanwhile: watches resuming from before it get 410 Gone
  // and must relist. While the API server is down the data plane keeps serving.
  await api.stopApiServer();
  assert.equal(await servedBy(base), `200 ${ip5}`);
  await api.compactEtcd();
  await api.startApiServer();
  // Changes after the restart reach the running controller only if its watches came back.
  await client.request(
    "PUT",
    `${ns("endpointslices", SLICES)}/restart-a`,
    slice("restart-a", "restart", port, [{ ip: ip6 }]),
  );
  await waitFor(
    "routing after the restart",
    async () => ((await servedBy(base)) === `200 ${ip6}` ? true : undefined),
    30_000,
  );
  const cold = await startPair(api.kubeconfig, "replica-cold");
  t.after(() => cold.close());
  await waitFor(
    "running and cold-start snapshots agree",
    () =>
      JSON.stringify(snapshotVersions(running.cp)) === JSON.stringify(snapshotVersions(cold.cp))
        ? true
        : undefined,
    10_000,
  );
  const stats = Object.values(running.cp.kubernetes?.informerStats() ?? {});
  const sum = (k: "gone" | "lists" | "watches") => stats.reduce((n, s) => n + s[k], 0);
  t.diagnostic(
    `running controller after the restart: ${sum("gone")} watches got 410 and relisted; ${sum("lists")} lists, ${sum("watches")} watches in all`,
  );
});

/** The API path of a manifest object, for the kinds deploy/ holds. */
function objectPath(o: {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}): string {
  const plural: Record<string, string> = {
    Namespace: "namespaces",
    ServiceAccount: "serviceaccounts",
    ClusterRole: "clusterroles",
    ClusterRoleBinding: "clusterrolebindings",
    Role: "roles",
    RoleBinding: "rolebindings",
    CustomResourceDefinition: "customresourcedefinitions",
    Service: "services",
    ConfigMap: "configmaps",
    Secret: "secrets",
    Deployment: "deployments",
    DaemonSet: "daemonsets",
    PodDisruptionBudget: "poddisruptionbudgets",
    HorizontalPodAutoscaler: "horizontalpodautoscalers",
  };
  const kind = plural[o.kind];
  if (!kind) throw new Error(`objectPath: add the plural of ${o.kind}`);
  const group = o.apiVersion.includes("/") ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  const namespace = o.metadata.namespace ? `/namespaces/${o.metadata.namespace}` : "";
  return `${group}${namespace}/${kind}/${o.metadata.name}`;
}

/** Every plain manifest under deploy/ (the Helm chart excluded), Namespaces and CRDs first. */
function manifests(): Array<{ file: string; object: Parameters<typeof objectPath>[0] }> {
  const files = execFileSync("find", [join(ROOT, "deploy"), "-name", "*.yaml", "-not", "-path", "*/helm/*"])
    .toString()
    .trim()
    .split("\n")
    .sort();
  const rank = (kind: string) => (kind === "Namespace" ? 0 : kind === "CustomResourceDefinition" ? 1 : 2);
  return files
    .flatMap((file) =>
      parseAllDocuments(readFileSync(file, "utf8"))
        .map((d) => d.toJS())
        .filter(Boolean)
        .map((object) => ({ file, object })),
    )
    .sort((a, b) => rank(a.object.kind) - rank(b.object.kind));
}

test("deploy/ manifests pass a server-side dry run, and the control plane runs with exactly the RBAC they grant", async (t) => {
  if (!ready(t) || !api) return;
  const apply = (path: string, object: unknown, dryRun: boolean) =>
    client.request(
      "PATCH",
      `${path}?fieldManager=agw-test&force=true${dryRun ? "&dryRun=All" : ""}`,
      object,
      "application/apply-patch+yaml",
    );
  const all = manifests();
  assert.ok(all.length >= 7, `found ${all.length} manifests`);
  // Each dry-run first and then applied, so a Namespace exists before what lives in it.
  for (const { file, object } of all) {
    await apply(objectPath(object), object, true).catch((e: Error) => {
      throw new Error(`${file}: ${object.kind} ${object.metadata.name}: ${e.message}`);
    });
    await apply(objectPath(object), object, false);
  }

  const { status } = await client.request<{ status: { token: string } }>(
    "POST",
    "/api/v1/namespaces/agw-system/serviceaccounts/agw-control-plane/token",
    { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
  );
  const cp = await startControlPlane({
    xdsHost: "127.0.0.1",
    xdsPort: 0,
    log: quiet,
    kubernetes: {
      kubeconfig: api.kubeconfigFor(status.token),
      leaderElection: { namespace: "agw-system", identity: "rbac", leaseDurationSeconds: 3, renewMs: 500 },
    },
  });
  t.after(() => cp.close());
  await waitFor("leader with the ServiceAccount's rights", () => (cp.kubernetes?.leading ? true : undefined));
  const listenerPort = await freePort();
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("rbac-check", listenerPort, { rules: [{ backendRefs: [{ name: "echo", port: 80 }] }] }),
  );
  await waitFor("status written under RBAC", async () => {
    const r = await client.request<GatewayRoute>("GET", `${ns("gatewayroutes", GR)}/rbac-check`);
    return r.status?.observedGeneration === 1 ? true : undefined;
  });
  const stats = cp.kubernetes?.informerStats() ?? {};
  assert.ok(
    Object.values(stats).every((s) => s.errors === 0),
    `no list or watch was refused: ${JSON.stringify(stats)}`,
  );
  await client.request("DELETE", `${ns("gatewayroutes", GR)}/rbac-check`);
});

test("agw run --kubeconfig --namespace: the all-in-one command serves a GatewayRoute; the dashboard's history names the objects that changed it", async (t) => {
  if (!ready(t) || !api || !pods) return;
  const [ip1 = ""] = pods.addresses;
  const { port, stop } = await pods.serve([ip1]);
  t.after(stop);
  const listenerPort = await freePort();
  const cpAdmin = await freePort();
  await client.request("POST", ns("services"), {
    metadata: { name: "cli", namespace: NS },
    spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] },
  });
  await client.request("POST", ns("endpointslices", SLICES), slice("cli-a", "cli", port, [{ ip: ip1 }]));
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("cli", listenerPort, {
      hostnames: ["cli.example"],
      rules: [{ backendRefs: [{ name: "cli", port: 80 }] }],
    }),
  );
  const proc = agw([
    "run",
    "--kubeconfig",
    api.kubeconfig,
    "--namespace",
    NS,
    "--xds-listen",
    "127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
    "--cp-admin",
    `127.0.0.1:${cpAdmin}`,
    "--node-id",
    "cli-test",
  ]);
  t.after(() => proc.stop());
  const body = await waitFor(
    "the route through agw run",
    async () => {
      // fetch() drops a Host header, so the route's hostname is matched with curl.
      const { stdout } = await run("curl", [
        "-sS",
        "-m",
        "2",
        "-H",
        "host: cli.example",
        `http://127.0.0.1:${listenerPort}/`,
        "-w",
        " %{http_code}",
      ]);
      return stdout.endsWith(" 200") ? stdout.slice(0, -4) : undefined;
    },
    20_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${proc.output()}`);
  });
  assert.equal(body, ip1);
  assert.match(proc.output(), /kubernetes: agw-test/);

  // An edit of the GatewayRoute, then of the EndpointSlice: the dashboard's config history says
  // which object made each version, not just "kubernetes".
  if (
    !requireOrSkip(
      t,
      existsSync(CHROMIUM),
      `Debian chromium (${CHROMIUM}) is needed: apt-get install chromium`,
    )
  )
    return;
  const { page } = await openChromium(t);
  await page.goto(`http://127.0.0.1:${cpAdmin}/dashboard`, { timeout: 15_000 });
  const history = page.locator("#history");
  const current = await client.request<GatewayRoute>("GET", `${ns("gatewayroutes", GR)}/cli`);
  const edited = gatewayRoute("cli", listenerPort, {
    hostnames: ["cli.example", "cli2.example"],
    rules: [{ backendRefs: [{ name: "cli", port: 80 }] }],
  });
  edited.metadata = { ...edited.metadata, resourceVersion: current.metadata?.resourceVersion ?? "" };
  await client.request("PUT", `${ns("gatewayroutes", GR)}/cli`, edited);
  await history.getByText(`GatewayRoute ${NS}/cli`).first().waitFor({ timeout: 20_000 });
  await client.request(
    "PUT",
    `${ns("endpointslices", SLICES)}/cli-a`,
    slice("cli-a", "cli", port + 1, [{ ip: ip1 }]),
  );
  await history.getByText(`EndpointSlice ${NS}/cli-a`).first().waitFor({ timeout: 20_000 });
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright Locator, not a DOM node
  const text = await history.innerText();
  assert.doesNotMatch(text.split("\n")[0] ?? "", /· kubernetes ·/, "the newest version names its object");
});

/** The subject CN a new TLS handshake with the listener presents, seen by openssl s_client. */
async function servedCommonName(port: number): Promise<string | undefined> {
  const { stdout } = await run("sh", [
    "-c",
    `openssl s_client -connect 127.0.0.1:${port} -servername site.example </dev/null 2>/dev/null | openssl x509 -noout -subject`,
  ]).catch(() => ({ stdout: "" }));
  return /CN\s*=\s*([^\s,/]+)/.exec(stdout)?.[1];
}

/** GET / over `agent`; the status, whether the connection was reused, and the CN it was set up with. */
function getOver(agent: https.Agent, port: number): Promise<{ status: number; reused: boolean; cn: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: "127.0.0.1", port, path: "/", agent, rejectUnauthorized: false, timeout: 5_000 },
      (res) => {
        const cn = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN ?? "");
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, cn }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
  });
}

test("agw run -c config.yaml: an HTTPS listener serves a Kubernetes TLS Secret, reported while missing; rotation reaches new handshakes, kept-alive connections carry on", async (t) => {
  if (!ready(t) || !api) return;
  const listenerPort = await freePort();
  const cpAdmin = await freePort();
  const dir = tempDir("agw-k8s-tls-");
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    [
      "listeners:",
      "  - name: secure",
      "    address: 127.0.0.1",
      `    port: ${listenerPort}`,
      "    protocol: https",
      "    tls:",
      `      certificates: [${NS}/rotating]`,
      "    routes:",
      "      - name: hello",
      "        directResponse: { status: 200, body: hello }",
      "",
    ].join("\n"),
  );
  const proc = agw([
    "run",
    "-c",
    config,
    "--kubeconfig",
    api.kubeconfig,
    "--namespace",
    NS,
    "--xds-listen",
    "127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
    "--cp-admin",
    `127.0.0.1:${cpAdmin}`,
    "--node-id",
    "k8s-tls-test",
  ]);
  t.after(() => proc.stop());
  const withOutput = (e: Error) => {
    throw new Error(`${e.message}\n${proc.output()}`);
  };
  const reported = await waitFor(
    "the missing Secret in /config_dump",
    async () => {
      const dump = (await fetch(`http://127.0.0.1:${cpAdmin}/config_dump`)
        .then((r) => r.json())
        .catch(() => undefined)) as { listener_errors?: string[] } | undefined;
      return dump?.listener_errors?.join("\n") || undefined;
    },
    20_000,
  ).catch(withOutput);
  assert.match(reported, new RegExp(`listener secure: Kubernetes TLS Secret ${NS}/rotating is not served`));

  const first = tlsPair("first.example");
  await client.request("POST", ns("secrets"), tlsSecret("rotating", first.cert, first.key));
  await waitFor("the Secret's certificate", async () =>
    (await servedCommonName(listenerPort)) === "first.example" ? true : undefined,
  ).catch(withOutput);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  assert.deepEqual(await getOver(agent, listenerPort), { status: 200, reused: false, cn: "first.example" });

  const second = tlsPair("second.example");
  const rotatedAt = performance.now();
  await client.request("PUT", `${ns("secrets")}/rotating`, tlsSecret("rotating", second.cert, second.key));
  await waitFor(
    "the rotated certificate on new handshakes",
    async () => {
      const cn = await new Promise<string>((resolve) => {
        const socket = tlsConnect(
          { host: "127.0.0.1", port: listenerPort, rejectUnauthorized: false },
          () => {
            resolve(String(socket.getPeerCertificate().subject?.CN ?? ""));
            socket.end();
          },
        );
        socket.on("error", () => resolve(""));
      });
      return cn === "second.example" ? true : undefined;
    },
    20_000,
  ).catch(withOutput);
  t.diagnostic(
    `Secret PUT → new certificate on a new handshake: ${Math.round(performance.now() - rotatedAt)} ms`,
  );
  assert.equal(await servedCommonName(listenerPort), "second.example");
  // The connection set up before the rotation keeps its session and serves on.
  assert.deepEqual(await getOver(agent, listenerPort), { status: 200, reused: true, cn: "first.example" });
});

test("GatewayRoute CRD removed and installed again: routes go, then come back (the control plane keeps running)", async (t) => {
  if (!ready(t) || !api) return;
  const pair = await startPair(api.kubeconfig, "replica-crd");
  t.after(() => pair.close());
  const routeNames = () => [...(pair.cp.cache.snapshot?.get(TYPE_URL.route)?.resources.keys() ?? [])];
  await waitFor("routes before", () => (routeNames().length > 0 ? true : undefined));
  const crdPath = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gatewayroutes.gateway.agw.dev";
  await client.request("DELETE", crdPath);
  await waitFor("routes gone with the CRD", () => (routeNames().length === 0 ? true : undefined), 30_000);

  const crd = parse(readFileSync(join(ROOT, "deploy/crds/gateway.agw.dev_gatewayroutes.yaml"), "utf8"));
  await waitFor(
    "CRD deleted",
    () =>
      client.request("GET", crdPath).then(
        () => undefined,
        (e: unknown) => (e instanceof KubeApiError && e.status === 404) || undefined,
      ),
    30_000,
  );
  await client.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
  const listenerPort = await freePort();
  await waitFor(
    "GatewayRoute served again",
    () =>
      client
        .request(
          "POST",
          ns("gatewayroutes", GR),
          gatewayRoute("after-crd", listenerPort, { rules: [{ backendRefs: [{ name: "echo", port: 80 }] }] }),
        )
        .then(
          () => true,
          () => undefined,
        ),
    30_000,
  );
  await waitFor(
    "the new route in the snapshot",
    () => (routeNames().some((n) => n.includes("/after-crd/")) ? true : undefined),
    30_000,
  );
});

test("Gateway API: HTTPRoutes on an agw Gateway are routed like GatewayRoutes; an unsupported filter is reported, not served", async (t) => {
  if (!ready(t) || !api || !pods) return;
  // Upstream CRDs from the Go module proxy (cached outside the repository), not committed copies.
  const crds = execFileSync("bash", [join(ROOT, "scripts/kube/gateway-api-crds.sh")], {
    encoding: "utf8",
  }).trim();
  for (const plural of ["gatewayclasses", "gateways", "httproutes"]) {
    const crd = parse(readFileSync(join(crds, `gateway.networking.k8s.io_${plural}.yaml`), "utf8"));
    await client.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
    await waitFor(
      `${plural} CRD established`,
      async () => {
        const c = await client.request<{ status?: { conditions?: Array<{ type: string; status: string }> } }>(
          "GET",
          `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${plural}.gateway.networking.k8s.io`,
        );
        return (
          c.status?.conditions?.some((x) => x.type === "Established" && x.status === "True") || undefined
        );
      },
      30_000,
    );
  }
  const GW = "/apis/gateway.networking.k8s.io/v1";
  const [, , , , ip5 = "", ip6 = ""] = pods.addresses;
  const { port, stop } = await pods.serve([ip5, ip6]);
  t.after(stop);
  const listenerPort = await freePort();
  await client.request("POST", ns("services"), {
    metadata: { name: "gw-echo", namespace: NS },
    spec: { ports: [{ name: "http", port: 80, targetPort: "web", protocol: "TCP" }] },
  });
  await client.request(
    "POST",
    ns("endpointslices", SLICES),
    slice("gw-echo-a", "gw-echo", port, [{ ip: ip5 }]),
  );
  await client.request(
    "POST",
    ns("endpointslices", SLICES),
    slice("gw-echo-b", "gw-echo", port, [{ ip: ip6 }]),
  );
  const v1 = "gateway.networking.k8s.io/v1";
  await client.request("POST", `${GW}/gatewayclasses`, {
    apiVersion: v1,
    kind: "GatewayClass",
    metadata: { name: "agw" },
    spec: { controllerName: "agw.dev/gateway-controller" },
  });
  await client.request("POST", ns("gateways", GW), {
    apiVersion: v1,
    kind: "Gateway",
    metadata: { name: "edge", namespace: NS },
    spec: { gatewayClassName: "agw", listeners: [{ name: "web", port: listenerPort, protocol: "HTTP" }] },
  });
  await client.request("POST", ns("httproutes", GW), {
    apiVersion: v1,
    kind: "HTTPRoute",
    metadata: { name: "shop", namespace: NS },
    spec: {
      parentRefs: [{ name: "edge", sectionName: "web" }],
      hostnames: ["shop.example"],
      rules: [
        {
          matches: [
            { path: { type: "PathPrefix", value: "/shop" }, headers: [{ name: "x-tier", value: "gold" }] },
          ],
          filters: [
            {
              type: "ResponseHeaderModifier",
              responseHeaderModifier: { set: [{ name: "x-served-by", value: "agw" }] },
            },
          ],
          backendRefs: [{ name: "gw-echo", port: 80 }],
        },
      ],
    },
  });
  await client.request("POST", ns("httproutes", GW), {
    apiVersion: v1,
    kind: "HTTPRoute",
    metadata: { name: "rewrite", namespace: NS },
    spec: {
      parentRefs: [{ name: "edge" }],
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: "/rewrite" } }],
          filters: [
            {
              type: "ExtensionRef",
              extensionRef: { group: "example.com", kind: "Thing", name: "x" },
            },
          ],
          backendRefs: [{ name: "gw-echo", port: 80 }],
        },
      ],
    },
  });

  const pair = await startPair(api.kubeconfig, "replica-gateway-api");
  t.after(() => pair.close());
  assert.ok(await pair.dp.ready(15_000), "data plane got a config");
  const url = `http://${pair.host}:${listenerPort}/shop/cart`;
  // node:http rather than fetch: fetch does not let a request choose its Host header.
  const get = (headers: Record<string, string>) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = http.get(url, { headers: { host: "shop.example", ...headers }, timeout: 3_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
    });
  let last = "";
  await waitFor(
    "the HTTPRoute served",
    () =>
      get({ "x-tier": "gold" }).then(
        (r) => {
          last = `${r.status} ${r.headers["x-agw-error"]}`;
          return r.status === 200 ? r : undefined;
        },
        (e: Error) => {
          last = e.message;
        },
      ),
    15_000,
  ).catch((e: Error) => {
    const k = pair.cp.kubernetes;
    throw new Error(
      `${e.message} (last answer: ${last}); routes: ${JSON.stringify(k?.translation?.routes)}; informers: ${JSON.stringify(k?.informerStats())}`,
    );
  });
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) {
    const res = await get({ "x-tier": "gold" });
    assert.equal(res.headers["x-served-by"], "agw");
    seen.add(`${res.status} ${res.body}`);
  }
  assert.deepEqual([...seen].sort(), [`200 ${ip5}`, `200 ${ip6}`]);
  assert.equal((await get({ "x-tier": "silver" })).status, 404, "the header match applies");

  const report = pair.cp.kubernetes?.translation?.routes.find(
    (r) => r.kind === "HTTPRoute" && r.name === "rewrite",
  );
  const accepted = report?.conditions.find((c) => c.type === "Accepted");
  assert.equal(accepted?.status, "False");
  assert.match(accepted?.message ?? "", /ExtensionRef is not supported/);
  const rewrite = await fetch(`http://${pair.host}:${listenerPort}/rewrite`, {
    signal: AbortSignal.timeout(3_000),
  });
  assert.equal(rewrite.status, 404, "a route that is not Accepted is not served");
});

test("xDS mTLS from a Kubernetes Secret: data planes of its CA get config; a rotated Secret swaps the CA for new connections", async (t) => {
  if (!ready(t) || !api) return;
  if (!requireOrSkip(t, hasOpenssl(), "openssl is not installed (needed to make test certificates)")) return;
  const dir = tempDir("agw-kube-xds-tls-");
  const issue = (caName: string) => {
    const ca = makeCa(dir, caName);
    const server = makeLeaf(dir, ca, { cn: "control-plane", sans: ["IP:127.0.0.1"], file: `${caName}-cp` });
    const edge = { cn: `edge-${caName}`, ...makeLeaf(dir, ca, { cn: `edge-${caName}`, clientAuth: true }) };
    const secret = {
      apiVersion: "v1",
      kind: "Secret",
      type: "kubernetes.io/tls",
      metadata: { name: "agw-xds", namespace: NS },
      data: Object.fromEntries(
        [
          ["tls.crt", server.certPem],
          ["tls.key", server.keyPem],
          ["ca.crt", ca.pem],
        ].map(([k, v]) => [k, Buffer.from(v as string).toString("base64")]),
      ),
    };
    return { ca, edge, secret };
  };
  const first = issue("xds-ca-1");
  const second = issue("xds-ca-2");
  await client.request("POST", ns("secrets"), first.secret);

  const cp = await startControlPlane({
    xdsHost: "127.0.0.1",
    xdsPort: 0,
    log: quiet,
    kubernetes: { kubeconfig: api.kubeconfig, namespace: NS, leaderElection: { identity: "xds-tls" } },
    xdsTlsSecret: { namespace: NS, name: "agw-xds" },
  });
  t.after(() => cp.close());
  assert.equal(cp.xds?.tls, true);
  const dataPlane = async (issued: ReturnType<typeof issue>, bindAddress: string) => {
    const dp = await startDataPlane({
      xds: `${cp.xds?.target}`,
      nodeId: issued.edge.cn,
      bindAddress,
      log: quiet,
      xdsTls: { cert: issued.edge.certPem, key: issued.edge.keyPem, ca: issued.ca.pem },
    });
    t.after(() => dp.close());
    return dp;
  };
  const connected = () => cp.dataPlanes.list().map((d) => d.identity);

  assert.ok(
    await (await dataPlane(first, "127.0.2.1")).ready(15_000),
    "a data plane of the Secret's CA gets config",
  );
  assert.deepEqual(connected(), ["edge-xds-ca-1"]);

  await client.request("PUT", `${ns("secrets")}/agw-xds`, second.secret);
  const next = await dataPlane(second, "127.0.2.2");
  assert.ok(await next.ready(15_000), "after rotation, a data plane of the new CA gets config");
  const stale = await dataPlane(first, "127.0.2.3");
  // Its second attempt proves the first one ended: the control plane had its chance to accept it.
  await waitFor(
    "the old CA's data plane to try twice",
    () => (stale.xds.streams >= 2 ? true : undefined),
    15_000,
  );
  assert.deepEqual(
    connected().sort(),
    ["edge-xds-ca-1", "edge-xds-ca-2"],
    "the old CA's new data plane is refused; the stream opened before the rotation stays",
  );
  assert.equal(await stale.ready(100), false);
});

test("the Helm chart renders (helm template, built from the Go module proxy) and every object passes a server-side dry run", async (t) => {
  if (!ready(t) || !api) return;
  const helmBuild = spawnSync("bash", [join(ROOT, "scripts/kube/helm.sh")], { encoding: "utf8" });
  if (!requireOrSkip(t, helmBuild.status === 0, `helm could not be built: ${helmBuild.stderr.slice(-500)}`))
    return;
  const helm = helmBuild.stdout.trim();
  const render = (...set: string[]) =>
    parseAllDocuments(
      execFileSync(
        helm,
        [
          "template",
          "agw",
          join(ROOT, "deploy/helm/agw"),
          "--namespace",
          "agw-system",
          "--include-crds",
          ...set,
        ],
        { encoding: "utf8" },
      ),
    )
      .map((d) => d.toJS())
      .filter(Boolean) as Array<Parameters<typeof objectPath>[0]>;
  const plain = render();
  const full = render(
    "--set",
    "ebpfAgent.enabled=true",
    "--set",
    "xds.tls.generate=false",
    "--set",
    "xds.tls.controlPlaneSecret=agw-xds",
    "--set",
    "xds.tls.dataPlaneSecret=agw-xds-edge",
    "--set",
    "controlPlane.watchNamespace=shop",
    "--set",
    "dataPlane.autoscaling.enabled=true",
  );
  const kinds = (objects: typeof plain) => objects.map((o) => o.kind).sort();
  assert.deepEqual(kinds(plain), [
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "Deployment",
    "Deployment",
    "PodDisruptionBudget",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Secret",
    "Secret",
    "Service",
    "Service",
    "Service",
    "ServiceAccount",
  ]);
  assert.ok(kinds(full).includes("DaemonSet"), "ebpfAgent.enabled adds the DaemonSet");
  assert.ok(kinds(full).includes("HorizontalPodAutoscaler"), "dataPlane.autoscaling.enabled adds the HPA");
  assert.ok(!kinds(full).includes("Secret"), "xds.tls.generate=false: the Secrets are the user's");
  const args = (objects: typeof plain, name: string) =>
    JSON.stringify(
      (
        objects.find((o) => o.kind === "Deployment" && o.metadata.name === name) as unknown as {
          spec: unknown;
        }
      ).spec,
    );
  // The secure defaults and the generated certificates themselves: test/helm.test.ts.
  assert.match(args(plain, "agw-control-plane"), /--xds-tls-secret=agw-system\/agw-xds-control-plane/);
  assert.match(args(full, "agw-control-plane"), /--xds-tls-secret=agw-system\/agw-xds"/);

  for (const namespace of ["agw-system", "shop"])
    await client
      .request("POST", "/api/v1/namespaces", { metadata: { name: namespace } })
      .catch((e: unknown) => {
        if (!(e instanceof KubeApiError && e.status === 409)) throw e;
      });
  for (const object of [...plain, ...full])
    await client
      .request(
        "PATCH",
        `${objectPath(object)}?fieldManager=agw-test&force=true&dryRun=All`,
        object,
        "application/apply-patch+yaml",
      )
      .catch((e: Error) => {
        throw new Error(`helm template: ${object.kind} ${object.metadata.name}: ${e.message}`);
      });
});

test("GatewayRoute policies: a retry hides a refusing endpoint, a redirect and a direct response answer locally", async (t) => {
  if (!ready(t) || !api || !pods) return;
  const [, , , , dead = "", live = ""] = pods.addresses;
  // One process listens on `live` only, so the same port on `dead` refuses connections.
  const { port, stop } = await pods.serve([live]);
  t.after(stop);
  const listenerPort = await freePort();
  await client.request("POST", ns("services"), {
    metadata: { name: "flaky", namespace: NS },
    spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] },
  });
  await client.request(
    "POST",
    ns("endpointslices", SLICES),
    slice("flaky-a", "flaky", port, [{ ip: live }, { ip: dead }]),
  );
  await client.request(
    "POST",
    ns("gatewayroutes", GR),
    gatewayRoute("policies", listenerPort, {
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: "/retried" } }],
          backendRefs: [{ name: "flaky", port: 80 }],
          retry: { retries: 2, retryOn: ["connect-failure"] },
        },
        {
          matches: [{ path: { type: "PathPrefix", value: "/once" } }],
          backendRefs: [{ name: "flaky", port: 80 }],
        },
        {
          matches: [{ path: { type: "PathPrefix", value: "/old/" } }],
          redirect: { scheme: "https", host: "shop.example", pathPrefix: "/new/", status: 308 },
        },
        {
          matches: [{ path: { type: "Exact", value: "/healthz" } }],
          directResponse: { status: 200, body: "gateway ok" },
        },
      ],
    }),
  );
  const both = await client
    .request(
      "POST",
      ns("gatewayroutes", GR),
      gatewayRoute("both", listenerPort, {
        rules: [{ backendRefs: [{ name: "flaky", port: 80 }], redirect: { status: 302 } }],
      }),
    )
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  assert.ok(both instanceof KubeApiError && both.status === 422, "the API server refused it");
  assert.match(both.message, /exactly one of backendRefs, redirect or directResponse/);
  const stored = await client.request<GatewayRoute>("GET", `${ns("gatewayroutes", GR)}/policies`);
  assert.equal(stored.spec?.rules?.[0]?.retry?.retries, 2, "the API server kept the policy fields");

  const pair = await startPair(api.kubeconfig, "replica-policies");
  t.after(() => pair.close());
  assert.ok(await pair.dp.ready(15_000), "data plane got a config");
  const base = `http://${pair.host}:${listenerPort}`;
  await waitFor("the listener", () => servedBy(`${base}/healthz`).catch(() => undefined), 10_000);

  // Round robin sends every other first attempt to the refusing endpoint.
  const once = [];
  for (let i = 0; i < 8; i++) once.push(await servedBy(`${base}/once`));
  assert.ok(once.includes(`200 ${live}`) && once.some((r) => !r.startsWith("200")), once.join(", "));
  for (let i = 0; i < 8; i++) assert.equal(await servedBy(`${base}/retried`), `200 ${live}`);

  const moved = await fetch(`${base}/old/item?id=7`, {
    redirect: "manual",
    signal: AbortSignal.timeout(3_000),
  });
  assert.equal(moved.status, 308);
  assert.equal(moved.headers.get("location"), "https://shop.example/new/item?id=7");
  assert.equal(await servedBy(`${base}/healthz`), "200 gateway ok");
});

test("npm run kube:local starts the API server the tests use, with the GatewayRoute CRD, and prints the kubeconfig and kubectl to use", async (t) => {
  if (!ready(t)) return;
  const dir = tempDir("agw-kube-local-");
  const local = tracked(
    spawn(process.execPath, [join(ROOT, "scripts/kube/local.ts"), "--dir", dir], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  t.after(() => local.stop("SIGKILL"));
  await waitFor(
    "kube:local ready",
    () => (local.output().includes("source ") ? true : undefined),
    120_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${local.output()}`);
  });
  assert.match(local.output(), new RegExp(`source ${join(dir, "env")}`));
  const env = readFileSync(join(dir, "env"), "utf8");
  const kubeconfig = /export KUBECONFIG=(.+)/.exec(env)?.[1] ?? "";
  const bin = /export PATH=(.+):\$PATH/.exec(env)?.[1] ?? "";
  assert.equal(kubeconfig, join(dir, "kubeconfig"));
  const localClient = new KubeClient(loadKubeConfig(kubeconfig));
  const crd = await localClient.request<{ spec: { names: { shortNames?: string[] } } }>(
    "GET",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gatewayroutes.gateway.agw.dev",
  );
  assert.deepEqual(crd.spec.names.shortNames, ["gr"]);
  if (
    requireOrSkip(t, existsSync(join(bin, "kubectl")), `${bin}/kubectl not built (scripts/kube/build.sh)`)
  ) {
    const { stdout } = await run(join(bin, "kubectl"), ["get", "gr", "-A", "-o", "name"], {
      env: { ...process.env, KUBECONFIG: kubeconfig },
    });
    assert.equal(stdout, "");
  }
  // Ctrl-C: it stops etcd and kube-apiserver (which may take a few seconds) and exits cleanly.
  const exited = new Promise<number | null>((resolve) => local.child.once("exit", (code) => resolve(code)));
  local.child.kill("SIGINT");
  assert.equal(await exited, 0, local.output());
});
