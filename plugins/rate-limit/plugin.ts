/**
 * rate-limit: a fixed window counted in Redis, so every data plane sharing the Redis shares the count
 * exactly. One atomic script per request: INCR the key and, on its first hit, PEXPIRE it to the
 * window, so the window starts with the first request and resets when the key expires (Redis's clock,
 * not the data planes'). Over the limit: 429 with Retry-After and RateLimit-* headers.
 *
 * Config: { "limit": 100, "windowMs": 60000, "key": "ip" | "header:<name>", "onRedisError": "open" | "closed" }.
 * Redis unreachable: "open" lets requests through, "closed" (default) answers 503.
 */

import { get as getConfig } from "agw:plugin/config@0.2.0";
import { log } from "agw:plugin/log@0.2.0";
import { evalScript } from "agw:plugin/redis@0.2.0";

const SCRIPT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}`;

interface LimitConfig {
  limit: number;
  windowMs: number;
  key: string;
  failOpen: boolean;
}

let lastJson = "";
let config: LimitConfig = { limit: 100, windowMs: 60000, key: "ip", failOpen: false };

function currentConfig(): LimitConfig {
  const json = getConfig();
  if (json !== lastJson) {
    const raw = JSON.parse(json) as Record<string, unknown>;
    config = {
      limit: Number(raw.limit ?? 100),
      windowMs: Number(raw.windowMs ?? 60000),
      key: String(raw.key ?? "ip"),
      failOpen: raw.onRedisError === "open",
    };
    lastJson = json;
  }
  return config;
}

function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0x7f;
  return out;
}

interface Request {
  clientIp: string;
  headers: [string, string][];
}

function subject(cfg: LimitConfig, request: Request): string {
  if (cfg.key.startsWith("header:")) {
    const name = cfg.key.slice(7).toLowerCase();
    for (const [n, v] of request.headers) if (n === name) return `h:${v}`;
    return "h:";
  }
  return `ip:${request.clientIp}`;
}

export function onRequest(request: Request, context: { route: string }) {
  const cfg = currentConfig();
  let count: number;
  let ttlMs: number;
  try {
    const reply = evalScript(
      SCRIPT,
      [`rl:${context.route}:${subject(cfg, request)}`],
      [String(cfg.windowMs)],
    );
    count = Number(reply[0]);
    ttlMs = Number(reply[1]);
  } catch (e) {
    log(
      "warn",
      `rate-limit: redis failed (${String((e as { payload?: { val?: string } }).payload?.val ?? e)})`,
    );
    if (cfg.failOpen) return { tag: "continue" };
    return {
      tag: "respond",
      val: {
        status: 503,
        headers: [["content-type", "application/json"]],
        body: ascii('{"error":"rate_limit_unavailable","message":"the rate limiter cannot reach its store"}'),
      },
    };
  }
  const resetS = String(Math.max(1, Math.ceil(ttlMs / 1000)));
  const remaining = String(Math.max(0, cfg.limit - count));
  if (count <= cfg.limit) {
    return { tag: "continue" };
  }
  return {
    tag: "respond",
    val: {
      status: 429,
      headers: [
        ["content-type", "application/json"],
        ["retry-after", resetS],
        ["ratelimit-limit", String(cfg.limit)],
        ["ratelimit-remaining", remaining],
        ["ratelimit-reset", resetS],
      ],
      body: ascii('{"error":"rate_limited","message":"too many requests"}'),
    },
  };
}

export function onResponse() {
  return { tag: "continue" };
}
