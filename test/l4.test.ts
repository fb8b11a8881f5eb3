/**
 * L4 listeners end to end (docs/l4.md): `agw run` with a tcp and a tls-passthrough listener, real
 * clients (node:net, `openssl s_client`) and real backends (TCP echo servers, one in a process of its
 * own that is killed mid-stream, two TLS servers with their own certificates).
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import tls from "node:tls";
import { promisify } from "node:util";
import {
  CLI,
  freePort,
  get,
  type Proc,
  type RunningGateway,
  requireOrSkip,
  startGateway,
  tempDir,
  tracked,
  waitFor,
} from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const run = promisify(execFile);
const HAS_OPENSSL = hasOpenssl();

interface Backends {
  echoPort: number;
  deadPort: number;
  mortal: Proc;
  mortalPort: number;
  tlsA: { port: number; accepted: number };
  tlsB: { port: number; accepted: number };
  caFile: string;
}

let dir = "";
let gw: RunningGateway | undefined;
let backends: Backends | undefined;
const servers: Array<net.Server> = [];
const ports = { tcp: 0, checked: 0, mortal: 0, tls: 0, limited: 0, retrying: 0 };
let accessLog = "";
let configFile = "";

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  return (server.address() as net.AddressInfo).port;
}

/** A TCP echo server that passes half-closes on (the client's FIN ends the echo). */
function echoServer(): net.Server {
  return net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
}

/** An echo server in a process of its own, to be killed; resolves with its port. */
async function mortalEcho(): Promise<{ proc: Proc; port: number }> {
  const script = `const s=require("node:net").createServer(c=>{c.on("error",()=>{});c.pipe(c)});s.listen(0,"127.0.0.1",()=>console.log("port "+s.address().port))`;
  const proc = tracked(spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "pipe"] }));
  const port = await waitFor("the mortal echo server's port", () => {
    const m = /port (\d+)/.exec(proc.output());
    return m ? Number(m[1]) : undefined;
  });
  return { proc, port };
}

before(async () => {
  if (!HAS_OPENSSL) return;
  dir = tempDir("agw-l4-");
  const ca = makeCa(dir, "l4-ca");
  const a = makeLeaf(dir, ca, { cn: "a.example.com", sans: ["DNS:a.example.com"] });
  const b = makeLeaf(dir, ca, { cn: "wild.b.example.com", sans: ["DNS:*.b.example.com"] });
  const tlsServer = (
    cert: { certPem: string; keyPem: string },
    name: string,
    counter: { accepted: number },
  ) =>
    tls.createServer({ cert: cert.certPem, key: cert.keyPem }, (s) => {
      counter.accepted++;
      s.on("error", () => {});
      s.end(`hello from ${name}\n`);
    });
  const tlsA = { port: 0, accepted: 0 };
  const tlsB = { port: 0, accepted: 0 };
  tlsA.port = await listen(tlsServer(a, "backend-a", tlsA));
  tlsB.port = await listen(tlsServer(b, "backend-b", tlsB));
  const dead = net.createServer();
  const deadPort = await listen(dead);
  dead.close(); // nothing listens there any more: connections are refused
  const mortal = await mortalEcho();
  backends = {
    echoPort: await listen(echoServer()),
    deadPort,
    mortal: mortal.proc,
    mortalPort: mortal.port,
    tlsA,
    tlsB,
    caFile: ca.certFile,
  };
  [ports.tcp, ports.checked, ports.mortal, ports.tls, ports.limited, ports.retrying] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  accessLog = join(dir, "access.log");
  const file = join(dir, "config.yaml");
  configFile = file;
  writeFileSync(
    file,
    `listeners:
  - name: tcp
    address: 127.0.0.1
    port: ${ports.tcp}
    protocol: tcp
    cluster: echo
  - name: checked
    address: 127.0.0.1
    port: ${ports.checked}
    protocol: tcp
    cluster: half-dead
  - name: mortal
    address: 127.0.0.1
    port: ${ports.mortal}
    protocol: tcp
    cluster: mortal
  - name: passthrough
    address: 127.0.0.1
    port: ${ports.tls}
    protocol: tls-passthrough
    sni:
      - serverNames: [a.example.com]
        cluster: tls-a
      - serverNames: ["*.b.example.com"]
        cluster: tls-b
    l4:
      clientHelloTimeout: 1s
      maxClientHelloBytes: 4096
  - name: limited
    address: 127.0.0.1
    port: ${ports.limited}
    protocol: tcp
    cluster: echo
    l4: { idleTimeout: 500ms, maxConnections: 1 }
  - name: retrying
    address: 127.0.0.1
    port: ${ports.retrying}
    protocol: tcp
    cluster: ejecting
    l4: { maxConnectAttempts: 2 }
clusters:
  - name: echo
    endpoints: ["127.0.0.1:${backends.echoPort}"]
  - name: half-dead
    endpoints: ["127.0.0.1:${backends.echoPort}", "127.0.0.1:${deadPort}"]
    healthCheck: { type: tcp, interval: 200ms, timeout: 500ms, unhealthyThreshold: 1, healthyThreshold: 1 }
  - name: mortal
    endpoints: ["127.0.0.1:${mortal.port}"]
  - name: ejecting
    endpoints: ["127.0.0.1:${deadPort}", "127.0.0.1:${backends.echoPort}"]
    outlierDetection: { consecutiveGatewayErrors: 1, maxEjectionPercent: 50, baseEjectionTime: 60s }
  - name: tls-a
    endpoints: ["127.0.0.1:${tlsA.port}"]
  - name: tls-b
    endpoints: ["127.0.0.1:${tlsB.port}"]
`,
  );
  gw = await startGateway(file, ["--access-log", accessLog]);
});

