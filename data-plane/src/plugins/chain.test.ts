/**
 * The plugin chain's two phases and bodies, driven through real compiled components: a QuickJS guest
 * of agw:plugin@0.2.0 (plugins/testdata/phases.ts) and a WAT guest of the frozen 0.1.0 contract.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { before, test } from "node:test";
import { createLogger } from "@agw/core";
import { type Plugin, type PluginPhasesSchema, PluginSchema } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { componentDigest } from "@agw/core/xds/plugin-component";
import { create, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { buildJs, buildWat } from "../../../plugins/sdk/build.ts";
import { WAT_GUESTS_V010 } from "../../../plugins/testdata/wat-guests.ts";
import {
  type FilterableRequest,
  type FilterableResponse,
  OVER_LIMIT,
  PluginChain,
  type PluginReply,
} from "./chain.ts";
import { type PluginRuntime, startRuntime } from "./host.ts";
import { PluginHost, pluginSpec } from "./index.ts";

const log = createLogger("test", { write() {} } as never);
let phases: Uint8Array;
let v010: Uint8Array;

before(async () => {
  phases = await buildJs(
    readFileSync(new URL("../../../plugins/testdata/phases.ts", import.meta.url), "utf8"),
    true,
  );
  v010 = await buildWat(WAT_GUESTS_V010.addHeader, "0.1.0");
});

type PluginInit = MessageInitShape<typeof PluginSchema>;
type PhasesInit = MessageInitShape<typeof PluginPhasesSchema>;

async function runtime(bytes: Uint8Array, init: PluginInit): Promise<PluginRuntime> {
  return startRuntime(pluginSpec(create(PluginSchema, init)), bytes, log);
}

/** A chain of phases-guest plugins, each with its config and phases settings. */
async function chain(
  ...plugins: Array<{
    config: JsonObject;
    phases?: PhasesInit;
    failOpen?: boolean;
    fuel?: bigint;
    crypto?: boolean;
  }>
): Promise<PluginChain> {
  const entries = [];
  for (const [i, p] of plugins.entries()) {
    const plugin = await runtime(phases, {
      name: `p${i}`,
      ...(p.phases !== undefined && { phases: p.phases }),
      ...(p.failOpen !== undefined && { failure: { failOpen: p.failOpen } }),
      ...(p.fuel !== undefined && { limits: { fuel: p.fuel } }),
      ...(p.crypto !== undefined && { capabilities: { crypto: p.crypto } }),
    });
    entries.push({ plugin, configJson: JSON.stringify(p.config) });
  }
  return new PluginChain(entries);
}

function request(): FilterableRequest {
  return {
    method: "POST",
    host: "example.test",
    path: "/upload",
    query: "",
    rawNames: ["Host", "Content-Type"],
    names: ["host", "content-type"],
    values: ["example.test", "application/octet-stream"],
    originForm: "/upload",
  };
}

function response(): FilterableResponse {
  return {
    status: 200,
    rawNames: ["Content-Type", "Transfer-Encoding", "X-Upstream"],
    names: ["content-type", "transfer-encoding", "x-upstream"],
    values: ["text/plain", "chunked", "1"],
  };
}

function header(h: { names: string[]; values: string[] }, name: string): string | undefined {
  const i = h.names.indexOf(name);
  return i < 0 ? undefined : h.values[i];
}

function replyHeader(r: PluginReply | undefined, name: string): string | undefined {
  return r?.headers.find(([n]) => n === name)?.[1];
}

function fnv(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16);
}

test("a plugin that asks for the request body sees its exact bytes; one that did not ask sees none", async () => {
  const body = new Uint8Array(randomBytes(50_000));
  const wants = await chain({
    config: { request: "body" },
    phases: { requestBody: true, bodyLimitBytes: 100_000n },
  });
  assert.deepEqual(wants.requestBody, { limit: 100_000 });
  const r = (await wants.requestFilter(request(), "10.0.0.1", "r", "id", body)) as PluginReply;
  assert.equal(replyHeader(r, "x-body-seen"), "some");
  assert.equal(replyHeader(r, "x-body-len"), "50000");
  assert.equal(replyHeader(r, "x-body-fnv"), fnv(body));

  // The chain buffered for the first plugin; the second, which did not ask, must not get the bytes.
  const mixed = await chain(
    { config: { name: "a", request: "mark" }, phases: { requestBody: true } },
    { config: { request: "body" } },
  );
  const r2 = (await mixed.requestFilter(
    request(),
    "10.0.0.1",
    "r",
    "id",
    body.subarray(0, 10),
  )) as PluginReply;
  assert.equal(replyHeader(r2, "x-body-seen"), "none");
  const none = await chain({ config: { request: "body" } });
  assert.equal(none.requestBody, null, "nobody asked: the engine reads no body");
  assert.equal(none.responsePhase, false);
});

