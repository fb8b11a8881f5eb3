/**
 * The eBPF agent on the real kernel, through the real gateway: client (this process, outside the
 * cgroup) → data plane (`agw run`, inside) → upstream app (inside). With the agent on, the bytes
 * between data plane and app must not cross `lo` (tcpdump) while clients get byte-identical
 * responses; killed with SIGKILL, it must leave nothing attached and traffic must go on over TCP.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, rmdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { after, type TestContext, test } from "node:test";
import { promisify } from "node:util";
import { cgroup2Root, preflight } from "@agw/ebpf-agent";
import { agw, CLI, freePort, type Proc, ROOT, requireOrSkip, tempDir, tracked, waitFor } from "./helpers.ts";

const run = promisify(execFile);

async function which(cmd: string): Promise<boolean> {
  return run("sh", ["-c", `command -v ${cmd}`]).then(
    () => true,
    () => false,
  );
}

/** Why the kernel tests cannot run here, or undefined when they can. */
const unsupported = await (async () => {
  if (process.getuid?.() !== 0) return "not root: the eBPF agent needs CAP_BPF/CAP_NET_ADMIN/CAP_PERFMON";
  const root = cgroup2Root();
  if (!root) return "no cgroup2 file system mounted";
  const { problems } = await preflight(root);
  if (problems.length) return problems.join("; ");
  for (const tool of ["tcpdump", "bpftool", "curl"]) if (!(await which(tool))) return `${tool} not installed`;
  return undefined;
})();

function requireKernel(t: TestContext): boolean {
  return requireOrSkip(t, unsupported === undefined, `eBPF agent tests: ${unsupported}`);
}

let cgroupCount = 0;
const cgroups: string[] = [];
// after every test's own cleanup (which stops the processes in them): a cgroup with members cannot go
after(async () => {
  for (const dir of cgroups)
    await waitFor(`rmdir ${dir}`, () => {
      rmdirSync(dir);
      return true;
    }).catch(() => undefined);
});

function makeCgroup(): string {
  const dir = join(cgroup2Root() ?? "", `agw-test-${process.pid}-${++cgroupCount}`);
  mkdirSync(dir);
  cgroups.push(dir);
  return dir;
}

/** Like helpers.agw() but for any command, started inside a cgroup so its sockets belong there. */
function spawnIn(cgroup: string, command: string, args: string[]): Proc {
  return tracked(
    spawn("sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, command, ...args], {
      cwd: ROOT,
      env: { ...process.env, AGW_LOG_LEVEL: "warn" },
      stdio: ["pipe", "pipe", "pipe"],
    }),
  );
}

/** The upstream app: answers every request with a fixed 256 KiB body plus the SHA-256 of what it received. */
const APP = `
import { createHash } from "node:crypto";
import http from "node:http";
const body = Buffer.alloc(256 * 1024);
for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 9)) % 256;
http.createServer((req, res) => {
  const hash = createHash("sha256");
  req.on("data", (c) => hash.update(c));
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/octet-stream", "x-request-sha256": hash.digest("hex") });
    res.end(Buffer.concat([Buffer.from(req.url + "\\n"), body]));
  });
}).listen(Number(process.argv[2]), process.argv[1], () => console.log("app listening"));
`;

async function startAgentProcess(t: TestContext, cgroup: string, extra: string[] = []) {
  const metricsPort = await freePort();
  const proc = agw(["ebpf-agent", "--cgroup", cgroup, "--metrics", `127.0.0.1:${metricsPort}`, ...extra]);
  t.after(() => proc.stop("SIGKILL"));
  await waitFor(`the agent to attach\n${proc.output()}`, () =>
    proc.output().includes("eBPF agent attached") ? true : undefined,
  );
  const status = async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/status`, { signal: AbortSignal.timeout(5_000) });
    return (await res.json()) as { attached: boolean; counters: Record<string, number> };
  };
  return { proc, status, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` };
}