after(async () => {
  await gw?.proc.stop();
  await backends?.mortal.stop("SIGKILL");
  for (const s of servers) s.close();
});

/** Connects, writes `data`, half-closes, and resolves with everything read until the server's FIN. */
function exchange(port: number, data: Buffer, timeoutMs = 30_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no end from port ${port} within ${timeoutMs} ms (${chunks.length} chunks read)`));
    }, timeoutMs);
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("end", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    s.end(data);
  });
}

/** Resolves once the connection is closed by the other side (or reset), with what was read. */
function closedBy(s: net.Socket, timeoutMs: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on("data", (d: Buffer) => chunks.push(d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`${what}: the gateway did not close the connection within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

function logLines(): Array<Record<string, unknown>> {
  return readFileSync(accessLog, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Waits for an access log line of `listener` matching `pick` (the log is written in batches). */
function logLine(
  listener: string,
  pick: (l: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  return waitFor(`an access log line of ${listener}`, () =>
    logLines().find((l) => l.listener === listener && pick(l)),
  );
}

async function metrics(): Promise<string> {
  return (await get(`http://127.0.0.1:${(gw as RunningGateway).adminPort}/stats/prometheus`)).body;
}

test("TCP: echo, and 32 MiB both ways with the same checksum, half-close passed on", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl is needed for the test's certificates")) return;
  assert.equal((await exchange(ports.tcp, Buffer.from("ping\n"))).toString(), "ping\n");
  const bulk = randomBytes(32 * 1024 * 1024);
  const back = await exchange(ports.tcp, bulk, 120_000);
  assert.equal(back.length, bulk.length);
  assert.equal(
    createHash("sha256").update(back).digest("hex"),
    createHash("sha256").update(bulk).digest("hex"),
  );
  const line = await logLine("tcp", (l) => l.bytes_received === bulk.length);
  assert.equal(line.protocol, "tcp");
  assert.equal(line.bytes_sent, bulk.length);
  assert.equal(line.upstream_cluster, "echo");
  assert.equal(line.upstream_host, `127.0.0.1:${backends?.echoPort}`);
  assert.equal(line.response_flags, null);
  assert.equal(typeof line.duration_ms, "number");
  const m = await metrics();
  assert.match(m, /agw_l4_connections_total\{listener="tcp",cluster="echo",outcome="ok"\} 2/);
  const received = /agw_l4_bytes_total\{listener="tcp",cluster="echo",direction="received"\} (\d+)/.exec(m);
  assert.equal(Number(received?.[1]), bulk.length + 5);
});

test("TCP: an upstream killed mid-stream closes the client's connection", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl is needed for the test's certificates")) return;
  const s = net.connect({ host: "127.0.0.1", port: ports.mortal });
  const closed = closedBy(s, 10_000, "upstream killed");
  s.write("first\n");
  await waitFor("the first echo", () => (s.bytesRead >= 6 ? true : undefined));
  // Keep writing while the upstream dies.
  const writer = setInterval(() => s.writable && s.write(randomBytes(4096)), 5);
  await backends?.mortal.stop("SIGKILL");
  try {
    const read = await closed;
    assert.ok(read.length >= 6);
  } finally {
    clearInterval(writer);
  }
  const line = await logLine("mortal", () => true);
  assert.equal(line.upstream_cluster, "mortal");
  // A new connection finds nobody listening: refused, and the client is closed at once.
  const again = net.connect({ host: "127.0.0.1", port: ports.mortal });
  await closedBy(again, 10_000, "connect refused");
  await logLine("mortal", (l) => l.response_flags === "upstream_connect_failed");
});

test("TCP: health checks take a dead endpoint out of load balancing", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl is needed for the test's certificates")) return;
  const adminPort = (gw as RunningGateway).adminPort;
  await waitFor("the dead endpoint marked unhealthy", async () => {
    const clusters = JSON.parse((await get(`http://127.0.0.1:${adminPort}/clusters`)).body) as Array<{
      name: string;
      endpoints: Array<{ address: string; health: string }>;
    }>;
    const ep = clusters
      .find((c) => c.name === "half-dead")
      ?.endpoints.find((e) => e.address === `127.0.0.1:${backends?.deadPort}`);
    return ep?.health === "unhealthy" ? true : undefined;
  });
  // Round robin over two endpoints would send every other connection to the dead one.
  for (let i = 0; i < 10; i++)
    assert.equal((await exchange(ports.checked, Buffer.from(`n${i}`))).toString(), `n${i}`);
});

test("TCP: the listener's connection limit refuses the second connection; the idle timeout closes the first", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl is needed for the test's certificates")) return;
  const first = net.connect({ host: "127.0.0.1", port: ports.limited });
  const firstClosed = closedBy(first, 10_000, "idle connection");
  first.write("x");
  await waitFor("the first connection's echo", () => (first.bytesRead >= 1 ? true : undefined));
  const second = net.connect({ host: "127.0.0.1", port: ports.limited });
  const secondRead = await closedBy(second, 5_000, "the connection over the limit");
  assert.equal(secondRead.length, 0);
  await logLine("limited", (l) => l.response_flags === "overflow");
  await firstClosed; // silent both ways for 500 ms
  const idle = await logLine("limited", (l) => l.response_flags === "idle_timeout");
  assert.equal(idle.bytes_received, 1);
  assert.equal(idle.bytes_sent, 1);
  // The slot is free again.
  assert.equal((await exchange(ports.limited, Buffer.from("again"))).toString(), "again");
});

