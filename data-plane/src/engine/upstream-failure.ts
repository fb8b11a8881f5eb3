/**
 * Why an upstream attempt ended without a response head, whatever the transport (an HTTP/1.1 pooled
 * connection, the HTTP/2 bridge, an HTTP/2 call): where it failed, whether a retry policy may retry it,
 * and the answer the client gets when nothing retries it. The exchange's one failure path reads it.
 */
import type { AttemptOutcome } from "../cluster/state.ts";
import { AGW_ERRORS, type AgwErrorCode } from "./errors.ts";
import type { H2FailureKind } from "./h2-upstream.ts";
import type { UpstreamConn } from "./upstream-conn.ts";

export type FailureSource = "connect" | "connect_timeout" | "tls" | "reset" | "timeout" | "protocol";

export interface UpstreamFailure {
  readonly source: FailureSource;
  /** The outcome a retry policy (and outlier detection) is told; null: never retried (protocol errors). */
  readonly retryable: Exclude<AttemptOutcome["kind"], "status"> | null;
  /** The local answer when it is not retried. */
  readonly status: number;
  readonly code: AgwErrorCode;
  readonly message: string;
}

function failure(source: FailureSource, message: string): UpstreamFailure {
  switch (source) {
    case "connect":
      return {
        source,
        retryable: "connect_failure",
        status: 503,
        code: AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_FAILED,
        message,
      };
    case "connect_timeout":
      return {
        source,
        retryable: "timeout",
        status: 504,
        code: AGW_ERRORS.AGW_ERR_UPSTREAM_CONNECT_TIMEOUT,
        message,
      };
    case "tls":
      return {
        source,
        retryable: "connect_failure",
        status: 502,
        code: AGW_ERRORS.AGW_ERR_UPSTREAM_TLS_FAILED,
        message,
      };
    case "reset":
      return { source, retryable: "reset", status: 502, code: AGW_ERRORS.AGW_ERR_UPSTREAM_RESET, message };
    case "timeout":
      return {
        source,
        retryable: "timeout",
        status: 504,
        code: AGW_ERRORS.AGW_ERR_UPSTREAM_TIMEOUT,
        message,
      };
    case "protocol":
      return {
        source,
        retryable: null,
        status: 502,
        code: AGW_ERRORS.AGW_ERR_UPSTREAM_PROTOCOL_ERROR,
        message,
      };
  }
}

// The failures whose message never varies, allocated once.
export const CONNECT_FAILED = failure("connect", "could not connect to the upstream");
export const CONNECT_TIMED_OUT = failure("connect_timeout", "timed out connecting to the upstream");
export const UPSTREAM_RESET = failure("reset", "upstream closed the connection before responding");
export const UPSTREAM_TIMED_OUT = failure("timeout", "the upstream did not respond in time");
export const PROTOCOL_ERROR = failure("protocol", "the upstream sent an invalid response");

/** Why an HTTP/1.1 upstream connection (or the bridge standing for one) closed before a response head. */
export function connFailure(conn: UpstreamConn): UpstreamFailure {
  if (conn.connected) return UPSTREAM_RESET;
  if (conn.tlsFailure !== null) return failure("tls", `upstream TLS handshake failed: ${conn.tlsFailure}`);
  return conn.connectTimedOut ? CONNECT_TIMED_OUT : CONNECT_FAILED;
}

/** Why an HTTP/2 upstream call failed before its response head. */
export function h2Failure(kind: H2FailureKind, message: string): UpstreamFailure {
  switch (kind) {
    case "tls":
      return failure("tls", `upstream TLS handshake failed: ${message}`);
    case "connect_timeout":
      return failure("connect_timeout", message);
    case "connect_failure":
      return failure("connect", message);
    default:
      return failure("reset", message);
  }
}
