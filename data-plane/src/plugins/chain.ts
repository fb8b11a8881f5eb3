/**
 * A route's ordered plugins, run in the request_filter phase: each sees the request as the previous
 * ones left it, and may let it through, change its headers or path, answer it, or deny it.
 * Synchronous guests finish within the call (no promise, no extra tick); a guest that waits on an
 * async import (Redis, http-request) makes the chain return a promise.
 */
import { countCall, type PluginInstance, type PluginRuntime } from "./host.ts";

/** The request as the engine has parsed it; the chain edits it in place. */
export interface FilterableRequest {
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly query: string;
  readonly rawNames: string[];
  readonly names: string[];
  readonly values: string[];
  /** The target sent upstream (path and query). */
  originForm: string;
}

/** A response the engine sends instead of proxying. */
export interface PluginReply {
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Uint8Array;
  /** Set when the gateway, not the guest, wrote the body: the `x-agw-error` code. */
  readonly error?: "plugin_denied" | "plugin_failed";
  readonly message?: string;
}

export type FilterResult = PluginReply | undefined;

interface ChainEntry {
  readonly plugin: PluginRuntime;
  /** The plugin's config with the route's merged over it, as the guest's config import returns it. */
  readonly configJson: string;
}

type Headers = [string, string][];

interface Mutation {
  setHeaders: Headers;
  removeHeaders: string[];
  path?: string | undefined;
}

type Action =
  | { tag: "continue" }
  | { tag: "mutate"; val: Mutation }
  | { tag: "respond"; val: { status: number; headers: Headers; body: Uint8Array } }
  | { tag: "deny"; val: number };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;
/** Framing and routing fields a guest may not change: the engine owns them. */
const RESERVED = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "host",
  "upgrade",
  "te",
  "trailer",
]);

class GuestError extends Error {}

function checkHeader(name: string, value: string): void {
  if (!TOKEN.test(name) || !FIELD_VALUE.test(value))
    throw new GuestError(`invalid header from guest: ${name}`);
  if (RESERVED.has(name.toLowerCase())) throw new GuestError(`guest may not set ${name}`);
}

function applyMutation(req: FilterableRequest, m: Mutation): void {
  for (const name of m.removeHeaders) removeHeader(req, name.toLowerCase());
  for (const [name, value] of m.setHeaders) {
    checkHeader(name, value);
    const lower = name.toLowerCase();
    removeHeader(req, lower);
    req.rawNames.push(name);
    req.names.push(lower);
    req.values.push(value);
  }
  if (m.path !== undefined) {
    if (!ORIGIN_FORM.test(m.path)) throw new GuestError("invalid path from guest");
    req.originForm = m.path;
  }
}

function removeHeader(req: FilterableRequest, lower: string): void {
  if (RESERVED.has(lower)) throw new GuestError(`guest may not remove ${lower}`);
  for (let i = req.names.length - 1; i >= 0; i--) {
    if (req.names[i] === lower) {
      req.names.splice(i, 1);
      req.rawNames.splice(i, 1);
      req.values.splice(i, 1);
    }
  }
}

function headerList(req: FilterableRequest): Headers {
  const out: Headers = new Array(req.names.length);
  for (let i = 0; i < req.names.length; i++) out[i] = [req.names[i] as string, req.values[i] as string];
  return out;
}

function failed(plugin: PluginRuntime, reason: string): FilterResult {
  plugin.reportFailure(reason);
  if (plugin.spec.failOpen) return undefined;
  return {
    status: plugin.spec.failureStatus,
    headers: [],
    body: new Uint8Array(0),
    error: "plugin_failed",
    message: `plugin ${plugin.spec.name} failed`,
  };
}

export class PluginChain {
  readonly entries: readonly ChainEntry[];

  constructor(entries: readonly ChainEntry[]) {
    this.entries = entries;
  }

  /** Runs the request_filter phase; undefined = proxy the (possibly changed) request. */
  requestFilter(
    req: FilterableRequest,
    clientIp: string,
    route: string,
    requestId: string,
  ): FilterResult | Promise<FilterResult> {
    return this.runFrom(0, req, clientIp, { route, requestId });
  }

  private runFrom(
    start: number,
    req: FilterableRequest,
    clientIp: string,
    ctx: { route: string; requestId: string },
  ): FilterResult | Promise<FilterResult> {
    const entries = this.entries;
    for (let k = start; k < entries.length; k++) {
      const entry = entries[k] as ChainEntry;
      const r = this.callOne(entry, req, clientIp, ctx);
      if (r instanceof Promise) {
        return r.then((v) => (v === CONTINUE ? this.runFrom(k + 1, req, clientIp, ctx) : v));
      }
      if (r !== CONTINUE) return r;
    }
    return undefined;
  }

  private callOne(
    entry: ChainEntry,
    req: FilterableRequest,
    clientIp: string,
    ctx: { route: string; requestId: string },
  ): FilterResult | typeof CONTINUE | Promise<FilterResult | typeof CONTINUE> {
    const plugin = entry.plugin;
    const got = plugin.acquire();
    if (got instanceof Promise) return got.then((i) => this.invoke(entry, i, req, clientIp, ctx));
    return this.invoke(entry, got, req, clientIp, ctx);
  }

  private invoke(
    entry: ChainEntry,
    inst: PluginInstance,
    req: FilterableRequest,
    clientIp: string,
    ctx: { route: string; requestId: string },
  ): FilterResult | typeof CONTINUE | Promise<FilterResult | typeof CONTINUE> {
    const plugin = entry.plugin;
    const started = performance.now();
    inst.state.configJson = entry.configJson;
    inst.state.uncaught = "";
    plugin.refuel(inst);
    const request = {
      method: req.method,
      host: req.host,
      path: req.path,
      query: req.query,
      clientIp,
      headers: headerList(req),
      body: undefined,
    };
    let out: unknown;
    try {
      out = inst.guest.exports.onRequest(request, ctx);
    } catch (e) {
      return this.onFailure(plugin, inst, e, started);
    }
    if (out instanceof Promise) {
      return out.then(
        (action) => this.onAction(plugin, inst, action as Action, req, started),
        (e) => this.onFailure(plugin, inst, e, started),
      );
    }
    return this.onAction(plugin, inst, out as Action, req, started);
  }

  private onAction(
    plugin: PluginRuntime,
    inst: PluginInstance,
    action: Action,
    req: FilterableRequest,
    started: number,
  ): FilterResult | typeof CONTINUE {
    plugin.release(inst);
    const s = plugin.stats;
    countCall(s, (performance.now() - started) / 1000);
    try {
      switch (action.tag) {
        case "continue":
          return CONTINUE;
        case "mutate":
          applyMutation(req, action.val);
          return CONTINUE;
        case "respond": {
          const { status, headers, body } = action.val;
          if (status < 200 || status > 599) throw new GuestError(`invalid status ${status} from guest`);
          for (const [n, v] of headers) checkHeader(n, v);
          return { status, headers, body };
        }
        case "deny": {
          const status = action.val >= 400 && action.val <= 599 ? action.val : 403;
          return {
            status,
            headers: [],
            body: new Uint8Array(0),
            error: "plugin_denied",
            message: `denied by plugin ${plugin.spec.name}`,
          };
        }
      }
    } catch (e) {
      s.errors++;
      return failed(plugin, (e as Error).message);
    }
  }

  private onFailure(plugin: PluginRuntime, inst: PluginInstance, e: unknown, started: number): FilterResult {
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
}

const CONTINUE = Symbol("continue");
