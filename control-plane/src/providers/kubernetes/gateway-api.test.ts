import assert from "node:assert/strict";
import { test } from "node:test";
import { addressPool, gatewayStatus, intersectHostname, routeParents } from "./gateway-api.ts";
import { type KubeObjects, translateKube } from "./translate.ts";
import {
  CONTROLLER_NAME,
  type Gateway,
  type GatewayListenerSpec,
  type GrpcRoute,
  type HttpRoute,
  type ReferenceGrant,
  type Service,
} from "./types.ts";

const svc = (namespace: string, name = "web"): Service => ({
  metadata: { name, namespace },
  spec: { ports: [{ name: "http", port: 80 }] },
});
const gateway = (
  name: string,
  listeners: GatewayListenerSpec[],
  extra: Partial<Gateway["spec"]> = {},
  created = "2026-01-01T00:00:00Z",
): Gateway => ({
  metadata: { name, namespace: "infra", generation: 1, creationTimestamp: created as never },
  spec: { gatewayClassName: "agw", listeners, ...extra },
});
const route = (namespace: string, name: string, spec: NonNullable<HttpRoute["spec"]>): HttpRoute => ({
  metadata: { name, namespace, generation: 4 },
  spec: { rules: [{ backendRefs: [{ name: "web", port: 80 }] }], ...spec },
});
const translate = (o: Partial<KubeObjects>, pool?: string) =>
  translateKube(
    {
      services: [svc("infra"), svc("team-a"), svc("team-b")],
      endpointSlices: [],
      gatewayRoutes: [],
      secrets: [],
      gatewayClasses: [
        { metadata: { name: "agw" }, spec: { controllerName: CONTROLLER_NAME } },
        { metadata: { name: "theirs" }, spec: { controllerName: "example.com/other" } },
      ],
      namespaces: [
        { metadata: { name: "infra" } },
        { metadata: { name: "team-a", labels: { shared: "yes" } } },
        { metadata: { name: "team-b" } },
      ],
      ...o,
    },
    { gatewayAddressPool: pool },
  );
const parentsOf = (out: ReturnType<typeof translate>, name: string) =>
  out.gatewayApi.routes.find((r) => r.name === name)?.parents ?? [];

test("allowedRoutes: Same (the default), All and Selector admit routes by namespace; the others are NotAllowedByListeners", () => {
  const out = translate({
    gateways: [
      gateway("gw", [
        { name: "same", port: 8001, protocol: "HTTP" },
        { name: "all", port: 8002, protocol: "HTTP", allowedRoutes: { namespaces: { from: "All" } } },
        {
          name: "selected",
          port: 8003,
          protocol: "HTTP",
          allowedRoutes: { namespaces: { from: "Selector", selector: { matchLabels: { shared: "yes" } } } },
        },
      ]),
    ],
    httpRoutes: [
      route("team-a", "a", { parentRefs: [{ name: "gw", namespace: "infra" }] }),
      route("team-b", "b", { parentRefs: [{ name: "gw", namespace: "infra", sectionName: "selected" }] }),
    ],
  });
  assert.deepEqual(parentsOf(out, "a")[0]?.agwListeners.sort(), [
    "gateway/infra/gw/8002",
    "gateway/infra/gw/8003",
  ]);
  assert.equal(parentsOf(out, "b")[0]?.notAttached?.reason, "NotAllowedByListeners");
  const counts = out.gatewayApi.gateways[0]?.listeners.map((l) => `${l.name}=${l.attachedRoutes}`);
  assert.deepEqual(counts, ["same=0", "all=1", "selected=1"]);
  // Its backend is in its own namespace: served from team-a's Service.
  assert.deepEqual(out.listeners.find((l) => l.name === "gateway/infra/gw/8002")?.routes[0]?.target, {
    cluster: "k8s/team-a/web/80",
  });
});

