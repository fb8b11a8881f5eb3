import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDuration, parseWrk } from "./wrk.ts";

const clean = `Running 1s test @ http://127.0.0.1:21999/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    30.96us   43.03us   1.53ms   98.21%
    Req/Sec   116.38k    15.03k  128.75k    80.00%
  Latency Distribution
     50%   28.00us
     75%   30.00us
     90%   42.00us
     99%   84.00us
  115348 requests in 1.00s, 16.72MB read
Requests/sec: 115302.46
Transfer/sec:     16.71MB
`;

const withErrors = `Running 10s test @ http://127.0.0.1:20001/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.00ms  40.00ms   90.00%
    Req/Sec    28.70k     1.00k   30.00k    70.00%
  Latency Distribution
     50%    2.05ms
     75%    2.50ms
     90%    3.00ms
     99%    1.20s
  287000 requests in 10.00s, 40.00MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:  28700.00
Transfer/sec:      4.00MB
`;

test("parseDuration converts wrk units to microseconds", () => {
  assert.equal(parseDuration("28.00us"), 28);
  assert.equal(parseDuration("2.05ms"), 2050);
  assert.equal(parseDuration("1.20s"), 1_200_000);
  assert.equal(parseDuration("1.00m"), 60_000_000);
  assert.throws(() => parseDuration("fast"));
});

test("parseWrk reads a clean run", () => {
  assert.deepEqual(parseWrk(clean), {
    requests: 115348,
    seconds: 1,
    rps: 115302.46,
    p50Us: 28,
    p99Us: 84,
    non2xx: 0,
    socketErrors: 0,
  });
});

test("parseWrk counts socket errors and non-2xx responses", () => {
  const r = parseWrk(withErrors);
  assert.equal(r.socketErrors, 10);
  assert.equal(r.non2xx, 17);
  assert.equal(r.p99Us, 1_200_000);
  assert.equal(r.requests, 287000);
});

test("parseWrk rejects output without results", () => {
  assert.throws(() => parseWrk("unable to connect to 127.0.0.1:21998 Connection refused\n"), /request count/);
});
