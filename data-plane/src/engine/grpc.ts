/** What the engine knows of gRPC: the deadline a client sends, and gRPC statuses for gateway errors. */

/** gRPC status for a gateway error (the gRPC HTTP-to-status mapping, timeouts as DEADLINE_EXCEEDED). */
export function grpcStatusFor(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 408:
    case 504:
      return 4; // DEADLINE_EXCEEDED
    case 429:
    case 502:
    case 503:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** grpc-timeout ("1S", "250m", ...) in milliseconds; 0 when absent or malformed. */
export function grpcTimeoutMs(v: string | undefined): number {
  const m = v === undefined ? null : /^(\d{1,8})([HMSmun])$/.exec(v);
  if (m === null) return 0;
  const n = Number(m[1]);
  const unit = m[2];
  const ms =
    unit === "H"
      ? n * 3_600_000
      : unit === "M"
        ? n * 60_000
        : unit === "S"
          ? n * 1000
          : unit === "m"
            ? n
            : unit === "u"
              ? n / 1000
              : n / 1_000_000;
  return Math.max(1, Math.ceil(ms));
}
