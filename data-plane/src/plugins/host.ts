/**
 * One loaded plugin (a Plugin resource): its compiled component, the host imports it is granted,
 * and a pool of instances. jco runs overlapping calls on one instance one after another, so
 * concurrent requests each take their own instance; a fresh instance costs 0.4 ms (WAT) to 10+ ms
 * (JS), so instances are reused and never created per request.
 *
 * A call that traps, runs out of fuel (an endless loop) or fails in any other way discards its
 * instance (a trapped instance is unusable) and a replacement is made in the background; the caller
 * applies the plugin's failure policy. The gateway process is never at risk: the guest runs on the
 * event loop's thread, but fuel bounds its loops and a memory cap bounds its growth.
 */
import { type Logger, PLUGIN_BODY_LIMITS } from "@agw/core";
import { type BucketCounts, newBucketCounts, observeSeconds } from "../observability/bucket-counts.ts";
import {
  type CompiledComponent,
  type CompileOptions,
  compileComponent,
  type GuestInstance,
  type ImportObject,
} from "./compile.ts";
import { CRYPTO_LIMITS, type PublicKeyArg, verifySignature } from "./crypto.ts";
import { EgressPolicy, type Incoming, type Outgoing, send } from "./egress.ts";
import { awaitConfined, loadRedis, type PluginRedis, pluginRedis } from "./redis.ts";

export interface PluginSpec {
  readonly name: string;
  readonly digest: string;
  /** The plugin resource's config (JSON object). */
  readonly config: Readonly<Record<string, unknown>>;
  /** Redis URL the plugin may use; "" = not granted. */
  readonly redisUrl: string;
  readonly redisTimeoutMs: number;
  /** Hosts the plugin may reach with http-request; empty = not granted. */
  readonly httpAllowHosts: readonly string[];
  readonly httpTimeoutMs: number;
  /** Loop iterations one call may run. */
  readonly fuel: number;
  readonly memoryMaxBytes: number;
  readonly maxInstances: number;
  /** On a failed call: let the request through (true) or answer `failureStatus` (false). */
  readonly failOpen: boolean;
  readonly failureStatus: number;
  /** Call on-response (the response_filter phase). */
  readonly onResponse: boolean;
  /** Hand the guest the whole request body / response body (up to `bodyLimit`). */
  readonly requestBody: boolean;
  readonly responseBody: boolean;
  readonly bodyLimit: number;
  /** A body past `bodyLimit`: answer 413 (request) / 502 (response), or do not call the plugin. */
  readonly overLimit: "reject" | "skip";
  /** Grants the crypto interface. */
  readonly crypto: boolean;
}

export const PLUGIN_DEFAULTS = {
  fuel: 50_000_000,
  memoryMaxBytes: 64 << 20,
  maxInstances: 32,
  failureStatus: 500,
  redisTimeoutMs: 250,
  httpTimeoutMs: 2000,
  bodyLimit: PLUGIN_BODY_LIMITS.default,
} as const;

/**
 * What one plugin may hold and say on one data plane (docs/security.md). The kv store refuses a set
 * past either cap with an error the guest sees; log lines past the size are cut, past the rate dropped
 * (counted in agw_plugin_log_dropped_total).
 */
export const PLUGIN_HOST_LIMITS = {
  kvMaxEntries: 10_000,
  /** UTF-8 bytes of keys plus values. */
  kvMaxBytes: 16 << 20,
  logMaxBytes: 4096,
  /** Log lines per second, sustained; up to `logBurst` at once. */
  logPerSecond: 50,
  logBurst: 100,
} as const;

/** Upper bounds (seconds) of the call latency buckets kept per plugin: 50 µs … 1 s. */
export const PLUGIN_CALL_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1,
];

export interface PluginStats extends BucketCounts {
  errors: number;
  /** Calls stopped because they ran out of fuel. */
  timeouts: number;
  /** Instances discarded after a failed call. */
  discarded: number;
  instances: number;
  /** Log lines dropped by the rate limit. */
  logDropped: number;
  /** kv sets refused because the store was full. */
  kvRefused: number;
  counters: Record<string, number>;
}

/** Counts one finished call, its duration, and its latency bucket. */
export function countCall(stats: PluginStats, seconds: number): void {
  observeSeconds(stats, PLUGIN_CALL_BUCKETS, seconds);
}

