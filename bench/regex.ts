/**
 * The regex engine of config regexes (packages/core/src/regex.ts), A/B on the same requests: CPU per
 * request of route matching through the compiled router, with route regexes run on
 *   backtracking   V8's backtracking engine alone (before)
 *   fallback       backtracking, rerun on V8's linear engine after 10,000 backtracks (after: AGW's engine)
 *   linear-only    V8's linear engine (`l` flag) for every match
 * and the CPU of one hostile request against a `/(a+)+` route. Each engine runs in a child process of
 * its own (the V8 flags are process-wide); rounds alternate engines. The route set: 8 typical regex
 * routes (path, header, query), then a catch-all prefix; the requests hit each regex route in turn,
 * and one in three matches none and falls through every regex to the catch-all.
 * Usage: node bench/regex.ts [--rounds 5] [--requests 200000]
 */
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import { RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type Candidate, compileCandidate, compileRouter } from "../data-plane/src/runtime/router.ts";
import type { RequestView } from "../data-plane/src/runtime/types.ts";

const ENGINES = ["backtracking", "fallback", "linear-only"] as const;
type Engine = (typeof ENGINES)[number];
const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    requests: { type: "string", default: "200000" },
    engine: { type: "string" },
  },
});

const ROUTES: Array<MessageInitShape<typeof RouteSchema>> = [
  { match: { path: { case: "regex", value: "/api/v[0-9]+/users/[0-9]+" } } },
  { match: { path: { case: "regex", value: "/static/.*\\.(css|js|png)" } } },
  { match: { path: { case: "regex", value: "/users/[a-z0-9-]+/orders(/[0-9]+)?" } } },
  { match: { path: { case: "regex", value: "/v2/[^/]+/blobs/sha256:[a-f0-9]+" } } },
  { match: { path: { case: "regex", value: "/(en|de|fr)/docs/.+" } } },
  { match: { path: { case: "regex", value: "/(a+)+" } } },
  {
    match: {
      path: { case: "prefix", value: "/h" },
      headers: [{ name: "authorization", value: { case: "regex", value: "Bearer [A-Za-z0-9._-]+" } }],
    },
  },
  {
    match: {
      path: { case: "prefix", value: "/q" },
      query: [{ name: "id", value: { case: "regex", value: "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}" } }],
    },
  },
  { match: { path: { case: "prefix", value: "/" } } },
];

const PATHS: Array<[string, string, Record<string, string>]> = [
  ["/api/v2/users/12345", "", {}],
  ["/static/app/main.bundle.js", "", {}],
  ["/users/ab-12/orders/77", "", {}],
  ["/v2/library/nginx/blobs/sha256:0123456789abcdef", "", {}],
  ["/de/docs/routing/regex", "", {}],
  ["/aaaaaaaa", "", {}],
  ["/h", "", { authorization: "Bearer eyJhbGciOi.eyJzdWIi.SflKxw" }],
  ["/q", "id=0a1b2c3d-0a1b-0a1b", {}],
  ["/catalog/items/42", "", {}],
  ["/api/v2/users/me", "", {}],
  ["/static/app/main.bundle.map", "", {}],
  ["/checkout", "", {}],
];

function view(path: string, query: string, headers: Record<string, string>): RequestView {
  return { method: "GET", host: "example.com", path, query, header: (name) => headers[name] } as RequestView;
}

function build(engine: Engine) {
  // The flags are set when router.ts loads @agw/core/regex; "before" is V8 without the fall-back.
  if (engine === "backtracking")
    setFlagsFromString("--no-enable-experimental-regexp-engine-on-excessive-backtracks");
  const again = (re: RegExp) =>
    engine === "backtracking"
      ? new RegExp(re.source)
      : engine === "linear-only"
        ? new RegExp(re.source, "l")
        : re;
  const candidates = ROUTES.map((init, order): Candidate => {
    const name = `r${order}`;
    const c = compileCandidate(create(RouteSchema, { ...init, name, order }), {
      name,
      pickCluster: () => name,
      timeoutMs: 0,
      requestHeaders: { add: [], set: [], remove: [] },
      responseHeaders: { add: [], set: [], remove: [] },
    } as never);
    const h = init.match?.headers?.[0];
    const q = init.match?.query?.[0];
    const test = (source: string) => {
      const re = again(new RegExp(`^(?:${source})$`));
      return (v: string | undefined) => v !== undefined && re.test(v);
    };
    return {
      ...c,
      path: c.path.kind === "regex" ? { kind: "regex", value: again(c.path.value) } : c.path,
      headers: h ? [[h.name as string, test(h.value?.value as string)]] : [],
      query: q ? [[q.name as string, test(q.value?.value as string)]] : [],
    };
  });
  return compileRouter(candidates);
}

function child(engine: Engine): void {
  const router = build(engine);
  const reqs = PATHS.map(([p, q, h]) => view(p, q, h));
  const n = Number(values.requests);
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += router.match(reqs[i % reqs.length] as RequestView) ? 1 : 0;
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) sink += router.match(reqs[i % reqs.length] as RequestView) ? 1 : 0;
  const d = process.cpuUsage(t0);
  // The backtracking engine doubles its work with each "a": 26 of them take about a second here.
  const as = engine === "backtracking" ? 26 : 35;
  const a0 = process.cpuUsage();
  const hit = router.match(view(`/${"a".repeat(as)}!`, "", {}));
  const a = process.cpuUsage(a0);
  process.stdout.write(
    JSON.stringify({
      nsPerRequest: ((d.user + d.system) * 1000) / n,
      attackAs: as,
      attackMs: (a.user + a.system) / 1000,
      ok: sink > 0 && hit?.name === "r8",
    }),
  );
}

function parent(): void {
  const rounds = Number(values.rounds);
  const results = new Map<Engine, Array<{ nsPerRequest: number; attackMs: number; attackAs: number }>>();
  for (let r = 0; r < rounds; r++)
    for (const engine of r % 2 === 0 ? ENGINES : [...ENGINES].reverse()) {
      const out = execFileSync(
        process.execPath,
        [import.meta.filename, "--engine", engine, "--requests", String(values.requests)],
        { encoding: "utf8" },
      );
      const res = JSON.parse(out);
      if (!res.ok) throw new Error(`${engine}: the router did not route as expected`);
      results.set(engine, [...(results.get(engine) ?? []), res]);
    }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log(
    `date: ${new Date().toISOString()}  load average: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  console.log(`| engine       | ns/request (median) | min–max     | one hostile request (CPU) |`);
  console.log(`| ------------ | ------------------- | ----------- | ------------------------- |`);
  for (const engine of ENGINES) {
    const rs = results.get(engine) ?? [];
    const ns = rs.map((x) => x.nsPerRequest);
    const attack = median(rs.map((x) => x.attackMs));
    console.log(
      `| ${engine.padEnd(12)} | ${median(ns).toFixed(0).padStart(19)} | ${Math.min(...ns).toFixed(0)}–${Math.max(...ns).toFixed(0)} | ${attack.toFixed(2)} ms with ${rs[0]?.attackAs} a's |`,
    );
  }
}

if (values.engine !== undefined) child(values.engine as Engine);
else parent();
