/**
 * Keep-alive connections to upstream endpoints, keyed by Endpoint.key. The pool is independent of any
 * RuntimeConfig so a config swap keeps idle connections to endpoints that still exist; the limits of the
 * cluster that used a connection last apply to it.
 */
import net from "node:net";
import type { ClusterRuntime, Endpoint } from "../runtime/types.ts";
import { connectTls } from "../tls/connect.ts";
import type { UpstreamTlsRuntime } from "../tls/manager.ts";
import { H2BridgeConn } from "./h2-bridge.ts";
import { H2SessionPool } from "./h2-upstream.ts";
import type { UpstreamConn, UpstreamHandler } from "./upstream-conn.ts";

export type { UpstreamConn, UpstreamHandler, UpstreamSocket } from "./upstream-conn.ts";

/** A keep-alive TCP (or TLS) connection speaking HTTP/1.1. */
export class TcpUpstreamConn implements UpstreamConn {
  readonly socket: net.Socket;
  readonly key: string;
  handler: UpstreamHandler | null;
  connected = false;
  connectTimedOut = false;
  /** The upstream sent FIN (as opposed to a reset or local destroy). */
  eof = false;
  closed = false;
  error: Error | null = null;
  /** Why the TLS handshake with the upstream failed (TCP connected, TLS did not). */
  tlsFailure: string | null = null;
  private tcpConnected = false;
  /** Requests given this connection so far, the current one included. */
  uses = 1;
  /** The current request got this connection from the idle list (not freshly connected). */
  reused = false;
  pooled = false;
  idleSince = 0;
  idleTimeoutMs = 0;
  private readonly pool: UpstreamPool;
  private readonly connectTimeoutMs: number;

  constructor(
    pool: UpstreamPool,
    ep: Endpoint,
    connectTimeoutMs: number,
    handler: UpstreamHandler,
    upstreamTls?: UpstreamTlsRuntime,
  ) {
    this.pool = pool;
    this.key = ep.key;
    this.handler = handler;
    this.connectTimeoutMs = connectTimeoutMs;
    const socket = upstreamTls
      ? connectTls(ep, upstreamTls)
      : net.connect({ host: ep.host, port: ep.port, noDelay: true });
    this.socket = socket;
    // The connect timeout covers the TLS handshake too.
    if (connectTimeoutMs > 0) socket.setTimeout(connectTimeoutMs);
    if (upstreamTls) {
      socket.on("connect", () => {
        this.tcpConnected = true;
      });
      socket.on("secureConnect", () => this.onConnect());
    } else {
      socket.on("connect", () => this.onConnect());
    }
    socket.on("timeout", () => this.onTimeout());
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.handler?.onUpstreamDrain(this));
    socket.on("end", () => this.onEnd());
    socket.on("error", (e: Error & { code?: string }) => {
      this.error = e;
      if (upstreamTls && this.tcpConnected && !this.connected)
        this.tlsFailure = e.code ? `${e.message} (${e.code})` : e.message;
    });
    socket.on("close", () => this.onClose());
  }

  /** Closes without notifying the handler. */
  destroy(): void {
    this.handler = null;
    this.socket.destroy();
  }

  private onConnect(): void {
    this.connected = true;
    if (this.connectTimeoutMs > 0) this.socket.setTimeout(0);
  }

  private onTimeout(): void {
    if (this.connected) return;
    this.connectTimedOut = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const h = this.handler;
    if (h !== null) h.onUpstreamData(this, chunk);
    else this.socket.destroy(); // bytes while idle: the connection can no longer be trusted
  }

  private onEnd(): void {
    this.eof = true;
    this.socket.destroy();
  }

  private onClose(): void {
    this.closed = true;
    if (this.pooled) this.pool.removeIdle(this);
    const h = this.handler;
    if (h !== null) {
      this.handler = null;
      h.onUpstreamClose(this);
    }
  }
}

export interface UpstreamPoolOptions {
  /** How often idle connections past their idle timeout are closed. Default 1000 ms. */
  readonly sweepIntervalMs?: number;
}

export class UpstreamPool {
  /** HTTP/2 sessions, for clusters with protocol http2; the engine reaches them through acquire(). */
  readonly h2 = new H2SessionPool();
  private readonly idle = new Map<string, TcpUpstreamConn[]>();
  private idleCount = 0;
  private sweeper: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly sweepIntervalMs: number;

  constructor(options: UpstreamPoolOptions = {}) {
    this.sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  }

  get idleConnections(): number {
    return this.idleCount;
  }