test("TCP: a failed connect moves to another endpoint and outlier detection ejects the failing one", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl is needed for the test's certificates")) return;
  for (let i = 0; i < 6; i++)
    assert.equal((await exchange(ports.retrying, Buffer.from(`r${i}`))).toString(), `r${i}`);
  const adminPort = (gw as RunningGateway).adminPort;
  const clusters = JSON.parse((await get(`http://127.0.0.1:${adminPort}/clusters`)).body) as Array<{
    name: string;
    counters?: { ejections: number };
    endpoints: Array<{ address: string; health: string }>;
  }>;
  const ejecting = clusters.find((c) => c.name === "ejecting");
  assert.equal(
    ejecting?.endpoints.find((e) => e.address === `127.0.0.1:${backends?.deadPort}`)?.health,
    "ejected",
  );
  assert.equal(ejecting?.counters?.ejections, 1);
});

/** `openssl s_client` through the passthrough listener; resolves with its output (stdout + stderr). */
async function sClient(servername: string): Promise<string> {
  const args = ["s_client", "-connect", `127.0.0.1:${ports.tls}`, "-servername", servername];
  args.push("-CAfile", (backends as Backends).caFile, "-verify_hostname", servername, "-ign_eof");
  const child = spawn("openssl", args, { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stdin.end();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await new Promise((r) => child.once("exit", r));
  clearTimeout(timer);
  return out;
}

test("TLS passthrough: two names reach two backends, each client sees its backend's certificate", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl s_client is needed")) return;
  const a = await sClient("a.example.com");
  assert.match(a, /subject=CN ?= ?a\.example\.com/);
  assert.match(a, /Verify return code: 0 \(ok\)/);
  assert.match(a, /hello from backend-a/);
  const b = await sClient("x.b.example.com");
  assert.match(b, /subject=CN ?= ?wild\.b\.example\.com/);
  assert.match(b, /Verify return code: 0 \(ok\)/);
  assert.match(b, /hello from backend-b/);
  const line = await logLine("passthrough", (l) => l.sni === "x.b.example.com");
  assert.equal(line.protocol, "tls-passthrough");
  assert.equal(line.upstream_cluster, "tls-b");
  assert.ok((line.bytes_received as number) > 0 && (line.bytes_sent as number) > 0);
});

test("TLS passthrough: an unknown name, and two labels under a one-label wildcard, are refused", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl s_client is needed")) return;
  const before = (backends as Backends).tlsA.accepted + (backends as Backends).tlsB.accepted;
  for (const name of ["unknown.example.com", "y.x.b.example.com"]) {
    const out = await sClient(name);
    assert.match(out, /unrecognized name/, out);
    assert.doesNotMatch(out, /hello from/);
    await logLine("passthrough", (l) => l.sni === name && l.response_flags === "route_not_found");
  }
  assert.equal((backends as Backends).tlsA.accepted + (backends as Backends).tlsB.accepted, before);
  assert.match(
    await metrics(),
    /agw_l4_connections_total\{listener="passthrough",cluster="",outcome="route_not_found"\} 2/,
  );
});

