/**
 * Plugin resources → running plugins. Runs when Plugin resources arrive over xDS, before the config
 * that uses them is accepted: the component's bytes come inline in the resource or are fetched by
 * digest from the control plane (never from a path: the data plane opens no file the control plane
 * names), are checked against the digest, transpiled and compiled (cached by digest), and a first
 * instance is made. Any failure throws a ResourceError naming the plugin, which NACKs the update;
 * the data plane keeps serving its previous config. A plugin whose resource did not change keeps its
 * runtime (and its warm instances) across updates.
 */
import { type Logger, PLUGIN_BODY_LIMITS } from "@agw/core";
import type { Plugin } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { COMPONENT_MAX_BYTES, componentDigest, isComponentDigest } from "@agw/core/xds/plugin-component";
import { type Duration, durationMs } from "@bufbuild/protobuf/wkt";
import { ResourceError } from "../runtime/build.ts";
import { forgetCompiled } from "./compile.ts";
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

/**
 * Gets a component that did not come inline: from the control plane, by digest, at most `size`
 * bytes, in bounded time (XdsClient.fetchComponent; a worker thread asks its primary's).
 */
export type ComponentFetcher = (digest: string, size: number) => Promise<Uint8Array>;

interface Loaded {
  key: string;
  runtime: PluginRuntime;
  /** The verified component: handed to worker threads, which do not talk xDS. */
  bytes: Uint8Array;
}

function compiledKey(spec: PluginSpec): string {
  return `${spec.digest} ${spec.memoryMaxBytes}`;
}

export class PluginHost {
  private readonly log: Logger;
  private readonly cacheDir: string | undefined;
  private readonly fetch: ComponentFetcher;
  /** Runtimes in use by the current config, by a key of everything that shapes them. */
  private current = new Map<string, Loaded>();

  constructor(
    log: Logger,
    options: { cacheDir?: string | undefined; fetch?: ComponentFetcher | undefined } = {},
  ) {
    this.log = log;
    this.cacheDir = options.cacheDir;
    this.fetch =
      options.fetch ??
      (() => Promise.reject(new Error("the component is not inline and this data plane cannot fetch it")));
  }

  /** Loads every plugin; throws a ResourceError naming the first that fails. Commit with `commit()`. */
  async prepare(plugins: ReadonlyMap<string, Plugin>): Promise<Map<string, Loaded>> {
    const next = new Map<string, Loaded>();
    for (const [name, p] of plugins) {
      try {
        const spec = pluginSpec(p);
        // The digest stands for the bytes: inline or fetched, the same digest is the same plugin.
        const key = JSON.stringify({ ...spec, source: p.source });
        const existing = this.current.get(name);
        if (existing?.key === key) {
          next.set(name, existing);
          continue;
        }
        const bytes = await this.component(p);
        next.set(name, { key, runtime: await this.load(spec, bytes), bytes });
      } catch (e) {
        for (const [n, r] of next) if (this.current.get(n) !== r) r.runtime.close();
        throw new ResourceError(`agw.v1.Plugin ${name}`, (e as Error).message);
      }
    }
    return next;
  }

  /** Makes `next` current; runtimes no longer used stop taking calls (calls in flight finish). */
  commit(next: Map<string, Loaded>): void {
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

  /** The verified components of the current plugins, by digest. */
  components(): Map<string, Uint8Array> {
    return new Map([...this.current.values()].map((r) => [r.runtime.spec.digest, r.bytes]));
  }

  /** The component's bytes, inline or fetched, once they match the resource's digest. */
  private async component(p: Plugin): Promise<Uint8Array> {
    if (p.digest === "")
      throw new Error(
        `no digest: the control plane could not read the component (${p.source || "no source"})`,
      );
    if (!isComponentDigest(p.digest)) throw new Error(`malformed digest ${JSON.stringify(p.digest)}`);
    const inline = p.component?.inline ?? new Uint8Array();
    const size = Number(p.component?.size ?? 0n);
    if (inline.byteLength === 0 && !(size > 0 && size <= COMPONENT_MAX_BYTES))
      throw new Error(`component size ${size} is outside 1..${COMPONENT_MAX_BYTES} bytes`);
    let bytes: Uint8Array;
    try {
      bytes = inline.byteLength > 0 ? inline : await this.fetch(p.digest, size);
    } catch (e) {
      throw new Error(
        `fetching component ${p.digest} from the control plane failed: ${(e as Error).message}`,
      );
    }
    const actual = componentDigest(bytes);
    if (actual !== p.digest)
      throw new Error(
        `digest mismatch: the resource says ${p.digest}, the ${inline.byteLength > 0 ? "inline" : "fetched"} component is ${actual}; not loaded`,
      );
    return bytes;
  }

  private async load(spec: PluginSpec, bytes: Uint8Array): Promise<PluginRuntime> {
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
