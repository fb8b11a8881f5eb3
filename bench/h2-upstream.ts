// HTTP/2 upstreams: h2load (h2c, prior knowledge) through AGW to one nginx origin, reached over
// HTTP/1.1 (the keep-alive pool) and over HTTP/2 (a cluster with protocol: http2, multiplexed
// sessions), and h2load straight at the origin's h2c port for reference. nginx 1.22 cannot proxy
// to an HTTP/2 upstream (grpc_pass only), so there is no peer proxy for this case: AGW alone.
// Usage: node bench/h2-upstream.ts [--duration S] [--rounds N] [--clients C] [--streams M]
//
// The origin and h2load share CPU0, AGW runs alone on CPU1. Cases alternate, their order rotated every
// round; figures are medians over rounds. Benchmarks report; they never assert on timings.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  BODY,
  CLK_TCK,
  descendants,
  fmtRps,
  fmtUs,
  freePort,
  GEN_CPU,
  h2load,
  loadavg,
  median,
  nginxArgs,
  nginxCommon,
  nginxHttpCommon,
  PROXY_CPU,
  REPO,
  readProcs,
  start,
  stopAll,
  treeTicks,
  version,
  waitProxying,
  which,
} from "./lib.ts";

const { values: opts } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    clients: { type: "string", default: "8" },
    streams: { type: "string", default: "10" },
  },
});
const seconds = Number(opts.duration);
const rounds = Number(opts.rounds);
const clients = Number(opts.clients);
const streams = Number(opts.streams);

const tools = {
  nginx: which("nginx"),
  wrk: which("wrk") ?? "",
  taskset: which("taskset"),
  h2load: which("h2load"),
};
for (const [name, bin] of Object.entries({
  nginx: tools.nginx,
  taskset: tools.taskset,
  h2load: tools.h2load,
}))
  if (bin === undefined) {
    console.error(`${name} is missing (apt-get install nginx util-linux nghttp2-client)`);
    process.exit(1);
  }
const env = {
  tmp: fs.mkdtempSync(path.join(os.tmpdir(), "agw-bench-h2up-")),
  tools: tools as { nginx: string; wrk: string; taskset: string; h2load: string },
};

process.on("SIGINT", () => void stopAll().then(() => process.exit(130)));

const [h1Port, h2cPort, agwPort] = await Promise.all([freePort(), freePort(), freePort()]);
const dir = path.join(env.tmp, "origin");
const conf = path.join(env.tmp, "origin.conf");
fs.writeFileSync(
  conf,
  `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}  http2_max_requests 1000000000;
  http2_max_concurrent_streams 1000;
  server {
    listen 127.0.0.1:${h1Port} backlog=4096;
    listen 127.0.0.1:${h2cPort} http2 backlog=4096;
    location / {
      default_type text/plain;
      return 200 ${JSON.stringify(BODY)};
    }
  }
}
`,
);
const origin = start(env, "origin", GEN_CPU, nginxArgs(env, dir, conf));

const agwConf = path.join(env.tmp, "agw.yaml");
fs.writeFileSync(
  agwConf,
  `listeners:
  - name: bench
    address: 127.0.0.1
    port: ${agwPort}
    routes:
      - { name: h2up, match: { path: { prefix: /h2 } }, cluster: h2up }
      - { name: h1up, cluster: h1up }
clusters:
  - name: h1up
    endpoints: ["127.0.0.1:${h1Port}"]
  - name: h2up
    protocol: http2
    endpoints: ["127.0.0.1:${h2cPort}"]
`,
);
const flags: string[] = [];
for (const flag of ["--admin", "--xds-listen", "--cp-admin"])
  flags.push(flag, `127.0.0.1:${await freePort()}`);
const agw = start(env, "agw", PROXY_CPU, [
  process.execPath,
  path.join(REPO, "cli/src/main.ts"),
  "run",
  "-c",
  agwConf,
  ...flags,
]);
try {
  await waitProxying(origin, `http://127.0.0.1:${h1Port}/`, 15_000);
  await waitProxying(agw, `http://127.0.0.1:${agwPort}/`, 60_000);
  await waitProxying(agw, `http://127.0.0.1:${agwPort}/h2`, 15_000);

  const cases = [
    { name: "agw, HTTP/2 upstream", url: `http://127.0.0.1:${agwPort}/h2`, proxied: true },
    { name: "agw, HTTP/1.1 upstream", url: `http://127.0.0.1:${agwPort}/h1`, proxied: true },
    { name: "direct (origin h2c)", url: `http://127.0.0.1:${h2cPort}/`, proxied: false },
  ];
  const results = new Map<
    string,
    { rps: number[]; p50: number[]; p99: number[]; cpuUs: number[]; errors: number }
  >();
  for (const c of cases) results.set(c.name, { rps: [], p50: [], p99: [], cpuUs: [], errors: 0 });
  // Warm-up: JIT and upstream connections.
  for (const c of cases) await h2load(env, c.url, clients, streams, 2);
  const loads: string[] = [loadavg()];
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + round) % cases.length] as (typeof cases)[number];
      const tree = () => [agw.pid, ...descendants(readProcs(), agw.pid)];
      const before = treeTicks(readProcs(), tree());
      const r = await h2load(env, c.url, clients, streams, seconds);
      const ticks = treeTicks(readProcs(), tree()) - before;
      const res = results.get(c.name);
      if (res === undefined) continue;
      res.rps.push(r.rps);
      res.p50.push(r.p50Us);
      res.p99.push(r.p99Us);
      res.errors += r.non2xx + r.socketErrors;
      if (c.proxied && r.requests > 0) res.cpuUs.push(((ticks / CLK_TCK) * 1e6) / r.requests);
      console.error(`round ${round + 1} ${c.name}: ${fmtRps(r.rps)} req/s`);
    }
    loads.push(loadavg());
  }
  console.log(
    `\nh2load -t1 -c${clients} -m${streams} -D${seconds}, ${rounds} rounds, medians; ` +
      `${version(env.tools.h2load, ["--version"])}; ${version(env.tools.nginx, ["-v"])}; node ${process.version}`,
  );
  console.log("| case | req/s | p50 | p99 | AGW CPU-µs/req | errors |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const [name, r] of results)
    console.log(
      `| ${name} | ${fmtRps(median(r.rps))} | ${fmtUs(median(r.p50))} | ${fmtUs(median(r.p99))} | ${
        r.cpuUs.length > 0 ? median(r.cpuUs).toFixed(0) : "-"
      } | ${r.errors} |`,
    );
  console.log(`load average during the runs: ${loads.join(" → ")}`);
} finally {
  await stopAll();
  fs.rmSync(env.tmp, { recursive: true, force: true });
}
