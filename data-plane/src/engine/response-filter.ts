/**
 * The response filter phase of an exchange (exchange.ts), whatever the upstream speaks: on-response
 * plugins see the upstream's head (and, when one asks for it, its body, read up to the chain's limit
 * and de-framed) before anything reaches the client, edit it or replace the response. Body bytes that
 * arrive while they decide are held, then go on. Only routes with on-response plugins come here.
 */
import type { BufferedBody, CompiledRoute, HeaderOps, PluginReply, RoutePlugins } from "../runtime/types.ts";
import { BodyBuffer } from "./body-buffer.ts";
import { M_CHUNKED, M_CLOSE, M_LENGTH, M_NONE } from "./body-framing.ts";
import { AGW_ERRORS } from "./errors.ts";
import type { FieldList } from "./fields.ts";
import type { ChunkedDecoder, RequestHead } from "./http1-parser.ts";

/** A chain's promise can only reject through a host bug; the request then fails closed. */
export const PLUGIN_CRASHED: PluginReply = {
  status: 500,
  headers: [],
  body: new Uint8Array(0),
  error: AGW_ERRORS.AGW_ERR_PLUGIN_FAILED,
  message: "plugin host error",
};

const EMPTY = Buffer.alloc(0);

/** What the phase needs of the exchange (Exchange implements it). */
export interface FilteredExchange {
  readonly head: RequestHead | null;
  readonly active: boolean;
  readonly clientIp: string;
  readonly requestId: string;
  readonly route: CompiledRoute | null;
  readonly fields: FieldList;
  readonly routeTimer: { disarm(): void };
  readonly resDecoder: ChunkedDecoder;
  status: number;
  resMode: number;
  resRemaining: number;
  passChunked: boolean;
  heldChunks: Buffer[] | null;
  heldEnd: number;
  resCollect: BodyBuffer | null;
  resReason: string;
  sendResponseHead(f: FieldList, ops: HeaderOps, reason: string, buf: Buffer, headLen: number): void;
  sendReply(r: PluginReply): void;
  onResponseBody(chunk: Buffer, off: number): void;
  toClient(chunk: Buffer): boolean;
  bodyOut(chunk: Buffer): boolean;
  completeResponse(): void;
  abortResponse(): void;
  dropUpstream(): void;
  pauseUpstream(): void;
  resumeUpstream(): void;
}

/**
 * response filter (+ response body filter) for the upstream's head in x.fields, x.resMode set: when
 * a plugin asks for the body, it is read first (onResponseBody → bodyOut), up to the chain's limit.
 */
export function responsePhase(
  x: FilteredExchange,
  plugins: RoutePlugins,
  reason: string,
  buf: Buffer,
  headLen: number,
): void {
  const need = plugins.responseBody;
  if (need === null || x.resMode === M_NONE) {
    filterResponse(x, plugins, x.route as CompiledRoute, reason, buf, headLen, undefined);
    return;
  }
  x.resCollect = new BodyBuffer(need.limit);
  x.resReason = reason;
  if (x.resMode === M_CHUNKED) {
    x.passChunked = false; // decoded for the plugins, then re-framed (or sized) for the client
    x.resDecoder.reset(true);
  }
  if (headLen < buf.length) collectResponse(x, buf, headLen);
}

/** Response body bytes while the plugins wait for the body; past their limit they decide. */
export function collectResponse(x: FilteredExchange, chunk: Buffer, off: number): void {
  x.onResponseBody(chunk, off);
  const c = x.resCollect;
  if (c?.over && !c.ended && x.heldChunks === null) responseCollected(x, c);
}

/** The body the plugins asked for has ended (completeResponse), or went past their limit. */
export function responseCollected(x: FilteredExchange, c: BodyBuffer): void {
  const route = x.route as CompiledRoute;
  filterResponse(x, route.plugins as RoutePlugins, route, x.resReason, EMPTY, 0, c.forPlugins());
}

function filterResponse(
  x: FilteredExchange,
  plugins: RoutePlugins,
  route: CompiledRoute,
  reason: string,
  buf: Buffer,
  headLen: number,
  body: BufferedBody | undefined,
): void {
  const head = x.head;
  const verdict = plugins.responseFilter(x.fields, x.clientIp, route.name, x.requestId, body);
  if (!(verdict instanceof Promise)) {
    afterResponseFilter(x, head, verdict, reason, buf, headLen);
    return;
  }
  x.heldChunks = [];
  x.pauseUpstream();
  verdict.then(
    (v) => afterResponseFilter(x, head, v, reason, buf, headLen),
    () => afterResponseFilter(x, head, PLUGIN_CRASHED, reason, buf, headLen),
  );
}

function afterResponseFilter(
  x: FilteredExchange,
  head: RequestHead | null,
  verdict: PluginReply | undefined,
  reason: string,
  buf: Buffer,
  headLen: number,
): void {
  if (x.head !== head || !x.active) return; // answered meanwhile (e.g. the route timeout)
  const held = x.heldChunks;
  const ended = x.heldEnd;
  const c = x.resCollect;
  x.heldChunks = null;
  x.heldEnd = 0;
  x.resCollect = null;
  if (verdict !== undefined) {
    // The plugins' answer replaces the upstream's, whose connection is not reused.
    x.routeTimer.disarm();
    x.dropUpstream();
    x.sendReply(verdict);
    return;
  }
  const f = x.fields;
  x.status = f.status;
  const ops = (x.route as CompiledRoute).responseHeaders;
  if (c?.ended === true) {
    // The whole body was read: it goes out as it came, with a Content-Length.
    const whole = c.whole();
    f.set("content-length", String(whole.length));
    x.resMode = M_LENGTH;
    x.resRemaining = whole.length;
    x.sendResponseHead(f, ops, reason, whole, 0);
    return;
  }
  const rest = held === null || held.length === 0 ? buf : Buffer.concat([buf, ...held]);
  if (c === null) x.sendResponseHead(f, ops, reason, rest, headLen);
  else {
    // Past the plugins' limit: what was read (de-framed), then the rest as it comes.
    x.sendResponseHead(f, ops, reason, EMPTY, 0);
    for (const piece of c.pieces) x.bodyOut(piece); // through the encoder when the route compresses
    if (headLen < rest.length) x.onResponseBody(rest, headLen);
  }
  if (ended === 0)
    x.resumeUpstream(); // else it closed meanwhile: the end of a close-delimited body only
  else if (x.active) ended === 1 && x.resMode === M_CLOSE ? x.completeResponse() : x.abortResponse();
}
