/**
 * Request smuggling and robustness on raw sockets: each case writes the same bytes to the gateway's
 * HTTP/1.1 engine (and, with AGW_HARDENING_TABLE=<file>, to nginx proxying to the same origin) and
 * records the responses, whether the connection was closed, and which requests reached the origin
 * complete. Assertions are on the gateway only: a request a strict RFC 9112 parser rejects never
 * reaches the origin, every answered request maps to exactly the request the origin saw, and a
 * connection kept open is still in sync (a follow-up request gets its own response).
 *
 * The origin is node:http (llhttp, strict mode): any request it fails to parse is recorded as an error
 * and fails the test. `AGW_HARDENING_TABLE=docs/hardening.md node --test test/hardening.test.ts`
 * rewrites the table in that file between its markers.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  cluster,
  config,
  endpoint,
  type Gateway,
  limits,
  startGateway,
  withLimits,
} from "../data-plane/test/gateway.ts";
import { parseResponses } from "../data-plane/test/net.ts";
import { freePort, ROOT, requireOrSkip, tempDir, waitFor } from "./helpers.ts";

/** The gateway's and nginx's header timeouts in this suite (slowloris). */
const HEADER_TIMEOUT_S = 1;

interface Case {
  readonly name: string;
  /** Bytes to send; several parts are written `delayMs` apart (slowloris). "{P}" is replaced by the case's path prefix. */
  readonly parts: readonly string[];
  readonly delayMs?: number;
  /** Statuses the gateway answers, in order. */
  readonly statuses: readonly number[];
  /** Paths (after the case prefix) the origin must receive complete, in order. */
  readonly upstream: readonly string[];
  /** The connection ends after the answers although none is an error (HTTP/1.0 without keep-alive). */
  readonly closes?: true;
}

const H = "Host: example.test\r\n";
const get = (path: string, extra = "") => `GET {P}${path} HTTP/1.1\r\n${H}${extra}\r\n`;
const post = (path: string, fields: string, body: string) =>
  `POST {P}${path} HTTP/1.1\r\n${H}${fields}\r\n${body}`;
const SMUGGLED = "GET {P}/smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n";