test("hostnames: a route's are intersected with its listener's (wildcards cover any depth); none in common is NoMatchingListenerHostname; listeners sharing a port get fences", () => {
  assert.equal(intersectHostname("a.b.example.com", "*.example.com"), "a.b.example.com");
  assert.equal(intersectHostname("*.example.com", "foo.example.com"), "foo.example.com");
  assert.equal(intersectHostname("*.example.com", "*.foo.example.com"), "*.foo.example.com");
  assert.equal(intersectHostname("example.com", "*.example.com"), undefined);
  const out = translate({
    gateways: [
      gateway("gw", [
        { name: "wild", port: 8080, protocol: "HTTP", hostname: "*.example.com" },
        { name: "exact", port: 8080, protocol: "HTTP", hostname: "very.specific.com" },
        { name: "any", port: 8080, protocol: "HTTP", hostname: "*.other.com" },
      ]),
    ],
    httpRoutes: [
      route("infra", "both", {
        parentRefs: [{ name: "gw", sectionName: "wild" }],
        hostnames: ["foo.example.com", "unrelated.net", "*.example.com"],
      }),
      route("infra", "miss", { parentRefs: [{ name: "gw", sectionName: "exact" }], hostnames: ["nope.com"] }),
    ],
  });
  const routes = out.listeners[0]?.routes.map((r) => `${r.name} ${r.hosts.join(",")}`);
  assert.deepEqual(routes, [
    "k8s/infra/httproute/both/8080/0/0 *.example.com,foo.example.com",
    "gateway/infra/gw/8080/fence/*.example.com *.example.com",
    "gateway/infra/gw/8080/fence/*.other.com *.other.com",
    "gateway/infra/gw/8080/fence/very.specific.com very.specific.com",
    "gateway/infra/gw/8080/fence/* ",
  ]);
  assert.equal(parentsOf(out, "miss")[0]?.notAttached?.reason, "NoMatchingListenerHostname");
});

test("ReferenceGrant: a backend in another namespace is RefNotPermitted until a grant names the route's namespace and kind", () => {
  const r = route("team-a", "cross", {
    parentRefs: [{ name: "gw", namespace: "infra" }],
    rules: [{ backendRefs: [{ name: "web", namespace: "team-b", port: 80 }] }],
  });
  const gw = gateway("gw", [
    { name: "web", port: 8080, protocol: "HTTP", allowedRoutes: { namespaces: { from: "All" } } },
  ]);
  const before = translate({ gateways: [gw], httpRoutes: [r] });
  const report = before.gatewayApi.routes[0];
  assert.equal(report?.resolvedRefs.reason, "RefNotPermitted");
  // Still attached (Accepted), its rule answers 500 as Gateway API asks.
  assert.equal(report?.parents[0]?.notAttached, undefined);
  assert.equal(before.listeners[0]?.routes[0]?.directResponse?.status, 500);
  const grant: ReferenceGrant = {
    metadata: { name: "let-a", namespace: "team-b" },
    spec: {
      from: [{ group: "gateway.networking.k8s.io", kind: "HTTPRoute", namespace: "team-a" }],
      to: [{ group: "", kind: "Service" }],
    },
  };
  const after = translate({ gateways: [gw], httpRoutes: [r], referenceGrants: [grant] });
  assert.equal(after.gatewayApi.routes[0]?.resolvedRefs.status, "True");
  assert.deepEqual(after.listeners[0]?.routes[0]?.target, { cluster: "k8s/team-b/web/80" });
  // A grant for another kind or namespace does not count.
  const wrong = {
    ...grant,
    spec: { ...grant.spec, from: [{ ...grant.spec?.from?.[0], namespace: "team-c" }] },
  };
  const still = translate({ gateways: [gw], httpRoutes: [r], referenceGrants: [wrong as ReferenceGrant] });
  assert.equal(still.gatewayApi.routes[0]?.resolvedRefs.reason, "RefNotPermitted");
});

