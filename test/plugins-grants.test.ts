/**
 * Plugins reach nothing they were not granted (docs/security.md): a hostile guest
 * (plugins/testdata/probe.ts) loaded through config.yaml into `agw run` pushes on every host
 * function — http-request at the admin API and at loopback, kv until it is full, log floods, Lua
 * scripts after another plugin's Redis keys — and each attempt is refused with a clear error.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { buildJs } from "../plugins/sdk/build.ts";
import {
  freePort,
  get,
  killAndWait,
  ROOT,
  type RunningGateway,
  requireOrSkip,
  startGateway,
  startRedisServer,
  tempDir,
  waitFor,
  warmPluginCache,
} from "./helpers.ts";

const dir = tempDir("agw-plugin-grants-");
let origin: http.Server;
let originPort = 0;

before(async () => {
  origin = http.createServer((req, res) => {
    if (req.url === "/redirect") {
      res.writeHead(302, { location: "http://127.0.0.1:1/elsewhere" });
      res.end();
      return;
    }
    res.end("origin\n");
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  originPort = (origin.address() as AddressInfo).port;
  const source = readFileSync(join(ROOT, "plugins/testdata/probe.ts"), "utf8");
  const bytes = await buildJs(source, true);
  writeFileSync(join(dir, "probe.wasm"), bytes);
  await warmPluginCache(bytes);
});

after(() => origin.close());

/** One route per plugin: /<plugin>/<op>?args runs the probe with that plugin's grants. */
function config(port: number, plugins: string): string {
  const names = [...plugins.matchAll(/^ {2}- name: (\S+)$/gm)].map((m) => m[1] as string);
  return `plugins:
${plugins}
listeners:
  - name: public
    address: 127.0.0.1
    port: ${port}
    routes:
${names.map((n) => `      - { name: ${n}, match: { path: { prefix: /${n}/ } }, cluster: origin, plugins: [{ name: ${n} }] }`).join("\n")}
      - { name: plain, cluster: origin }
clusters:
  - name: origin
    endpoints: ["127.0.0.1:${originPort}"]
`;
}

async function gateway(plugins: string): Promise<{ gw: RunningGateway; url: string }> {
  const port = await freePort();
  const file = join(tempDir("agw-plugin-grants-cfg-"), "config.yaml");
  writeFileSync(file, config(port, plugins.replaceAll("SOURCE", join(dir, "probe.wasm"))));
  const gw = await startGateway(file);
  return { gw, url: `http://127.0.0.1:${port}` };
}

const q = encodeURIComponent;

