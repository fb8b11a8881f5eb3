/**
 * HTTP/1.1 body framing shared by the two translating sides of the engine: h2.ts (HTTP/2 clients to
 * HTTP/1.1 upstreams) and h2-bridge.ts (the HTTP/1.1 engine to HTTP/2 upstreams). proxy.ts keeps its
 * own module-local constants: its response modes are a superset (chunked bytes passed through as
 * validated, close-delimited bodies re-chunked) and its hot path writes the pieces without a copy.
 */
export const CRLF = Buffer.from("\r\n");
export const LAST_CHUNK = Buffer.from("0\r\n\r\n");

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
