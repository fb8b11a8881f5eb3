/**
 * The first-party plugins of agw:plugin@0.2.0's new phases, built from plugins/ and driven through
 * the chain: json-body reads the request body, response-headers edits responses in on-response.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { createLogger } from "@agw/core";
import { type PluginPhasesSchema, PluginSchema } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { create, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { buildJs } from "../../../plugins/sdk/build.ts";
import {
  type FilterableRequest,
  type FilterableResponse,
  OVER_LIMIT,
  PluginChain,
  type PluginReply,
} from "./chain.ts";
import { startRuntime } from "./host.ts";
import { pluginSpec } from "./index.ts";

const log = createLogger("test", { write() {} } as never);

async function firstParty(
  name: string,
  config: JsonObject,
  phases: MessageInitShape<typeof PluginPhasesSchema>,
): Promise<PluginChain> {
  const bytes = await buildJs(
    readFileSync(new URL(`../../../plugins/${name}/plugin.ts`, import.meta.url), "utf8"),
    true,
  );
  const spec = pluginSpec(create(PluginSchema, { name, phases }));
  const plugin = await startRuntime(spec, bytes, log);
  return new PluginChain([{ plugin, configJson: JSON.stringify(config) }]);
}

function post(contentType: string): FilterableRequest {
  return {
    method: "POST",
    host: "h",
    path: "/orders",
    query: "",
    rawNames: ["Content-Type"],
    names: ["content-type"],
    values: [contentType],
    originForm: "/orders",
  };
}

const bytes = (s: string) => new TextEncoder().encode(s);

test("json-body: lets valid JSON through and answers 400, 415, 422 and (over its limit) 413", async () => {
  const chain = await firstParty(
    "json-body",
    { required: ["id"], maxDepth: 4 },
    { requestBody: true, bodyLimitBytes: 1024n },
  );
  assert.deepEqual(chain.requestBody, { limit: 1024 });
  const run = async (type: string, body: Uint8Array | typeof OVER_LIMIT) =>
    (await chain.requestFilter(post(type), "ip", "r", "id", body)) as PluginReply | undefined;
  const json = "application/json; charset=utf-8";
  assert.equal(await run(json, bytes('{"id": 7, "name": "caf\u00e9 ☕"}')), undefined);
  assert.equal(await run(json, new Uint8Array(0)), undefined, "no body: nothing to check");
  const cases: Array<[string, Uint8Array, number, RegExp]> = [
    [json, bytes('{"id": 7,'), 400, /invalid_json/],
    [json, Uint8Array.from([0x7b, 0xff, 0x7d]), 400, /not UTF-8/],
    [json, bytes('{"id":[[[[[1]]]]]}'), 400, /nested deeper than 4/],
    [json, bytes('{"name": "x"}'), 422, /missing: id/],
    ["text/plain", bytes("id=7"), 415, /unsupported_media_type/],
  ];
  for (const [type, body, status, reason] of cases) {
    const r = await run(type, body);
    assert.equal(r?.status, status, new TextDecoder().decode(body));
    assert.match(new TextDecoder().decode(r?.body), reason);
  }
  const over = await run(json, OVER_LIMIT);
  assert.equal(over?.status, 413);
  assert.equal(over?.error, "request_body_too_large");
});

test("response-headers: sets and removes response headers, only for the statuses it names", async () => {
  const chain = await firstParty(
    "response-headers",
    { set: { "X-Content-Type-Options": "nosniff" }, remove: ["Server"], statuses: [200] },
    { onResponse: true },
  );
  const response = (status: number): FilterableResponse => ({
    status,
    rawNames: ["Server", "Content-Length"],
    names: ["server", "content-length"],
    values: ["nginx/1.2", "5"],
  });
  const ok = response(200);
  assert.equal(await chain.responseFilter(ok, "ip", "r", "id"), undefined);
  assert.deepEqual(
    ok.names.map((n, i) => `${n}: ${ok.values[i]}`),
    ["content-length: 5", "x-content-type-options: nosniff"],
  );
  const other = response(404);
  await chain.responseFilter(other, "ip", "r", "id");
  assert.deepEqual(other.names, ["server", "content-length"], "a status it does not name is left alone");
});