test("a request body over a plugin's limit: reject answers 413 request_body_too_large, skip passes the plugin by", async () => {
  const reject = await chain({
    config: { request: "body" },
    phases: { requestBody: true, bodyLimitBytes: 1000n },
  });
  for (const body of [OVER_LIMIT, new Uint8Array(1001)] as const) {
    const r = (await reject.requestFilter(request(), "ip", "r", "id", body)) as PluginReply;
    assert.equal(r.status, 413);
    assert.equal(r.error, "request_body_too_large");
    assert.match(r.message ?? "", /plugin p0's limit of 1000 bytes/);
  }
  const exact = (await reject.requestFilter(request(), "ip", "r", "id", new Uint8Array(1000))) as PluginReply;
  assert.equal(replyHeader(exact, "x-body-len"), "1000", "a body of exactly the limit is handed over");

  // Two limits in one chain: the engine buffers the larger; the smaller plugin's policy applies to it alone.
  const skip = await chain(
    { config: { request: "body" }, phases: { requestBody: true, bodyLimitBytes: 10n, overLimit: "skip" } },
    { config: { name: "b", request: "body" }, phases: { requestBody: true, bodyLimitBytes: 100n } },
  );
  assert.deepEqual(skip.requestBody, { limit: 100 });
  const r = (await skip.requestFilter(request(), "ip", "r", "id", new Uint8Array(50).fill(7))) as PluginReply;
  assert.equal(replyHeader(r, "x-body-len"), "50", "the second plugin answered: the first was skipped");
  const small = (await skip.requestFilter(request(), "ip", "r", "id", new Uint8Array(5))) as PluginReply;
  assert.equal(replyHeader(small, "x-body-len"), "5", "within its limit the first plugin runs");
});

test("on-response runs in reverse route order, sees no framing fields, and changes headers and status", async () => {
  const c = await chain(
    { config: { name: "a" }, phases: { onResponse: true } },
    { config: { name: "mid", request: "mark" } },
    { config: { name: "b" }, phases: { onResponse: true } },
  );
  assert.equal(c.responsePhase, true);
  assert.equal(c.responseBody, null);
  const resp = response();
  assert.equal(await c.responseFilter(resp, "ip", "r", "id"), undefined);
  assert.equal(header(resp, "x-order"), "b,a");
  assert.equal(header(resp, "x-resp-mid"), undefined, "a plugin without onResponse is not called");
  assert.equal(header(resp, "x-resp-names")?.includes("transfer-encoding"), false);
  assert.equal(header(resp, "transfer-encoding"), "chunked", "framing stays the engine's");

  const status = await chain({ config: { response: "status", status: 299 }, phases: { onResponse: true } });
  const s = response();
  assert.equal(await status.responseFilter(s, "ip", "r", "id"), undefined);
  assert.equal(s.status, 299);
});

test("on-response replaces the response; the plugins after it towards the client are not called", async () => {
  const c = await chain(
    { config: { name: "outer" }, phases: { onResponse: true } },
    { config: { name: "inner", response: "replace" }, phases: { onResponse: true } },
  );
  const resp = response();
  const r = (await c.responseFilter(resp, "ip", "r", "id")) as PluginReply;
  assert.equal(r.status, 203);
  assert.equal(replyHeader(r, "x-replaced-by"), "inner");
  assert.equal(new TextDecoder().decode(r.body), "replaced by inner");
  assert.equal(r.error, undefined);
  assert.equal(header(resp, "x-resp-outer"), undefined);
});

test("the response body reaches only the plugin that asked, whole, and its over-limit policy holds", async () => {
  const body = new Uint8Array(randomBytes(3000));
  const c = await chain(
    {
      config: { name: "a", response: "body" },
      phases: { onResponse: true, responseBody: true, bodyLimitBytes: 4000n },
    },
    { config: { name: "b", response: "body" }, phases: { onResponse: true } },
  );
  assert.deepEqual(c.responseBody, { limit: 4000 });
  const resp = response();
  assert.equal(await c.responseFilter(resp, "ip", "r", "id", body), undefined);
  // b runs first (reverse order) and asked for no body; a's headers replaced b's.
  assert.equal(header(resp, "x-order"), "b,a");
  assert.equal(header(resp, "x-resp-body-seen"), "some");
  assert.equal(header(resp, "x-resp-body-len"), "3000");
  assert.equal(header(resp, "x-resp-body-fnv"), fnv(body));
  const onlyB = await chain({ config: { name: "b", response: "body" }, phases: { onResponse: true } });
  const rb = response();
  await onlyB.responseFilter(rb, "ip", "r", "id", body);
  assert.equal(header(rb, "x-resp-body-seen"), "none");

  const reject = await chain({
    config: { response: "body" },
    phases: { onResponse: true, responseBody: true, bodyLimitBytes: 100n },
  });
  const r = (await reject.responseFilter(response(), "ip", "r", "id", OVER_LIMIT)) as PluginReply;
  assert.equal(r.status, 502);
  assert.equal(r.error, "response_body_too_large");
  const skip = await chain({
    config: { response: "body" },
    phases: { onResponse: true, responseBody: true, bodyLimitBytes: 100n, overLimit: "skip" },
  });
  const sr = response();
  assert.equal(await skip.responseFilter(sr, "ip", "r", "id", OVER_LIMIT), undefined);
  assert.equal(header(sr, "x-resp-p"), undefined, "skipped: not called");
});

test("on-response failures take the request side's path: framing headers, bad status, throw, out of fuel", async () => {
  for (const config of [
    { response: "framing" },
    { response: "status", status: 204 },
    { response: "status", status: 100 },
    { response: "throw" },
  ]) {
    const c = await chain({ config, phases: { onResponse: true } });
    const resp = response();
    const r = (await c.responseFilter(resp, "ip", "r", "id")) as PluginReply;
    assert.equal(r.status, 500, JSON.stringify(config));
    assert.equal(r.error, "plugin_failed");
    assert.equal(resp.status, 200, "the response was not changed");
    assert.equal(header(resp, "content-length"), undefined);
  }
  const loop = await chain({ config: { response: "loop" }, phases: { onResponse: true }, fuel: 1_000_000n });
  const r = (await loop.responseFilter(response(), "ip", "r", "id")) as PluginReply;
  assert.equal(r.error, "plugin_failed");
  const plugin = loop.entries[0]?.plugin as PluginRuntime;
  assert.equal(plugin.stats.timeouts, 1);
  assert.equal(plugin.stats.discarded, 1);
  const open = await chain({ config: { response: "throw" }, phases: { onResponse: true }, failOpen: true });
  assert.equal(await open.responseFilter(response(), "ip", "r", "id"), undefined, "failOpen lets it through");
});

test("a 0.1.0 guest still runs both phases; asking its response body is refused at load", async () => {
  const plugin = await runtime(v010, { name: "old", phases: { onResponse: true, requestBody: true } });
  assert.equal(plugin.component.version, "0.1.0");
  const c = new PluginChain([{ plugin, configJson: "{}" }]);
  const req = request();
  assert.equal(await c.requestFilter(req, "ip", "r", "id", new Uint8Array([1, 2, 3])), undefined);
  assert.equal(header(req, "x-wat"), "1");
  const resp = response();
  assert.equal(await c.responseFilter(resp, "ip", "r", "id"), undefined);
  assert.equal(plugin.stats.errors, 0);

  const host = new PluginHost(log);
  const resource = (phases: PhasesInit, memoryMaxBytes?: bigint): Plugin =>
    create(PluginSchema, {
      name: "old",
      digest: componentDigest(v010),
      component: { inline: v010, size: BigInt(v010.byteLength) },
      phases,
      ...(memoryMaxBytes !== undefined && { limits: { memoryMaxBytes } }),
    });
  await assert.rejects(
    host.prepare(new Map([["old", resource({ onResponse: true, responseBody: true })]])),
    /agw\.v1\.Plugin old: responseBody: the component targets agw:plugin@0\.1\.0/,
  );
  await assert.rejects(
    host.prepare(new Map([["old", resource({ overLimit: "drop" })]])),
    /over_limit "drop": expected "reject" or "skip"/,
  );
  // What a control plane other than ours might push: limits the config schema would have refused.
  await assert.rejects(
    host.prepare(new Map([["old", resource({ requestBody: true, bodyLimitBytes: 17n << 20n })]])),
    /body_limit_bytes 17825792 is over 16777216/,
  );
  await assert.rejects(
    host.prepare(new Map([["old", resource({ requestBody: true, bodyLimitBytes: 1n << 20n }, 1n << 20n)]])),
    /needs memory_max_bytes of at least twice that/,
  );
  const ok = await host.prepare(new Map([["old", resource({ onResponse: true })]]));
  host.commit(ok);
  host.commit(new Map());
});

test("crypto is granted per plugin and capped per call, the same in both phases' calls", async () => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const config = {
    request: "verify",
    verifies: 20,
    key: JSON.stringify(publicKey.export({ format: "jwk" })),
    signature: sign(null, Buffer.from("data"), privateKey).toString("hex"),
  };
  const granted = await chain({ config, crypto: true });
  for (let round = 0; round < 2; round++) {
    const r = (await granted.requestFilter(request(), "ip", "r", "id")) as PluginReply;
    assert.equal(replyHeader(r, "x-verified"), "16", "the cap is per call: a second call starts again");
    assert.match(replyHeader(r, "x-verify-error") ?? "", /more than 16 verifications in one call/);
  }
  const denied = await chain({ config });
  const r = (await denied.requestFilter(request(), "ip", "r", "id")) as PluginReply;
  assert.equal(replyHeader(r, "x-verified"), "0");
  assert.match(replyHeader(r, "x-verify-error") ?? "", /crypto is not granted to plugin p0/);
});