test("addresses: each Gateway gets its own from the pool, the same whatever else exists (a new Gateway never moves an older one), so two on one port both serve; without one the later Gateway's listener is PortUnavailable", () => {
  const a = gateway("a", [{ name: "web", port: 80, protocol: "HTTP" }], {}, "2026-01-01T00:00:00Z");
  const b = gateway("b", [{ name: "web", port: 80, protocol: "HTTP" }], {}, "2026-01-02T00:00:00Z");
  const c = gateway("c", [{ name: "web", port: 80, protocol: "HTTP" }], {}, "2026-01-03T00:00:00Z");
  const addressesOf = (out: ReturnType<typeof translate>) =>
    Object.fromEntries(out.gatewayApi.gateways.map((g) => [g.name, g.address]));
  const alone = addressesOf(translate({ gateways: [a] }, "127.0.20.0/24"));
  const three = addressesOf(translate({ gateways: [c, b, a] }, "127.0.20.0/24"));
  assert.equal(three.a, alone.a, "b and c do not move a");
  assert.equal(new Set(Object.values(three)).size, 3);
  for (const address of Object.values(three))
    assert.match(address ?? "", /^127\.0\.20\.([1-9]|[1-9]\d|1\d\d|2[0-4]\d|25[0-4])$/);
  // A pool of two: every Gateway still gets one of its own, the older first.
  const tiny = addressesOf(translate({ gateways: [b, a] }, "127.0.20.0/30"));
  assert.deepEqual(new Set([tiny.a, tiny.b]), new Set(["127.0.20.1", "127.0.20.2"]));
  const full = translate({ gateways: [c, b, a] }, "127.0.20.0/30");
  assert.equal(addressesOf(full).c, undefined, "no address left for the newest");
  assert.deepEqual(full.listeners.map((l) => l.name).sort(), ["gateway/infra/a/80", "gateway/infra/b/80"]);
  const unassigned = gatewayStatus(full.gatewayApi.gateways.find((g) => g.name === "c") as never, () => ({
    status: "True",
    reason: "Programmed",
    message: "",
  }));
  assert.equal(unassigned.conditions.find((x) => x.type === "Programmed")?.reason, "AddressNotAssigned");
  const shared = translate({ gateways: [a, b] });
  assert.deepEqual(
    shared.listeners.map((l) => l.name),
    ["gateway/infra/a/80"],
  );
  const refused = shared.gatewayApi.gateways.find((g) => g.name === "b")?.listeners[0];
  assert.equal(refused?.conditions.find((c) => c.type === "Accepted")?.reason, "PortUnavailable");
  const status = gatewayStatus(shared.gatewayApi.gateways.find((g) => g.name === "b") as never, () => ({
    status: "True",
    reason: "Programmed",
    message: "",
  }));
  assert.equal(status.conditions.find((c) => c.type === "Programmed")?.status, "False");
  assert.throws(() => addressPool("10.0.0.0"), /not an IPv4 CIDR/);
});

test("filters: RequestRedirect, URLRewrite and RequestMirror become the IR's redirect, rewrite and mirror; an unknown filter is UnsupportedValue", () => {
  const out = translate({
    gateways: [gateway("gw", [{ name: "web", port: 8080, protocol: "HTTP" }])],
    httpRoutes: [
      route("infra", "filters", {
        parentRefs: [{ name: "gw" }],
        rules: [
          {
            matches: [{ path: { type: "PathPrefix", value: "/old" } }],
            filters: [
              {
                type: "RequestRedirect",
                requestRedirect: {
                  scheme: "https",
                  path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/new" },
                },
              },
            ],
          },
          {
            matches: [{ path: { type: "PathPrefix", value: "/api" } }],
            filters: [
              {
                type: "URLRewrite",
                urlRewrite: {
                  hostname: "internal",
                  path: { type: "ReplaceFullPath", replaceFullPath: "/v2" },
                },
              },
              {
                type: "RequestMirror",
                requestMirror: { backendRef: { name: "web", port: 80 }, percent: 50 },
              },
            ],
            backendRefs: [{ name: "web", port: 80 }],
          },
        ],
      }),
      route("infra", "odd", {
        parentRefs: [{ name: "gw" }],
        rules: [{ filters: [{ type: "ExtensionRef" }], backendRefs: [{ name: "web", port: 80 }] }],
      }),
    ],
  });
  const [redirect, rewrite] = out.listeners[0]?.routes ?? [];
  assert.deepEqual(redirect?.redirect, {
    scheme: "https",
    host: "",
    port: 0,
    path: "",
    pathPrefix: "/new",
    stripQuery: false,
    status: 302,
  });
  assert.deepEqual(rewrite?.rewrite, {
    pathPrefix: "",
    pathRegex: { pattern: "^.*$", substitution: "/v2" },
    host: "internal",
    autoHost: false,
  });
  assert.deepEqual(rewrite?.mirror, { cluster: "k8s/infra/web/80", percent: 50, maxBodyBytes: 65536 });
  const odd = out.gatewayApi.routes.find((r) => r.name === "odd");
  const parents = routeParents(odd as never, (l) =>
    out.routes.find((r) => r.name === "odd" && r.listener === l),
  );
  const accepted = parents[0]?.conditions.find((c) => c.type === "Accepted");
  assert.equal(accepted?.reason, "UnsupportedValue");
  assert.match(accepted?.message ?? "", /ExtensionRef is not supported/);
  assert.equal(parents[0]?.controllerName, CONTROLLER_NAME);
  assert.deepEqual(parents[0]?.parentRef, {
    group: "gateway.networking.k8s.io",
    kind: "Gateway",
    name: "gw",
  });
});

