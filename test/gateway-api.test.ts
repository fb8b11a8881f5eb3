/**
 * Gateway API on a real etcd + kube-apiserver (scripts/kube), with the upstream CRDs: the statuses
 * the spec defines (GatewayClass Accepted; Gateway Accepted, Programmed after the data plane ACKed,
 * listeners, attachedRoutes and status.addresses; HTTPRoute status.parents with the spec's
 * reasons), two Gateways on one port each on its own address from the pool, allowedRoutes and a
 * ReferenceGrant across namespaces, and a RequestRedirect, all through a real data plane.
 */
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import { test } from "node:test";
import { type ControlPlane, startControlPlane } from "@agw/control-plane";
import type { KubeClient } from "@agw/control-plane/providers/kubernetes/client";
import {
  CONTROLLER_NAME,
  type Gateway,
  type GatewayClass,
  type HttpRoute,
} from "@agw/control-plane/providers/kubernetes/types";
import { TYPE_URL } from "@agw/core/xds/types";
import { type DataPlane, startDataPlane } from "@agw/data-plane";
import type { TestApiServer } from "../scripts/kube/apiserver.ts";
import { applyCrds, gatewayApiCrds } from "../scripts/kube/crds.ts";
import type { PodNetwork } from "../scripts/kube/netns.ts";
import { freePort, requireOrSkip, tempDir, waitFor } from "./helpers.ts";
import { useKubeApiServer } from "./kube-support.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const GW = "/apis/gateway.networking.k8s.io/v1";
const V1 = "gateway.networking.k8s.io/v1";
/** The Gateways' addresses: loopback, and apart from the other tests' 127.0.1.x. */
const POOL = "127.0.22.0/24";
let api: TestApiServer | undefined;
let client: KubeClient;
let pods: PodNetwork | undefined;

const quiet = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet } as never;

const ready = useKubeApiServer({ pods: 1, timeoutMs: 180_000 }, async (kube) => {
  ({ api, client, pods } = kube);
  await applyCrds(client, gatewayApiCrds(["gatewayclasses", "gateways", "httproutes", "referencegrants"]));
  for (const [name, labels] of [
    ["infra", {}],
    ["team-a", { shared: "yes" }],
    ["team-b", {}],
  ] as const)
    await client.request("POST", "/api/v1/namespaces", { metadata: { name, labels } });
});

/**
 * What a full relist wrote: the status writes the control plane counted and the Gateway API objects
 * whose resourceVersion changed (a no-op patch changes none, so both are needed). The relist is
 * followed by a sentinel: an HTTPRoute in team-b on an infra Gateway (`parent`) whose listeners
 * take only infra's routes. Its status is written by a translation after anything the relist
 * changed (translations and status writes run in order), so once it is there every write the
 * relist caused has been made. The sentinel's own status write is not counted.
 */
async function resyncWrites(
  cp: ControlPlane,
  parent: string,
  sentinel: string,
): Promise<{ writes: number; changed: string[] }> {
  const versions = async () => {
    const out = new Map<string, string>();
    for (const kind of ["gatewayclasses", "gateways", "httproutes"]) {
      const list = await client.request<{ items: Gateway[] }>("GET", `${GW}/${kind}`);
      for (const o of list.items)
        out.set(
          `${kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name}`,
          o.metadata?.resourceVersion ?? "",
        );
    }
    return out;
  };
  const before = await versions();
  const writes = cp.kubernetes?.statusWriteCount ?? 0;
  await cp.kubernetes?.resync();
  await client.request("POST", `${GW}/namespaces/team-b/httproutes`, {
    apiVersion: V1,
    kind: "HTTPRoute",
    metadata: { name: sentinel, namespace: "team-b" },
    spec: { parentRefs: [{ name: parent, namespace: "infra" }] },
  });
  await waitFor(`the sentinel ${sentinel}'s status, counted`, async () => {
    const r = await client.request<HttpRoute>("GET", `${GW}/namespaces/team-b/httproutes/${sentinel}`);
    return r.status?.parents?.length && (cp.kubernetes?.statusWriteCount ?? 0) > writes ? true : undefined;
  });
  const after = await versions();
  return {
    writes: (cp.kubernetes?.statusWriteCount ?? 0) - writes - 1,
    changed: [...before].filter(([k, v]) => after.get(k) !== v).map(([k]) => k),
  };
}

/** A GET that sets its own Host header (fetch cannot), never following redirects. */
function request(
  address: string,
  port: number,
  path: string,
  host: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: address, port, path, headers: { host }, timeout: 3_000 }, (res) => {
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
}

const condition = (list: Array<{ type: string; status: string; reason: string }> | undefined, type: string) =>
  list?.find((c) => c.type === type);

