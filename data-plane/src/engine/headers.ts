/** Header helpers shared by the HTTP/1.1 and HTTP/2 sides of the engine. */
import type http2 from "node:http2";
import type { Endpoint, HeaderOps } from "../runtime/types.ts";
import type { RequestRewrite } from "../traffic/rewrite.ts";
import type { FieldList } from "./fields.ts";
import { H2_CONNECTION_FIELDS, HOP_BY_HOP } from "./hop-by-hop.ts";
import type { RequestHead } from "./http1-parser.ts";

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

/** What an upstream request says of where it came from (an Exchange provides it). */
export interface Forwarding {
  /** Appended to X-Forwarded-For: the address the gateway saw (Envoy's use_remote_address). */
  readonly peerIp: string;
  readonly requestId: string;
  /** The X-Forwarded-Proto value. */
  readonly forwardedProto: string;
  /** The X-Forwarded-Client-Cert value, "" when there is none. */
  readonly clientCert: string;
}

/** What the route says of the upstream request's head. */
export interface RouteHeaders {
  readonly requestHeaders: HeaderOps;
  readonly rewrite?: RequestRewrite | null;
}

// How the request builders below treat a client's field.
const FIELD_PASS = 0;
/** X-Forwarded-For: collected, then sent once with the client's address appended. */
const FIELD_XFF = 1;
/** Set by the gateway itself: X-Forwarded-Proto/Host/Client-Cert, and traceparent when tracing. */
const FIELD_REPLACED = 2;

function forwardedRole(name: string, tracing: boolean): number {
  switch (name) {
    case "x-forwarded-for":
      return FIELD_XFF;
    case "x-forwarded-proto":
    case "x-forwarded-host":
    case "x-forwarded-client-cert":
      return FIELD_REPLACED;
    case "traceparent":
      return tracing ? FIELD_REPLACED : FIELD_PASS;
    default:
      return FIELD_PASS;
  }
}

/**
 * The HTTP/1.1 head sent upstream for one request, whichever protocol it arrived on: hop-by-hop
 * fields dropped, X-Forwarded-* and x-request-id added, the rewrite and the route's header
 * operations applied. `clientCert` and `traceparent` are "" when there is none; `upgrade` is the
 * protocol of an Upgrade request, "" otherwise.
 */
export function upstreamHead(
  h: RequestHead,
  route: RouteHeaders,
  ep: Endpoint,
  x: Forwarding,
  traceparent: string,
  chunked: boolean,
  upgrade: string,
): string {
  const ops = route.requestHeaders;
  const rw = route.rewrite ?? null;
  const { peerIp, forwardedProto, clientCert, requestId } = x;
  const host = rw === null ? h.rawHost : rw.host(h, ep);
  let s = `${h.method} ${rw === null ? h.originForm : rw.target(h)} HTTP/1.1\r\n`;
  let xff = "";
  let sawHost = false;
  const names = h.names;
  const conn = h.connTokens;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    if (HOP_BY_HOP.has(name) || hasName(conn, name)) continue;
    const role = forwardedRole(name, traceparent !== "");
    if (role === FIELD_XFF) {
      xff = xff === "" ? (h.values[i] as string) : `${xff}, ${h.values[i]}`;
      continue;
    }
    if (role === FIELD_REPLACED) continue;
    if (name === "host") {
      // rawHost may come from an absolute-form target, which overrides the field.
      if (!opsDrop(ops, name)) s += `${h.rawNames[i]}: ${host}\r\n`;
      sawHost = true;
      continue;
    }
    if (!opsDrop(ops, name)) s += `${h.rawNames[i]}: ${h.values[i]}\r\n`;
  }
  if (!sawHost && !opsDrop(ops, "host")) s += `host: ${host !== "" ? host : ep.key}\r\n`;
  if (!opsDrop(ops, "x-forwarded-for"))
    s += `x-forwarded-for: ${xff === "" ? peerIp : `${xff}, ${peerIp}`}\r\n`;
  if (!opsDrop(ops, "x-forwarded-proto")) s += `x-forwarded-proto: ${forwardedProto}\r\n`;
  if (h.rawHost !== "" && !opsDrop(ops, "x-forwarded-host")) s += `x-forwarded-host: ${h.rawHost}\r\n`;
  if (clientCert !== "" && !opsDrop(ops, "x-forwarded-client-cert"))
    s += `x-forwarded-client-cert: ${clientCert}\r\n`;
  if (h.requestId === "" && !opsDrop(ops, "x-request-id")) s += `x-request-id: ${requestId}\r\n`;
  if (traceparent !== "") s += `traceparent: ${traceparent}\r\n`;
  s += opsAppend(ops);
  if (chunked) s += "transfer-encoding: chunked\r\n";
  if (upgrade !== "") s += `upgrade: ${upgrade}\r\nconnection: upgrade\r\n`;
  return `${s}\r\n`;
}

