/**
 * Opens and closes the data plane's ports as listener resources come and go. Binding happens before
 * a config is swapped in (prepare), so a port that cannot be bound rejects the config with the OS
 * error while the old config keeps serving; listeners that the new config dropped are closed after
 * the swap (commit). Connections already accepted on a closed port are not cut: its handler drains
 * them (each finishes its current exchange, idle ones close now), as Envoy drains a removed listener.
 */
import net from "node:net";
import type { Logger } from "@agw/core";
import { AGW_ERRORS } from "./engine/errors.ts";
import { setProxiedSource } from "./policies/client-address.ts";
import { readProxyHeader } from "./policies/proxy-protocol.ts";
import { ResourceError } from "./runtime/build.ts";
import type { ListenerRuntime, RuntimeConfig } from "./runtime/types.ts";
import type { DownstreamTlsInfo } from "./tls/acceptor.ts";
import type { ListenerTlsRuntime } from "./tls/manager.ts";

/** A connection after accept (plain) or after its TLS handshake (`tls` set). */
export type ConnectionHandler = (socket: net.Socket, tls?: DownstreamTlsInfo) => void;

/** What serves one bound port. */
export interface ListenerHandler {
  readonly handle: ConnectionHandler;
  /** The port closed (listener removed, moved, or the data plane draining): wind its connections down. */
  readonly drain?: () => void;
}

/** Called once per bind; a listener changing protocol is bound anew, so the handler may depend on it. */
export type ConnectionHandlerFactory = (listenerName: string, listener: ListenerRuntime) => ListenerHandler;

/** What a port speaks; a listener changing it is bound anew (its handler and socket options depend on it). */
function listenerKind(l: ListenerRuntime): string {
  return l.l4?.kind ?? (l.tls === undefined ? "http" : "https");
}

interface OpenListener {
  readonly name: string;
  readonly kind: string;
  readonly address: string;
  readonly port: number;
  readonly server: net.Server;
  readonly handler: ListenerHandler;
  /** The TLS version new connections handshake with; replaced on commit, never rebinding. */
  tls: ListenerTlsRuntime | undefined;
  /** New connections start with a PROXY protocol header; replaced on commit, never rebinding. */
  proxyProtocol: ListenerRuntime["proxyProtocol"];
}

/** What serves one port's connections: the HTTP engine (HttpProxy) or an L4 proxy (l4/proxy.ts). */
export interface PortProxy {
  readonly listenerName: string;
  readonly connectionCount: number;
  handleConnection(socket: net.Socket, tls?: DownstreamTlsInfo): void;
  /** Stop keep-alive: idle connections close now, busy ones when done. */
  shutdown(): void;
  destroyAll(): void;
}

/**
 * A connection of a listener with proxyProtocol: its header first (policies/proxy-protocol.ts), then
 * the listener's usual path with the source recorded as the peer. A bad or missing header closes the
 * connection; a plain HTTP listener first answers 400 invalid_proxy_protocol, which an operator can
 * read with curl.
 */
