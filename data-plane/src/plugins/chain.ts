/**
 * A route's ordered plugins, run in two phases. request_filter: each plugin, in the route's order,
 * sees the request as the previous ones left it, and may let it through, change its headers or path,
 * answer it, or deny it. response_filter (plugins with `onResponse`): in the reverse order, each sees
 * the upstream response and may change its status and headers or replace it. Both phases go through
 * one call path (instance, fuel, failure policy, header checks).
 *
 * Bodies: a plugin that asks for the request (or response) body gets it whole, up to its own
 * `bodyLimit`; past it, its `overLimit` policy answers (413 / 502) or skips the plugin for that
 * exchange. A plugin that did not ask gets none, whatever the others asked for.
 *
 * Synchronous guests finish within the call (no promise, no extra tick); a guest that waits on an
 * async import (Redis, http-request) makes the phase return a promise.
 */
import { AGW_ERRORS, type AgwErrorCode } from "../engine/errors.ts";
import {
  type BodyNeed,
  type BufferedBody,
  type FilterableRequest,
  type FilterableResponse,
  type FilterResult,
  OVER_LIMIT,
  type PluginReply,
  type RoutePlugins,
} from "../runtime/types.ts";
import { countCall, type PluginInstance, type PluginRuntime } from "./host.ts";

export {
  type BodyNeed,
  type BufferedBody,
  type FilterableRequest,
  type FilterableResponse,
  type FilterResult,
  OVER_LIMIT,
  type PluginReply,
} from "../runtime/types.ts";

interface ChainEntry {
  readonly plugin: PluginRuntime;
  /** The plugin's config with the route's merged over it, as the guest's config import returns it. */
  readonly configJson: string;
}

type Headers = [string, string][];

interface LocalResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/**
 * What a guest returns, in either phase and either contract version: 0.2.0's `action` and
 * `response-action`, 0.1.0's `action` (whose on-response `deny` and path-less `mutate` keep their
 * 0.1.0 meaning). Each phase checks the cases it allows.
 */
interface Mutation {
  setHeaders: Headers;
  removeHeaders: string[];
  /** Request side only. */
  path?: string | undefined;
  /** Response side only (0.2.0). */
  status?: number | undefined;
}

type Action =
  | { tag: "continue" }
  | { tag: "mutate"; val: Mutation }
  | { tag: "respond"; val: LocalResponse }
  | { tag: "deny"; val: number };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;
/** Framing and routing fields a guest may not see changed by it, in either direction: the engine owns them. */
const RESERVED = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "host",
  "upgrade",
  "te",
  "trailer",
]);
/** Fields of the upstream response a guest does not see (they describe the upstream hop's framing). */
const HOP_FIELDS = new Set([
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "upgrade",
]);

class GuestError extends Error {}

function checkHeader(name: string, value: string): void {
  if (!TOKEN.test(name) || !FIELD_VALUE.test(value))
    throw new GuestError(`invalid header from guest: ${name}`);
  if (RESERVED.has(name.toLowerCase())) throw new GuestError(`guest may not set ${name}`);
}

/** The header fields both the request and the response are edited through. */
interface HeaderFields {
  readonly rawNames: string[];
  readonly names: string[];
  readonly values: string[];
}

/** Checks every change before making any, so a refused action leaves the message as it was (failOpen). */
function applyHeaders(h: HeaderFields, set: Headers, remove: string[]): void {
  for (const [name, value] of set) checkHeader(name, value);
  for (const name of remove)
    if (RESERVED.has(name.toLowerCase())) throw new GuestError(`guest may not remove ${name}`);
  for (const name of remove) removeHeader(h, name.toLowerCase());
  for (const [name, value] of set) {
    const lower = name.toLowerCase();
    removeHeader(h, lower);
    h.rawNames.push(name);
    h.names.push(lower);
    h.values.push(value);
  }
}

function removeHeader(h: HeaderFields, lower: string): void {
  for (let i = h.names.length - 1; i >= 0; i--) {
    if (h.names[i] === lower) {
      h.names.splice(i, 1);
      h.rawNames.splice(i, 1);
      h.values.splice(i, 1);
    }
  }
}

function headerList(h: HeaderFields, skip?: ReadonlySet<string>): Headers {
  const out: Headers = [];
  for (let i = 0; i < h.names.length; i++) {
    const name = h.names[i] as string;
    if (skip?.has(name)) continue;
    out.push([name, h.values[i] as string]);
  }
  return out;
}

function checkedReply(r: LocalResponse): PluginReply {
  const { status, headers, body } = r;
  if (status < 200 || status > 599) throw new GuestError(`invalid status ${status} from guest`);
  for (const [n, v] of headers) checkHeader(n, v);
  return { status, headers, body };
}

function denied(plugin: PluginRuntime, status: number): PluginReply {
  return {
    status: status >= 400 && status <= 599 ? status : 403,
    headers: [],
    body: new Uint8Array(0),
    error: AGW_ERRORS.AGW_ERR_PLUGIN_DENIED,
    message: `denied by plugin ${plugin.spec.name}`,
  };
}

