import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { routeProblems } from "@agw/core/xds/route-check";
import { translateConfig } from "../../translator.ts";
import { routeMessage } from "../../xds/resources.ts";
import { clusterName, type KubeObjects, translateKube } from "./translate.ts";
import {
  CONTROLLER_NAME,
  type EndpointSlice,
  type Gateway,
  type GatewayRoute,
  type HttpRoute,
  type Secret,
  type Service,
} from "./types.ts";

const service: Service = {
  metadata: { name: "web", namespace: "shop" },
  spec: {
    ports: [
      { name: "http", port: 80, targetPort: "web" as never },
      { name: "admin", port: 9000 },
    ],
  },
};

function slice(
  name: string,
  endpoints: Array<{ ip: string; ready?: boolean; serving?: boolean; terminating?: boolean }>,
  ports: Array<{ name: string; port: number }> = [{ name: "http", port: 8080 }],
): EndpointSlice {
  return {
    metadata: { name, namespace: "shop", labels: { "kubernetes.io/service-name": "web" } },
    addressType: "IPv4",
    ports,
    endpoints: endpoints.map(({ ip, ...conditions }) => ({ addresses: [ip], conditions })),
  };
}

function route(name: string, spec: NonNullable<GatewayRoute["spec"]>): GatewayRoute {
  return { metadata: { name, namespace: "shop", generation: 3 }, spec };
}

const objects = (o: Partial<KubeObjects>): KubeObjects => ({
  services: [service],
  endpointSlices: [],
  gatewayRoutes: [],
  secrets: [],
  gatewayClasses: [{ metadata: { name: "agw" }, spec: { controllerName: CONTROLLER_NAME } }],
  ...o,
});

const basicRoute = route("shop", {
  listener: { name: "http", port: 8080 },
  rules: [{ backendRefs: [{ name: "web", port: "http" }] }],
});

test("every EndpointSlice of a Service is merged; not-ready endpoints are left out; duplicates collapse", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [basicRoute],
      endpointSlices: [
        slice("web-b", [{ ip: "10.0.0.3" }, { ip: "10.0.0.1" }]),
        slice("web-a", [{ ip: "10.0.0.1" }, { ip: "10.0.0.2", ready: false }]),
      ],
    }),
  );
  const cluster = out.clusters.find((c) => c.name === clusterName("shop", "web", 80));
  assert.deepEqual(
    cluster?.endpoints.map((e) => `${e.address}:${e.port}`),
    ["10.0.0.1:8080", "10.0.0.3:8080"],
  );
});

test("the slice port is found by the Service port's name (a named targetPort resolves per slice)", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("admin", {
          listener: { name: "http", port: 8080 },
          rules: [{ backendRefs: [{ name: "web", port: 9000 }] }],
        }),
      ],
      endpointSlices: [
        slice(
          "web-a",
          [{ ip: "10.0.0.1" }],
          [
            { name: "http", port: 8080 },
            { name: "admin", port: 9901 },
          ],
        ),
      ],
    }),
  );
  assert.deepEqual(out.clusters[0]?.endpoints, [{ address: "10.0.0.1", port: 9901, weight: 1 }]);
});

test("when nothing is ready, serving-but-terminating endpoints carry the traffic", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [basicRoute],
      endpointSlices: [
        slice("web-a", [
          { ip: "10.0.0.1", ready: false, serving: true, terminating: true },
          { ip: "10.0.0.2", ready: false, serving: false, terminating: true },
        ]),
      ],
    }),
  );
  assert.deepEqual(
    out.clusters[0]?.endpoints.map((e) => e.address),
    ["10.0.0.1"],
  );
});