/** What one call sees through its imports; set before each call on the instance that runs it. */
export interface CallState {
  configJson: string;
  /** The guest's uncaught exception, as its SDK logged it during this call; "" when none. */
  uncaught: string;
  /** crypto.verify calls made during this call. */
  verifies: number;
}

/** How a guest's SDK marks the log line of an uncaught exception (wit/plugin.wit, interface log). */
const UNCAUGHT = "uncaught: ";

export interface PluginInstance {
  readonly guest: GuestInstance;
  readonly state: CallState;
}

/** Thrown (as the `payload` jco lowers into the result's error case) by a redis import. */
function redisError(
  tag: "unavailable" | "command",
  message: string,
): { payload: { tag: string; val: string } } {
  return { payload: { tag, val: message } };
}

interface KvEntry {
  value: string;
  expiresAt: number;
  /** UTF-8 bytes of key and value. */
  bytes: number;
}

const LOG_LEVELS = new Set(["debug", "info", "warn", "error"]);

export class PluginRuntime {
  readonly spec: PluginSpec;
  readonly component: CompiledComponent;
  readonly stats: PluginStats = {
    errors: 0,
    timeouts: 0,
    discarded: 0,
    instances: 0,
    logDropped: 0,
    kvRefused: 0,
    ...newBucketCounts(PLUGIN_CALL_BUCKETS),
    counters: {},
  };
  private readonly log: Logger;
  private readonly egress: EgressPolicy;
  private redis: PluginRedis | undefined;
  private readonly idle: PluginInstance[] = [];
  private readonly waiters: Array<(i: PluginInstance) => void> = [];
  private readonly kv = new Map<string, KvEntry>();
  private kvBytes = 0;
  private kvSweptAt = 0;
  private logTokens: number = PLUGIN_HOST_LIMITS.logBurst;
  private logRefilledAt = Date.now();
  private size = 0;
  private closed = false;
  private lastFailureLog = 0;

  constructor(spec: PluginSpec, component: CompiledComponent, log: Logger) {
    this.spec = spec;
    this.component = component;
    this.log = log.child({ plugin: spec.name });
    this.egress = new EgressPolicy(spec.httpAllowHosts);
  }

  /** Makes the first instance (so a broken component fails the config, not a request) and connects Redis. */
  async start(): Promise<void> {
    const spec = this.spec;
    if (spec.redisUrl !== "") {
      await loadRedis();
      this.redis = pluginRedis(spec.redisUrl, spec.redisTimeoutMs, spec.name, (problem) =>
        this.reportFailure(problem),
      );
    }
    this.idle.push(this.create());
    if (this.redis !== undefined) await awaitConfined(this.redis, 1000);
  }

  close(): void {
    this.closed = true;
    this.idle.length = 0;
  }