function failed(plugin: PluginRuntime, reason: string): FilterResult {
  plugin.reportFailure(reason);
  if (plugin.spec.failOpen) return undefined;
  return {
    status: plugin.spec.failureStatus,
    headers: [],
    body: new Uint8Array(0),
    error: AGW_ERRORS.AGW_ERR_PLUGIN_FAILED,
    message: `plugin ${plugin.spec.name} failed`,
  };
}

const NO_BODY = /* none */ undefined;
const NO_STATUS_CHANGE = new Set([204, 304]);

/** One phase: which plugins run, how the guest is called, what its action may do. */
interface Phase<T> {
  /** Whether the plugin wants this phase's body. */
  wantsBody(plugin: PluginRuntime): boolean;
  /** Status and code when a body is over a plugin's limit and its policy is `reject`. */
  readonly tooLarge: { status: number; code: AgwErrorCode; what: string };
  call(inst: PluginInstance, target: T, body: Uint8Array | undefined, ctx: CallContext): unknown;
  /** Applies a `mutate` action to `target`; throws GuestError on a change the host refuses. */
  mutate(m: Mutation, target: T): void;
}

interface CallContext {
  readonly route: string;
  readonly requestId: string;
  readonly clientIp: string;
}

const REQUEST_PHASE: Phase<FilterableRequest> = {
  wantsBody: (p) => p.spec.requestBody,
  tooLarge: { status: 413, code: AGW_ERRORS.AGW_ERR_REQUEST_BODY_TOO_LARGE, what: "request" },
  call(inst, req, body, ctx) {
    const request = {
      method: req.method,
      host: req.host,
      path: req.path,
      query: req.query,
      clientIp: ctx.clientIp,
      headers: headerList(req),
      body,
    };
    return inst.guest.exports.onRequest(request, { route: ctx.route, requestId: ctx.requestId });
  },
  mutate(m, req) {
    if (m.path !== undefined && !ORIGIN_FORM.test(m.path)) throw new GuestError("invalid path from guest");
    applyHeaders(req, m.setHeaders, m.removeHeaders);
    if (m.path !== undefined) req.originForm = m.path;
  },
};

const RESPONSE_PHASE: Phase<FilterableResponse> = {
  wantsBody: (p) => p.spec.responseBody,
  tooLarge: { status: 502, code: AGW_ERRORS.AGW_ERR_RESPONSE_BODY_TOO_LARGE, what: "response" },
  call(inst, resp, body, ctx) {
    const response = { status: resp.status, headers: headerList(resp, HOP_FIELDS), body };
    return inst.guest.exports.onResponse(response, { route: ctx.route, requestId: ctx.requestId });
  },
  mutate(m, resp) {
    // 0.1.0's mutation has a path (ignored here, as 0.1.0 documented) and no status.
    if (m.status !== undefined && m.status !== resp.status) {
      const s = m.status;
      if (s < 200 || s > 599 || NO_STATUS_CHANGE.has(s) || NO_STATUS_CHANGE.has(resp.status))
        throw new GuestError(`guest may not change status ${resp.status} to ${s}`);
    }
    applyHeaders(resp, m.setHeaders, m.removeHeaders);
    if (m.status !== undefined) resp.status = m.status;
  },
};

/**
 * Applies an action to `target`: CONTINUE, or a reply that ends the phase; throws GuestError on
 * an action the host refuses. `deny` reaches the response phase only from 0.1.0 guests, whose
 * documented meaning (replace the response) it keeps.
 */
function applyAction<T>(phase: Phase<T>, plugin: PluginRuntime, action: Action, target: T): Step {
  switch (action.tag) {
    case "continue":
      return CONTINUE;
    case "mutate":
      phase.mutate(action.val, target);
      return CONTINUE;
    case "respond":
      return checkedReply(action.val);
    case "deny":
      return denied(plugin, action.val);
  }
  throw new GuestError("invalid action from guest");
}

export class PluginChain implements RoutePlugins {
  readonly entries: readonly ChainEntry[];
  /** Some plugin's on-request wants the request body. */
  readonly requestBody: BodyNeed | null;
  /** Some plugin has on-response enabled. */
  readonly responsePhase: boolean;
  /** Some plugin's on-response wants the response body. */
  readonly responseBody: BodyNeed | null;
  /** The plugins with on-response, in reverse route order. */
  private readonly responseEntries: readonly ChainEntry[];

  constructor(entries: readonly ChainEntry[]) {
    this.entries = entries;
    this.responseEntries = entries.filter((e) => e.plugin.spec.onResponse).reverse();
    this.requestBody = bodyNeed(entries, REQUEST_PHASE);
    this.responsePhase = this.responseEntries.length > 0;
    this.responseBody = bodyNeed(this.responseEntries, RESPONSE_PHASE);
  }