test("a missing Service or port is reported (ResolvedRefs False) and gets an empty cluster", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("r", {
          listener: { name: "http", port: 8080 },
          rules: [
            {
              backendRefs: [
                { name: "nowhere", port: 80, weight: 1 },
                { name: "web", port: "grpc", weight: 1 },
              ],
            },
          ],
        }),
      ],
    }),
  );
  const report = out.routes[0];
  const resolved = report?.conditions.find((c) => c.type === "ResolvedRefs");
  assert.equal(resolved?.status, "False");
  assert.match(
    resolved?.message ?? "",
    /Service shop\/nowhere not found; Service shop\/web has no port grpc/,
  );
  assert.equal(report?.conditions.find((c) => c.type === "Accepted")?.status, "True");
  assert.ok(out.clusters.every((c) => c.endpoints.length === 0));
});

test("two routes claiming one listener name with different ports: the later one is not accepted", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("b", {
          listener: { name: "http", port: 9090 },
          rules: [{ backendRefs: [{ name: "web", port: 80 }] }],
        }),
        basicRoute,
      ],
    }),
  );
  assert.equal(out.listeners.length, 1);
  assert.equal(out.listeners[0]?.port, 9090);
  const rejected = out.routes.find((r) => r.name === "shop");
  assert.equal(rejected?.conditions.find((c) => c.type === "Accepted")?.status, "False");
  assert.equal(rejected?.generation, 3);
});

function selfSigned(): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "agw-tls-"));
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "k.pem",
      "-out",
      "c.pem",
      "-subj",
      "/CN=t",
      "-days",
      "1",
    ],
    { cwd: dir, stdio: "ignore" },
  );
  return { cert: readFileSync(join(dir, "c.pem"), "utf8"), key: readFileSync(join(dir, "k.pem"), "utf8") };
}

const secret = (namespace: string, name: string, cert: string, key: string): Secret => ({
  metadata: { name, namespace },
  type: "kubernetes.io/tls",
  data: { "tls.crt": Buffer.from(cert).toString("base64"), "tls.key": Buffer.from(key).toString("base64") },
});

test("TLS Secrets are keyed by namespace/name; only a referenced one is served; a bad PEM is reported", () => {
  const good = selfSigned();
  const other = selfSigned();
  const out = translateKube(
    objects({
      secrets: [
        secret("a", "site", good.cert, good.key),
        secret("b", "site", good.cert, good.key),
        secret("a", "broken", "not a pem", good.key),
        secret("a", "mismatch", good.cert, other.key),
      ],
    }),
  );
  assert.deepEqual(out.secrets, [], "no listener references a Secret: none is served");
  assert.deepEqual(
    out.tlsSecrets.map((s) => s.name),
    ["a/site", "b/site"],
  );
  assert.equal(out.secretErrors.length, 2);
  assert.match(out.secretErrors[0] ?? "", /^a\/broken: tls.crt is not a PEM certificate/);
  assert.match(out.secretErrors[1] ?? "", /^a\/mismatch: tls.key does not match/);
});

test("a GatewayRoute listener serves a TLS Secret of its own namespace only; another namespace's is refused", () => {
  const pem = selfSigned();
  const secrets = [
    secret("shop", "site", pem.cert, pem.key),
    secret("shop", "unused", pem.cert, pem.key),
    secret("bank", "vault", pem.cert, pem.key),
  ];
  const tlsRoute = (name: string, port: number, refs: Array<{ name: string; namespace?: string }>) =>
    route(name, {
      listener: { name: `tls-${port}`, port, tls: { certificateRefs: refs } },
      rules: [{ backendRefs: [{ name: "web", port: 80 }] }],
    });
  const out = translateKube(
    objects({
      secrets,
      gatewayRoutes: [
        tlsRoute("own", 8443, [{ name: "site" }]),
        tlsRoute("thief", 9443, [{ name: "vault", namespace: "bank" }]),
        tlsRoute("typo", 10443, [{ name: "nowhere" }]),
      ],
    }),
  );
  assert.deepEqual(
    out.secrets.map((s) => s.name),
    ["shop/site"],
    "only the Secret a served listener references; never bank/vault, never the unused one",
  );
  const listener = out.listeners.find((l) => l.name === "tls-8443");
  assert.equal(listener?.protocol, "https");
  assert.deepEqual(listener?.tls?.certificates, ["shop/site"]);
  assert.equal(out.listeners.length, 1);
  const cond = (name: string, type: string) =>
    out.routes.find((r) => r.name === name)?.conditions.find((c) => c.type === type);
  assert.equal(cond("thief", "Accepted")?.status, "False");
  assert.equal(cond("thief", "ResolvedRefs")?.reason, "RefNotPermitted");
  assert.match(cond("thief", "ResolvedRefs")?.message ?? "", /Secret bank\/vault is in another namespace/);
  assert.equal(cond("typo", "ResolvedRefs")?.reason, "InvalidCertificateRef");
  assert.match(cond("typo", "ResolvedRefs")?.message ?? "", /Secret shop\/nowhere not found/);
  assert.equal(cond("own", "Accepted")?.status, "True");
});