  /**
   * An idle connection to `ep` (most recently used first) or a new one; `handler` owns it until
   * release. For an HTTP/2 cluster, a new stream behind the HTTP/1.1 bridge (engine/h2-bridge.ts).
   */
  acquire(ep: Endpoint, cluster: ClusterRuntime, handler: UpstreamHandler): UpstreamConn {
    if (cluster.http2 === true) return new H2BridgeConn(this.h2, ep, cluster, handler);
    const list = this.idle.get(ep.key);
    if (list !== undefined && list.length > 0) {
      const now = Date.now();
      let c = list.pop();
      while (c !== undefined) {
        this.idleCount--;
        c.pooled = false;
        if (!c.closed && (c.idleTimeoutMs <= 0 || now - c.idleSince < c.idleTimeoutMs)) {
          c.handler = handler;
          c.reused = true;
          c.uses++;
          c.socket.ref();
          return c;
        }
        c.destroy();
        c = list.pop();
      }
    }
    return this.connect(ep, cluster, handler);
  }

  /** Always a new connection (used to retry after a reused one failed). */
  connect(ep: Endpoint, cluster: ClusterRuntime, handler: UpstreamHandler): UpstreamConn {
    if (cluster.http2 === true) return new H2BridgeConn(this.h2, ep, cluster, handler);
    return new TcpUpstreamConn(this, ep, cluster.connectTimeoutMs, handler, cluster.tls);
  }

  /** A new TCP (or TLS) connection for a CONNECT tunnel: raw bytes, whatever the cluster's protocol. */
  tunnel(ep: Endpoint, cluster: ClusterRuntime, handler: UpstreamHandler): TcpUpstreamConn {
    return new TcpUpstreamConn(this, ep, cluster.connectTimeoutMs, handler, cluster.tls);
  }

  /** Returns a connection whose exchange completed cleanly; it is closed instead if limits say so. */
  release(conn: UpstreamConn, cluster: ClusterRuntime): void {
    if (!(conn instanceof TcpUpstreamConn)) {
      conn.destroy(); // an HTTP/2 stream is over; its session stays in the session pool
      return;
    }
    conn.handler = null;
    const max = cluster.maxRequestsPerConnection;
    if (this.closed || conn.closed || cluster.maxIdlePerEndpoint <= 0 || (max > 0 && conn.uses >= max)) {
      conn.destroy();
      return;
    }
    let list = this.idle.get(conn.key);
    if (list === undefined) {
      list = [];
      this.idle.set(conn.key, list);
    }
    if (list.length >= cluster.maxIdlePerEndpoint) {
      conn.destroy();
      return;
    }
    const s = conn.socket;
    if (s.isPaused()) s.resume();
    s.unref(); // idle keep-alive connections must not keep the process alive
    conn.pooled = true;
    conn.reused = false;
    conn.idleSince = Date.now();
    conn.idleTimeoutMs = cluster.idleTimeoutMs;
    list.push(conn);
    this.idleCount++;
    if (this.sweeper === null) {
      this.sweeper = setInterval(sweep, this.sweepIntervalMs, this);
      this.sweeper.unref();
    }
  }

  /** Closes idle connections to endpoints whose key is not in `keys` (call after a config swap). */
  retainOnly(keys: ReadonlySet<string>): void {
    this.h2.retainOnly(keys);
    for (const [key, list] of this.idle) {
      if (keys.has(key)) continue;
      this.idle.delete(key);
      for (const c of list) this.dropIdle(c);
    }
  }

  /** Closes every idle connection and stops pooling; connections in use close when released. */
  close(): void {
    this.closed = true;
    this.h2.close();
    for (const list of this.idle.values()) for (const c of list) this.dropIdle(c);
    this.idle.clear();
    this.stopSweeper();
  }

  /** @internal called by UpstreamConn when a pooled socket closes. */
  removeIdle(conn: TcpUpstreamConn): void {
    const list = this.idle.get(conn.key);
    const i = list === undefined ? -1 : list.indexOf(conn);
    if (list !== undefined && i >= 0) {
      list.splice(i, 1);
      this.idleCount--;
    }
    conn.pooled = false;
    if (this.idleCount === 0) this.stopSweeper();
  }

  /** @internal */
  sweepExpired(): void {
    const now = Date.now();
    for (const list of this.idle.values()) {
      // Oldest first: release pushes at the end.
      while (list.length > 0) {
        const c = list[0] as TcpUpstreamConn;
        if (c.idleTimeoutMs <= 0 || now - c.idleSince < c.idleTimeoutMs) break;
        list.shift();
        this.dropIdle(c);
      }
    }
    if (this.idleCount === 0) this.stopSweeper();
  }

  private dropIdle(c: TcpUpstreamConn): void {
    c.pooled = false;
    this.idleCount--;
    c.destroy();
  }

  private stopSweeper(): void {
    if (this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }
}

function sweep(pool: UpstreamPool): void {
  pool.sweepExpired();
}