export function addH2Field(out: http2.OutgoingHttpHeaders, name: string, value: string): void {
  const cur = out[name];
  if (cur === undefined) out[name] = value;
  else if (Array.isArray(cur)) cur.push(value);
  else out[name] = [String(cur), value];
}

/** A field list into HTTP/2 headers (fields HTTP/2 forbids left out; repeated names kept). */
export function h2Fields(out: http2.OutgoingHttpHeaders, f: FieldList): http2.OutgoingHttpHeaders {
  const names = f.names;
  const values = f.values;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    if (!H2_CONNECTION_FIELDS.has(name)) addH2Field(out, name, values[i] as string);
  }
  return out;
}

/** Whether an HTTP/2 response (or trailer) field is passed on: not a pseudo-header, not hop-by-hop. */
export function h2ResponseFieldAllowed(name: string): boolean {
  return name.charCodeAt(0) !== 58 /* : */ && !HOP_BY_HOP.has(name);
}

/** An HTTP/1.1 request head the engine built for the upstream (upstreamHead) as HTTP/2 fields. */
export function h2UpstreamHeadersFromHttp1(h: RequestHead, scheme: string): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {
    ":method": h.method,
    ":path": h.originForm,
    ":scheme": scheme,
    ":authority": h.rawHost,
  };
  const names = h.names;
  const conn = h.connTokens;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    if (H2_CONNECTION_FIELDS.has(name) || hasName(conn, name)) continue;
    addH2Field(out, name, h.values[i] as string);
  }
  return out;
}

/**
 * The HTTP/2 request sent to an HTTP/2 upstream for an HTTP/2 request: the same fields as
 * upstreamHead() (X-Forwarded-*, x-request-id, traceparent, rewrite, route header operations), and
 * "te: trailers" when the client sent it (gRPC servers require it).
 */
export function h2UpstreamHeaders(
  h: RequestHead,
  route: RouteHeaders,
  ep: Endpoint,
  x: Forwarding,
  traceparent: string,
  scheme: string,
  teTrailers: boolean,
): http2.OutgoingHttpHeaders {
  const ops = route.requestHeaders;
  const rw = route.rewrite ?? null;
  const { peerIp, forwardedProto, clientCert, requestId } = x;
  const host = rw === null ? h.rawHost : rw.host(h, ep);
  const out: http2.OutgoingHttpHeaders = {
    ":method": h.method,
    ":path": rw === null ? h.originForm : rw.target(h),
    ":scheme": scheme,
    ":authority": opsDrop(ops, "host") ? ep.key : host !== "" ? host : ep.key,
  };
  let xff = "";
  const names = h.names;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    if (H2_CONNECTION_FIELDS.has(name)) continue;
    const role = forwardedRole(name, traceparent !== "");
    if (role === FIELD_XFF) xff = xff === "" ? (h.values[i] as string) : `${xff}, ${h.values[i]}`;
    else if (role === FIELD_PASS && !opsDrop(ops, name)) addH2Field(out, name, h.values[i] as string);
  }
  if (teTrailers) out.te = "trailers";
  if (!opsDrop(ops, "x-forwarded-for")) out["x-forwarded-for"] = xff === "" ? peerIp : `${xff}, ${peerIp}`;
  if (!opsDrop(ops, "x-forwarded-proto")) out["x-forwarded-proto"] = forwardedProto;
  if (h.rawHost !== "" && !opsDrop(ops, "x-forwarded-host")) out["x-forwarded-host"] = h.rawHost;
  if (clientCert !== "" && !opsDrop(ops, "x-forwarded-client-cert"))
    out["x-forwarded-client-cert"] = clientCert;
  if (h.requestId === "" && !opsDrop(ops, "x-request-id")) out["x-request-id"] = requestId;
  if (traceparent !== "") out.traceparent = traceparent;
  for (const [n, v] of ops.set) {
    if (n === "host") out[":authority"] = v;
    else out[n] = v;
  }
  for (const [n, v] of ops.add) if (n !== "host") addH2Field(out, n, v);
  return out;
}