test("the same objects in any order translate to the same IR", () => {
  const slices = [slice("web-a", [{ ip: "10.0.0.1" }]), slice("web-b", [{ ip: "10.0.0.2" }])];
  const routes = [
    basicRoute,
    route("z", {
      listener: { name: "http", port: 8080 },
      rules: [{ backendRefs: [{ name: "web", port: 80 }] }],
    }),
  ];
  const a = translateKube(objects({ endpointSlices: slices, gatewayRoutes: routes }));
  const b = translateKube(
    objects({ endpointSlices: [...slices].reverse(), gatewayRoutes: [...routes].reverse() }),
  );
  assert.deepEqual(a, b);
});

test("HTTPRoutes attach to the listeners of Gateways whose class is ours only; a listener's hostname applies to a route without its own", () => {
  const gateway = (name: string, gatewayClassName: string): Gateway => ({
    metadata: { name, namespace: "shop" },
    spec: {
      gatewayClassName,
      listeners: [
        { name: "web", port: 8080, protocol: "HTTP", hostname: "shop.example" },
        { name: "admin", port: 9090, protocol: "HTTP" },
        { name: "secure", port: 8443, protocol: "HTTPS" },
      ],
    },
  });
  const httpRoute = (
    name: string,
    parentRefs: NonNullable<NonNullable<HttpRoute["spec"]>["parentRefs"]>,
  ): HttpRoute => ({
    metadata: { name, namespace: "shop", generation: 2 },
    spec: { parentRefs, rules: [{ backendRefs: [{ name: "web", port: 80 }] }] },
  });
  const out = translateKube(
    objects({
      gateways: [gateway("edge", "agw"), gateway("other", "someone-else")],
      httpRoutes: [
        httpRoute("on-web", [{ name: "edge", sectionName: "web" }]),
        httpRoute("on-all", [{ name: "edge" }]),
        httpRoute("foreign", [{ name: "other" }]),
      ],
    }),
  );
  const listeners = Object.fromEntries(
    out.listeners.map((l) => [`${l.name}:${l.port}`, l.routes.map((r) => `${r.name} ${r.hosts.join(",")}`)]),
  );
  assert.deepEqual(listeners, {
    "gateway/shop/edge/8080:8080": [
      "k8s/shop/httproute/on-all/8080/0/0 shop.example",
      "k8s/shop/httproute/on-web/8080/0/0 shop.example",
      "gateway/shop/edge/8080/fence/* ",
    ],
    "gateway/shop/edge/9090:9090": ["k8s/shop/httproute/on-all/9090/0/0 ", "gateway/shop/edge/9090/fence/* "],
  });
  // A Gateway of another controller's class is not ours: nothing served, no status of ours.
  assert.equal(
    out.routes.find((r) => r.name === "foreign"),
    undefined,
  );
  assert.deepEqual(out.gatewayApi.routes.find((r) => r.name === "foreign")?.parents, []);
  // The HTTPS listener without a certificateRef is not served, and says why.
  const secure = out.gatewayApi.gateways
    .find((g) => g.name === "edge")
    ?.listeners.find((l) => l.name === "secure");
  assert.equal(secure?.agwListener, undefined);
  assert.match(
    JSON.stringify(secure?.conditions.find((c) => c.type === "ResolvedRefs")),
    /InvalidCertificateRef.*needs a certificateRef/,
  );
});