  /**
   * Runs the request_filter phase; undefined = proxy the (possibly changed) request. `body`: the
   * request body the engine buffered for `requestBody` (undefined: not read).
   */
  requestFilter(
    req: FilterableRequest,
    clientIp: string,
    route: string,
    requestId: string,
    body?: BufferedBody,
  ): FilterResult | Promise<FilterResult> {
    return runFrom(this.entries, 0, REQUEST_PHASE, req, body, { route, requestId, clientIp });
  }

  /**
   * Runs the response_filter phase (plugins with on-response, in reverse route order): edits `resp`
   * in place, or returns a reply that replaces the upstream response. `body`: the response body the
   * engine buffered for `responseBody` (undefined: not read).
   */
  responseFilter(
    resp: FilterableResponse,
    clientIp: string,
    route: string,
    requestId: string,
    body?: BufferedBody,
  ): FilterResult | Promise<FilterResult> {
    return runFrom(this.responseEntries, 0, RESPONSE_PHASE, resp, body, { route, requestId, clientIp });
  }
}

function bodyNeed(entries: readonly ChainEntry[], phase: Phase<never>): BodyNeed | null {
  let limit = -1;
  for (const e of entries) if (phase.wantsBody(e.plugin)) limit = Math.max(limit, e.plugin.spec.bodyLimit);
  return limit < 0 ? null : { limit };
}

function runFrom<T>(
  entries: readonly ChainEntry[],
  start: number,
  phase: Phase<T>,
  target: T,
  body: BufferedBody | undefined,
  ctx: CallContext,
): FilterResult | Promise<FilterResult> {
  for (let k = start; k < entries.length; k++) {
    const entry = entries[k] as ChainEntry;
    const plugin = entry.plugin;
    let given: Uint8Array | undefined = NO_BODY;
    if (phase.wantsBody(plugin) && body !== undefined) {
      if (body === OVER_LIMIT || body.length > plugin.spec.bodyLimit) {
        if (plugin.spec.overLimit === "skip") continue;
        const t = phase.tooLarge;
        return {
          status: t.status,
          headers: [],
          body: new Uint8Array(0),
          error: t.code,
          message: `${t.what} body larger than plugin ${plugin.spec.name}'s limit of ${plugin.spec.bodyLimit} bytes`,
        };
      }
      given = body;
    }
    const r = callOne(entry, phase, target, given, ctx);
    if (r instanceof Promise)
      return r.then((v) => (v === CONTINUE ? runFrom(entries, k + 1, phase, target, body, ctx) : v));
    if (r !== CONTINUE) return r;
  }
  return undefined;
}

type Step = FilterResult | typeof CONTINUE;

function callOne<T>(
  entry: ChainEntry,
  phase: Phase<T>,
  target: T,
  body: Uint8Array | undefined,
  ctx: CallContext,
): Step | Promise<Step> {
  const got = entry.plugin.acquire();
  if (got instanceof Promise) return got.then((i) => invoke(entry, i, phase, target, body, ctx));
  return invoke(entry, got, phase, target, body, ctx);
}

function invoke<T>(
  entry: ChainEntry,
  inst: PluginInstance,
  phase: Phase<T>,
  target: T,
  body: Uint8Array | undefined,
  ctx: CallContext,
): Step | Promise<Step> {
  const plugin = entry.plugin;
  const started = performance.now();
  plugin.beginCall(inst, entry.configJson);
  let out: unknown;
  try {
    out = phase.call(inst, target, body, ctx);
  } catch (e) {
    return onFailure(plugin, inst, e, started);
  }
  if (out instanceof Promise) {
    return out.then(
      (action) => onAction(plugin, inst, phase, action as Action, target, started),
      (e) => onFailure(plugin, inst, e, started),
    );
  }
  return onAction(plugin, inst, phase, out as Action, target, started);
}

function onAction<T>(
  plugin: PluginRuntime,
  inst: PluginInstance,
  phase: Phase<T>,
  action: Action,
  target: T,
  started: number,
): Step {
  plugin.release(inst);
  const s = plugin.stats;
  countCall(s, (performance.now() - started) / 1000);
  try {
    return applyAction(phase, plugin, action, target);
  } catch (e) {
    s.errors++;
    return failed(plugin, (e as Error).message);
  }
}

function onFailure(plugin: PluginRuntime, inst: PluginInstance, e: unknown, started: number): FilterResult {
  const s = plugin.stats;
  countCall(s, (performance.now() - started) / 1000);
  s.errors++;
  const timedOut = plugin.outOfFuel(inst);
  if (timedOut) s.timeouts++;
  plugin.discard(inst);
  const error = String((e as Error)?.message ?? e);
  const uncaught = inst.state.uncaught;
  return failed(
    plugin,
    timedOut ? "ran out of fuel" : uncaught !== "" ? `${uncaught} (then ${error})` : error,
  );
}

const CONTINUE = Symbol("continue");
