/**
 * What the engine sees of one upstream transport (a pooled TCP/TLS connection or the HTTP/2 bridge),
 * and the events it receives from it. A leaf module: the pool and the bridge both implement it.
 */
/** Receives the events of the connection it currently owns (set while a request uses it). */
export interface UpstreamHandler {
  onUpstreamData(conn: UpstreamConn, chunk: Buffer): void;
  onUpstreamDrain(conn: UpstreamConn): void;
  /** The socket is gone; inspect connected / connectTimedOut / eof / error for why. */
  onUpstreamClose(conn: UpstreamConn): void;
}

/** What the engine writes HTTP/1.1 bytes to (a TCP or TLS socket, or the HTTP/2 bridge). */
export interface UpstreamSocket {
  write(data: string | Uint8Array, encoding?: BufferEncoding): boolean;
  cork(): void;
  uncork(): void;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
  end(): unknown;
}

/** One upstream exchange's transport, as the engine sees it. */
export interface UpstreamConn {
  readonly socket: UpstreamSocket;
  readonly connected: boolean;
  readonly connectTimedOut: boolean;
  /** The upstream sent FIN (as opposed to a reset or local destroy). */
  readonly eof: boolean;
  /** Why the TLS handshake with the upstream failed (TCP connected, TLS did not). */
  readonly tlsFailure: string | null;
  /** The current request got this connection from the idle list (not freshly connected). */
  readonly reused: boolean;
  /** Closes without notifying the handler. */
  destroy(): void;
}