const policyRule = {
  retry: { retries: 2, retryOn: ["5xx" as const, "reset" as const], perTryTimeout: "300ms" },
  rewrite: { pathPrefix: "/v2/", host: "internal.shop" },
  cors: { allowOrigins: ["https://app.example"], allowHeaders: ["X-Token"], maxAge: "10m" },
  compression: { codings: ["gzip" as const], levels: { gzip: 9 } },
  rateLimit: {
    limits: [
      { name: "per-key", key: ["clientAddress" as const, { header: "X-Api-Key" }], requests: 5, per: "1s" },
    ],
  },
  ipRules: { allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.9.0.0/16"] },
};

test("retry, rewrite, CORS, IP rules and mirror on a rule become the very IR fields config.yaml gives", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("policies", {
          listener: { name: "http", port: 8080 },
          rules: [
            {
              matches: [{ path: { type: "PathPrefix", value: "/api/" } }],
              backendRefs: [{ name: "web", port: "http" }],
              ...policyRule,
              mirror: { backendRef: { name: "web", port: 9000 }, percent: 25 },
            },
          ],
        }),
      ],
    }),
  );
  assert.equal(out.routes[0]?.conditions.find((c) => c.type === "Accepted")?.status, "True");
  const fromKube = out.listeners[0]?.routes[0];
  const fromFile = translateConfig({
    listeners: [
      {
        name: "http",
        port: 8080,
        routes: [
          {
            name: "r",
            match: { path: { prefix: "/api/" } },
            cluster: "web",
            ...policyRule,
            mirror: { cluster: clusterName("shop", "web", 9000), percent: 25 },
          },
        ],
      },
    ],
    clusters: [],
  }).listeners[0]?.routes[0];
  for (const field of ["retry", "rewrite", "cors", "mirror", "rateLimit", "compression", "ipRules"] as const)
    assert.deepEqual(fromKube?.[field], fromFile?.[field], field);
  assert.ok(fromKube?.retry && fromKube.rewrite && fromKube.cors && fromKube.mirror && fromKube.ipRules);
  assert.deepEqual(fromKube?.compression?.levels, { gzip: 9, br: 0, zstd: 0 });
  assert.deepEqual(fromKube?.rateLimit, {
    headers: true,
    limits: [
      {
        name: "per-key",
        key: [{ kind: "clientAddress" }, { kind: "header", name: "x-api-key" }],
        requests: 5,
        perMs: 1000,
        burst: 5,
        ipv6Prefix: 64,
      },
    ],
  });
  // The mirror's Service port is a cluster of its own, resolved like any backendRef.
  assert.ok(out.clusters.some((c) => c.name === clusterName("shop", "web", 9000)));
});

test("a rule's IP rules with a prefix that is not one are refused on the GatewayRoute", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("bad-ip", {
          listener: { name: "http", port: 8080 },
          rules: [{ backendRefs: [{ name: "web", port: "http" }], ipRules: { allow: ["10.0.0.1/8"] } }],
        }),
      ],
    }),
  );
  const accepted = out.routes[0]?.conditions.find((c) => c.type === "Accepted");
  assert.equal(accepted?.status, "False");
  assert.match(String(accepted?.message), /ipRules\.allow\.0: "10\.0\.0\.1\/8" has bits set/);
});

test("a rule may answer with a redirect or a direct response instead of backendRefs", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("answers", {
          listener: { name: "http", port: 8080 },
          rules: [
            {
              matches: [{ path: { type: "PathPrefix", value: "/old/" } }],
              redirect: { scheme: "https", pathPrefix: "/new/", status: 308 },
            },
            {
              matches: [{ path: { type: "Exact", value: "/healthz" } }],
              directResponse: { status: 200, body: "ok" },
            },
          ],
        }),
      ],
    }),
  );
  const [redirect, direct] = out.listeners[0]?.routes ?? [];
  assert.deepEqual(redirect?.target, { cluster: "" });
  assert.deepEqual(redirect?.redirect, {
    scheme: "https",
    host: "",
    port: 0,
    path: "",
    pathPrefix: "/new/",
    stripQuery: false,
    status: 308,
  });
  assert.deepEqual(direct?.directResponse, {
    status: 200,
    body: "ok",
    contentType: "text/plain; charset=utf-8",
  });
  assert.deepEqual(out.clusters, []);
});