test("Gateway conditions the conformance suite checks: unsupported protocols (ListenersNotValid), parametersRef (InvalidParameters); the older of two equal routes comes first", () => {
  const out = translate({
    gateways: [
      gateway("only-bad", [{ name: "invalid", port: 1111, protocol: "INVALID" }]),
      gateway("mixed", [
        { name: "http", port: 80, protocol: "HTTP" },
        { name: "invalid", port: 1111, protocol: "INVALID" },
      ]),
      gateway("params", [{ name: "http", port: 81, protocol: "HTTP" }], {
        infrastructure: { parametersRef: { group: "invalid.io", kind: "InvalidParameters", name: "x" } },
      }),
    ],
    httpRoutes: [
      {
        ...route("infra", "b-older", { parentRefs: [{ name: "mixed" }] }),
        metadata: { name: "b-older", namespace: "infra", creationTimestamp: "2026-01-01T00:00:00Z" as never },
      },
      {
        ...route("infra", "a-newer", { parentRefs: [{ name: "mixed" }] }),
        metadata: { name: "a-newer", namespace: "infra", creationTimestamp: "2026-01-02T00:00:00Z" as never },
      },
    ],
  });
  const gw = (name: string) => out.gatewayApi.gateways.find((g) => g.name === name);
  assert.deepEqual(gw("only-bad")?.accepted, {
    type: "Accepted",
    status: "False",
    reason: "ListenersNotValid",
    message: "No listener is valid.",
  });
  assert.deepEqual(gw("only-bad")?.listeners[0]?.supportedKinds, []);
  assert.equal(gw("only-bad")?.listeners[0]?.conditions[0]?.reason, "UnsupportedProtocol");
  assert.deepEqual(
    [gw("mixed")?.accepted.status, gw("mixed")?.accepted.reason],
    ["True", "ListenersNotValid"],
  );
  assert.deepEqual(
    [gw("params")?.accepted.status, gw("params")?.accepted.reason],
    ["False", "InvalidParameters"],
  );
  assert.deepEqual(
    out.listeners.find((l) => l.name === "gateway/infra/mixed/80")?.routes.map((r) => r.name),
    [
      "k8s/infra/httproute/b-older/80/0/0",
      "k8s/infra/httproute/a-newer/80/0/0",
      "gateway/infra/mixed/80/fence/*",
    ],
  );
});

const grpcRoute = (namespace: string, name: string, spec: NonNullable<GrpcRoute["spec"]>): GrpcRoute => ({
  metadata: { name, namespace, generation: 2 },
  spec,
});

