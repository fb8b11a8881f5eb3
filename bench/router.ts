/**
 * Route lookup cost at 10 vs 10,000 routes: the compiled router (exact map, prefix segment trie,
 * per-host tables) against a linear scan of the same prefixes (the router before the trie), in
 * process. Each route set is half prefix routes ("/svc<i>/v1"), half exact ("/svc<i>/health"), a
 * tenth of them on their own host; lookups cycle through hits on deep prefixes, exact hits, and
 * misses that fall through to "/". Reports the median over rounds of the median batch, in ns per lookup.
 * Usage: node bench/router.ts [--rounds 5] [--lookups 200000] [--sizes 10,10000]
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type Candidate, compileCandidate, compileRouter } from "../data-plane/src/runtime/router.ts";
import type { RequestView, Router } from "../data-plane/src/runtime/types.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    lookups: { type: "string", default: "200000" },
    sizes: { type: "string", default: "10,10000" },
  },
});
const rounds = Number(values.rounds);
const lookups = Number(values.lookups);
const sizes = values.sizes.split(",").map(Number);

function candidates(n: number): Candidate[] {
  const out: Candidate[] = [];
  const add = (name: string, init: MessageInitShape<typeof RouteSchema>) => {
    const route = create(RouteSchema, { ...init, name, order: out.length });
    out.push(
      compileCandidate(route, {
        name,
        pickCluster: () => name,
        timeoutMs: 0,
        requestHeaders: { add: [], set: [], remove: [] },
        responseHeaders: { add: [], set: [], remove: [] },
      }),
    );
  };
  add("root", { match: { path: { case: "prefix", value: "/" } } });
  for (let i = 0; out.length < n; i++) {
    const hosts = i % 10 === 0 ? [`h${i}.example.com`] : [];
    add(`p${i}`, { match: { hosts, path: { case: "prefix", value: `/svc${i}/v1` } } });
    if (out.length < n) add(`e${i}`, { match: { hosts, path: { case: "exact", value: `/svc${i}/health` } } });
  }
  return out;
}

/** The pre-trie lookup: prefixes sorted longest first, each tested in turn (exact map kept). */
function linearRouter(list: readonly Candidate[]): Router {
  const exact = new Map<string, Candidate[]>();
  const prefixes: Candidate[] = [];
  for (const c of list) {
    if (c.hosts.length > 0) continue; // host routes are looked up by map either way; not compared here
    if (c.path.kind === "exact")
      exact.set(c.path.value as string, [...(exact.get(c.path.value as string) ?? []), c]);
    else prefixes.push(c);
  }
  prefixes.sort((a, b) => String(b.path.value).length - String(a.path.value).length || a.order - b.order);
  return {
    match(req) {
      const e = exact.get(req.path);
      if (e?.[0]) return e[0].route;
      for (const c of prefixes) {
        const p = c.path.value as string;
        if (
          req.path.startsWith(p) &&
          (req.path.length === p.length || p.endsWith("/") || req.path.charCodeAt(p.length) === 47)
        )
          return c.route;
      }
      return undefined;
    },
  };
}

function requests(n: number): RequestView[] {
  const out: RequestView[] = [];
  const half = Math.max(1, Math.floor((n - 1) / 2));
  for (let k = 0; k < 64; k++) {
    const i = (k * 7919) % half;
    const path =
      k % 3 === 0 ? `/svc${i}/v1/items/${k}` : k % 3 === 1 ? `/svc${i}/health` : `/nothing/here/${k}`;
    out.push({ method: "GET", host: "api.example.com", path, query: "", header: () => undefined });
  }
  return out;
}

function nsPerLookup(router: Router, reqs: readonly RequestView[]): number {
  const batch = 20000;
  const samples: number[] = [];
  let sink = 0;
  for (let done = 0; done < lookups; done += batch) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) if (router.match(reqs[i & 63] as RequestView) !== undefined) sink++;
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  }
  if (sink < 0) console.log(sink);
  return median(samples);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const contenders = sizes.flatMap((n) => {
  const list = candidates(n);
  const reqs = requests(n);
  return [
    { name: "compiled", n, router: compileRouter(list), reqs, results: [] as number[] },
    { name: "linear scan", n, router: linearRouter(list), reqs, results: [] as number[] },
  ];
});
for (const c of contenders) nsPerLookup(c.router, c.reqs); // warm-up (JIT)
for (let r = 0; r < rounds; r++) {
  const order = contenders.map(
    (_, i) => contenders[(i + r) % contenders.length] as (typeof contenders)[number],
  );
  for (const c of order) c.results.push(nsPerLookup(c.router, c.reqs));
}
const load = loadavg().map((x) => x.toFixed(2));
console.log(`node ${process.version}, ${rounds} rounds × ${lookups} lookups, loadavg ${load.join(" ")}`);
console.log("| router | routes | ns/lookup (median) | min–max over rounds |");
console.log("| --- | --- | --- | --- |");
for (const c of contenders) {
  const lo = Math.min(...c.results).toFixed(0);
  const hi = Math.max(...c.results).toFixed(0);
  console.log(`| ${c.name} | ${c.n} | ${median(c.results).toFixed(0)} | ${lo}–${hi} |`);
}