test("backendPolicy gives the rule clusters of its own with config.yaml's cluster policies; other routes keep the shared one", () => {
  const backendPolicy = {
    lb: "ring_hash" as const,
    hashOn: [{ header: "X-User" }, { sourceIp: true as const }],
    sessionAffinity: { cookie: "agw-affinity", ttl: "1h" },
    healthCheck: { path: "/ready", interval: "2s", unhealthyThreshold: 2 },
    outlierDetection: { consecutive5xx: 3, baseEjectionTime: "10s" },
    circuitBreakers: { maxRequests: 100 },
    connectTimeout: "1s",
  };
  const out = translateKube(
    objects({
      gatewayRoutes: [
        basicRoute,
        route("sticky", {
          listener: { name: "http", port: 8080 },
          rules: [{ backendRefs: [{ name: "web", port: "http" }], backendPolicy }],
        }),
      ],
      endpointSlices: [slice("web-a", [{ ip: "10.0.0.1" }])],
    }),
  );
  const own = out.clusters.find((c) => c.name === "k8s/shop/sticky/0/web/80");
  const shared = out.clusters.find((c) => c.name === clusterName("shop", "web", 80));
  const fromFile = translateConfig({
    clusters: [{ name: "web", endpoints: ["10.0.0.1:8080"], ...backendPolicy }],
  }).clusters[0];
  assert.deepEqual(own, { ...fromFile, name: "k8s/shop/sticky/0/web/80" });
  assert.equal(shared?.lb, "round_robin");
  assert.equal(shared?.healthCheck, undefined);
  assert.deepEqual(out.listeners[0]?.routes.find((r) => r.name.startsWith("k8s/shop/sticky/"))?.target, {
    cluster: "k8s/shop/sticky/0/web/80",
  });
});

test("policies are held to config.yaml's rules: a bad one makes the route not Accepted, with where and why", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("bad", {
          listener: { name: "http", port: 8080 },
          rules: [
            {
              matches: [{ path: { type: "Exact", value: "/x" } }],
              backendRefs: [{ name: "web", port: "http" }],
              rewrite: { pathPrefix: "/y" },
              rateLimit: { limits: [{ requests: 0, per: "1s" }] },
              backendPolicy: { healthCheck: { interval: "soon" } },
            },
            { backendRefs: [{ name: "web", port: "http" }], redirect: { status: 302 } },
          ],
        }),
      ],
    }),
  );
  const accepted = out.routes[0]?.conditions.find((c) => c.type === "Accepted");
  assert.equal(accepted?.status, "False");
  assert.match(
    accepted?.message ?? "",
    /rules\[0\]\.rewrite\.pathPrefix: needs a rule whose matches are all PathPrefix/,
  );
  assert.match(accepted?.message ?? "", /rules\[0\]\.backendPolicy\.healthCheck\.interval: /);
  assert.match(accepted?.message ?? "", /rules\[0\]\.rateLimit\.limits\.0\.requests: /);
  assert.match(
    accepted?.message ?? "",
    /rules\[1\]: a rule needs exactly one of backendRefs, redirect or directResponse/,
  );
  assert.deepEqual(out.listeners, []);
});

