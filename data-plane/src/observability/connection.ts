/**
 * What metrics and the access log may read of a finished L4 connection (TCP proxy or TLS passthrough,
 * data-plane/src/l4), the L4 counterpart of exchange.ts: one report per connection, when it closes.
 */
export interface L4ConnectionView {
  readonly listener: string;
  readonly protocol: "tcp" | "tls-passthrough";
  readonly clientIp: string;
  /** The ClientHello's server name (TLS passthrough), "" when none was read. */
  readonly serverName: string;
  /** "" when no cluster was chosen. */
  readonly cluster: string;
  /** "host:port" of the last endpoint tried, "" when none. */
  readonly endpoint: string;
  /** performance.now() at accept. */
  readonly startedAt: number;
  /** Bytes read from the client (the ClientHello included) and written to it. */
  readonly bytesReceived: number;
  readonly bytesSent: number;
  /** "" when both sides closed in order; else why it ended (docs/l4.md: route_not_found, idle_timeout, ...). */
  readonly outcome: string;
}

export interface L4ConnectionObserver {
  l4ConnectionEnd(c: L4ConnectionView, endedAt: number): void;
}
