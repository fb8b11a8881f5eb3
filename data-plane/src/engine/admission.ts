/**
 * The checks every request passes before routing, written once for the HTTP/1.1 connection and the
 * HTTP/2 stream: a connection whose client certificate the listener refuses is answered 403 (in the
 * protocol ALPN chose), and the path is normalised (path.ts) so that routing and the upstream see the
 * same path, or refused with 400.
 */
import type { DownstreamTlsInfo } from "../tls/acceptor.ts";
import { AGW_ERRORS, type AgwErrorCode } from "./errors.ts";
import type { RequestHead } from "./http1-parser.ts";
import { DEFAULT_PATH_POLICY, normalizePath, type PathPolicy } from "./path.ts";

export interface Refusal {
  readonly status: number;
  readonly code: AgwErrorCode;
  readonly message: string;
  /** The connection is closed after the answer (Connection: close; GOAWAY on HTTP/2). */
  readonly closeConnection: boolean;
}

/** Null when the request may be routed; `head.path` and `head.originForm` are then normalised. */
export function admit(
  head: RequestHead,
  tls: DownstreamTlsInfo | null,
  paths: PathPolicy | undefined,
): Refusal | null {
  if (tls !== null && tls.clientRejected !== "")
    return {
      status: 403,
      code: AGW_ERRORS.AGW_ERR_CLIENT_CERTIFICATE_REJECTED,
      message: tls.clientRejected,
      closeConnection: true,
    };
  const path = head.path;
  // "*" (OPTIONS) and CONNECT's authority have no path to normalise.
  if (path.charCodeAt(0) !== 47 || head.method === "CONNECT") return null;
  const r = normalizePath(path, paths ?? DEFAULT_PATH_POLICY);
  if (r === path) return null;
  if (typeof r !== "string")
    return { status: 400, code: AGW_ERRORS.AGW_ERR_BAD_REQUEST, message: r.message, closeConnection: false };
  head.originForm = r + head.originForm.slice(path.length);
  head.path = r;
  return null;
}