function acceptProxied(
  socket: net.Socket,
  timeoutMs: number,
  kind: string,
  next: (socket: net.Socket) => void,
): void {
  const onError = () => socket.destroy();
  socket.on("error", onError);
  readProxyHeader(
    socket,
    timeoutMs,
    (source) => {
      socket.off("error", onError);
      if (source !== null) setProxiedSource(socket, source);
      next(socket);
      // The reader paused it; a TLS handshake takes the paused bytes itself (node:tls reads them).
      if (kind !== "https" && !socket.destroyed) socket.resume();
    },
    (reason) => {
      if (kind !== "http" || socket.destroyed) {
        socket.destroy();
        return;
      }
      const body = JSON.stringify({ error: AGW_ERRORS.AGW_ERR_INVALID_PROXY_PROTOCOL, message: reason });
      socket.end(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n" +
          `x-agw-error: ${AGW_ERRORS.AGW_ERR_INVALID_PROXY_PROTOCOL}\r\nconnection: close\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      socket.setTimeout(5_000, () => socket.destroy());
    },
  );
}

/** Proxies whose port has closed: they stay in their set only while they still have connections. */
const retired = new WeakSet<PortProxy>();

/**
 * Serves a newly bound port with `proxy`. The set holds every proxy with connections (the connection
 * gauges and the drain on SIGTERM go through it); one whose port closed leaves it after its last one.
 */
export function servePort(proxies: Set<PortProxy>, proxy: PortProxy): ListenerHandler {
  for (const p of proxies) if (retired.has(p) && p.connectionCount === 0) proxies.delete(p);
  proxies.add(proxy);
  return {
    handle: (socket, tls) => proxy.handleConnection(socket, tls),
    drain: () => {
      retired.add(proxy);
      proxy.shutdown();
    },
  };
}

function listen(server: net.Server, address: string, port: number, reusePort: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen({ host: address, port, backlog: 511, reusePort }, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

export interface ListenerManagerOptions {
  /**
   * SO_REUSEPORT: several workers bind the same address and port, and the kernel spreads new
   * connections among them (data-plane/src/workers).
   */
  readonly reusePort?: boolean;
}

export class ListenerManager {
  private readonly open = new Map<string, OpenListener>();
  private readonly handlerFor: ConnectionHandlerFactory;
  private readonly log: Logger;
  private readonly reusePort: boolean;
  /** Set by stopAccepting (drain): no port is bound again, whatever config comes. */
  private stopped = false;
  /** Connections accepted since start, over every listener. */
  accepted = 0;

  constructor(handlerFor: ConnectionHandlerFactory, log: Logger, options: ListenerManagerOptions = {}) {
    this.handlerFor = handlerFor;
    this.log = log;
    this.reusePort = options.reusePort ?? false;
  }

  /** Binds what `next` adds or moves; on failure closes what it bound and throws a ResourceError. */
  async prepare(next: RuntimeConfig): Promise<void> {
    if (this.stopped) return;
    const bound: OpenListener[] = [];
    for (const l of next.listeners.values()) {
      const current = this.open.get(l.name);
      if (
        current &&
        current.address === l.address &&
        current.port === l.port &&
        current.kind === listenerKind(l)
      )
        continue;
      if (current && current.port === l.port) this.close(current);
      try {
        bound.push(await this.bind(l));
      } catch (e) {
        for (const b of bound) this.close(b);
        throw new ResourceError(
          `agw.v1.Listener ${l.name}`,
          `cannot listen on ${l.address}:${l.port}: ${(e as Error).message}`,
        );
      }
    }
    for (const b of bound) {
      const previous = this.open.get(b.name);
      if (previous) this.close(previous);
      this.open.set(b.name, b);
      this.log.info({ listener: b.name, address: b.address, port: b.port }, "listener open");
    }
  }

  /** Closes listeners that `current` no longer has; the others handshake with its TLS settings from now on. */
  commit(current: RuntimeConfig): void {
    for (const [name, l] of this.open) {
      const next = current.listeners.get(name);
      if (next !== undefined) l.proxyProtocol = next.proxyProtocol;
      if (next?.tls !== undefined && next.tls !== l.tls) {
        next.tls.acceptor.onSecure = l.handler.handle;
        l.tls = next.tls;
        this.log.info(
          {
            listener: name,
            certificates: next.tls.certificates.map((c) => ({ name: c.name, digest: c.digest })),
          },
          "listener TLS updated",
        );
      }
      if (!next) {
        this.close(l);
        this.open.delete(name);
        this.log.info({ listener: name }, "listener closed");
      }
    }
  }

  addresses(): Array<{ name: string; address: string; port: number }> {
    return [...this.open.values()].map((l) => {
      const a = l.server.address();
      return { name: l.name, address: l.address, port: typeof a === "object" && a ? a.port : l.port };
    });
  }

  closeAll(): void {
    for (const l of this.open.values()) this.close(l);
    this.open.clear();
  }

  /** Drain: closes every port so new connections are refused; accepted ones carry on. */
  stopAccepting(): void {
    this.stopped = true;
    this.closeAll();
  }

  private async bind(l: ListenerRuntime): Promise<OpenListener> {
    const handler = this.handlerFor(l.name, l);
    const handle = handler.handle;
    // L4 listeners pass half-closes on: the client's FIN reaches the upstream, which may still answer.
    const kind = listenerKind(l);
    const onConnection = (socket: net.Socket) => {
      const tls = open.tls;
      if (tls === undefined) handle(socket);
      else tls.acceptor.accept(socket);
    };
    const server = net.createServer({ noDelay: true, allowHalfOpen: l.l4 !== undefined }, (socket) => {
      this.accepted++;
      const pp = open.proxyProtocol;
      if (pp === undefined) onConnection(socket);
      else acceptProxied(socket, pp.timeoutMs, kind, onConnection);
    });
    const open: OpenListener = {
      name: l.name,
      kind,
      address: l.address,
      port: l.port,
      server,
      handler,
      tls: l.tls,
      proxyProtocol: l.proxyProtocol,
    };
    if (l.tls) l.tls.acceptor.onSecure = handle;
    await listen(server, l.address, l.port, this.reusePort);
    server.on("error", (err) => this.log.error({ err, listener: l.name }, "listener error"));
    return open;
  }

  private close(l: OpenListener): void {
    l.server.close();
    l.handler.drain?.();
  }
}
