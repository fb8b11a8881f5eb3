/** Redis connections for plugins, shared by URL across plugins and config versions of one data plane. */
import type { Redis } from "ioredis";

let RedisClient: typeof Redis | null = null;
const clients = new Map<string, Redis>();

/** ioredis is loaded by the first plugin granted Redis, not at start-up (~19 MiB RSS, ~125 ms). */
export async function loadRedis(): Promise<void> {
  RedisClient ??= (await import("ioredis")).Redis;
}

/**
 * Commands fail at once while Redis is unreachable (no offline queue) and after `commandTimeoutMs`
 * when it does not answer, so a plugin sees `unavailable` and applies its fail-open/closed policy
 * instead of holding requests; the client keeps reconnecting in the background.
 */
export function redisClient(url: string, commandTimeoutMs: number): Redis {
  const key = `${url}#${commandTimeoutMs}`;
  let c = clients.get(key);
  if (c === undefined) {
    if (RedisClient === null) throw new Error("redisClient() before loadRedis()");
    c = new RedisClient(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: commandTimeoutMs,
      connectTimeout: 1000,
      retryStrategy: (times) => Math.min(50 * times, 500),
      lazyConnect: false,
    });
    // Connection errors surface as failed commands; the event must have a listener.
    c.on("error", () => {});
    clients.set(key, c);
  }
  return c;
}

/** Waits (bounded) for a first connection so the first requests after a config load do not fail needlessly. */
export async function awaitReady(client: Redis, timeoutMs: number): Promise<void> {
  if (client.status === "ready") return;
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off("ready", done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    client.on("ready", done);
  });
}

export async function closeRedisClients(): Promise<void> {
  const all = [...clients.values()];
  clients.clear();
  await Promise.all(all.map((c) => c.quit().catch(() => c.disconnect())));
}
