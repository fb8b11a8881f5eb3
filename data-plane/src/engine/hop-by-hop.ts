/**
 * Connection-specific fields (a leaf module: the engine, the mirror and the HTTP/2 bridge all read it).
 * Never forwarded, in either direction (RFC 9110 §7.6.1).
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
]);

/** Fields never sent in an HTTP/2 message (RFC 9113 §8.2.2), beside the hop-by-hop ones. */
export const H2_CONNECTION_FIELDS: ReadonlySet<string> = new Set([...HOP_BY_HOP, "host", "http2-settings"]);
