/**
 * What path normalisation (data-plane/src/engine/path.ts, run by admit() before routing) costs per
 * request, A/B in one process on the same request heads: the engine's pre-routing work
 *   before   HeadScanner.scan + parseRequestHead + router.match
 *   after    the same + admit() (client-certificate check, path normalisation)
 * for two request mixes: "typical" (paths already normal: the fast scan, no allocation) and "tricky"
 * (every path has %XX, // or dot segments: rebuilt). CPU per request from process.cpuUsage() over
 * each batch; rounds alternate the variants. Reports the median over rounds and the min–max.
 * Usage: node bench/path.ts [--rounds 7] [--requests 200000]
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { admit } from "../data-plane/src/engine/admission.ts";
import { HeadScanner, parseRequestHead, RequestHead } from "../data-plane/src/engine/http1-parser.ts";
import { DEFAULT_PATH_POLICY } from "../data-plane/src/engine/path.ts";
import { type Candidate, compileCandidate, compileRouter } from "../data-plane/src/runtime/router.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "7" },
    requests: { type: "string", default: "200000" },
  },
});
const rounds = Number(values.rounds);
const requests = Number(values.requests);

const routes: Candidate[] = [];
const add = (name: string, init: MessageInitShape<typeof RouteSchema>) => {
  const route = create(RouteSchema, { ...init, name, order: routes.length });
  routes.push(
    compileCandidate(route, {
      name,
      pickCluster: () => name,
      timeoutMs: 0,
      requestHeaders: { add: [], set: [], remove: [] },
      responseHeaders: { add: [], set: [], remove: [] },
    }),
  );
};
add("admin", { match: { path: { case: "prefix", value: "/admin" } } });
for (let i = 0; i < 20; i++) add(`svc${i}`, { match: { path: { case: "prefix", value: `/api/svc${i}` } } });
add("root", { match: { path: { case: "prefix", value: "/" } } });
const router = compileRouter(routes);

const head = (path: string) =>
  Buffer.from(
    `GET ${path} HTTP/1.1\r\nhost: api.example.com\r\nuser-agent: bench/1.0\r\naccept: */*\r\n\r\n`,
    "latin1",
  );
const MIXES: Record<string, Buffer[]> = {
  typical: [
    "/",
    "/api/svc3/users/12345",
    "/api/svc7/orders/77/items?page=2&sort=desc",
    "/static/app/main.bundle.js",
    "/.well-known/openid-configuration",
    "/api/svc12/v1/items/abc-def_ghi~jkl",
  ].map(head),
  tricky: [
    "/%61dmin/x",
    "/api/svc3/./users//12345",
    "/public/../api/svc7/orders",
    "/api/svc1/a%20b/%7Euser",
    "//static///app/main.bundle.js",
    "/api/svc12/v1/items/%e2%82%ac",
  ].map(head),
};

function cpuNsPerRequest(heads: readonly Buffer[], withAdmit: boolean): number {
  const sc = new HeadScanner();
  const n = heads.length;
  let sink = 0;
  const t0 = process.cpuUsage();
  for (let i = 0; i < requests; i++) {
    const buf = heads[i % n] as Buffer;
    sc.reset();
    sc.scan(buf, 65536, 100);
    const h = new RequestHead();
    parseRequestHead(buf, sc, h);
    if (withAdmit && admit(h, null, DEFAULT_PATH_POLICY) !== null) continue;
    if (router.match(h) !== undefined) sink++;
  }
  const d = process.cpuUsage(t0);
  if (sink < 0) console.log(sink);
  return ((d.user + d.system) * 1000) / requests;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const variants = Object.entries(MIXES).flatMap(([mix, heads]) => [
  { mix, name: "before (no admit)", heads, withAdmit: false, results: [] as number[] },
  { mix, name: "after (admit + normalise)", heads, withAdmit: true, results: [] as number[] },
]);
for (const v of variants) cpuNsPerRequest(v.heads, v.withAdmit); // warm-up (JIT)
const loadBefore = loadavg()[0]?.toFixed(2);
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? variants : [...variants].reverse();
  for (const v of order) v.results.push(cpuNsPerRequest(v.heads, v.withAdmit));
}
const loadAfter = loadavg()[0]?.toFixed(2);
console.log(
  `node ${process.version}, ${rounds} rounds × ${requests} requests, loadavg(1m) ${loadBefore} → ${loadAfter}`,
);
console.log("| paths | variant | CPU ns/request (median) | min–max over rounds |");
console.log("| --- | --- | --- | --- |");
for (const v of variants) {
  const lo = Math.min(...v.results).toFixed(0);
  const hi = Math.max(...v.results).toFixed(0);
  console.log(`| ${v.mix} | ${v.name} | ${median(v.results).toFixed(0)} | ${lo}–${hi} |`);
}
