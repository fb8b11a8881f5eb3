/**
 * Regexes from config run in linear time (docs/security.md, packages/core/src/regex.ts), attacked as
 * a tenant and a client would: a route whose pattern backtracks catastrophically (`(a+)+`) and a
 * hostile 40-character input. On a backtracking engine each such request holds the event loop for
 * longer than the test runs (2^40 steps); here it answers in about a millisecond and a request on
 * another connection is not held up. Patterns the linear engine cannot run are refused at validation
 * with FILE:LINE (the NACK by a data plane is in test/xds.test.ts).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { CLI, freePort, startGateway, tempDir } from "./helpers.ts";

const run = promisify(execFile);
/**
 * About a millisecond on a calm machine; generous for a busy 2-core one, where an ordinary request
 * can take tens of milliseconds. A backtracking engine needs hours on these inputs.
 */
const BOUND_MS = 500;
const EVIL = "a".repeat(40);

interface Timed {
  status: number;
  body: string;
  ms: number;
}

/** One request on a connection of its own; times out (rejects) after 20 s. */
function request(port: number, path: string, headers: Record<string, string> = {}): Promise<Timed> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers, agent: false, timeout: 20_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - started }));
    });
    req.on("timeout", () => req.destroy(new Error(`${path}: no answer in 20 s`)));
    req.on("error", reject);
  });
}

async function startOrigin(t: { after(fn: () => Promise<void>): void }): Promise<number> {
  const origin = http.createServer((req, res) => res.end(`origin ${req.url}`));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => origin.close(() => resolve())));
  return (origin.address() as AddressInfo).port;
}

function writeConfig(dir: string, port: number, originPort: number): string {
  const file = join(dir, "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - name: nested-path
        match: { path: { regex: "/(a+)+" } }
        cluster: origin
      - name: nested-header
        match: { path: { prefix: /h }, headers: [{ name: x-id, regex: "(a+)+b" }] }
        cluster: origin
      - name: nested-query
        match: { path: { prefix: /q }, query: [{ name: id, regex: "(a+)+b" }] }
        cluster: origin
      - name: nested-rewrite
        match: { path: { prefix: /rw } }
        cluster: origin
        rewrite: { pathRegex: { pattern: "(a+)+b", substitution: "x" } }
      - name: rest
        cluster: origin
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`,
  );
  return file;
}

/** Every regex kind, attacked: [path, headers, what the origin must see]. */
const ATTACKS: ReadonlyArray<readonly [string, Record<string, string>, string]> = [
  [`/${EVIL}!`, {}, `origin /${EVIL}!`],
  ["/h", { "x-id": `${EVIL}!` }, "origin /h"],
  [`/q?id=${EVIL}!`, {}, `origin /q?id=${EVIL}!`],
  [`/rw/${EVIL}!`, {}, `origin /rw/${EVIL}!`],
];

test("a hostile input against (a+)+ routes answers in about a millisecond; another connection is not delayed", {
  timeout: 120_000,
}, async (t) => {
  const originPort = await startOrigin(t);
  const port = await freePort();
  const gw = await startGateway(writeConfig(tempDir(), port, originPort));
  t.after(() => gw.proc.stop());
  const benign = await request(port, "/aaa");
  assert.equal(benign.body, "origin /aaa", "the regex route matches what it should");

  for (const [path, headers, seen] of ATTACKS) {
    // The attack and an innocent request on another connection, in flight together.
    const [attack, innocent] = await Promise.all([
      request(port, path, headers),
      new Promise((r) => setTimeout(r, 2)).then(() => request(port, "/other")),
    ]);
    assert.equal(attack.status, 200, path);
    assert.equal(attack.body, seen, "no route regex matched, so the catch-all answered");
    assert.ok(attack.ms < BOUND_MS, `${path} answered in ${attack.ms.toFixed(1)} ms (bound ${BOUND_MS})`);
    assert.equal(innocent.body, "origin /other");
    assert.ok(innocent.ms < BOUND_MS, `the innocent request took ${innocent.ms.toFixed(1)} ms`);
  }
});

test("worker threads run config regexes in linear time too", { timeout: 120_000 }, async (t) => {
  const originPort = await startOrigin(t);
  const port = await freePort();
  const gw = await startGateway(writeConfig(tempDir(), port, originPort), ["--workers", "2"]);
  t.after(() => gw.proc.stop());
  for (let i = 0; i < 6; i++) await request(port, "/warm-up");
  // Connections are spread over both threads by SO_REUSEPORT: enough attacks reach each of them.
  for (let i = 0; i < 8; i++) {
    const attack = await request(port, `/${EVIL}!`);
    assert.equal(attack.status, 200);
    assert.ok(attack.ms < BOUND_MS, `attack ${i} answered in ${attack.ms.toFixed(1)} ms`);
  }
});

test("patterns that cannot run in linear time are refused at validation with FILE:LINE", async () => {
  const file = join(tempDir(), "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: web
    port: 8080
    routes:
      - name: backreference
        match: { path: { regex: "/(a+)\\\\1" } }
        cluster: c
      - name: lookahead
        match: { headers: [{ name: x-id, regex: "(?=a)a+" }] }
        cluster: c
      - name: counted
        match: { query: [{ name: id, regex: "[0-9a-f]{64}" }] }
        cluster: c
      - name: rewrite
        match: { path: { prefix: /r } }
        cluster: c
        rewrite: { pathRegex: { pattern: "(?<n>a)\\\\k<n>", substitution: "x" } }
clusters:
  - name: c
    endpoints: ["127.0.0.1:80"]
`,
  );
  const failure = await run(process.execPath, [CLI, "validate", "-c", file]).then(
    () => assert.fail("expected exit 1"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(failure.code, 1);
  for (const line of [
    String.raw`:6 listeners\[0\]\.routes\[0\]\.match\.path\.regex: regex /\/\(a\+\)\\1/ cannot run in linear time`,
    String.raw`:9 listeners\[0\]\.routes\[1\]\.match\.headers\[0\]\.regex: regex /\(\?=a\)a\+/ cannot run in linear time`,
    String.raw`:12 listeners\[0\]\.routes\[2\]\.match\.query\[0\]\.regex: regex .* cannot run in linear time`,
    String.raw`:17 listeners\[0\]\.routes\[3\]\.rewrite\.pathRegex\.pattern: regex .* cannot run in linear time`,
  ])
    assert.match(failure.stderr, new RegExp(`${file}${line}`));
});
