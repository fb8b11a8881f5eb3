/**
 * Plugin resources → running plugins. Runs when Plugin resources arrive over xDS, before the config
 * that uses them is accepted: the component is read from its source, checked against its digest,
 * transpiled and compiled (cached by digest), and a first instance is made. Any failure throws a
 * ResourceError, which NACKs the update; the data plane keeps serving its previous config.
 * A plugin whose resource did not change keeps its runtime (and its warm instances) across updates.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type Logger, PLUGIN_BODY_LIMITS } from "@agw/core";
import type { Plugin } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { type Duration, durationMs } from "@bufbuild/protobuf/wkt";
import { ResourceError } from "../runtime/build.ts";
import { forgetCompiled, sha256Digest } from "./compile.ts";
import { PLUGIN_DEFAULTS, type PluginRuntime, type PluginSpec, startRuntime } from "./host.ts";

export type { PluginReply } from "./chain.ts";
export { PluginChain } from "./chain.ts";
export { PluginRuntime } from "./host.ts";

function ms(d: Duration | undefined, fallback: number): number {
  const v = d ? durationMs(d) : 0;
  return v > 0 ? v : fallback;
}

/** The resource as the host runs it; throws on values a data plane refuses (prepare NACKs the update). */
export function pluginSpec(p: Plugin): PluginSpec {
  const caps = p.capabilities;
  const limits = p.limits;
  const phases = p.phases;
  const overLimit = phases?.overLimit || "reject";
  if (overLimit !== "reject" && overLimit !== "skip")
    throw new Error(`phases.over_limit "${overLimit}": expected "reject" or "skip"`);
  const bodyLimit = Number(phases?.bodyLimitBytes || PLUGIN_DEFAULTS.bodyLimit);
  if (bodyLimit > PLUGIN_BODY_LIMITS.max)
    throw new Error(`phases.body_limit_bytes ${bodyLimit} is over ${PLUGIN_BODY_LIMITS.max}`);
  const memoryMaxBytes = Number(limits?.memoryMaxBytes || PLUGIN_DEFAULTS.memoryMaxBytes);
  // The body is copied into the guest's memory (and, in a JS guest, once more into its heap).
  if ((phases?.requestBody || phases?.responseBody) && bodyLimit * 2 > memoryMaxBytes)
    throw new Error(`phases.body_limit_bytes ${bodyLimit} needs memory_max_bytes of at least twice that`);
  if (phases?.responseBody && !phases.onResponse)
    throw new Error("phases.response_body needs phases.on_response");
  return {
    name: p.name,
    digest: p.digest,
    config: (p.config ?? {}) as Record<string, unknown>,
    redisUrl: caps?.redisUrl ?? "",
    redisTimeoutMs: ms(caps?.redisTimeout, PLUGIN_DEFAULTS.redisTimeoutMs),
    httpAllowHosts: caps?.httpAllowHosts ?? [],
    httpTimeoutMs: ms(caps?.httpTimeout, PLUGIN_DEFAULTS.httpTimeoutMs),
    fuel: Number(limits?.fuel || PLUGIN_DEFAULTS.fuel),
    memoryMaxBytes,
    maxInstances: limits?.maxInstances || PLUGIN_DEFAULTS.maxInstances,
    failOpen: p.failure?.failOpen ?? false,
    failureStatus: p.failure?.status || PLUGIN_DEFAULTS.failureStatus,
    onResponse: phases?.onResponse ?? false,
    requestBody: phases?.requestBody ?? false,
    responseBody: phases?.responseBody ?? false,
    bodyLimit,
    overLimit,
    crypto: caps?.crypto ?? false,
  };
}

async function readSource(source: string): Promise<Uint8Array> {
  if (source === "") throw new Error("plugin without a source");
  const path = source.startsWith("file://") ? fileURLToPath(source) : source;
  return new Uint8Array(await readFile(path));
}

function compiledKey(spec: PluginSpec): string {
  return `${spec.digest} ${spec.memoryMaxBytes}`;
}

export class PluginHost {
  private readonly log: Logger;
  private readonly cacheDir: string | undefined;
  /** Runtimes in use by the current config, by a key of everything that shapes them. */
  private current = new Map<string, { key: string; runtime: PluginRuntime }>();

  constructor(log: Logger, cacheDir?: string) {
    this.log = log;
    this.cacheDir = cacheDir;
  }

  /** Loads every plugin; throws a ResourceError naming the first that fails. Commit with `commit()`. */
  async prepare(
    plugins: ReadonlyMap<string, Plugin>,
  ): Promise<Map<string, { key: string; runtime: PluginRuntime }>> {
    const next = new Map<string, { key: string; runtime: PluginRuntime }>();
    for (const [name, p] of plugins) {
      try {
        const spec = pluginSpec(p);
        const key = JSON.stringify({ ...spec, source: p.source });
        const existing = this.current.get(name);
        if (existing?.key === key) {
          next.set(name, existing);
          continue;
        }
        next.set(name, { key, runtime: await this.load(spec, p.source) });
      } catch (e) {
        for (const [n, r] of next) if (this.current.get(n) !== r) r.runtime.close();
        throw new ResourceError(`agw.v1.Plugin ${name}`, (e as Error).message);
      }
    }
    return next;
  }

  /** Makes `next` current; runtimes no longer used stop taking calls (calls in flight finish). */
  commit(next: Map<string, { key: string; runtime: PluginRuntime }>): void {
    const used = new Set([...next.values()].map((r) => compiledKey(r.runtime.spec)));
    for (const [name, r] of this.current) {
      if (next.get(name) === r) continue;
      r.runtime.close();
      // A rebuilt component's old compilation is dropped once no plugin uses it.
      const spec = r.runtime.spec;
      if (!used.has(compiledKey(spec))) forgetCompiled(spec.digest, { memoryMaxBytes: spec.memoryMaxBytes });
    }
    this.current = next;
  }

  runtimes(): ReadonlyMap<string, PluginRuntime> {
    return new Map([...this.current].map(([n, r]) => [n, r.runtime]));
  }

  private async load(spec: PluginSpec, source: string): Promise<PluginRuntime> {
    const bytes = await readSource(source);
    const actual = sha256Digest(bytes);
    if (spec.digest === "") throw new Error(`no digest (could the control plane read ${source}?)`);
    if (actual !== spec.digest) throw new Error(`digest mismatch: expected ${spec.digest}, got ${actual}`);
    const started = performance.now();
    const runtime = await startRuntime(spec, bytes, this.log, this.cacheDir);
    const component = runtime.component;
    const cacheRefused = component.cache.startsWith("not ");
    this.log[cacheRefused ? "warn" : "info"](
      {
        plugin: spec.name,
        digest: spec.digest,
        ms: Math.round(performance.now() - started),
        imports: component.imports,
        cache: component.cache,
      },
      cacheRefused ? "plugin loaded without the transpile cache" : "plugin loaded",
    );
    return runtime;
  }
}