  /** An idle instance now, or a promise of one when every instance is busy and the pool is full. */
  acquire(): PluginInstance | Promise<PluginInstance> {
    const i = this.idle.pop();
    if (i !== undefined) return i;
    if (this.size < this.spec.maxInstances) return this.create();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(i: PluginInstance): void {
    const w = this.waiters.shift();
    if (w !== undefined) w(i);
    else if (!this.closed) this.idle.push(i);
    else this.size--;
  }

  /** Drops an instance after a failed call; a replacement is made off the request path. */
  discard(_i: PluginInstance): void {
    this.size--;
    this.stats.discarded++;
    this.stats.instances = this.size;
    if (this.closed) return;
    setImmediate(() => {
      if (this.closed || (this.idle.length > 0 && this.waiters.length === 0)) return;
      try {
        this.release(this.create());
      } catch (e) {
        this.log.error({ err: (e as Error).message }, "could not replace a plugin instance");
      }
    });
  }

  /** Logs why a call failed; at most one line per second per plugin, so a hostile guest cannot flood the log. */
  reportFailure(reason: string): void {
    const now = Date.now();
    if (now - this.lastFailureLog < 1000) return;
    this.lastFailureLog = now;
    this.log.warn({ reason, errors: this.stats.errors, timeouts: this.stats.timeouts }, "plugin call failed");
  }

  /** Readies an instance for a call: its config, fresh per-call counters, full fuel. */
  beginCall(i: PluginInstance, configJson: string): void {
    const state = i.state;
    state.configJson = configJson;
    state.uncaught = "";
    state.verifies = 0;
    this.refuel(i);
  }

  /** Refills the fuel of an instance before a call. */
  refuel(i: PluginInstance): void {
    const fuel = i.guest.fuel;
    for (let k = 0; k < fuel.length; k++) (fuel[k] as WebAssembly.Global).value = this.spec.fuel;
  }

  /** Whether a failed call stopped because it ran out of fuel. */
  outOfFuel(i: PluginInstance): boolean {
    return i.guest.fuel.some((g) => g.value === 0);
  }

  private create(): PluginInstance {
    const state: CallState = { configJson: "{}", uncaught: "", verifies: 0 };
    const guest = this.component.instantiate(this.imports(state));
    this.size++;
    this.stats.instances = this.size;
    return { guest, state };
  }

  private imports(state: CallState): ImportObject {
    const spec = this.spec;
    const kv = this.kv;
    const stats = this.stats;
    const prefix = `${spec.name}:`;
    const confined = this.redis;
    const redis = confined?.client;
    const run = async <T>(f: () => Promise<T>): Promise<T> => {
      if (confined === undefined)
        throw redisError("unavailable", `redis is not granted to plugin ${spec.name}`);
      if (!confined.confined) throw redisError("unavailable", confined.problem);
      try {
        return await f();
      } catch (e) {
        const message = (e as Error).message;
        // A reply error is the command's fault; anything else is the connection's.
        throw redisError((e as Error).name === "ReplyError" ? "command" : "unavailable", message);
      }
    };
    return {
      "agw:plugin/log": {
        log: (level: string, message: string) => {
          if (level === "error" && message.startsWith(UNCAUGHT)) {
            // Reported with the call's failure (rate-limited there), not as a line of its own.
            state.uncaught = message.slice(UNCAUGHT.length, UNCAUGHT.length + PLUGIN_HOST_LIMITS.logMaxBytes);
            return;
          }
          this.guestLog(level, message);
        },
      },
      "agw:plugin/config": { get: () => state.configJson },
      "agw:plugin/clock": {
        nowMs: () => BigInt(Date.now()),
        monotonicNs: () => process.hrtime.bigint(),
      },
      "agw:plugin/kv": {
        get: (key: string) => {
          const e = kv.get(key);
          if (e === undefined) return undefined;
          if (e.expiresAt !== 0 && e.expiresAt <= Date.now()) {
            this.kvDelete(key);
            return undefined;
          }
          return e.value;
        },
        set: (key: string, value: string, ttlMs: bigint | number) => this.kvSet(key, value, Number(ttlMs)),
        remove: (key: string) => {
          this.kvDelete(key);
        },
      },
      "agw:plugin/redis": {
        get: (key: string) => run(async () => (await redis?.get(prefix + key)) ?? undefined),
        set: (key: string, value: string, ttlMs: bigint) =>
          run(async () => {
            if (ttlMs === 0n) await redis?.set(prefix + key, value);
            else await redis?.set(prefix + key, value, "PX", Number(ttlMs));
          }),
        incr: (key: string) => run(async () => BigInt((await redis?.incr(prefix + key)) ?? 0)),
        pexpire: (key: string, ttlMs: bigint) =>
          run(async () => (await redis?.pexpire(prefix + key, Number(ttlMs))) === 1),
        evalScript: (script: string, keys: string[], args: string[]) =>
          run(async () => {
            const reply = await redis?.eval(script, keys.length, ...keys.map((k) => prefix + k), ...args);
            const list = Array.isArray(reply) ? reply : [reply];
            return list.map((v) => (v === null || v === undefined ? "" : String(v)));
          }),
      },
      "agw:plugin/http-request": {
        send: (req: Outgoing) => this.httpSend(req),
      },
      "agw:plugin/crypto": {
        verify: (algorithm: string, key: PublicKeyArg, data: Uint8Array, signature: Uint8Array) => {
          if (!spec.crypto) throw { payload: `crypto is not granted to plugin ${spec.name}` };
          if (++state.verifies > CRYPTO_LIMITS.verifiesPerCall)
            throw { payload: `more than ${CRYPTO_LIMITS.verifiesPerCall} verifications in one call` };
          return verifySignature(algorithm, key, data, signature);
        },
      },
      "agw:plugin/metrics": {
        counterAdd(name: string, value: bigint) {
          stats.counters[name] = (stats.counters[name] ?? 0) + Number(value);
        },
      },
    };
  }

  /** Logs a guest's line: cut to `logMaxBytes`, dropped (and counted) past the rate. */
  private guestLog(level: string, message: string): void {
    const limits = PLUGIN_HOST_LIMITS;
    const now = Date.now();
    this.logTokens = Math.min(
      limits.logBurst,
      this.logTokens + ((now - this.logRefilledAt) * limits.logPerSecond) / 1000,
    );
    this.logRefilledAt = now;
    if (this.logTokens < 1) {
      this.stats.logDropped++;
      return;
    }
    this.logTokens--;
    let text = String(message);
    if (text.length > limits.logMaxBytes || Buffer.byteLength(text) > limits.logMaxBytes) {
      const cut = Buffer.from(text)
        .subarray(0, limits.logMaxBytes)
        .toString()
        .replace(/\uFFFD$/, "");
      text = `${cut}… (cut at ${limits.logMaxBytes} bytes)`;
    }
    this.log[LOG_LEVELS.has(level) ? (level as "info") : "info"]({ guest: true }, text);
  }

  private kvDelete(key: string): void {
    const e = this.kv.get(key);
    if (e === undefined) return;
    this.kv.delete(key);
    this.kvBytes -= e.bytes;
  }

  /** Stores an entry unless the store would pass a cap; then the guest gets an error (result's err case). */
  private kvSet(key: string, value: string, ttlMs: number): void {
    const limits = PLUGIN_HOST_LIMITS;
    const bytes = Buffer.byteLength(key) + Buffer.byteLength(value);
    const old = this.kv.get(key);
    const fits = () =>
      this.kvBytes - (old?.bytes ?? 0) + bytes <= limits.kvMaxBytes &&
      this.kv.size + (old === undefined ? 1 : 0) <= limits.kvMaxEntries;
    if (!fits()) {
      // Expired entries make room; the sweep runs at most once a second so a full store stays cheap.
      const now = Date.now();
      if (now - this.kvSweptAt >= 1000) {
        this.kvSweptAt = now;
        for (const [k, e] of this.kv) if (e.expiresAt !== 0 && e.expiresAt <= now) this.kvDelete(k);
      }
      if (!fits()) {
        this.stats.kvRefused++;
        throw {
          payload: `kv is full: plugin ${this.spec.name} holds ${this.kv.size} entries, ${this.kvBytes} bytes (caps: ${limits.kvMaxEntries} entries, ${limits.kvMaxBytes} bytes)`,
        };
      }
    }
    this.kvDelete(key);
    this.kv.set(key, { value, expiresAt: ttlMs === 0 ? 0 : Date.now() + ttlMs, bytes });
    this.kvBytes += bytes;
  }

  private async httpSend(req: Outgoing): Promise<Incoming> {
    if (this.egress.empty) throw { payload: `http-request is not granted to plugin ${this.spec.name}` };
    try {
      return await send(this.egress, req, this.spec.httpTimeoutMs);
    } catch (e) {
      throw { payload: (e as Error).message };
    }
  }
}

/** The host interfaces a component may import (their grants are checked per call). */
const HOST_INTERFACES = new Set([
  "agw:plugin/log",
  "agw:plugin/config",
  "agw:plugin/clock",
  "agw:plugin/kv",
  "agw:plugin/metrics",
  "agw:plugin/redis",
  "agw:plugin/http-request",
  "agw:plugin/crypto",
  "agw:plugin/types",
]);

/**
 * Compiles a component (cached by digest), checks it against what the spec asks of it, and starts its
 * runtime (a first instance). Throws when the component imports what the host does not provide or
 * its contract version cannot do what the spec asks.
 */
export async function startRuntime(
  spec: PluginSpec,
  bytes: Uint8Array,
  log: Logger,
  cacheDir?: string,
): Promise<PluginRuntime> {
  const options: CompileOptions = {
    memoryMaxBytes: spec.memoryMaxBytes,
    ...(cacheDir !== undefined && { cacheDir }),
  };
  const component = await compileComponent(bytes, options);
  const unknown = component.imports.filter((i) => !HOST_INTERFACES.has(i));
  if (unknown.length > 0)
    throw new Error(`the component imports what the host does not provide: ${unknown.join(", ")}`);
  if (component.version === "0.1.0" && spec.responseBody)
    throw new Error(
      "responseBody: the component targets agw:plugin@0.1.0, whose on-response gets no body; rebuild it against 0.2.0 (docs/plugins.md)",
    );
  const runtime = new PluginRuntime(spec, component, log);
  await runtime.start();
  return runtime;
}
