/**
 * Graceful drain of one worker's proxies: no more keep-alive (idle connections close now, busy ones
 * after their response, HTTP/2 sessions get GOAWAY), then wait for the connections to finish, up to
 * a deadline after which whatever is left (long requests, WebSocket tunnels) is cut.
 */
import type { PortProxy } from "../listeners.ts";

export function openConnections(proxies: Iterable<PortProxy>): number {
  let n = 0;
  for (const p of proxies) n += p.connectionCount;
  return n;
}

/** Resolves with the number of connections cut at the deadline (0: everything finished in time). */
export async function drainProxies(proxies: Iterable<PortProxy>, deadlineMs: number): Promise<number> {
  for (const p of proxies) p.shutdown();
  const deadline = Date.now() + deadlineMs;
  while (openConnections(proxies) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const cut = openConnections(proxies);
  for (const p of proxies) p.destroyAll();
  return cut;
}