const CASES: readonly Case[] = [
  { name: "baseline GET", parts: [get("/ok")], statuses: [200], upstream: ["/ok"] },
  {
    name: "CL.TE: Content-Length and Transfer-Encoding, smuggled request in the body",
    parts: [post("/clte", "Content-Length: 50\r\nTransfer-Encoding: chunked\r\n", `0\r\n\r\n${SMUGGLED}`)],
    statuses: [400],
    upstream: [],
  },
  {
    name: "TE.CL: Transfer-Encoding before Content-Length",
    parts: [
      post("/tecl", "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", `3c\r\n${SMUGGLED}\r\n0\r\n\r\n`),
    ],
    statuses: [400],
    upstream: [],
  },
  {
    name: "TE.TE: `Transfer-Encoding: xchunked` with Content-Length",
    parts: [post("/te-x", "Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", "hello")],
    statuses: [501],
    upstream: [],
  },
  {
    name: "TE.TE: space before the colon",
    parts: [post("/te-sp", "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", "hello")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "TE.TE: two Transfer-Encoding fields (chunked, then identity)",
    parts: [post("/te-dup", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", "0\r\n\r\n")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "TE.TE: `chunked, identity`",
    parts: [post("/te-list", "Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n")],
    statuses: [501],
    upstream: [],
  },
  {
    name: "TE.TE: vertical tab before chunked",
    parts: [post("/te-vt", "Transfer-Encoding: \x0bchunked\r\nContent-Length: 5\r\n", "hello")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "TE.TE: obs-fold continuation of Transfer-Encoding",
    parts: [post("/te-fold", "Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n", "hello")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "TE: `CHUNKED` (coding names are case-insensitive)",
    parts: [post("/te-upper", "Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n")],
    statuses: [200],
    upstream: ["/te-upper"],
  },
  {
    name: "TE in an HTTP/1.0 request",
    parts: [`POST {P}/te10 HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    statuses: [400],
    upstream: [],
  },
  {
    name: "duplicate Content-Length, different values",
    parts: [post("/cl-dup", "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "duplicate Content-Length, same value",
    parts: [post("/cl-same", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello")],
    statuses: [200],
    upstream: ["/cl-same"],
  },
  {
    name: "Content-Length list `5, 5`",
    parts: [post("/cl-list", "Content-Length: 5, 5\r\n", "hello")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "Content-Length `+5`",
    parts: [post("/cl-plus", "Content-Length: +5\r\n", "hello")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "Content-Length of 20 digits",
    parts: [post("/cl-huge", "Content-Length: 18446744073709551621\r\n", "hello")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "chunk size overflowing 64 bits",
    parts: [post("/chunk-ovf", "Transfer-Encoding: chunked\r\n", "10000000000000005\r\nhello\r\n0\r\n\r\n")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "chunk size `0x5`",
    parts: [post("/chunk-0x", "Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "chunk size with trailing space, no extension",
    parts: [post("/chunk-ws", "Transfer-Encoding: chunked\r\n", "5 \r\nhello\r\n0\r\n\r\n")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "chunk extensions (`;a=b;c`)",
    parts: [post("/chunk-ext", "Transfer-Encoding: chunked\r\n", '5;a=b;c="d"\r\nhello\r\n0;z\r\n\r\n')],
    statuses: [200],
    upstream: ["/chunk-ext"],
  },
  {
    name: "chunk extension of 8 KiB",
    parts: [
      post(
        "/chunk-ext-long",
        "Transfer-Encoding: chunked\r\n",
        `5;${"a".repeat(8192)}\r\nhello\r\n0\r\n\r\n`,
      ),
    ],
    statuses: [400],
    upstream: [],
  },
  {
    name: "chunk data longer than its size",
    parts: [post("/chunk-long", "Transfer-Encoding: chunked\r\n", `5\r\nhelloXX\r\n0\r\n\r\n`)],
    statuses: [400],
    upstream: [],
  },
  {
    name: "chunk data ended by bare LF",
    parts: [post("/chunk-lf", "Transfer-Encoding: chunked\r\n", "5\nhello\n0\n\n")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "bare LF line endings",
    parts: ["GET {P}/bare-lf HTTP/1.1\nHost: example.test\n\n"],
    statuses: [400],
    upstream: [],
  },
  {
    name: "bare LF inside a field line",
    parts: [get("/bare-lf-field", "X-A: a\nX-B: b\r\n")],
    statuses: [400],
    upstream: [],
  },
  {
    name: "bare CR inside a field value",
    parts: [get("/bare-cr", "X-A: a\rb\r\n")],
    statuses: [400],
    upstream: [],
  },
  { name: "obs-fold", parts: [get("/fold", "X-A: a\r\n  b\r\n")], statuses: [400], upstream: [] },
  { name: "NUL in a field value", parts: [get("/nul", "X-A: a\0b\r\n")], statuses: [400], upstream: [] },
  {
    name: "NUL in the request-target",
    parts: [`GET {P}/nul\0t HTTP/1.1\r\n${H}\r\n`],
    statuses: [400],
    upstream: [],
  },
  { name: "empty field name", parts: [get("/empty-name", ": x\r\n")], statuses: [400], upstream: [] },
  {
    name: "leading empty line before the request",
    parts: [`\r\n${get("/lead")}`],
    statuses: [200],
    upstream: ["/lead"],
  },
  {
    name: "absolute-form target (its authority replaces Host)",
    parts: ["GET http://other.test{P}/abs HTTP/1.1\r\nHost: example.test\r\n\r\n"],
    statuses: [200],
    upstream: ["/abs"],
  },
  {
    name: "absolute-form with userinfo",
    parts: ["GET http://user@other.test{P}/abs-user HTTP/1.1\r\nHost: example.test\r\n\r\n"],
    statuses: [400],
    upstream: [],
  },
  {
    name: "absolute-form with an unknown scheme",
    parts: ["GET ftp://other.test{P}/abs-ftp HTTP/1.1\r\nHost: example.test\r\n\r\n"],
    statuses: [400],
    upstream: [],
  },
  {
    name: "missing Host (HTTP/1.1)",
    parts: ["GET {P}/no-host HTTP/1.1\r\n\r\n"],
    statuses: [400],
    upstream: [],
  },
  {
    name: "missing Host (HTTP/1.0)",
    parts: ["GET {P}/no-host10 HTTP/1.0\r\n\r\n"],
    statuses: [200],
    upstream: ["/no-host10"],
    closes: true,
  },
  { name: "duplicate Host", parts: [get("/host-dup", "Host: evil.test\r\n")], statuses: [400], upstream: [] },
  {
    name: "empty Host, then another Host",
    parts: ["GET {P}/host-empty-dup HTTP/1.1\r\nHost:\r\nHost: evil.test\r\n\r\n"],
    statuses: [400],
    upstream: [],
  },
  {
    name: "Host with a space",
    parts: ["GET {P}/host-space HTTP/1.1\r\nHost: a b\r\n\r\n"],
    statuses: [400],
    upstream: [],
  },
  { name: "HTTP/1.2", parts: [`GET {P}/v12 HTTP/1.2\r\n${H}\r\n`], statuses: [505], upstream: [] },
  {
    name: "lower-case `http/1.1`",
    parts: [`GET {P}/vlower http/1.1\r\n${H}\r\n`],
    statuses: [400],
    upstream: [],
  },
  {
    name: "a 70 KiB field",
    parts: [get("/big-field", `X-Big: ${"a".repeat(70 * 1024)}\r\n`)],
    statuses: [431],
    upstream: [],
  },
  {
    name: "150 fields",
    parts: [get("/many", Array.from({ length: 150 }, (_, i) => `X-F${i}: v\r\n`).join(""))],
    statuses: [431],
    upstream: [],
  },
  {
    name: `slowloris: one byte every 200 ms (header timeout ${HEADER_TIMEOUT_S} s)`,
    parts: [`GET {P}/slow HTTP/1.1\r\n${H}`, ...Array.from({ length: 20 }, (_, i) => `${"X-Slow"[i % 6]}`)],
    delayMs: 200,
    statuses: [408],
    upstream: [],
  },
  {
    name: "pipelining: three requests in one write",
    parts: [get("/p1") + post("/p2", "Content-Length: 5\r\n", "hello") + get("/p3")],
    statuses: [200, 200, 200],
    upstream: ["/p1", "/p2", "/p3"],
  },
  {
    name: "pipelining: a valid request, then a malformed one",
    parts: [`${get("/pv")}GET {P}/pbad HTTP/1.1\r\nHost: example.test\r\nX: a\0\r\n\r\n`],
    statuses: [200, 400],
    upstream: ["/pv"],
  },
];

interface Seen {
  readonly complete: string[];
  cut: number;
  readonly parseErrors: string[];
}

/** node:http origin answering `seen <url>` once the request body has ended. */
async function startOrigin(): Promise<{ port: number; seen: Seen; close(): Promise<void> }> {
  const seen: Seen = { complete: [], cut: 0, parseErrors: [] };
  const server = http.createServer({ keepAliveTimeout: 30000 }, (req, res) => {
    let ended = false;
    req.on("end", () => {
      ended = true;
      seen.complete.push(req.url ?? "");
      const body = `seen ${req.url}`;
      res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
    req.on("close", () => {
      if (!ended) seen.cut++;
    });
    req.resume();
  });
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (err.code !== "ECONNRESET") seen.parseErrors.push(`${err.code}: ${err.message}`);
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface Outcome {
  readonly data: Buffer;
  readonly closed: boolean;
  /** Response to a follow-up request sent when the connection stayed open, "" if none was sent. */
  readonly followUp: string;
}

/**
 * Writes the parts, then collects until the server closes or sends nothing for `idleMs`; if it kept
 * the connection open, sends a follow-up request (Connection: close) and collects its response.
 */
function exchange(port: number, parts: readonly string[], delayMs: number, prefix: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let followUpFrom = -1;
    let closed = false;
    let idle: NodeJS.Timeout | undefined;
    const s = net.connect(port, "127.0.0.1");
    const finish = () => {
      clearTimeout(idle);
      clearTimeout(cap);
      s.destroy();
      const all = Buffer.concat(chunks);
      const data = followUpFrom < 0 ? all : all.subarray(0, followUpFrom);
      const followUp = followUpFrom < 0 ? "" : all.subarray(followUpFrom).toString("latin1");
      resolve({ data, closed, followUp });
    };
    const cap = setTimeout(finish, 10000);
    const armIdle = (ms: number) => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        if (followUpFrom >= 0) return finish();
        followUpFrom = chunks.reduce((n, c) => n + c.length, 0);
        s.write(`GET ${prefix}/after HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`);
        armIdle(2000);
      }, ms);
    };
    s.on("data", (c: Buffer) => {
      chunks.push(c);
      armIdle(500);
    });
    s.on("error", () => {});
    s.on("close", () => {
      closed = followUpFrom < 0;
      finish();
    });
    let i = 0;
    const writeNext = () => {
      if (s.destroyed) return;
      s.write(Buffer.from((parts[i] as string).replaceAll("{P}", prefix), "latin1"));
      if (++i < parts.length) setTimeout(writeNext, delayMs);
      else armIdle(delayMs > 0 ? 3000 : 1000);
    };
    s.on("connect", writeNext);
  });
}

interface Observed {
  readonly statuses: number[];
  readonly closed: boolean;
  readonly followUp: string;
  readonly rest: number;
  readonly bodies: string[];
  readonly upstream: string[];
}

async function observe(port: number, origin: Seen, c: Case, prefix: string): Promise<Observed> {
  const o = await exchange(port, c.parts, c.delayMs ?? 0, prefix);
  const { responses, rest } = parseResponses(o.data);
  // A request the proxy forwarded was written upstream before the exchange ended; a sentinel sent
  // through the proxy now reaches the origin after it, so once the origin has the sentinel, it has
  // everything the case made the proxy forward.
  const sentinel = `${prefix}/sentinel`;
  const s = net.connect(port, "127.0.0.1", () =>
    s.write(`GET ${sentinel} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`),
  );
  s.on("error", () => {});
  s.resume();
  await waitFor(`the origin to see ${sentinel}`, () =>
    origin.complete.includes(sentinel) ? true : undefined,
  );
  s.destroy();
  return {
    statuses: responses.map((r) => r.status),
    closed: o.closed,
    followUp: o.followUp,
    rest,
    bodies: responses.map((r) => r.body.toString("latin1")),
    upstream: origin.complete
      .filter((u) => u.startsWith(`${prefix}/`) && u !== sentinel)
      .map((u) => u.slice(prefix.length)),
  };
}

let origin: Awaited<ReturnType<typeof startOrigin>>;
let gateway: Gateway;
const observed = new Map<string, Observed>();

before(async () => {
  origin = await startOrigin();
  const c = cluster("origin", [endpoint(origin.port)]);
  const cfg = config("v1", [{ prefix: "/", cluster: "origin" }], [c]);
  gateway = await startGateway(withLimits(cfg, limits({ headerTimeoutMs: HEADER_TIMEOUT_S * 1000 })));
});

after(async () => {
  await gateway?.close();
  await origin?.close();
});

test("hardening: every case on raw sockets (the gateway never forwards what it rejects and never desyncs)", async () => {
  await Promise.all(
    CASES.map(async (c, i) => {
      observed.set(c.name, await observe(gateway.port, origin.seen, c, `/agw${i}`));
    }),
  );
  const failures: string[] = [];
  const check = (what: () => void) => {
    try {
      what();
    } catch (e) {
      failures.push((e as Error).message);
    }
  };
  for (const [i, c] of CASES.entries()) {
    const o = observed.get(c.name) as Observed;
    const label = `${c.name}: ${JSON.stringify(o)}`;
    check(() => assert.deepEqual(o.statuses, c.statuses, label));
    check(() => assert.equal(o.rest, 0, `${label}: bytes after the last complete response`));
    check(() =>
      assert.deepEqual(
        o.upstream.filter((p) => p !== "/after"),
        c.upstream,
        label,
      ),
    );
    // Each forwarded request's response is the origin's answer to that very request.
    const forwarded = o.bodies.filter((b) => b.startsWith("seen "));
    check(() =>
      assert.deepEqual(
        forwarded,
        c.upstream.map((p) => `seen /agw${i}${p}`),
        `${label}: responses out of step with requests`,
      ),
    );
    if (c.closes || c.statuses.some((s) => s >= 400))
      check(() => assert.equal(o.closed, true, `${label}: rejected, so closed`));
    else check(() => assert.match(o.followUp, new RegExp(`seen /agw${i}/after`), `${label}: still in sync`));
  }
  assert.deepEqual(failures, []);
  assert.deepEqual(origin.seen.parseErrors, [], "the origin's strict parser rejected something we forwarded");
});

/**
 * The same bytes against nginx. With AGW_HARDENING_TABLE=<file> the side-by-side table is written
 * there; without it, the table in docs/hardening.md must match what both proxies do now, so the
 * published comparison cannot go stale.
 */
test("hardening: the same bytes against nginx, as tabled in docs/hardening.md", async (t) => {
  const file = process.env.AGW_HARDENING_TABLE;
  const nginxBin = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => spawnSync(p, ["-v"]).status === 0);
  if (!requireOrSkip(t, nginxBin !== undefined, "nginx is not installed (apt-get install nginx-light)"))
    return;
  const nginx = await startNginx(nginxBin as string, origin.port);
  const theirs = new Map<string, Observed>();
  try {
    await Promise.all(
      CASES.map(async (c, i) => theirs.set(c.name, await observe(nginx.port, origin.seen, c, `/ngx${i}`))),
    );
  } finally {
    nginx.child.kill("SIGKILL");
  }
  const cell = (o: Observed) => {
    const resp = o.statuses.length === 0 ? "no response" : o.statuses.join(", ");
    const conn = o.closed ? "closed" : o.followUp.includes("/after") ? "open, in sync" : "open";
    const forwarded = o.upstream.filter((p) => p !== "/after").length;
    const up = forwarded === 0 ? "none" : String(forwarded);
    return `${resp}; ${conn}; upstream: ${up}`;
  };
  const rows = CASES.map((c) => {
    const ours = observed.get(c.name) as Observed;
    const bytes = c.parts
      .join("")
      .replaceAll("{P}", "")
      .replace(/a{64,}/g, (m) => `a×${m.length}`)
      .replace(/(X-F\d+: v\r\n){4,}/g, (m) => `[${m.split("\r\n").length - 1} fields]`);
    const shown = JSON.stringify(bytes.length > 110 ? `${bytes.slice(0, 107)}...` : bytes)
      .replaceAll("|", "\\|")
      .replaceAll("`", "'");
    return `| ${c.name.replaceAll("|", "\\|")} | \`${shown}\` | ${cell(ours)} | ${cell(theirs.get(c.name) as Observed)} |`;
  });
  const nginxVersion = spawnSync(nginxBin as string, ["-v"])
    .stderr.toString()
    .trim();
  const table = [
    `Generated by \`AGW_HARDENING_TABLE=${file} node --test test/hardening.test.ts\` on ${new Date().toISOString().slice(0, 10)} (${nginxVersion}, default settings plus \`client_header_timeout ${HEADER_TIMEOUT_S}s\`).`,
    "",
    "| case | bytes sent | AGW | nginx |",
    "| --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
  const target = file ?? join(ROOT, "docs/hardening.md");
  const doc = readFileSync(target, "utf8");
  const start = "<!-- hardening-table:start -->";
  const end = "<!-- hardening-table:end -->";
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  assert.ok(a >= 0 && b > a, `${target} has no ${start} ... ${end} markers`);
  if (file !== undefined) {
    writeFileSync(file, `${doc.slice(0, a + start.length)}\n${table}\n${doc.slice(b)}`);
    return;
  }
  const published = doc
    .slice(a + start.length, b)
    .split("\n")
    .filter((line) => line.startsWith("| ") && !line.startsWith("| case") && !line.startsWith("| ---"));
  assert.deepEqual(
    rows,
    published,
    "docs/hardening.md is stale: regenerate it with AGW_HARDENING_TABLE=docs/hardening.md node --test test/hardening.test.ts",
  );
});

async function startNginx(bin: string, originPort: number): Promise<{ port: number; child: ChildProcess }> {
  const dir = tempDir("agw-hardening-nginx-");
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  client_header_timeout ${HEADER_TIMEOUT_S}s;
  upstream origin {
    server 127.0.0.1:${originPort};
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const child = spawn(bin, ["-p", dir, "-e", `${dir}/error.log`, "-c", conf], { stdio: "ignore" });
  await waitFor("nginx to listen", async () => {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        r(true);
      });
      s.on("error", () => r(false));
    });
    return ok ? true : undefined;
  });
  return { port, child };
}