test("Gateway API statuses and routing: two Gateways on one port get their own addresses; allowedRoutes, a ReferenceGrant and a redirect are followed; statuses say so and are not rewritten when nothing changed", async (t) => {
  if (!ready(t) || !api || !pods) return;
  const [podIp = ""] = pods.addresses;
  const echo = await pods.serve([podIp]);
  t.after(echo.stop);
  const port = await freePort();
  await client.request("POST", "/api/v1/namespaces/team-b/services", {
    metadata: { name: "echo", namespace: "team-b" },
    spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] },
  });
  await client.request("POST", "/apis/discovery.k8s.io/v1/namespaces/team-b/endpointslices", {
    metadata: { name: "echo-1", namespace: "team-b", labels: { "kubernetes.io/service-name": "echo" } },
    addressType: "IPv4",
    ports: [{ name: "http", port: echo.port, protocol: "TCP" }],
    endpoints: [{ addresses: [podIp], conditions: { ready: true } }],
  });
  await client.request("POST", `${GW}/gatewayclasses`, {
    apiVersion: V1,
    kind: "GatewayClass",
    metadata: { name: "agw" },
    spec: { controllerName: CONTROLLER_NAME },
  });
  await client.request("POST", `${GW}/gatewayclasses`, {
    apiVersion: V1,
    kind: "GatewayClass",
    metadata: { name: "theirs" },
    spec: { controllerName: "example.com/someone-else" },
  });
  const gateway = (name: string, from: "All" | "Same") =>
    client.request("POST", `${GW}/namespaces/infra/gateways`, {
      apiVersion: V1,
      kind: "Gateway",
      metadata: { name, namespace: "infra" },
      spec: {
        gatewayClassName: "agw",
        listeners: [{ name: "web", port, protocol: "HTTP", allowedRoutes: { namespaces: { from } } }],
      },
    });
  await gateway("one", "All");
  await gateway("two", "Same");
  const route = (namespace: string, name: string, spec: NonNullable<HttpRoute["spec"]>) =>
    client.request("POST", `${GW}/namespaces/${namespace}/httproutes`, {
      apiVersion: V1,
      kind: "HTTPRoute",
      metadata: { name, namespace },
      spec,
    });
  // team-a → Gateway one (All) → team-b's Service: needs a ReferenceGrant in team-b.
  await route("team-a", "cross", {
    parentRefs: [{ name: "one", namespace: "infra" }],
    rules: [{ backendRefs: [{ name: "echo", namespace: "team-b", port: 80 }] }],
  });
  // team-a → Gateway two (Same): not allowed.
  await route("team-a", "refused", { parentRefs: [{ name: "two", namespace: "infra" }] });
  // infra → Gateway two: a redirect.
  await route("infra", "moved", {
    parentRefs: [{ name: "two" }],
    rules: [
      {
        matches: [{ path: { type: "PathPrefix", value: "/old" } }],
        filters: [
          {
            type: "RequestRedirect",
            requestRedirect: {
              hostname: "new.example",
              path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/new" },
            },
          },
        ],
      },
    ],
  });
  // A Gateway of another controller's class: no status from us.
  await client.request("POST", `${GW}/namespaces/infra/gateways`, {
    apiVersion: V1,
    kind: "Gateway",
    metadata: { name: "foreign", namespace: "infra" },
    spec: { gatewayClassName: "theirs", listeners: [{ name: "web", port, protocol: "HTTP" }] },
  });

  const cp: ControlPlane = await startControlPlane({
    xdsLocal: true,
    log: quiet,
    kubernetes: {
      kubeconfig: api.kubeconfig,
      gatewayAddressPool: POOL,
      leaderElection: { namespace: "infra", identity: "gateway-api", leaseDurationSeconds: 3, renewMs: 500 },
    },
  });
  t.after(() => cp.close());
  // No --bind-address: each listener binds its Gateway's own address.
  const dp: DataPlane = await startDataPlane({ xds: `${cp.xdsLocal?.target}`, nodeId: "gw-dp", log: quiet });
  t.after(() => dp.close());

  const get = <T>(path: string) => client.request<T>("GET", path);
  const programmed = (name: string) => async () => {
    const g = await get<Gateway>(`${GW}/namespaces/infra/gateways/${name}`);
    return condition(g.status?.conditions, "Programmed")?.status === "True" ? g : undefined;
  };
  const one = await waitFor("Gateway one Programmed", programmed("one"), 30_000);
  const two = await waitFor("Gateway two Programmed", programmed("two"), 30_000);
  const addressOf = (g: Gateway) => g.status?.addresses?.[0]?.value ?? "";
  assert.notEqual(addressOf(one), addressOf(two), "each Gateway has its own address");
  for (const a of [addressOf(one), addressOf(two)]) assert.match(a, /^127\.0\.22\.\d+$/, "from the pool");
  for (const g of [one, two]) {
    assert.equal(condition(g.status?.conditions, "Accepted")?.status, "True");
    assert.ok(g.status?.conditions?.every((c) => c.observedGeneration === g.metadata?.generation));
    const l = g.status?.listeners?.[0];
    assert.deepEqual(l?.supportedKinds, [
      { group: "gateway.networking.k8s.io", kind: "HTTPRoute" },
      { group: "gateway.networking.k8s.io", kind: "GRPCRoute" },
    ]);
    assert.deepEqual(
      l?.conditions.map((c) => `${c.type}=${c.status} ${c.reason}`),
      [
        "Accepted=True Accepted",
        "ResolvedRefs=True ResolvedRefs",
        "Conflicted=False NoConflicts",
        "Programmed=True Programmed",
      ],
    );
  }
  assert.equal(one.status?.listeners?.[0]?.attachedRoutes, 1, "cross attached to one");
  assert.equal(two.status?.listeners?.[0]?.attachedRoutes, 1, "moved attached to two, refused did not");

  const cls = await get<GatewayClass>(`${GW}/gatewayclasses/agw`);
  assert.equal(condition(cls.status?.conditions, "Accepted")?.status, "True");
  const theirs = await get<GatewayClass>(`${GW}/gatewayclasses/theirs`);
  assert.notEqual(condition(theirs.status?.conditions, "Accepted")?.reason, "Accepted", "not ours to accept");
  const foreign = await get<Gateway>(`${GW}/namespaces/infra/gateways/foreign`);
  assert.equal(foreign.status?.addresses, undefined);

  const parents = async (namespace: string, name: string) =>
    (await get<HttpRoute>(`${GW}/namespaces/${namespace}/httproutes/${name}`)).status?.parents ?? [];
  const refused = await waitFor("refused's status", async () => (await parents("team-a", "refused"))[0]);
  assert.equal(refused.controllerName, CONTROLLER_NAME);
  assert.equal(condition(refused.conditions, "Accepted")?.reason, "NotAllowedByListeners");
  const crossBefore = await waitFor("cross's status", async () => (await parents("team-a", "cross"))[0]);
  assert.equal(condition(crossBefore.conditions, "Accepted")?.status, "True");
  assert.equal(condition(crossBefore.conditions, "ResolvedRefs")?.reason, "RefNotPermitted");
  const a1 = addressOf(one);
  assert.equal(
    (await request(a1, port, "/", "any.example")).status,
    500,
    "a backend not permitted answers 500",
  );

  // The ReferenceGrant: the route resolves and reaches team-b's Pod.
  await client.request("POST", "/apis/gateway.networking.k8s.io/v1beta1/namespaces/team-b/referencegrants", {
    apiVersion: "gateway.networking.k8s.io/v1beta1",
    kind: "ReferenceGrant",
    metadata: { name: "from-team-a", namespace: "team-b" },
    spec: {
      from: [{ group: "gateway.networking.k8s.io", kind: "HTTPRoute", namespace: "team-a" }],
      to: [{ group: "", kind: "Service" }],
    },
  });
  await waitFor("cross served by team-b's Pod", async () => {
    const r = await request(a1, port, "/", "any.example");
    return r.status === 200 && r.body === podIp ? r : undefined;
  });
  await waitFor("cross ResolvedRefs", async () => {
    const c = condition((await parents("team-a", "cross"))[0]?.conditions, "ResolvedRefs");
    return c?.status === "True" ? c : undefined;
  });

  // Gateway two, same port, its own address: the redirect (302, Gateway API's default).
  const moved = await request(addressOf(two), port, "/old/page?x=1", "shop.example");
  assert.equal(moved.status, 302);
  assert.equal(moved.headers.location, `http://new.example:${port}/new/page?x=1`);
  assert.equal((await request(addressOf(two), port, "/", "shop.example")).status, 404, "cross is not on two");

  // Nothing changed: a full relist writes no status.
  assert.deepEqual(
    await resyncWrites(cp, "two", "sentinel-one"),
    { writes: 0, changed: [] },
    "no status write when nothing changed",
  );
});

