/**
 * Redis connections for plugins: one per plugin (and URL and timeout), kept across config versions of
 * one data plane. Each connection is confined to its plugin's keys by Redis itself.
 *
 * The host prefixes every key a guest names with `<plugin>:`, but `eval-script` runs Lua inside Redis,
 * where `redis.call('GET', 'other:key')` or `KEYS *` would reach any key: only Redis can stop that.
 * So on every (re)connect, before the connection serves a guest, the host runs
 *
 *   ACL SETUSER agw-plugin-<name> reset on #<hash> ~<name>:* resetchannels -@all +<data commands> -@dangerous
 *   AUTH agw-plugin-<name> <password>
 *   ACL WHOAMI   (must answer agw-plugin-<name>)
 *
 * Redis 6+ checks a user's key patterns and commands for commands run from scripts too, so the guest's
 * Lua can touch `<name>:*` keys only and cannot run KEYS, SCAN, SORT, FLUSHALL, CONFIG, ... The
 * password is derived from the granted URL and the plugin name, so every data plane sharing the URL
 * sets the same user. Until a connection is confined (Redis restarted, the URL's user may not run
 * ACL SETUSER, Redis older than 6) the guest's commands fail with `unavailable` and the reason.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

let RedisClient: typeof Redis | null = null;
const clients = new Map<string, PluginRedis>();

/** ioredis is loaded by the first plugin granted Redis, not at start-up (~19 MiB RSS, ~125 ms). */
export async function loadRedis(): Promise<void> {
  RedisClient ??= (await import("ioredis")).Redis;
}

/** What the per-plugin user may run: data commands on its keys, scripts, nothing keyspace-wide. */
const COMMANDS = [
  "-@all",
  "+@string",
  "+@hash",
  "+@list",
  "+@set",
  "+@sortedset",
  "+@bitmap",
  "+@hyperloglog",
  "+@geo",
  "+del",
  "+unlink",
  "+exists",
  "+expire",
  "+pexpire",
  "+expireat",
  "+pexpireat",
  "+ttl",
  "+pttl",
  "+persist",
  "+type",
  "+eval",
  "+evalsha",
  "+eval_ro",
  "+evalsha_ro",
  "+ping",
  // The host checks, after AUTH, that the connection is the plugin's user.
  "+acl|whoami",
  // SORT ... BY/GET, KEYS, FLUSHALL, CONFIG, DEBUG, ...: reads or destroys keys outside the pattern.
  "-@dangerous",
];

export function pluginRedisUser(plugin: string): string {
  return `agw-plugin-${plugin}`;
}

export interface PluginRedis {
  readonly client: Redis;
  /** Whether the current connection is authenticated as the plugin's confined user. */
  confined: boolean;
  /** Why it is not, for the guest's `unavailable` error. */
  problem: string;
}

/**
 * The plugin's connection. Commands fail at once while Redis is unreachable or the connection is
 * not yet confined (no offline queue, nothing resent after a reconnect) and after
 * `commandTimeoutMs` when Redis does not answer, so the plugin sees `unavailable` and applies its
 * fail-open/closed policy instead of holding requests; the client keeps reconnecting.
 */
export function pluginRedis(
  url: string,
  commandTimeoutMs: number,
  plugin: string,
  onProblem: (problem: string) => void,
): PluginRedis {
  const key = `${url}#${commandTimeoutMs}#${plugin}`;
  const existing = clients.get(key);
  if (existing !== undefined) return existing;
  if (RedisClient === null) throw new Error("pluginRedis() before loadRedis()");
  const client = new RedisClient(url, {
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    commandTimeout: commandTimeoutMs,
    connectTimeout: 1000,
    retryStrategy: (times) => Math.min(50 * times, 500),
    lazyConnect: false,
  });
  const state: PluginRedis = { client, confined: false, problem: "redis is connecting" };
  const user = pluginRedisUser(plugin);
  const password = createHash("sha256").update(`agw-plugin-redis\0${url}\0${plugin}`).digest("hex");
  const passwordHash = createHash("sha256").update(password).digest("hex");
  let generation = 0;
  const unconfine = (why: string) => {
    generation++;
    state.confined = false;
    state.problem = why;
  };
  client.on("close", () => unconfine("redis connection closed"));
  const confine = async () => {
    await client.call(
      "ACL",
      "SETUSER",
      user,
      "reset",
      "on",
      `#${passwordHash}`,
      `~${plugin}:*`,
      "resetchannels",
      ...COMMANDS,
    );
    await client.call("AUTH", user, password);
    const who = await client.call("ACL", "WHOAMI");
    if (who !== user) throw new Error(`ACL WHOAMI answered ${String(who)}`);
  };
  const attempt = (mine: number) => {
    confine().then(
      () => {
        if (mine === generation) state.confined = true;
      },
      (e: Error) => {
        if (mine !== generation) return;
        state.problem = `cannot confine plugin ${plugin} to its Redis keys (${e.message}); the redis URL's user must be allowed ACL SETUSER (Redis 6+)`;
        onProblem(state.problem);
        // The connection stays unused (every command is refused) until an attempt succeeds.
        setTimeout(() => {
          if (mine === generation) attempt(mine);
        }, 5000).unref();
      },
    );
  };
  client.on("ready", () => {
    const mine = ++generation;
    state.confined = false;
    state.problem = "redis connection is being confined to the plugin's keys";
    attempt(mine);
  });
  // Connection errors surface as failed commands; the event must have a listener.
  client.on("error", () => {});
  clients.set(key, state);
  return state;
}

/** Waits (bounded) for a first confined connection so the first requests after a load do not fail needlessly. */
export async function awaitConfined(r: PluginRedis, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!r.confined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}

export async function closeRedisClients(): Promise<void> {
  const all = [...clients.values()];
  clients.clear();
  await Promise.all(all.map((c) => c.client.quit().catch(() => c.client.disconnect())));
}
