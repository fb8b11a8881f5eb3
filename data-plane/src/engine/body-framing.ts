/**
 * HTTP/1.1 body framing: the request body's framing towards an HTTP/1.1 upstream (http1.ts, h2.ts),
 * the response body's as the exchange reads it,
 * and the chunks h2.ts and h2-bridge.ts write (HTTP/2 bodies re-framed for an HTTP/1.1 peer).
 */
export const CRLF = Buffer.from("\r\n");
export const LAST_CHUNK = Buffer.from("0\r\n\r\n");

// How an upstream's response body is framed (Exchange.resMode); M_CLOSE: it ends when the upstream
// closes (or, from an HTTP/2 upstream, at END_STREAM).
export const M_NONE = 0;
export const M_LENGTH = 1;
export const M_CHUNKED = 2;
export const M_CLOSE = 3;

// How a request body is framed towards an HTTP/1.1 peer.
export const BODY_NONE = 0;
export const BODY_LENGTH = 1;
export const BODY_CHUNKED = 2;

/** `data` as one HTTP/1.1 chunk (size line, data, CRLF) in one buffer: one write, one event. */
export function frameChunk(data: Buffer): Buffer {
  const size = `${data.length.toString(16)}\r\n`;
  const framed = Buffer.allocUnsafe(size.length + data.length + 2);
  framed.write(size, 0, "latin1");
  data.copy(framed, size.length);
  CRLF.copy(framed, size.length + data.length);
  return framed;
}
