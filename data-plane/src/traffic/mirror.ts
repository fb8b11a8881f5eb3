/**
 * Request mirroring (docs/traffic/mirroring.md): a fire-and-forget copy of a request to a shadow
 * cluster. The copy never touches the client's exchange: it is sent on its own node:http client,
 * its answer is read and dropped, its failures are counted and forgotten. At most MAX_IN_FLIGHT
 * copies are outstanding per thread serving traffic; beyond that copies are dropped, so a slow or
 * dead mirror costs bounded memory and sockets. A body is copied only when all of it arrived with the head and
 * fits `maxBodyBytes`: the engine streams bodies and never waits to buffer one for a mirror.
 */
import http from "node:http";
import https from "node:https";
import type { MirrorPolicy } from "@agw/core/gen/agw/v1/route_pb.js";
import { HOP_BY_HOP } from "../engine/hop-by-hop.ts";
import type { ClusterRuntime, HeaderOps, MirrorInput, RequestMirror } from "../runtime/types.ts";

export type { MirrorInput };

import type { RequestRewrite } from "./rewrite.ts";

/** Outstanding mirror requests per thread serving traffic (module state: one per worker). */
export const MAX_IN_FLIGHT = 256;
/** A mirror request still unanswered after this is abandoned. */
const MIRROR_TIMEOUT_MS = 10_000;

export const mirrorCounters = {
  /** Copies sent. */
  sent: 0,
  /** Copies the mirror answered (any status). */
  answered: 0,
  /** Copies that failed (connect error, reset, timeout). */
  failed: 0,
  /** Requests not copied: too many copies in flight. */
  dropped: 0,
  /** Requests not copied: the body was streamed, chunked or over maxBodyBytes. */
  bodySkipped: 0,
};

let inFlight = 0;
const httpAgent = new http.Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT });
const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT });

export class Mirror implements RequestMirror {
  readonly cluster: string;
  private readonly fraction: number;
  private readonly maxBodyBytes: number;
  private readonly ops: HeaderOps;
  private readonly rewrite: RequestRewrite | null;

  constructor(policy: MirrorPolicy, ops: HeaderOps, rewrite: RequestRewrite | null) {
    if (policy.cluster === "") throw new Error("mirror needs a cluster");
    if (!(policy.percent >= 0 && policy.percent <= 100)) throw new Error("mirror percent must be 0-100");
    this.cluster = policy.cluster;
    this.fraction = policy.percent / 100;
    this.maxBodyBytes = policy.maxBodyBytes;
    this.ops = ops;
    this.rewrite = rewrite;
  }

  /**
   * Maybe sends a copy of `req`; `received` holds the bytes that followed the head (the body start).
   * Returns at once; nothing it does can fail or delay the caller.
   */
  copy(
    req: MirrorInput,
    received: Buffer | null,
    clientIp: string,
    clusters: ReadonlyMap<string, ClusterRuntime>,
  ): void {
    if (this.fraction < 1 && Math.random() >= this.fraction) return;
    let body: Buffer | null = null;
    if (req.chunked) {
      mirrorCounters.bodySkipped++;
      return;
    }
    if (req.contentLength > 0) {
      if (req.contentLength > this.maxBodyBytes || received === null || received.length < req.contentLength) {
        mirrorCounters.bodySkipped++;
        return;
      }
      body = received.subarray(0, req.contentLength);
    }
    if (inFlight >= MAX_IN_FLIGHT) {
      mirrorCounters.dropped++;
      return;
    }
    const cluster = clusters.get(this.cluster);
    const ep = cluster?.pickEndpoint(req, clientIp);
    if (cluster === undefined || ep === undefined) {
      mirrorCounters.failed++;
      return;
    }
    const headers: Record<string, string | string[]> = {};
    const add = (name: string, value: string) => {
      const had = headers[name];
      headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
    };
    const ops = this.ops;
    const dropped = (name: string) => ops.remove.includes(name) || ops.set.some(([n]) => n === name);
    let xff = "";
    for (let i = 0; i < req.names.length; i++) {
      const name = req.names[i] as string;
      const value = req.values[i] as string;
      if (HOP_BY_HOP.has(name) || name === "host" || name === "content-length" || dropped(name)) continue;
      if (name === "x-forwarded-for") xff = xff === "" ? value : `${xff}, ${value}`;
      else add(name, value);
    }
    for (const [n, v] of ops.set) add(n, v);
    for (const [n, v] of ops.add) add(n, v);
    headers["x-forwarded-for"] = xff === "" ? clientIp : `${xff}, ${clientIp}`;
    // Envoy's convention: the shadow's Host says it is a copy.
    const host = this.rewrite === null ? req.rawHost : this.rewrite.host(req, ep);
    headers.host = shadowHost(host === "" ? ep.key : host);
    if (body !== null) headers["content-length"] = String(body.length);
    const path = this.rewrite === null ? req.originForm : this.rewrite.target(req);
    send(cluster, ep.host, ep.port, req.method, path, headers, body);
  }
}

function shadowHost(host: string): string {
  const end = host.startsWith("[") ? host.indexOf("]") + 1 : 0;
  const colon = host.indexOf(":", end);
  return colon < 0 ? `${host}-shadow` : `${host.slice(0, colon)}-shadow${host.slice(colon)}`;
}

function send(
  cluster: ClusterRuntime,
  host: string,
  port: number,
  method: string,
  path: string,
  headers: Record<string, string | string[]>,
  body: Buffer | null,
): void {
  const tls = cluster.tls;
  let req: http.ClientRequest;
  try {
    req = tls
      ? https.request({
          host,
          port,
          method,
          path,
          headers,
          agent: httpsAgent,
          servername: tls.sni !== "" ? tls.sni : host,
          ...({ secureContext: tls.secureContext } as https.RequestOptions),
        })
      : http.request({
          host,
          port,
          method,
          path,
          headers,
          agent: httpAgent,
        });
  } catch {
    // A header node:http refuses (it is stricter than our parser): this copy is not sent.
    mirrorCounters.failed++;
    return;
  }
  inFlight++;
  mirrorCounters.sent++;
  let settled = false;
  const settle = (ok: boolean) => {
    if (settled) return;
    settled = true;
    inFlight--;
    if (ok) mirrorCounters.answered++;
    else mirrorCounters.failed++;
  };
  req.setTimeout(MIRROR_TIMEOUT_MS, () => req.destroy(new Error("mirror timeout")));
  req.on("error", () => settle(false));
  req.on("response", (res) => {
    res.on("error", () => settle(false));
    res.on("end", () => settle(true));
    res.on("close", () => settle(res.complete));
    res.resume();
  });
  req.on("close", () => settle(false));
  req.end(body ?? undefined);
}