test("an HTTPS Gateway listener serves a Secret of another namespace only once a ReferenceGrant lets the Gateway use it; until then its listener is RefNotPermitted and the Secret is not sent", async (t) => {
  if (!ready(t) || !api) return;
  if (!requireOrSkip(t, hasOpenssl(), "openssl not installed")) return;
  const dir = tempDir();
  const ca = makeCa(dir, "gw-ca");
  const leaf = makeLeaf(dir, ca, { cn: "secure.example", sans: ["DNS:secure.example"] });
  await client.request("POST", "/api/v1/namespaces/team-b/secrets", {
    metadata: { name: "site", namespace: "team-b" },
    type: "kubernetes.io/tls",
    data: {
      "tls.crt": Buffer.from(leaf.certPem).toString("base64"),
      "tls.key": Buffer.from(leaf.keyPem).toString("base64"),
    },
  });
  const port = await freePort();
  await client.request("POST", `${GW}/namespaces/infra/gateways`, {
    apiVersion: V1,
    kind: "Gateway",
    metadata: { name: "secure", namespace: "infra" },
    spec: {
      gatewayClassName: "agw",
      addresses: [{ type: "IPAddress", value: "127.0.23.1" }],
      listeners: [
        {
          name: "https",
          port,
          protocol: "HTTPS",
          hostname: "secure.example",
          tls: { certificateRefs: [{ kind: "Secret", name: "site", namespace: "team-b" }] },
        },
      ],
    },
  });
  await client.request("POST", `${GW}/namespaces/infra/httproutes`, {
    apiVersion: V1,
    kind: "HTTPRoute",
    metadata: { name: "hello", namespace: "infra" },
    spec: {
      parentRefs: [{ name: "secure" }],
      rules: [
        {
          filters: [
            {
              type: "RequestRedirect",
              requestRedirect: { hostname: "elsewhere.example", statusCode: 301 },
            },
          ],
        },
      ],
    },
  });
  const cp = await startControlPlane({
    xdsLocal: true,
    log: quiet,
    kubernetes: {
      kubeconfig: api.kubeconfig,
      leaderElection: {
        namespace: "infra",
        identity: "gateway-api-tls",
        leaseDurationSeconds: 3,
        renewMs: 500,
      },
    },
  });
  t.after(() => cp.close());
  const dp = await startDataPlane({ xds: `${cp.xdsLocal?.target}`, nodeId: "gw-tls", log: quiet });
  t.after(() => dp.close());
  const listenerStatus = async () =>
    (await client.request<Gateway>("GET", `${GW}/namespaces/infra/gateways/secure`)).status?.listeners?.[0];
  const refused = await waitFor(
    "the listener's ResolvedRefs",
    async () => condition((await listenerStatus())?.conditions, "ResolvedRefs"),
    30_000,
  );
  assert.equal(refused.status, "False");
  assert.equal(refused.reason, "RefNotPermitted");
  assert.equal(condition((await listenerStatus())?.conditions, "Programmed")?.status, "False");
  assert.equal(
    cp.cache.snapshot?.get(TYPE_URL.secret)?.resources.has("team-b/site"),
    false,
    "the Secret is not sent to data planes",
  );

  await client.request("POST", "/apis/gateway.networking.k8s.io/v1beta1/namespaces/team-b/referencegrants", {
    apiVersion: "gateway.networking.k8s.io/v1beta1",
    kind: "ReferenceGrant",
    metadata: { name: "gateways-from-infra", namespace: "team-b" },
    spec: {
      from: [{ group: "gateway.networking.k8s.io", kind: "Gateway", namespace: "infra" }],
      to: [{ group: "", kind: "Secret", name: "site" }],
    },
  });
  await waitFor(
    "the HTTPS listener Programmed",
    async () => {
      const c = condition((await listenerStatus())?.conditions, "Programmed");
      return c?.status === "True" ? c : undefined;
    },
    30_000,
  );
  const answer = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
    const req = https.get(
      {
        host: "127.0.23.1",
        port,
        path: "/x",
        servername: "secure.example",
        headers: { host: "secure.example" },
        ca: ca.pem,
        timeout: 3_000,
      },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, location: res.headers.location });
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
  // The certificate verified against its CA for secure.example; the route answered.
  assert.deepEqual(answer, { status: 301, location: `https://elsewhere.example:${port}/x` });
  // The first test's Gateways lost their pool addresses (this control plane has no pool): their
  // status says so once, and a relist writes nothing more.
  await waitFor("Gateway one without an address", async () => {
    const g = await client.request<Gateway>("GET", `${GW}/namespaces/infra/gateways/one`);
    return g.status?.addresses === undefined ? g : undefined;
  });
  // A first relist and sentinel let whatever is still being written for the lost addresses land.
  await resyncWrites(cp, "secure", "sentinel-settle");
  assert.deepEqual(
    await resyncWrites(cp, "secure", "sentinel-two"),
    { writes: 0, changed: [] },
    "no status write when nothing changed",
  );
});