test("http-request: a grant without a port is the default port; names resolving to loopback need an address grant; no redirects", async (t) => {
  const { gw, url } = await gateway(`  - name: bare
    source: SOURCE
    httpAllowHosts: [localhost]
  - name: named
    source: SOURCE
    httpAllowHosts: ["localhost:${originPort}"]
  - name: ranged
    source: SOURCE
    httpAllowHosts: ["localhost:${originPort}", 127.0.0.0/8]
  - name: address
    source: SOURCE
    httpAllowHosts: ["127.0.0.1:${originPort}"]
  - name: none
    source: SOURCE`);
  t.after(() => gw.proc.stop());
  const admin = `http://localhost:${gw.adminPort}/config_dump`;

  // The attack of issue 14: `localhost` granted, the admin API on another port asked for.
  const bare = await get(`${url}/bare/http?url=${q(admin)}`);
  assert.equal(bare.status, 502, bare.body);
  assert.match(bare.body, /localhost:\d+ is not granted/);
  for (const target of [
    `http://127.0.0.1:${gw.adminPort}/config_dump`,
    `http://[::ffff:127.0.0.1]:${gw.adminPort}/`,
    `http://localhost.:${gw.adminPort}/`,
    `file:///etc/passwd`,
  ]) {
    const r = await get(`${url}/bare/http?url=${q(target)}`);
    assert.equal(r.status, 502, `${target}: ${r.body}`);
  }

  // A granted name and port whose address is loopback: refused without an address grant.
  const named = await get(`${url}/named/http?url=${q(`http://localhost:${originPort}/`)}`);
  assert.equal(named.status, 502, named.body);
  assert.match(named.body, /127\.0\.0\.1 is not a public address|::1 is not a public address/);
  const ranged = await get(`${url}/ranged/http?url=${q(`http://localhost:${originPort}/`)}`);
  // localhost may resolve to ::1 as well, which 127.0.0.0/8 does not cover.
  assert.ok(ranged.body === "status=200" || /::1 is not a public address/.test(ranged.body), ranged.body);

  // An explicit address grant reaches that address and port only; a redirect is handed back, not followed.
  assert.equal(
    (await get(`${url}/address/http?url=${q(`http://127.0.0.1:${originPort}/`)}`)).body,
    "status=200",
  );
  const redirect = await get(`${url}/address/http?url=${q(`http://127.0.0.1:${originPort}/redirect`)}`);
  assert.equal(redirect.body, "status=302");
  const otherPort = await get(`${url}/address/http?url=${q(`http://127.0.0.1:${gw.adminPort}/`)}`);
  assert.equal(otherPort.status, 502);
  const none = await get(`${url}/none/http?url=${q(`http://127.0.0.1:${originPort}/`)}`);
  assert.match(none.body, /http-request is not granted to plugin none/);
});

test("kv: a plugin's store is capped in bytes and entries; the guest gets an error naming the cap", async (t) => {
  const { gw, url } = await gateway(`  - name: bytes
    source: SOURCE
  - name: entries
    source: SOURCE`);
  t.after(() => gw.proc.stop());
  const MiB = 1 << 20;
  let stored = 0;
  for (let i = 0; i < 3; i++) {
    const r = await get(`${url}/bytes/kv?n=40&size=${MiB}&prefix=r${i}-`);
    const m = /^stored=(\d+)(?: error=(.*))?$/.exec(r.body);
    assert.ok(m, r.body);
    stored += Number(m[1]);
    assert.match(
      m[2] ?? "",
      /kv is full: plugin bytes holds \d+ entries, \d+ bytes \(caps: 10000 entries, 16777216 bytes\)/,
    );
  }
  assert.ok(stored * MiB <= 16 * MiB, `stored ${stored} MiB in one plugin's kv`);
  assert.ok(stored >= 15, `only ${stored} entries of 1 MiB fit`);

  const many = await get(`${url}/entries/kv?n=10050&size=1`);
  assert.match(many.body, /^stored=10000 error=kv is full/);
  const metrics = (await get(`http://127.0.0.1:${gw.adminPort}/stats/prometheus`)).body;
  assert.match(metrics, /^agw_plugin_kv_refused_total\{plugin="bytes"\} 3$/m);
});

test("log: lines are cut at 4096 bytes and past 100 at once the rest are dropped and counted", async (t) => {
  const { gw, url } = await gateway(`  - name: chatty
    source: SOURCE`);
  t.after(() => gw.proc.stop());
  const r = await get(`${url}/chatty/log?n=1000&size=10000`);
  assert.equal(r.body, "logged=1000");
  const metrics = (await get(`http://127.0.0.1:${gw.adminPort}/stats/prometheus`)).body;
  const dropped = Number(/^agw_plugin_log_dropped_total\{plugin="chatty"\} (\d+)$/m.exec(metrics)?.[1]);
  assert.ok(dropped >= 800 && dropped <= 900, `dropped ${dropped} of 1000`);
  const guestLines = () =>
    gw.proc
      .output()
      .split("\n")
      .filter((l) => l.includes('"guest":true') && l.includes('"plugin":"chatty"'));
  // The log is written asynchronously: wait for the lines that passed the limit.
  const lines = await waitFor("the guest's lines in the log", () =>
    guestLines().length >= 100 ? guestLines() : undefined,
  );
  assert.ok(lines.length <= 200, `${lines.length} lines logged`);
  for (const line of lines) {
    assert.ok(line.length < 4096 + 400, `a line of ${line.length} bytes`);
    assert.match(line, /cut at 4096 bytes/);
  }
});

function hasCommand(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

test("redis: a plugin's Lua cannot read another plugin's keys or list the keyspace, also after Redis restarts", async (t) => {
  if (
    !requireOrSkip(t, hasCommand("redis-server"), "redis-server not installed (Debian package redis-server)")
  )
    return;
  const redisPort = await freePort();
  let redis = await startRedisServer(redisPort);
  const { gw, url } = await gateway(`  - name: victim
    source: SOURCE
    redis: redis://127.0.0.1:${redisPort}
  - name: thief
    source: SOURCE
    redis: redis://127.0.0.1:${redisPort}`);
  t.after(async () => {
    await gw.proc.stop();
    await killAndWait(redis);
  });
  const attack = async () => {
    await waitFor("the victim's key stored", async () =>
      (await get(`${url}/victim/redis-set?key=secret&value=s3cr3t`)).body === "ok" ? true : undefined,
    );
    assert.equal((await get(`${url}/victim/redis-get?key=secret`)).body, "value=s3cr3t");
    assert.equal((await get(`${url}/thief/redis-get?key=secret`)).body, "value=(none)", "keys are prefixed");
    for (const script of [
      "return redis.call('GET', 'victim:secret')",
      "return redis.call('KEYS', '*')",
      "return redis.call('SCAN', '0')",
      "return redis.call('SORT', KEYS[1], 'BY', 'nosort', 'GET', 'victim:*')",
      "return redis.call('FLUSHALL')",
      "return redis.call('ACL', 'SETUSER', 'agw-plugin-thief', '~*')",
    ]) {
      const r = await get(`${url}/thief/eval?script=${q(script)}&keys=list`);
      assert.equal(r.status, 502, `${script} answered ${r.body}`);
      assert.match(r.body, /NOPERM|can't access|can't run|not allowed from script/, script);
    }
    const own = await get(`${url}/thief/eval?script=${q("return redis.call('INCR', KEYS[1])")}&keys=n`);
    assert.match(own.body, /^reply=\d+$/, "a plugin's own keys work in scripts");
    assert.equal(
      (await get(`${url}/victim/redis-get?key=secret`)).body,
      "value=s3cr3t",
      "nothing was flushed",
    );
  };
  await attack();
  // A restarted Redis has no ACL users: the connection must be confined again before a guest uses it.
  await killAndWait(redis);
  redis = await startRedisServer(redisPort);
  await attack();
});
