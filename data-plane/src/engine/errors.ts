import { STATUS_CODES } from "node:http";

/** Stable wire codes of locally generated responses, sent as `x-agw-error` and in the JSON body. */
export const AGW_ERRORS = {
  AGW_ERR_ROUTE_NOT_FOUND: "route_not_found",
  AGW_ERR_CLUSTER_NOT_FOUND: "cluster_not_found",
  AGW_ERR_NO_HEALTHY_UPSTREAM: "no_healthy_upstream",
  AGW_ERR_UPSTREAM_CONNECT_FAILED: "upstream_connect_failed",
  AGW_ERR_UPSTREAM_CONNECT_TIMEOUT: "upstream_connect_timeout",
  AGW_ERR_UPSTREAM_TIMEOUT: "upstream_timeout",
  AGW_ERR_UPSTREAM_RESET: "upstream_reset",
  AGW_ERR_UPSTREAM_PROTOCOL_ERROR: "upstream_protocol_error",
  AGW_ERR_BAD_REQUEST: "bad_request",
  AGW_ERR_REQUEST_HEADER_TOO_LARGE: "request_header_too_large",
  /** The request body is larger than the listener's (or route's) maxRequestBodyBytes. */
  AGW_ERR_REQUEST_BODY_TOO_LARGE: "request_body_too_large",
  AGW_ERR_NOT_IMPLEMENTED: "not_implemented",
  AGW_ERR_HTTP_VERSION_NOT_SUPPORTED: "http_version_not_supported",
  AGW_ERR_REQUEST_TIMEOUT: "request_timeout",
  AGW_ERR_UPSTREAM_TLS_FAILED: "upstream_tls_failed",
  AGW_ERR_PLUGIN_DENIED: "plugin_denied",
  AGW_ERR_PLUGIN_FAILED: "plugin_failed",
  /** The upstream response body is larger than a plugin's body limit (over_limit: reject). */
  AGW_ERR_RESPONSE_BODY_TOO_LARGE: "response_body_too_large",
  /** A cluster's circuit breaker refused the request (docs/traffic/circuit-breaking.md). */
  AGW_ERR_OVERFLOW: "overflow",
  /** A route's local rate limit refused the request (docs/traffic/rate-limits.md). */
  AGW_ERR_RATE_LIMITED: "rate_limited",
  /** A CONNECT request matched a route without `connect: true`. */
  AGW_ERR_CONNECT_NOT_ALLOWED: "connect_not_allowed",
  /** The client certificate failed the listener's subjectAltNames/commonNames rules (docs/tls.md). */
  AGW_ERR_CLIENT_CERTIFICATE_REJECTED: "client_certificate_rejected",
  /** The listener's or route's IP rules refuse the client address (docs/access-control.md). */
  AGW_ERR_CLIENT_ADDRESS_DENIED: "client_address_denied",
  /** The X-Forwarded-For entry a trusted proxy vouches for is not an IP address. */
  AGW_ERR_INVALID_FORWARDED_FOR: "invalid_forwarded_for",
  /** A listener with proxyProtocol got a malformed or no PROXY header (plain HTTP listeners say so). */
  AGW_ERR_INVALID_PROXY_PROTOCOL: "invalid_proxy_protocol",
  /** Basic auth: credentials missing or not valid (401 with a challenge). */
  AGW_ERR_UNAUTHORIZED: "unauthorized",
  /** Basic auth: too many credential checks in flight; try again. */
  AGW_ERR_AUTH_BUSY: "auth_busy",
} as const;

export type AgwErrorCode = (typeof AGW_ERRORS)[keyof typeof AGW_ERRORS];

/** Wire code for a request rejected by the parser with `status`. */
export function codeForStatus(status: number): AgwErrorCode {
  switch (status) {
    case 408:
      return AGW_ERRORS.AGW_ERR_REQUEST_TIMEOUT;
    case 413:
      return AGW_ERRORS.AGW_ERR_REQUEST_BODY_TOO_LARGE;
    case 431:
      return AGW_ERRORS.AGW_ERR_REQUEST_HEADER_TOO_LARGE;
    case 501:
      return AGW_ERRORS.AGW_ERR_NOT_IMPLEMENTED;
    case 505:
      return AGW_ERRORS.AGW_ERR_HTTP_VERSION_NOT_SUPPORTED;
    default:
      return AGW_ERRORS.AGW_ERR_BAD_REQUEST;
  }
}

const REASONS: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  408: "Request Timeout",
  413: "Content Too Large",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Local answers are not only errors (redirects, direct responses): node's table covers the rest. */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? STATUS_CODES[status] ?? "Unknown";
}
