/**
 * Added latency per request of the plugin chain, measured in process on the request_filter path the
 * engine runs (PluginChain.requestFilter on a 10-header request): 0, 1 and 3 plugins, WAT, C
 * (wit-bindgen c) and JS (QuickJS) guests, and the Redis rate limiter against a redis-server the bench
 * starts on a free port (one EVAL round trip per call). Alternating rounds; reports the median of
 * per-round p50/p99 in µs per request.
 * Usage: node bench/plugins.ts [--rounds 5] [--calls 20000]
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createLogger } from "@agw/core";
import { PluginSchema } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { PluginChain } from "../data-plane/src/plugins/chain.ts";
import { type PluginRuntime, startRuntime } from "../data-plane/src/plugins/host.ts";
import { pluginSpec } from "../data-plane/src/plugins/index.ts";
import { buildCGuest } from "../plugins/c-guest/build.ts";
import { buildJs, buildWat } from "../plugins/sdk/build.ts";
import { WAT_GUESTS } from "../plugins/testdata/wat-guests.ts";
import { freePort, waitFor } from "../test/helpers.ts";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "5" }, calls: { type: "string", default: "20000" } },
});
const rounds = Number(values.rounds);
const calls = Number(values.calls);
const log = createLogger("bench", { write() {} } as never);

async function runtime(
  name: string,
  bytes: Uint8Array,
  config: Record<string, unknown> = { keys: ["k"] },
  redisUrl = "",
): Promise<PluginRuntime> {
  const spec = pluginSpec(
    create(PluginSchema, {
      name,
      config: config as JsonObject,
      capabilities: { redisUrl },
      limits: { maxInstances: 4 },
    }),
  );
  return startRuntime(spec, bytes, log);
}

function request() {
  const names = [
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "x-api-key",
    "x-a",
    "x-b",
    "x-c",
    "x-d",
    "x-e",
  ];
  return {
    method: "GET",
    host: "example.com",
    path: "/api/items",
    query: "",
    names: [...names],
    rawNames: [...names],
    values: names.map((n) => (n === "x-api-key" ? "k" : `value-of-${n}`)),
    originForm: "/api/items",
  };
}

async function measure(chain: PluginChain | null): Promise<number[]> {
  const samples = new Float64Array(calls);
  for (let i = 0; i < calls; i++) {
    const req = request();
    const t = performance.now();
    if (chain !== null) {
      const r = chain.requestFilter(req, "127.0.0.1", "bench", "id");
      if (r instanceof Promise) await r;
    }
    samples[i] = performance.now() - t;
  }
  samples.sort();
  return [samples[Math.floor(calls * 0.5)] as number, samples[Math.floor(calls * 0.99)] as number].map(
    (ms) => ms * 1000,
  );
}

const wat = await runtime("wat", await buildWat(WAT_GUESTS.addHeader));
const js = await runtime(
  "js",
  await buildJs(readFileSync(join(import.meta.dirname, "../plugins/api-key/plugin.ts"), "utf8"), true),
);
const c = await runtime("c", await buildCGuest(join(import.meta.dirname, "../plugins/c-guest/guest.c")));
const redisPort = await freePort();
const redis = spawn(
  "redis-server",
  ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
  { stdio: "ignore" },
);
process.on("exit", () => redis.kill("SIGKILL"));
const rateLimit = await waitFor("redis-server", async () => {
  try {
    return await runtime(
      "rate-limit",
      await buildJs(readFileSync(join(import.meta.dirname, "../plugins/rate-limit/plugin.ts"), "utf8"), true),
      { limit: 1_000_000_000, windowMs: 3_600_000, key: "header:x-api-key" },
      `redis://127.0.0.1:${redisPort}`,
    );
  } catch {
    return undefined;
  }
});
const entry = (p: PluginRuntime) => ({ plugin: p, configJson: JSON.stringify(p.spec.config) });
const cases: Array<[string, PluginChain | null]> = [
  ["0 plugins", null],
  ["1 WAT", new PluginChain([entry(wat)])],
  ["3 WAT", new PluginChain([entry(wat), entry(wat), entry(wat)])],
  ["1 JS (QuickJS api-key)", new PluginChain([entry(js)])],
  ["3 JS (QuickJS api-key)", new PluginChain([entry(js), entry(js), entry(js)])],
  ["1 C (wit-bindgen c)", new PluginChain([entry(c)])],
  ["3 C (wit-bindgen c)", new PluginChain([entry(c), entry(c), entry(c)])],
  ["1 JS Redis rate limiter", new PluginChain([entry(rateLimit)])],
];
const results = new Map<string, number[][]>(cases.map(([n]) => [n, []]));
for (const [, c] of cases) await measure(c); // warm-up
for (let r = 0; r < rounds; r++) for (const [name, c] of cases) results.get(name)?.push(await measure(c));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
console.log(`| chain | p50 µs/request | p99 µs/request |  (median of ${rounds} rounds × ${calls} calls)`);
console.log("| --- | --- | --- |");
for (const [name, rs] of results)
  console.log(
    `| ${name} | ${median(rs.map((x) => x[0] as number)).toFixed(1)} | ${median(rs.map((x) => x[1] as number)).toFixed(1)} |`,
  );
process.exit(0);
