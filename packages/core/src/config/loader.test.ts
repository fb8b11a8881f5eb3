import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConfig } from "./loader.ts";

const errorsOf = (text: string) => {
  const r = parseConfig(text, "config.yaml");
  assert.equal(r.ok, false, "expected the config to be rejected");
  return r.ok ? [] : r.errors.map(String);
};

test("a valid config parses", () => {
  const r = parseConfig(
    `listeners:
  - name: main
    port: 8080
    routes:
      - name: api
        match: { path: { prefix: /api }, methods: [GET], headers: [{ name: x-env, exact: canary }] }
        clusters: [{ name: a, weight: 9 }, { name: b, weight: 1 }]
        timeout: 2s
clusters:
  - { name: a, endpoints: ["127.0.0.1:9000", "[::1]:9001"] }
  - { name: b, endpoints: [{ address: localhost, port: 9002, weight: 3 }] }
`,
    "config.yaml",
  );
  assert.equal(r.ok, true, r.ok ? "" : r.errors.join("\n"));
});

test("errors name file, line and path, and every error is reported", () => {
  const errors = errorsOf(`listeners:
  - name: main
    port: 8080
    routes:
      - name: r1
        match:
          path: { regex: "([a-z" }
        cluster: c
      - name: r2
        match:
          methods: [FETCH]
        cluster: c
        colour: blue
clusters:
  - name: c
    connectTimeout: 5 seconds
    endpoints: ["127.0.0.1:80"]
`);
  assert.deepEqual(errors, [
    "config.yaml:7 listeners[0].routes[0].match.path.regex: invalid regex: Invalid regular expression: /([a-z/: Unterminated character class",
    'config.yaml:11 listeners[0].routes[1].match.methods[0]: Invalid option: expected one of "GET"|"HEAD"|"POST"|"PUT"|"DELETE"|"PATCH"|"OPTIONS"|"CONNECT"|"TRACE"',
    'config.yaml:13 listeners[0].routes[1]: Unrecognized key: "colour"',
    'config.yaml:16 clusters[0].connectTimeout: expected a duration such as "500ms", "2s", "1m"',
  ]);
});

test("references, duplicates and endpoints are checked across the document", () => {
  const errors = errorsOf(`listeners:
  - name: main
    port: 8080
    routes:
      - { name: r, cluster: missing }
      - { name: r, clusters: [{ name: c, weight: 0 }] }
      - { name: both, cluster: c, clusters: [{ name: c, weight: 1 }] }
  - name: main
    port: 8080
clusters:
  - { name: c, endpoints: ["no-port"] }
`);
  assert.deepEqual(errors, [
    'config.yaml:8 listeners[1].name: duplicate listener name "main" (first at index 0)',
    'config.yaml:9 listeners[1].port: duplicate listener address "0.0.0.0:8080" (first at index 0)',
    'config.yaml:6 listeners[0].routes[1].name: duplicate route name "r" (first at index 0)',
    'config.yaml:5 listeners[0].routes[0].cluster: unknown cluster "missing"',
    "config.yaml:6 listeners[0].routes[1].clusters: weights must not all be zero",
    "config.yaml:7 listeners[0].routes[2]: a route needs exactly one of cluster, clusters, redirect or directResponse",
    'config.yaml:11 clusters[0].endpoints[0]: missing port in "no-port": expected "host:port"',
  ]);
});

test('an https listener may name a Kubernetes TLS Secret as "namespace/name"; other names still need a secret here', () => {
  const errors = errorsOf(`listeners:
  - name: main
    port: 8443
    protocol: https
    tls:
      certificates: [prod/site, "Prod/site", missing]
`);
  assert.deepEqual(errors, [
    'config.yaml:6 listeners[0].tls.certificates[1]: expected a Kubernetes TLS Secret as "namespace/name", got "Prod/site"',
    'config.yaml:6 listeners[0].tls.certificates[2]: unknown secret "missing"',
  ]);
});

test("YAML syntax errors carry their line", () => {
  const errors = errorsOf("listeners:\n  - name: a\n    port: [1\n");
  assert.equal(errors.length > 0, true);
  assert.match(errors[0] ?? "", /^config\.yaml:\d+: YAML: /);
});

test("an empty file is a valid config with nothing in it", () => {
  assert.equal(parseConfig("", "config.yaml").ok, true);
});

test("a relative plugin source is resolved against the config file's directory", () => {
  const text = `plugins:
  - { name: rel, source: plugins/auth.wasm }
  - { name: abs, source: /opt/agw/abs.wasm }
  - { name: url, source: "file:///opt/agw/url.wasm" }
`;
  const r = parseConfig(text, "/etc/agw/config.yaml");
  assert.equal(r.ok, true, r.ok ? "" : r.errors.join("\n"));
  if (!r.ok) return;
  assert.deepEqual(
    r.config.plugins?.map((p) => p.source),
    ["/etc/agw/plugins/auth.wasm", "/opt/agw/abs.wasm", "file:///opt/agw/url.wasm"],
  );
});

test("a schema error does not hide the semantic errors of the rest of the document", () => {
  const errors = errorsOf(`listeners:
  - name: main
    port: 8080
    routes:
      - { name: bad, cluster: app, timeout: soon }
      - { name: lost, cluster: missing }
      - { name: uses-broken, cluster: broken }
  - name: other
    port: eighty
    routes:
      - { name: x, cluster: missing-too }
  - name: third
    port: 8081
    routes:
      - { name: dup, cluster: app }
      - { name: dup, cluster: app }
clusters:
  - { name: broken, endpoints: ["127.0.0.1:9000"], lb: fastest }
  - { name: app, endpoints: ["localhost:99999"] }
`);
  assert.deepEqual(errors, [
    'config.yaml:5 listeners[0].routes[0].timeout: expected a duration such as "500ms", "2s", "1m"',
    "config.yaml:9 listeners[1].port: Invalid input: expected number, received string",
    'config.yaml:18 clusters[0].lb: Invalid option: expected one of "round_robin"|"least_request"|"ring_hash"|"random"',
    // Indices are the file's, though the elements above were set aside; "broken" exists, so a route
    // naming it is not reported again; a rejected listener's routes are not checked.
    'config.yaml:6 listeners[0].routes[1].cluster: unknown cluster "missing"',
    'config.yaml:16 listeners[2].routes[1].name: duplicate route name "dup" (first at index 0)',
    'config.yaml:19 clusters[1].endpoints[0]: port 99999 in "localhost:99999" is out of range (1-65535)',
  ]);
});

test("a plugin's phases and body settings are checked with their line", () => {
  const errors = errorsOf(`plugins:
  - name: a
    source: /p/a.wasm
    digest: sha256:${"0".repeat(64)}
    overLimit: drop
  - name: b
    source: /p/b.wasm
    digest: sha256:${"0".repeat(64)}
    responseBody: true
    bodyLimit: 99999999
  - name: c
    source: /p/c.wasm
    digest: sha256:${"0".repeat(64)}
    memoryLimit: 1048576
    bodyLimit: 1048576
`);
  assert.deepEqual(errors, [
    'config.yaml:5 plugins[0].overLimit: Invalid option: expected one of "reject"|"skip"',
    "config.yaml:10 plugins[1].bodyLimit: Too big: expected number to be <=16777216",
    "config.yaml:9 plugins[1].responseBody: responseBody needs onResponse: true",
    "config.yaml:15 plugins[2].bodyLimit: bodyLimit 1048576 needs memoryLimit of at least twice that (memoryLimit is 1048576)",
  ]);
});
