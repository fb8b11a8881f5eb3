/**
 * The HTTP/2 downstream's sessions: node:http2 does the framing (HPACK, flow control, stream limits),
 * and every stream is one H2Exchange (h2.ts). Connections arrive by ALPN "h2" on HTTPS listeners, as
 * h2c with prior knowledge (the HTTP/1.1 side spots the preface), or by `Upgrade: h2c`.
 */
import http2 from "node:http2";
import type net from "node:net";
import { peerAddress } from "../policies/client-address.ts";
import type { ListenerLimits } from "../runtime/types.ts";
import type { DownstreamTlsInfo } from "../tls/acceptor.ts";
import type { ProxyContext } from "./exchange.ts";
import { H2Exchange } from "./h2.ts";
import { stream1Headers, UpgradedSocket } from "./h2c-upgrade.ts";
import type { RequestHead } from "./http1-parser.ts";

/** Whether two limits give HTTP/2 sessions the same server settings. */
function sameSessionLimits(a: ListenerLimits, b: ListenerLimits): boolean {
  return (
    a === b ||
    (a.maxRequestHeaders === b.maxRequestHeaders &&
      a.idleTimeoutMs === b.idleTimeoutMs &&
      a.maxRequestsPerConnection === b.maxRequestsPerConnection &&
      a.http2MaxConcurrentStreams === b.http2MaxConcurrentStreams &&
      a.http2InitialWindowSize === b.http2InitialWindowSize &&
      a.http2MaxHeaderListBytes === b.http2MaxHeaderListBytes)
  );
}

/**
 * The HTTP/2 side of one HttpProxy (one listener): never-listening Http2Servers fed accepted sockets.
 * A server's SETTINGS are fixed when it is created, so a push that changes the listener's limits gets a
 * new server for new connections; sessions of the previous one carry on with the settings they had.
 */
export class H2Downstream {
  readonly proxy: ProxyContext;
  private server: http2.Http2Server;
  private serverLimits: ListenerLimits;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  /** The TLS facts of the socket being handed to the server right now (accept()). */
  private acceptingTls: DownstreamTlsInfo | null = null;
  /** The peer address of that socket (policies/client-address.ts: PROXY protocol aware). */
  private acceptingPeer = "";

  constructor(proxy: ProxyContext) {
    this.proxy = proxy;
    this.serverLimits = proxy.limits();
    this.server = this.createServer(this.serverLimits);
  }

  private createServer(limits: ListenerLimits): http2.Http2Server {
    const proxy = this.proxy;
    const server = http2.createServer({
      maxHeaderListPairs: limits.maxRequestHeaders + 8,
      settings: {
        maxConcurrentStreams: limits.http2MaxConcurrentStreams,
        maxHeaderListSize: limits.http2MaxHeaderListBytes,
        initialWindowSize: limits.http2InitialWindowSize,
      },
    });
    server.on("session", (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      // node:http2 creates the session inside emit("connection") (accept() below) and hands out a
      // proxy of the socket afterwards, never the socket itself: the TLS facts are keyed by session.
      if (this.acceptingTls !== null) tlsOf.set(session, this.acceptingTls);
      peerOf.set(session, this.acceptingPeer);
      session.on("error", noop);
      session.once("close", () => this.sessions.delete(session));
      // An idle session (no frames either way) is closed gracefully, like an idle keep-alive connection.
      if (limits.idleTimeoutMs > 0) session.setTimeout(limits.idleTimeoutMs, () => session.close());
      const max = limits.maxRequestsPerConnection;
      if (max > 0) {
        // GOAWAY naming the last allowed stream: it and those before it finish, later ones are refused.
        let streams = 0;
        session.on("stream", () => {
          if (++streams >= max) session.close();
        });
      }
      if (proxy.draining) session.close();
    });
    server.on(
      "stream",
      (
        stream: http2.ServerHttp2Stream,
        _headers: http2.IncomingHttpHeaders,
        flags: number,
        raw: string[],
      ) => {
        const session = stream.session;
        const socket = session?.socket as net.Socket | undefined;
        if (session === undefined || socket === undefined) return;
        const x = new H2Exchange(
          proxy,
          stream,
          socket,
          tlsOf.get(session) ?? null,
          peerOf.get(session) ?? "",
        );
        x.start(raw, flags);
      },
    );
    return server;
  }

  /** Takes an accepted socket speaking HTTP/2; `early` is what was already read from it. */
  accept(
    socket: net.Socket,
    tls: DownstreamTlsInfo | null,
    early: Buffer | null,
    peer: string = peerAddress(socket),
  ): void {
    const limits = this.proxy.limits();
    if (!sameSessionLimits(limits, this.serverLimits)) {
      this.server = this.createServer(limits);
      this.serverLimits = limits;
    }
    if (early !== null) {
      socket.pause(); // no 'data' listener until the session attaches: nothing may flow past it
      socket.unshift(early);
    }
    this.acceptingTls = tls;
    this.acceptingPeer = peer;
    try {
      this.server.emit("connection", socket);
    } finally {
      this.acceptingTls = null;
      this.acceptingPeer = "";
    }
  }

  /** A plain socket just answered 101 to `Upgrade: h2c`: `head` becomes stream 1 of its session. */
  acceptUpgrade(socket: net.Socket, head: RequestHead): void {
    socket.pause();
    const upgraded = new UpgradedSocket(socket, stream1Headers(head));
    this.accept(upgraded as unknown as net.Socket, null, null, peerAddress(socket));
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** GOAWAY to every session: streams in flight finish, no new ones start. */
  shutdown(): void {
    for (const s of this.sessions) s.close();
  }

  destroyAll(): void {
    for (const s of this.sessions) s.destroy();
  }
}

/** Each HTTP/2 session's TLS facts (SNI, ALPN, client certificate); none for h2c. */
const tlsOf = new WeakMap<http2.Http2Session, DownstreamTlsInfo>();
/** Each HTTP/2 session's peer address (node:http2 hands out a proxy of the socket, not the socket). */
const peerOf = new WeakMap<http2.Http2Session, string>();

function noop(): void {}
