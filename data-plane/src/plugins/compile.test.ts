/**
 * The transpile cache holds code the gateway runs: these tests plant a module that records that it
 * ran, where an attacker could put one, and check that it never runs while the real component loads.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { componentDigest } from "@agw/core/xds/plugin-component";
import { buildWat } from "../../../plugins/sdk/build.ts";
import { WAT_GUESTS } from "../../../plugins/testdata/wat-guests.ts";
import { cacheKey, compileComponent, forgetCompiled } from "./compile.ts";

const PLANTED = `globalThis.__agwPlanted = (globalThis.__agwPlanted ?? 0) + 1;
export function instantiate() {
  return { onRequest: () => ({ tag: "continue" }), onResponse: () => ({ tag: "continue" }) };
}
`;

const planted = () => (globalThis as { __agwPlanted?: number }).__agwPlanted ?? 0;

/** A guest no other test has compiled (so no cache entry exists for it yet): a pass guest with its own data. */
async function uniqueGuest(): Promise<Uint8Array> {
  return buildWat(WAT_GUESTS.pass.replace('"x-wat"', `"${randomBytes(4).toString("hex").slice(0, 5)}"`));
}

const REQUEST = {
  method: "GET",
  host: "h",
  path: "/",
  query: "",
  clientIp: "127.0.0.1",
  headers: [],
  body: undefined,
};

async function loadAndCall(bytes: Uint8Array, memoryMaxBytes: number, cacheDir?: string) {
  const options = { memoryMaxBytes, ...(cacheDir !== undefined && { cacheDir }) };
  const component = await compileComponent(bytes, options);
  forgetCompiled(component.digest, options);
  const action = component.instantiate({}).exports.onRequest(REQUEST, { route: "r", requestId: "1" });
  return { component, action };
}

function plantEntry(dir: string, format: string, withHashes: boolean): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "component.mjs"), PLANTED);
  const files = withHashes
    ? { "component.mjs": createHash("sha256").update(PLANTED).digest("hex") }
    : undefined;
  writeFileSync(
    join(dir, "meta.json"),
    JSON.stringify({ format, version: "0.1.0", imports: [], async: false, modules: [], files }),
  );
}

test("a component.mjs planted in the old predictable /tmp cache is not run", async () => {
  const bytes = await uniqueGuest();
  const memory = 8 << 20;
  // Where the previous host looked: <tmpdir>/agw-plugin-cache/<key of format 3>.
  const oldKey = createHash("sha256")
    .update(`agw-plugin-cache-3\n${componentDigest(bytes)}\n${memory}`)
    .digest("hex")
    .slice(0, 32);
  plantEntry(join(tmpdir(), "agw-plugin-cache", oldKey), "agw-plugin-cache-3", false);
  const saved = { cache: process.env.AGW_PLUGIN_CACHE, xdg: process.env.XDG_CACHE_HOME };
  delete process.env.AGW_PLUGIN_CACHE;
  process.env.XDG_CACHE_HOME = mkdtempSync(join(tmpdir(), "agw-xdg-"));
  try {
    const before = planted();
    const { component, action } = await loadAndCall(bytes, memory);
    assert.equal(planted(), before, "the planted module ran");
    assert.deepEqual(action, { tag: "continue" });
    assert.equal(component.cache, "written", "the default cache is the private one under XDG_CACHE_HOME");
  } finally {
    if (saved.cache !== undefined) process.env.AGW_PLUGIN_CACHE = saved.cache;
    if (saved.xdg === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved.xdg;
  }
});

test("a cached file that does not match its recorded hash is not run; the entry is rewritten", async () => {
  const bytes = await uniqueGuest();
  const memory = 9 << 20;
  const root = join(mkdtempSync(join(tmpdir(), "agw-cache-")), "cache");
  const first = await loadAndCall(bytes, memory, root);
  assert.equal(first.component.cache, "written");
  const entry = join(root, cacheKey(first.component.digest, { memoryMaxBytes: memory }));
  const real = readFileSync(join(entry, "component.mjs"), "utf8");
  assert.match(real, /instantiate/);
  const again = await loadAndCall(bytes, memory, root);
  assert.equal(again.component.cache, "hit", "an untouched entry is used");

  writeFileSync(join(entry, "component.mjs"), PLANTED);
  const before = planted();
  const tampered = await loadAndCall(bytes, memory, root);
  assert.equal(planted(), before, "the planted module ran");
  assert.deepEqual(tampered.action, { tag: "continue" });
  assert.equal(tampered.component.cache, "written", "the entry failed its check and was written again");
  assert.equal(readFileSync(join(entry, "component.mjs"), "utf8"), real);
});

test("a cache directory that is not private (world-writable, a symlink) is refused, even with consistent hashes", async () => {
  const bytes = await uniqueGuest();
  const memory = 10 << 20;
  const key = cacheKey(componentDigest(bytes), { memoryMaxBytes: memory });
  // An attacker's directory: anyone may write, and the entry's hashes match its planted module.
  const open = mkdtempSync(join(tmpdir(), "agw-open-cache-"));
  chmodSync(open, 0o777);
  plantEntry(join(open, key), "agw-plugin-cache-5", true);
  // A symlink to a private directory with the same entry.
  const target = mkdtempSync(join(tmpdir(), "agw-link-target-"));
  plantEntry(join(target, key), "agw-plugin-cache-5", true);
  const link = join(mkdtempSync(join(tmpdir(), "agw-link-")), "cache");
  symlinkSync(target, link);

  const before = planted();
  for (const [root, reason] of [
    [open, /mode 777/],
    [link, /symbolic link/],
  ] as const) {
    const { component, action } = await loadAndCall(bytes, memory, root);
    assert.match(component.cache, reason);
    assert.match(component.cache, /^not used/);
    assert.deepEqual(action, { tag: "continue" }, "the component is transpiled in memory instead");
  }
  assert.equal(planted(), before, "the planted module ran");
});
