/**
 * HTTP/1.1 head parsing cost, in process: HeadScanner.scan + parseRequestHead / parseResponseHead
 * on three typical heads (wrk's one-field request, a browser's nine-field request, nginx's five-field
 * response). Reports the median over rounds of ns per head.
 * Usage: node bench/parser.ts [--rounds 7] [--iterations 200000]
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import {
  HeadScanner,
  parseRequestHead,
  parseResponseHead,
  RequestHead,
  ResponseHead,
} from "../data-plane/src/engine/http1-parser.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "7" },
    iterations: { type: "string", default: "200000" },
  },
});
const rounds = Number(values.rounds);
const iterations = Number(values.iterations);

const HEADS: Array<{ name: string; bytes: Buffer; request: boolean }> = [
  {
    name: "wrk request (1 field)",
    request: true,
    bytes: Buffer.from("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"),
  },
  {
    name: "browser request (9 fields)",
    request: true,
    bytes: Buffer.from(
      "GET /api/v1/items?x=1 HTTP/1.1\r\nHost: api.example.com\r\n" +
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n" +
        "Accept: application/json\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
        "Connection: keep-alive\r\nCookie: session=abcdef0123456789\r\nX-Request-Id: 5b2c\r\n" +
        "Referer: https://app.example.com/items\r\n\r\n",
    ),
  },
  {
    name: "nginx response (5 fields)",
    request: false,
    bytes: Buffer.from(
      "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 23:00:00 GMT\r\n" +
        "Content-Type: text/plain\r\nContent-Length: 95\r\nConnection: keep-alive\r\n\r\n",
    ),
  },
];

const scanner = new HeadScanner();

/** ns per head over one batch; throws if a head does not parse (the figures would be meaningless). */
function batch(bytes: Buffer, request: boolean): number {
  const start = performance.now();
  for (let i = 0; i < iterations; i++) {
    scanner.reset();
    if (scanner.scan(bytes, 65536, 100) !== bytes.length) throw new Error("head did not scan");
    const error = request
      ? parseRequestHead(bytes, scanner, new RequestHead())
      : parseResponseHead(bytes, scanner, new ResponseHead());
    if (error !== null) throw new Error(error.message);
  }
  return ((performance.now() - start) * 1e6) / iterations;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;

console.log(
  `node ${process.version}, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`,
);
console.log(`${rounds} rounds × ${iterations} heads, contenders alternating per round\n`);
for (const h of HEADS) batch(h.bytes, h.request); // JIT warm-up
const results = new Map<string, number[]>(HEADS.map((h) => [h.name, []]));
for (let r = 0; r < rounds; r++)
  for (const h of r % 2 === 0 ? HEADS : [...HEADS].reverse())
    results.get(h.name)?.push(batch(h.bytes, h.request));
console.log("| head | bytes | ns/head (median) | min–max over rounds |");
console.log("| --- | --- | --- | --- |");
for (const h of HEADS) {
  const xs = results.get(h.name) ?? [];
  console.log(
    `| ${h.name} | ${h.bytes.length} | ${median(xs).toFixed(0)} | ${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)} |`,
  );
}
console.log(
  `\nload average after: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`,
);