test("TLS passthrough: malformed and oversized ClientHellos are refused at once", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl is needed for the test's certificates")) return;
  const attempts: Array<[string, Buffer, string]> = [
    ["plain HTTP", Buffer.from("GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"), "client_hello_invalid"],
    // A handshake record whose ClientHello body is shorter than its own fields say.
    ["lying lengths", Buffer.from([22, 3, 1, 0, 8, 1, 0, 0, 4, 3, 3, 0, 0]), "client_hello_invalid"],
    // A record header announcing a 16 KiB ClientHello, over the listener's 4096-byte limit.
    ["oversized", Buffer.from([22, 3, 1, 0x40, 0x00, 1, 0x00, 0x3f, 0xfc]), "client_hello_too_large"],
  ];
  for (const [what, bytes, flag] of attempts) {
    const s = net.connect({ host: "127.0.0.1", port: ports.tls });
    // Well under the 1 s ClientHello timeout: refused on its bytes, not timed out.
    const closed = closedBy(s, 900, what);
    s.write(bytes);
    const answer = await closed;
    assert.deepEqual([...answer], [21, 3, 3, 0, 2, 2, 50], `${what}: a decode_error alert`);
    await logLine("passthrough", (l) => l.response_flags === flag);
  }
});

test("TLS passthrough: a slow first byte and a trickled ClientHello are cut at the timeout", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl is needed for the test's certificates")) return;
  const silent = net.connect({ host: "127.0.0.1", port: ports.tls });
  await closedBy(silent, 10_000, "no first byte");
  // Slowloris: a real ClientHello prefix, one byte every 50 ms, never re-arms the 1 s deadline.
  const hello = Buffer.from([22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3, ...randomBytes(190)]);
  const slow = net.connect({ host: "127.0.0.1", port: ports.tls });
  const closed = closedBy(slow, 10_000, "trickled hello");
  let i = 0;
  const trickle = setInterval(() => {
    if (slow.writable && i < hello.length) slow.write(hello.subarray(i, ++i));
  }, 50);
  try {
    await closed;
  } finally {
    clearInterval(trickle);
  }
  assert.ok(i < hello.length, "closed before the whole hello was sent");
  await logLine("passthrough", (l) => l.response_flags === "client_hello_timeout");
});

test("a config change reroutes new connections and leaves open ones alone", async (t) => {
  if (!requireOrSkip(t, HAS_OPENSSL, "openssl s_client is needed")) return;
  const open = net.connect({ host: "127.0.0.1", port: ports.tcp });
  open.on("error", () => {});
  open.write("before");
  await waitFor("the echo before the change", () => (open.bytesRead >= 6 ? true : undefined));
  const config = readFileSync(configFile, "utf8");
  writeFileSync(configFile, config.replace("cluster: tls-a", "cluster: tls-b"));
  await waitFor(
    "a.example.com routed to backend-b",
    async () => ((await sClient("a.example.com")).includes("hello from backend-b") ? true : undefined),
    30_000,
  );
  await logLine("passthrough", (l) => l.sni === "a.example.com" && l.upstream_cluster === "tls-b");
  let echoed = "";
  open.on("data", (d: Buffer) => {
    echoed += d.toString();
  });
  open.write("after");
  await waitFor("the open connection's echo after the change", () =>
    echoed.endsWith("after") ? true : undefined,
  );
  open.destroy();
});

test("agw validate: a tcp listener with routes or without a cluster is an error at its line", async () => {
  const file = join(tempDir(), "config.yaml");
  writeFileSync(
    file,
    `listeners:
  - name: db
    port: 5432
    protocol: tcp
    routes:
      - { name: r, cluster: pg }
  - name: tls
    port: 8443
    protocol: tls-passthrough
    sni:
      - serverNames: ["*.Example.com"]
        cluster: pg
  - name: web
    port: 8080
    cluster: pg
clusters:
  - name: pg
    endpoints: ["127.0.0.1:5433"]
`,
  );
  const failure = await run(process.execPath, [CLI, "validate", "-c", file]).then(
    () => assert.fail("expected exit 1"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(failure.code, 1);
  assert.match(
    failure.stderr,
    new RegExp(`${file}:6 listeners\\[0\\]\\.routes: a tcp listener has no routes`),
  );
  assert.match(
    failure.stderr,
    new RegExp(`${file}:4 listeners\\[0\\]\\.protocol: a tcp listener needs cluster`),
  );
  assert.match(
    failure.stderr,
    new RegExp(
      `${file}:11 listeners\\[1\\]\\.sni\\[0\\]\\.serverNames\\[0\\]: expected a lower-case DNS name`,
    ),
  );
  assert.match(
    failure.stderr,
    new RegExp(`${file}:15 listeners\\[2\\]\\.cluster: cluster needs protocol: tcp or tls-passthrough`),
  );
});
