import assert from "node:assert/strict";
import { test } from "node:test";
import type { Ir, IrCluster, IrListener, IrRoute } from "@agw/core/ir";
import { mergeIr } from "./merge.ts";
import type { RouteReport } from "./translate.ts";

const https = (name: string, certificates: string[]): IrListener => ({
  name,
  address: "127.0.0.1",
  port: 8443,
  protocol: "https",
  tls: { certificates, minVersion: "TLSv1.2", ciphers: "", alpn: [] },
  routes: [],
});
const secret = (name: string) => ({ name, certificateChainPem: "c", privateKeyPem: "k" });

test("a config.yaml listener naming a Kubernetes TLS Secret is served once the Secret is, and reported until then", () => {
  const file: Ir = {
    listeners: [https("site", ["prod/site"]), https("local", ["local-cert"])],
    clusters: [],
    secrets: [secret("local-cert")],
  };
  const waiting = mergeIr(file, { listeners: [], clusters: [], secrets: [] });
  assert.deepEqual(
    waiting.ir.listeners.map((l) => l.name),
    ["local"],
  );
  assert.match(
    waiting.listenerErrors.join(),
    /^listener site: Kubernetes TLS Secret prod\/site is not served/,
  );

  const served = mergeIr(file, { listeners: [], clusters: [], secrets: [secret("prod/site")] });
  assert.deepEqual(
    served.ir.listeners.map((l) => l.name),
    ["site", "local"],
  );
  assert.deepEqual(served.listenerErrors, []);

  assert.match(mergeIr(file, undefined).listenerErrors.join(), /needs the Kubernetes source/);
});

test("a rotation to a bad PEM keeps serving the last good certificate; a deleted Secret takes the listener out", () => {
  const file: Ir = { listeners: [https("site", ["prod/site"])], clusters: [] };
  const good = mergeIr(file, { listeners: [], clusters: [], secrets: [secret("prod/site")] });
  const bad = mergeIr(
    file,
    {
      listeners: [],
      clusters: [],
      secrets: [],
      secretErrors: ["prod/site: tls.crt is not a PEM certificate"],
    },
    good.servedSecrets,
  );
  assert.deepEqual(bad.ir.secrets, [secret("prod/site")]);
  assert.deepEqual(bad.listenerErrors, []);
  const deleted = mergeIr(file, { listeners: [], clusters: [], secrets: [] }, bad.servedSecrets);
  assert.deepEqual(deleted.ir.listeners, []);
  assert.equal(deleted.listenerErrors.length, 1);
});

const route = (name: string, plugins: string[] = []): IrRoute => ({
  name,
  order: 0,
  hosts: [],
  path: { kind: "prefix", value: "/" },
  methods: [],
  headers: [],
  query: [],
  target: { cluster: "k8s/shop/web/80" },
  timeoutMs: 15_000,
  requestHeaders: { add: [], set: [], remove: [] },
  responseHeaders: { add: [], set: [], remove: [] },
  plugins: plugins.map((p) => ({ name: p, config: {} })),
});
const cluster = (name: string): IrCluster => ({
  name,
  protocol: "http1",
  lb: "round_robin",
  connectTimeoutMs: 1000,
  idleTimeoutMs: 1000,
  maxIdlePerEndpoint: 1,
  maxRequestsPerConnection: 0,
  endpoints: [],
});
const http = (name: string, port: number, routes: IrRoute[]): IrListener => ({
  name,
  address: "0.0.0.0",
  port,
  protocol: "http",
  routes,
});
const report = (name: string, listener: string, routeNames: string[]): RouteReport => ({
  kind: "GatewayRoute",
  namespace: "shop",
  name,
  generation: 1,
  conditions: [],
  listener,
  routeNames,
});

test("a Kubernetes route a data plane would refuse (unknown plugin) is left out whole and reported; the others are served", () => {
  const kube = {
    listeners: [
      http("public", 8080, [
        route("k8s/shop/good/0/0"),
        route("k8s/shop/bad/0/0"),
        route("k8s/shop/bad/1/0", ["api-key"]),
      ]),
    ],
    clusters: [cluster("k8s/shop/web/80")],
    secrets: [],
    routes: [
      report("good", "public", ["k8s/shop/good/0/0"]),
      report("bad", "public", ["k8s/shop/bad/0/0", "k8s/shop/bad/1/0"]),
    ],
  };
  const merged = mergeIr(undefined, kube);
  assert.deepEqual(
    merged.ir.listeners[0]?.routes.map((r) => r.name),
    ["k8s/shop/good/0/0"],
    "both of bad's rules are out; good is served",
  );
  assert.deepEqual(
    [...merged.rejected],
    [["GatewayRoute shop/bad on public", ['rules[1]: unknown plugin "api-key"']]],
  );
  // The plugin defined in config.yaml: the route is served.
  const file: Ir = {
    listeners: [],
    clusters: [],
    plugins: [
      {
        name: "api-key",
        source: "file:///p.wasm",
        digest: "d",
        size: 0,
        config: {},
        redisUrl: "",
        redisTimeoutMs: 0,
        httpAllowHosts: [],
        httpTimeoutMs: 0,
        fuel: 1,
        memoryMaxBytes: 1,
        maxInstances: 1,
        failOpen: false,
        failureStatus: 500,
        onResponse: false,
        requestBody: false,
        responseBody: false,
        bodyLimit: 0,
        overLimit: "",
        crypto: false,
      },
    ],
  };
  const withPlugin = mergeIr(file, kube);
  assert.equal(withPlugin.rejected.size, 0);
  assert.equal(withPlugin.ir.listeners[0]?.routes.length, 3);
});

test("a Kubernetes listener on an address and port a file listener has is left out, not sent to be refused", () => {
  const file: Ir = { listeners: [http("file", 8080, [])], clusters: [] };
  const kube = {
    listeners: [
      http("public", 8080, [route("k8s/shop/a/0/0")]),
      http("other", 9090, [route("k8s/shop/b/0/0")]),
    ],
    clusters: [cluster("k8s/shop/web/80")],
    secrets: [],
    routes: [report("a", "public", ["k8s/shop/a/0/0"]), report("b", "other", ["k8s/shop/b/0/0"])],
  };
  const merged = mergeIr(file, kube);
  assert.deepEqual(
    merged.ir.listeners.map((l) => l.name),
    ["file", "other"],
  );
  assert.match(merged.rejected.get("GatewayRoute shop/a on public")?.join() ?? "", /already has/);
});

test("only the Kubernetes TLS Secrets a served listener references are in the IR", () => {
  const file: Ir = { listeners: [https("site", ["prod/site"])], clusters: [] };
  const merged = mergeIr(file, {
    listeners: [],
    clusters: [],
    secrets: [],
    tlsSecrets: [secret("prod/site"), secret("prod/other"), secret("dev/site")],
  });
  assert.deepEqual(merged.ir.secrets, [secret("prod/site")]);
});