/** app + `agw run` inside the cgroup; returns the gateway URL. */
async function startGatewayAndApp(t: TestContext, cgroup: string, appHost: string, gatewayHost: string) {
  const [appPort, listenerPort, xdsPort, adminPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const app = spawnIn(cgroup, process.execPath, ["--input-type=module", "-e", APP, appHost, String(appPort)]);
  t.after(() => app.stop());
  await waitFor(`the app\n${app.output()}`, () =>
    app.output().includes("app listening") ? true : undefined,
  );
  // a dual-stack (::) app is reached over IPv4, so its accepted sockets carry v4-mapped addresses
  const endpoint = appHost === "::1" ? `[::1]:${appPort}` : `127.0.0.1:${appPort}`;
  const file = join(tempDir(), "config.yaml");
  writeFileSync(
    file,
    `listeners:\n  - name: web\n    address: "${gatewayHost}"\n    port: ${listenerPort}\n    routes:\n      - name: all\n        cluster: app\nclusters:\n  - name: app\n    endpoints:\n      - "${endpoint}"\n`,
  );
  const gateway = spawnIn(cgroup, process.execPath, [
    CLI,
    "run",
    "-c",
    file,
    "--xds-listen",
    `127.0.0.1:${xdsPort}`,
    "--admin",
    `127.0.0.1:${adminPort}`,
    "--cp-admin",
    "127.0.0.1:0",
  ]);
  t.after(() => gateway.stop());
  await waitFor(
    `"AGW is running"\n${gateway.output()}`,
    () => (gateway.output().includes("AGW is running") ? true : undefined),
    30_000,
  );
  const clientHost = gatewayHost === "::1" ? "[::1]" : "127.0.0.1";
  return { url: `http://${clientHost}:${listenerPort}`, appPort, gateway, app };
}

/**
 * tcpdump on lo for one port: TCP payload bytes seen, counted once the capture is stopped. Before
 * stopping, a sentinel connection from this process (outside the cgroup: never redirected) sends a
 * few bytes to the port: once tcpdump has printed them, it has printed every earlier segment on lo.
 * The sentinel's own segments are not counted.
 */
async function captureLo(port: number, host: string) {
  const dump = spawn("tcpdump", ["-i", "lo", "-nn", "-l", "-q", "-U", `tcp port ${port}`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  dump.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  dump.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  await waitFor(`tcpdump to start\n${err}`, () => (err.includes("listening on") ? true : undefined));
  return {
    async payloadBytes(): Promise<number> {
      const sentinel = net.connect(port, host);
      sentinel.on("error", () => {});
      await new Promise((r) => sentinel.once("connect", r));
      const tag = `.${sentinel.localPort}`;
      const isSentinel = (line: string) => line.includes(`${tag} >`) || line.includes(`${tag}:`);
      const payload = (line: string) => Number(/tcp (\d+)$/.exec(line.trim())?.[1] ?? 0);
      sentinel.write("sentinel\r\n\r\n");
      await waitFor(`tcpdump to print the sentinel's segment\n${out}`, () =>
        out.split("\n").some((line) => isSentinel(line) && payload(line) > 0) ? true : undefined,
      );
      sentinel.destroy();
      const exited = new Promise((r) => dump.once("exit", r));
      dump.kill("SIGINT");
      await exited;
      return out
        .split("\n")
        .filter((line) => !isSentinel(line))
        .reduce((sum, line) => sum + payload(line), 0);
    },
  };
}

/** Three requests (two GETs, one 64 KiB POST); returns one hash over everything clients received. */
async function exercise(url: string): Promise<{ digest: string; bytes: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  const upload = Buffer.alloc(64 * 1024, "agw-");
  for (const [path, body] of [
    ["/a", undefined],
    ["/b?x=1", undefined],
    ["/upload", upload],
  ] as const) {
    const res = await fetch(`${url}${path}`, {
      method: body ? "POST" : "GET",
      ...(body ? { body } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(res.status, 200);
    const received = Buffer.from(await res.arrayBuffer());
    hash.update(`${res.headers.get("x-request-sha256")}\n`).update(received);
    bytes += received.length;
  }
  return { digest: hash.digest("hex"), bytes };
}

async function attachedPrograms(cgroup: string): Promise<string[]> {
  const { stdout } = await run("bpftool", ["cgroup", "show", cgroup, "--json"]);
  return ((stdout.trim() ? JSON.parse(stdout) : []) as Array<{ name?: string }>).map((p) => p.name ?? "?");
}

/** IDs of the agent's programs still loaded, and of those still attached through a bpf_link. */
async function agwPrograms(): Promise<{ loaded: number[]; linked: number[] }> {
  const bpftool = async (...args: string[]) =>
    JSON.parse(
      (await run("bpftool", [...args, "--json"], { maxBuffer: 64 * 1024 * 1024 })).stdout || "[]",
    ) as Array<{
      id: number;
      name?: string;
      prog_id?: number;
    }>;
  const loaded = (await bpftool("prog", "show"))
    .filter((p) => p.name === "agw_sockops" || p.name === "agw_sk_msg")
    .map((p) => p.id);
  const linked = (await bpftool("link", "show")).flatMap((l) =>
    l.prog_id !== undefined && loaded.includes(l.prog_id) ? [l.prog_id] : [],
  );
  return { loaded, linked };
}

for (const [family, appHost, gatewayHost] of [
  ["IPv4", "127.0.0.1", "127.0.0.1"],
  ["IPv6", "::1", "::1"],
  ["dual-stack (:: reached over IPv4)", "::", "::"],
] as const) {
  test(`${family}: with the agent, data plane ↔ app bytes skip lo and responses are byte-identical`, async (t) => {
    if (!requireKernel(t)) return;
    const cgroup = makeCgroup();

    const off = await startGatewayAndApp(t, cgroup, appHost, gatewayHost);
    const appAddress = appHost === "::1" ? "::1" : "127.0.0.1";
    const offCapture = await captureLo(off.appPort, appAddress);
    const plain = await exercise(off.url);
    const plainOnLo = await offCapture.payloadBytes();
    await off.gateway.stop();
    await off.app.stop();
    assert.ok(plainOnLo >= plain.bytes, `without the agent the app's bytes cross lo (${plainOnLo} B)`);

    const agent = await startAgentProcess(t, cgroup);
    const on = await startGatewayAndApp(t, cgroup, appHost, gatewayHost);
    const onCapture = await captureLo(on.appPort, appAddress);
    const redirected = await exercise(on.url);
    const redirectedOnLo = await onCapture.payloadBytes();
    assert.equal(redirected.digest, plain.digest, "clients see the same bytes with and without the agent");
    assert.equal(redirectedOnLo, 0, "no payload between data plane and app crosses lo");
    const { counters } = await agent.status();
    assert.ok((counters.redirected_bytes ?? 0) >= redirected.bytes, JSON.stringify(counters));
    assert.ok((counters.sockets_inserted ?? 0) >= 2, JSON.stringify(counters));
    const metrics = await (await fetch(agent.metricsUrl)).text();
    assert.match(metrics, /^agw_ebpf_attached 1$/m);
    assert.match(metrics, /^agw_ebpf_redirected_bytes_total [1-9]\d*$/m);

    // killed outright: nothing may stay attached, and the same (already redirected) connections go on
    const ours = (await agwPrograms()).linked;
    assert.equal(ours.length, 2, "sockops and sk_msg are attached through bpf_links");
    await agent.proc.stop("SIGKILL");
    await waitFor("the links to be gone", async () =>
      (await attachedPrograms(cgroup)).length === 0 &&
      (await agwPrograms()).linked.every((id) => !ours.includes(id))
        ? true
        : undefined,
    );
    const afterCapture = await captureLo(on.appPort, appAddress);
    const after = await exercise(on.url);
    const afterOnLo = await afterCapture.payloadBytes();
    assert.equal(after.digest, plain.digest);
    assert.ok(afterOnLo >= after.bytes, `after the agent died the bytes cross lo again (${afterOnLo} B)`);
    // the sockets it had mapped held its sk_msg program; they close with the gateway and app
    await on.gateway.stop();
    await on.app.stop();
    await waitFor("the programs to be unloaded", async () =>
      (await agwPrograms()).loaded.some((id) => ours.includes(id)) ? undefined : true,
    );
  });
}

/** Sender and a receiver that stops reading, both in the cgroup; prints what the kernel accepted. */
const STALLED_READER = `
import net from "node:net";
import readline from "node:readline";
const attempt = 64 * 1024 * 1024, chunk = 64 * 1024;
const pattern = (off, n) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = (off + i) % 251; return b; };
const server = net.createServer();
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const accepted = new Promise((r) => server.once("connection", r));
const sender = net.connect(server.address().port, "127.0.0.1");
await new Promise((r) => sender.once("connect", r));
const receiver = await accepted;
receiver.pause();
let written = 0;
const deadline = Date.now() + 3000;
while (written < attempt && Date.now() < deadline) {
  const more = sender.write(pattern(written, chunk));
  written += chunk;
  if (!more) await Promise.race([new Promise((r) => sender.once("drain", r)), new Promise((r) => setTimeout(r, 500))]);
}
await new Promise((r) => setTimeout(r, 300));
console.log("accepted " + (sender.bytesWritten - sender.writableLength) + " attempted " + attempt);
let received = 0, wrong = 0;
receiver.on("data", (d) => {
  for (let i = 0; i < d.length; i++) if (d[i] !== (received + i) % 251) wrong++;
  received += d.length;
  if (received === written) { console.log("received " + received + " wrong " + wrong); process.exit(0); }
});
readline.createInterface({ input: process.stdin }).once("line", () => receiver.resume());
`;

test("a receiver that stops reading cannot make the sender queue more than the budget plus TCP's own buffers", async (t) => {
  if (!requireKernel(t)) return;
  const cgroup = makeCgroup();
  const budget = 256 * 1024;
  const agent = await startAgentProcess(t, cgroup, ["--queue-budget", String(budget)]);
  const pair = spawnIn(cgroup, process.execPath, ["--input-type=module", "-e", STALLED_READER]);
  t.after(() => pair.stop("SIGKILL"));
  const line = await waitFor(
    `the sender to stall\n${pair.output()}`,
    () => /accepted (\d+) attempted (\d+)/.exec(pair.output()) ?? undefined,
    20_000,
  );
  const accepted = Number(line[1]);
  const stalled = (await agent.status()).counters;
  // the redirect queue holds at most the budget; beyond it TCP's window and buffers push back
  assert.ok((stalled.redirected_bytes ?? 0) <= budget, JSON.stringify(stalled));
  assert.ok((stalled.pass_over_budget ?? 0) >= 1, JSON.stringify(stalled));
  assert.ok(
    accepted < Number(line[2]) / 4,
    `the kernel accepted ${accepted} B from a sender whose peer reads nothing`,
  );

  pair.child.stdin?.write("resume\n");
  const done = await waitFor(
    `the receiver to catch up\n${pair.output()}`,
    () => /received (\d+) wrong (\d+)/.exec(pair.output()) ?? undefined,
    20_000,
  );
  assert.equal(Number(done[2]), 0, "every byte arrives in order across redirect and TCP");
  assert.ok(Number(done[1]) >= accepted);
});

test("connections to addresses that are not this node's, and from processes outside the cgroup, stay plain TCP", async (t) => {
  if (!requireKernel(t)) return;
  if (!requireOrSkip(t, await which("ip"), "ip (iproute2) not installed")) return;
  const ns = `agwt${process.pid}`;
  const suffix = (process.pid % 200) + 20;
  const [hostIp, nsIp] = [`10.231.${suffix}.1`, `10.231.${suffix}.2`];
  const ip = (...args: string[]) => run("ip", args);
  await ip("netns", "add", ns);
  t.after(() => ip("netns", "del", ns).catch(() => undefined));
  await ip("link", "add", `${ns}h`, "type", "veth", "peer", "name", `${ns}n`);
  t.after(() => ip("link", "del", `${ns}h`).catch(() => undefined));
  await ip("link", "set", `${ns}n`, "netns", ns);
  await ip("addr", "add", `${hostIp}/30`, "dev", `${ns}h`);
  await ip("link", "set", `${ns}h`, "up");
  await ip("-n", ns, "addr", "add", `${nsIp}/30`, "dev", `${ns}n`);
  await ip("-n", ns, "link", "set", `${ns}n`, "up");

  const cgroup = makeCgroup();
  const agent = await startAgentProcess(t, cgroup);
  const port = await freePort();
  const remote = spawn(
    "ip",
    ["netns", "exec", ns, process.execPath, "--input-type=module", "-e", ECHO, nsIp, String(port)],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  t.after(() => remote.kill("SIGKILL"));
  let remoteOut = "";
  remote.stdout.on("data", (d: Buffer) => {
    remoteOut += d.toString();
  });
  await waitFor("the remote echo server", () => (remoteOut.includes("listening") ? true : undefined));

  // a client in the cgroup talking to the other namespace: its peer is not this node's address
  const client = spawnIn(cgroup, process.execPath, [
    "--input-type=module",
    "-e",
    ECHO_CLIENT,
    nsIp,
    String(port),
  ]);
  t.after(() => client.stop("SIGKILL"));
  await waitFor(`the echo round trips\n${client.output()}`, () =>
    client.output().includes("echoed ok") ? true : undefined,
  );
  // an app in the cgroup, a client outside it (this process): only one end is eligible
  const local = spawnIn(cgroup, process.execPath, [
    "--input-type=module",
    "-e",
    ECHO,
    "127.0.0.1",
    String(port),
  ]);
  t.after(() => local.stop("SIGKILL"));
  await waitFor("the local echo server", () => (local.output().includes("listening") ? true : undefined));
  const outside = spawn(
    process.execPath,
    ["--input-type=module", "-e", ECHO_CLIENT, "127.0.0.1", String(port)],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let outsideOut = "";
  outside.stdout.on("data", (d: Buffer) => {
    outsideOut += d.toString();
  });
  await waitFor("the outside client", () => (outsideOut.includes("echoed ok") ? true : undefined));

  const { counters } = await agent.status();
  assert.equal(counters.redirects, 0, JSON.stringify(counters));
  assert.ok((counters.sockets_not_local ?? 0) >= 1, JSON.stringify(counters));
});

const ECHO = `
import net from "node:net";
net.createServer((s) => s.pipe(s)).listen(Number(process.argv[2]), process.argv[1], () => console.log("listening"));
`;
const ECHO_CLIENT = `
import net from "node:net";
const s = net.connect(Number(process.argv[2]), process.argv[1]);
const sent = Buffer.alloc(100000, "x");
let got = 0;
s.on("data", (d) => { got += d.length; if (got === sent.length) { console.log("echoed ok"); s.end(); } });
s.write(sent);
`;

test("agw ebpf-agent says what is missing and exits 1, or stays inert when asked", async (t) => {
  const missing = await run(process.execPath, [CLI, "ebpf-agent", "--cgroup", "/nonexistent/cgroup"]).then(
    () => assert.fail("expected exit 1"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot run: cgroup: \/nonexistent\/cgroup does not exist/);

  const metricsPort = await freePort();
  const inert = agw([
    "ebpf-agent",
    "--cgroup",
    "/nonexistent/cgroup",
    "--inert-if-unsupported",
    "--metrics",
    `127.0.0.1:${metricsPort}`,
  ]);
  t.after(() => inert.stop());
  await waitFor(`the inert agent\n${inert.output()}`, () =>
    inert.output().includes("inert") ? true : undefined,
  );
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(metrics, /^agw_ebpf_attached 0$/m);
  assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/ready`)).status, 503);
  assert.equal(await inert.stop(), 0);

  const usage = await run(process.execPath, [CLI, "ebpf-agent", "--port", "70000"]).then(
    () => assert.fail("expected a usage error"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--port: expected an integer 0\.\.65535, got "70000"/);
});

test("without privileges the agent names the capabilities it lacks", async (t) => {
  if (
    !requireOrSkip(
      t,
      process.getuid?.() === 0 && (await which("setpriv")),
      "needs root and setpriv to drop privileges",
    )
  )
    return;
  const root = cgroup2Root();
  if (!requireOrSkip(t, root !== undefined, "no cgroup2 file system mounted")) return;
  const denied = await run("setpriv", [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
    process.execPath,
    CLI,
    "ebpf-agent",
    "--cgroup",
    root ?? "",
  ]).then(
    () => assert.fail("expected exit 1"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(denied.code, 1, denied.stderr);
  assert.match(
    denied.stderr,
    /cannot run: capabilities: needs CAP_SYS_ADMIN, or CAP_BPF \+ CAP_NET_ADMIN \+ CAP_PERFMON/,
  );
});
