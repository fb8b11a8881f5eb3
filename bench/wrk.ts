// Parsing of `wrk --latency` output, kept apart from bench/run.ts so it can be unit-tested.

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Latency percentiles in microseconds. */
  p50Us: number;
  p99Us: number;
  /** Responses outside 2xx/3xx (wrk counts them together). */
  non2xx: number;
  /** Socket errors: connect + read + write + timeout. */
  socketErrors: number;
}

const UNIT_US: Record<string, number> = { us: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };

/** "1.23ms" -> 1230 (µs). */
export function parseDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  const unit = m?.[2] === undefined ? undefined : UNIT_US[m[2]];
  if (m?.[1] === undefined || unit === undefined) throw new Error(`wrk: cannot parse duration "${text}"`);
  return Number(m[1]) * unit;
}

function match(output: string, re: RegExp, what: string): RegExpExecArray {
  const m = re.exec(output);
  if (!m) throw new Error(`wrk: no ${what} in output:\n${output}`);
  return m;
}

export function parseWrk(output: string): WrkResult {
  const total = match(output, /^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)/m, "request count");
  const requests = Number(total[1]);
  const seconds = parseDuration(`${total[2]}${total[3]}`) / 1e6;
  const rps = Number(match(output, /^Requests\/sec:\s*([\d.]+)/m, "Requests/sec")[1]);
  const pct = (p: string) =>
    parseDuration(match(output, new RegExp(`^\\s*${p}%\\s+(\\S+)`, "m"), `p${p}`)[1] ?? "");
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const socketErrors = sock ? sock.slice(1, 5).reduce((sum, n) => sum + Number(n), 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  return { requests, seconds, rps, p50Us: pct("50"), p99Us: pct("99"), non2xx, socketErrors };
}
