/**
 * A hostile guest for tests: the last path segment picks a host function to push on, the query
 * string gives its arguments, and the answer says what the host allowed. One component serves every
 * test plugin; each plugin's grants in config.yaml decide what it may reach.
 *
 *   /http?url=U                   http-request GET U              → 200 "status=S" | 502 "error=..."
 *   /kv?n=N&size=B                kv.set N entries of B bytes     → "stored=K error=..."
 *   /log?n=N&size=B               log N messages of B bytes       → "logged=N"
 *   /redis-set?key=K&value=V      redis.set                       → "ok" | 502 "error=..."
 *   /redis-get?key=K              redis.get                       → "value=V" | 502 "error=..."
 *   /eval?script=S&keys=A,B       redis.eval-script                → "reply=..." | 502 "error=..."
 *   /throw?message=M              throw new Error(M)
 */
import { send } from "agw:plugin/http-request@0.2.0";
import { set as kvSet } from "agw:plugin/kv@0.2.0";
import { log } from "agw:plugin/log@0.2.0";
import { evalScript, get as redisGet, set as redisSet } from "agw:plugin/redis@0.2.0";

type Headers = [string, string][];

function text(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

function answer(status: number, body: string) {
  return {
    tag: "respond",
    val: { status, headers: [["content-type", "text/plain"]] as Headers, body: text(body) },
  };
}

function failure(e: unknown) {
  const payload = (e as { payload?: unknown }).payload ?? (e as Error).message;
  return answer(502, `error=${typeof payload === "object" ? JSON.stringify(payload) : String(payload)}`);
}

function params(query: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    if (eq > 0) out[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1));
  }
  return out;
}

export function onRequest(request: { path: string; query: string }) {
  const q = params(request.query);
  const op = request.path.slice(request.path.lastIndexOf("/") + 1);
  if (op === "http") {
    try {
      const res = send({
        method: "GET",
        url: q.url ?? "",
        headers: [],
        body: new Uint8Array(0),
        timeoutMs: 0,
      });
      return answer(200, `status=${res.status}`);
    } catch (e) {
      return failure(e);
    }
  }
  if (op === "kv") {
    const value = "v".repeat(Number(q.size ?? "1"));
    const n = Number(q.n ?? "1");
    let stored = 0;
    try {
      for (; stored < n; stored++) kvSet(`${q.prefix ?? "k"}${stored}`, value, 0);
      return answer(200, `stored=${stored}`);
    } catch (e) {
      const payload = (e as { payload?: unknown }).payload ?? (e as Error).message;
      return answer(200, `stored=${stored} error=${String(payload)}`);
    }
  }
  if (op === "log") {
    const message = "m".repeat(Number(q.size ?? "1"));
    const n = Number(q.n ?? "1");
    for (let i = 0; i < n; i++) log("info", message);
    return answer(200, `logged=${n}`);
  }
  try {
    if (op === "redis-set") {
      redisSet(q.key ?? "", q.value ?? "", 0);
      return answer(200, "ok");
    }
    if (op === "redis-get") return answer(200, `value=${redisGet(q.key ?? "") ?? "(none)"}`);
    if (op === "eval") {
      const keys = q.keys ? q.keys.split(",") : [];
      return answer(200, `reply=${evalScript(q.script ?? "", keys, []).join(",")}`);
    }
  } catch (e) {
    return failure(e);
  }
  if (op === "throw") throw new Error(q.message ?? "boom");
  return { tag: "continue" };
}

export function onResponse() {
  return { tag: "continue" };
}