test("GRPCRoute: method matches become path matches on /SERVICE/METHOD, headers stay, backends speak HTTP/2, status says GRPCRoute", () => {
  const out = translate({
    gateways: [gateway("gw", [{ name: "http", port: 8001, protocol: "HTTP" }])],
    grpcRoutes: [
      grpcRoute("infra", "echo", {
        parentRefs: [{ name: "gw" }],
        rules: [
          {
            matches: [
              { method: { service: "pkg.Echo", method: "Echo" } },
              { method: { service: "pkg.Echo" } },
              { method: { method: "EchoTwo" } },
              { method: { type: "RegularExpression", service: "pkg\\..*", method: "Echo.*" } },
              { headers: [{ name: "version", value: "two" }] },
            ],
            backendRefs: [{ name: "web", port: 80 }],
          },
        ],
      }),
    ],
  });
  const routes = out.listeners.find((l) => l.name === "gateway/infra/gw/8001")?.routes ?? [];
  assert.deepEqual(
    routes.map((r) => [r.path.kind, r.path.value, r.headers.length]),
    [
      ["exact", "/pkg.Echo/Echo", 0],
      ["prefix", "/pkg.Echo/", 0],
      ["regex", "/[^/]+/EchoTwo", 0],
      ["regex", "/(?:pkg\\..*)/(?:Echo.*)", 0],
      ["prefix", "/", 1],
      ["prefix", "/", 0], // the listener's last 404
    ],
  );
  // The Service port has no appProtocol: a GRPCRoute's backend is HTTP/2 all the same.
  const cluster = out.clusters.find((c) => c.name === "k8s/infra/web/80/h2");
  assert.equal(cluster?.protocol, "http2");
  assert.deepEqual(routes[0]?.target, { cluster: "k8s/infra/web/80/h2" });
  const report = out.gatewayApi.routes.find((r) => r.name === "echo");
  assert.equal(report?.kind, "GRPCRoute");
  assert.equal(report?.parents[0]?.notAttached, undefined);
  assert.deepEqual(
    out.gatewayApi.gateways[0]?.listeners[0]?.supportedKinds.map((k) => k.kind),
    ["HTTPRoute", "GRPCRoute"],
  );
  assert.equal(out.routes.find((r) => r.name === "echo")?.kind, "GRPCRoute");
});

test("GRPCRoute: a listener that allows HTTPRoutes only refuses it (NotAllowedByListeners); a Service in another namespace needs a grant from GRPCRoutes", () => {
  const fromHttpRoutes: ReferenceGrant = {
    metadata: { name: "g", namespace: "team-b" },
    spec: {
      from: [{ group: "gateway.networking.k8s.io", kind: "HTTPRoute", namespace: "infra" }],
      to: [{ group: "", kind: "Service" }],
    },
  };
  const objects = (grants: ReferenceGrant[]) => ({
    gateways: [
      gateway("gw", [
        {
          name: "http-only",
          port: 8001,
          protocol: "HTTP",
          allowedRoutes: { kinds: [{ kind: "HTTPRoute" }] },
        },
        { name: "any", port: 8002, protocol: "HTTP" },
      ]),
    ],
    referenceGrants: grants,
    grpcRoutes: [
      grpcRoute("infra", "narrow", { parentRefs: [{ name: "gw", sectionName: "http-only" }], rules: [] }),
      grpcRoute("infra", "far", {
        parentRefs: [{ name: "gw", sectionName: "any" }],
        rules: [{ backendRefs: [{ name: "web", namespace: "team-b", port: 80 }] }],
      }),
    ],
  });
  const out = translate(objects([fromHttpRoutes]));
  assert.equal(parentsOf(out, "narrow")[0]?.notAttached?.reason, "NotAllowedByListeners");
  assert.equal(out.gatewayApi.routes.find((r) => r.name === "far")?.resolvedRefs.reason, "RefNotPermitted");
  const fromGrpcRoutes: ReferenceGrant = {
    ...fromHttpRoutes,
    spec: {
      ...fromHttpRoutes.spec,
      from: [{ group: "gateway.networking.k8s.io", kind: "GRPCRoute", namespace: "infra" }],
    },
  };
  const granted = translate(objects([fromGrpcRoutes]));
  assert.equal(granted.gatewayApi.routes.find((r) => r.name === "far")?.resolvedRefs.status, "True");
});