test("a regex that cannot run in linear time (a tenant's backreference, lookahead, {64}) keeps the route from being Accepted or served", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("slow", {
          listener: { name: "http", port: 8080 },
          rules: [
            {
              matches: [
                {
                  path: { type: "RegularExpression", value: "/(a+)\\1" },
                  headers: [{ name: "x-id", type: "RegularExpression", value: "(?=a)a+" }],
                  queryParams: [{ name: "id", type: "RegularExpression", value: "[0-9a-f]{64}" }],
                },
              ],
              backendRefs: [{ name: "web", port: "http" }],
              rewrite: { pathRegex: { pattern: "(a)\\1", substitution: "/" } },
            },
          ],
        }),
      ],
    }),
  );
  const message = out.routes[0]?.conditions.find(
    (c) => c.type === "Accepted" && c.status === "False",
  )?.message;
  for (const where of [
    "matches\\[0\\]\\.path",
    "matches\\[0\\]\\.headers\\[0\\]",
    "matches\\[0\\]\\.queryParams\\[0\\]",
    "rewrite\\.pathRegex\\.pattern",
  ])
    assert.match(message ?? "", new RegExp(`${where}: regex .* cannot run in linear time`));
  assert.deepEqual(out.listeners, []);
});

test("a mirror to a Service that does not exist is reported like a missing backend", () => {
  const out = translateKube(
    objects({
      gatewayRoutes: [
        route("m", {
          listener: { name: "http", port: 8080 },
          rules: [
            {
              backendRefs: [{ name: "web", port: "http" }],
              mirror: { backendRef: { name: "shadow", port: 80 } },
            },
          ],
        }),
      ],
    }),
  );
  const resolved = out.routes[0]?.conditions.find((c) => c.type === "ResolvedRefs");
  assert.equal(resolved?.status, "False");
  assert.match(resolved?.message ?? "", /Service shop\/shadow not found/);
  assert.equal(out.listeners[0]?.routes[0]?.mirror?.cluster, "k8s/shop/shadow/80");
});

test("a Service port with appProtocol kubernetes.io/h2c or grpc is an http2 cluster; a backendPolicy overrides it", () => {
  const grpcService: Service = {
    metadata: { name: "rpc", namespace: "shop" },
    spec: {
      ports: [
        { name: "grpc", port: 50051, appProtocol: "grpc" },
        { name: "h2c", port: 8081, appProtocol: "kubernetes.io/h2c" },
        { name: "http", port: 80 },
      ],
    },
  };
  const out = translateKube(
    objects({
      services: [grpcService],
      gatewayRoutes: [
        route("rpc", {
          listener: { name: "http", port: 8080 },
          rules: [
            { backendRefs: [{ name: "rpc", port: "grpc" }] },
            { backendRefs: [{ name: "rpc", port: 8081 }] },
            { backendRefs: [{ name: "rpc", port: 80 }] },
            { backendRefs: [{ name: "rpc", port: 50051 }], backendPolicy: { protocol: "http1" } },
          ],
        }),
      ],
    }),
  );
  const protocol = (name: string) => out.clusters.find((c) => c.name === name)?.protocol;
  assert.equal(protocol(clusterName("shop", "rpc", 50051)), "http2");
  assert.equal(protocol(clusterName("shop", "rpc", 8081)), "http2");
  assert.equal(protocol(clusterName("shop", "rpc", 80)), "http1");
  assert.equal(protocol("k8s/shop/rpc/3/rpc/50051"), "http1");
});

test("an HTTPRoute rule without a usable backend answers 500 (Gateway API) instead of a route data planes refuse", () => {
  const out = translateKube(
    objects({
      gateways: [
        {
          metadata: { name: "edge", namespace: "shop" },
          spec: { gatewayClassName: "agw", listeners: [{ name: "web", port: 8080, protocol: "HTTP" }] },
        },
      ],
      httpRoutes: [
        {
          metadata: { name: "empty", namespace: "shop" },
          spec: {
            parentRefs: [{ name: "edge" }],
            rules: [{ matches: [{ path: { type: "PathPrefix", value: "/none" } }] }],
          },
        },
      ],
    }),
  );
  const r = out.listeners[0]?.routes[0];
  assert.deepEqual(r?.directResponse, { status: 500, body: "", contentType: "" });
  assert.deepEqual(routeProblems(routeMessage("l", r as NonNullable<typeof r>), { plugins: new Set() }), []);
});
