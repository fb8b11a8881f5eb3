/** Header helpers shared by the HTTP/1.1 and HTTP/2 sides of the engine. */
import type net from "node:net";
import type { HeaderOps } from "../runtime/types.ts";

/** Connection-specific fields: never forwarded, in either direction (RFC 9110 §7.6.1). */
export const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
]);

export function hasName(list: readonly string[] | null, name: string): boolean {
  return list?.includes(name) === true;
}

/** Whether route ops replace or remove `name` (so the original/generated value must not be sent). */
export function opsDrop(ops: HeaderOps, name: string): boolean {
  const rm = ops.remove;
  for (let i = 0; i < rm.length; i++) if (rm[i] === name) return true;
  const set = ops.set;
  for (let i = 0; i < set.length; i++)
    if ((set[i] as readonly [string, string])[0].toLowerCase() === name) return true;
  return false;
}

export function opsAppend(ops: HeaderOps): string {
  let s = "";
  for (const [n, v] of ops.set) s += `${n}: ${v}\r\n`;
  for (const [n, v] of ops.add) s += `${n}: ${v}\r\n`;
  return s;
}

export function clientAddress(socket: net.Socket): string {
  const a = socket.remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}
