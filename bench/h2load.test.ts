import assert from "node:assert/strict";
import { test } from "node:test";
import { logPercentiles, parseH2load } from "./h2load.ts";

// h2load 1.52 against an nginx that closed each connection after 1000 requests (GOAWAY).
const output = `starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Application protocol: h2c
Process Request Failure:1
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 2.03s, 2000.00 req/s, 140.75KB/s
requests: 4007 total, 4012 started, 4007 done, 4000 succeeded, 7 failed, 7 errored, 0 timeout
status codes: 3990 2xx, 0 3xx, 4 4xx, 6 5xx
traffic: 281.51KB (288264) total, 187.50KB (192000) headers (space savings 51.02%), 23.44KB (24000) data
                     min         max         mean         sd        +/- sd
time for request:       44us      3.38ms       280us       211us    93.93%
`;

test("h2load summary: rate, completed requests, non-2xx and failed requests", () => {
  assert.deepEqual(parseH2load(output), {
    requests: 4007,
    seconds: 2.03,
    rps: 2000,
    non2xx: 10,
    socketErrors: 7,
  });
});

test("h2load output without a summary is an error that shows the output", () => {
  assert.throws(() => parseH2load("connect: Connection refused\n"), /no finished line.*Connection refused/s);
});

test("percentiles come from the per-request log, failed requests left out", () => {
  const lines = Array.from({ length: 100 }, (_, i) => `1795647329637176\t200\t${i + 1}`);
  lines.push("1795647329715636\t-1\t100000");
  assert.deepEqual(logPercentiles(`${lines.join("\n")}\n`), { p50Us: 50, p99Us: 99 });
});

test("a log without a completed request has no percentiles", () => {
  const { p50Us, p99Us } = logPercentiles("1795647329715636\t-1\t73\n");
  assert.ok(Number.isNaN(p50Us) && Number.isNaN(p99Us));
});
