import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ChunkedDecoder,
  connectTarget,
  HEAD_ERRORS,
  type HeadError,
  HeadScanner,
  parseRequestHead,
  parseResponseHead,
  RequestHead,
  ResponseHead,
} from "./http1-parser.ts";

function parseReq(text: string, maxBytes = 65536, maxFields = 100): RequestHead | HeadError | "more" {
  const buf = Buffer.from(text, "latin1");
  const sc = new HeadScanner();
  const n = sc.scan(buf, maxBytes, maxFields);
  if (n === 0) return "more";
  if (n < 0) return sc.error as HeadError;
  const h = new RequestHead();
  return parseRequestHead(buf, sc, h) ?? h;
}

/** The parsed head, or the key of the error it was rejected with. */
function outcome(text: string): RequestHead | string {
  const r = parseReq(text);
  if (r === "more") return "more";
  return r instanceof RequestHead
    ? r
    : (Object.entries(HEAD_ERRORS).find(([, e]) => e === r)?.[0] ?? r.message);
}

function req(text: string): RequestHead {
  const r = outcome(text);
  assert.ok(r instanceof RequestHead, `rejected: ${String(r)}`);
  return r;
}

describe("request head", () => {
  it("parses a simple GET", () => {
    const h = parseReq("GET /a/b?x=1&y HTTP/1.1\r\nHost: Example.COM:8080\r\nX-A: 1\r\nx-a:  2 \r\n\r\n");
    assert.ok(h instanceof RequestHead);
    assert.equal(h.method, "GET");
    assert.equal(h.path, "/a/b");
    assert.equal(h.query, "x=1&y");
    assert.equal(h.host, "example.com");
    assert.equal(h.rawHost, "Example.COM:8080");
    assert.equal(h.header("x-a"), "1, 2");
    assert.equal(h.contentLength, -1);
    assert.equal(h.keepAlive, true);
  });

  it("is incremental and returns the head length", () => {
    const text = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    const full = Buffer.from(text);
    const sc = new HeadScanner();
    for (let i = 1; i < text.length - 3; i++) assert.equal(sc.scan(full.subarray(0, i), 65536, 100), 0);
    assert.equal(sc.scan(full, 65536, 100), text.length - 3);
  });

  it("ignores empty lines before the request line", () => {
    const h = parseReq("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.ok(h instanceof RequestHead);
  });

  it("HTTP/1.0 keep-alive semantics and absolute-form", () => {
    const a = parseReq("GET / HTTP/1.0\r\n\r\n");
    assert.ok(a instanceof RequestHead && !a.keepAlive && a.minor === 0);
    const b = parseReq("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert.ok(b instanceof RequestHead && b.keepAlive);
    const c = parseReq("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert.ok(c instanceof RequestHead && !c.keepAlive);
    const d = parseReq("GET http://Other.example:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.ok(d instanceof RequestHead);
    assert.equal(d.host, "other.example");
    assert.equal(d.originForm, "/p?q");
  });

  it("merges identical duplicate Content-Length", () => {
    const h = parseReq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
    assert.ok(h instanceof RequestHead);
    assert.equal(h.contentLength, 5);
    assert.equal(h.names.filter((n) => n === "content-length").length, 1);
  });

  const rejects: Array<[string, string, keyof typeof HEAD_ERRORS]> = [
    [
      "CL + TE",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      "clAndTe",
    ],
    [
      "differing CL",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "contentLengthConflict",
    ],
    ["CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", "contentLength"],
    ["negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "contentLength"],
    ["plus CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", "contentLength"],
    ["hex CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", "contentLength"],
    [
      "overflow CL",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
      "contentLength",
    ],
    ["empty CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", "contentLength"],
    ["unknown TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "teUnknown"],
    [
      "chunked not alone",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "teUnknown",
    ],
    [
      "chunked twice",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
      "teUnknown",
    ],
    ["malformed TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", "teInvalid"],
    [
      "TE with space inside",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n",
      "teInvalid",
    ],
    [
      "duplicate TE",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      "teDuplicate",
    ],
    ["TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "teHttp10"],
    ["obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n", "obsFold"],
    ["tab fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcontinued\r\n\r\n", "obsFold"],
    ["NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u0000b\r\n\r\n", "ctl"],
    ["VT in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u000bb\r\n\r\n", "ctl"],
    ["DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u007fb\r\n\r\n", "ctl"],
    ["bare LF line end", "GET / HTTP/1.1\nHost: a\n\n", "bareLF"],
    ["bare LF in header", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\nX-B: 2\r\n\r\n", "bareLF"],
    ["bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n", "bareCR"],
    ["space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", "spaceBeforeColon"],
    ["tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\t: 1\r\n\r\n", "spaceBeforeColon"],
    ["bad name char", "GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", "fieldName"],
    ["empty name", "GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", "fieldName"],
    ["no colon", "GET / HTTP/1.1\r\nHost: a\r\nXA\r\n\r\n", "noColon"],
    ["bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "method"],
    ["empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", "method"],
    ["double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "target"],
    ["bad target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", "target"],
    ["asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", "target"],
    ["tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", "target"],
    ["HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", "versionUnsupported"],
    ["HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", "versionUnsupported"],
    ["garbage version", "GET / HTTX/1.1\r\nHost: a\r\n\r\n", "version"],
    ["lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", "version"],
    ["no version", "GET /\r\nHost: a\r\n\r\n", "target"],
    ["missing Host", "GET / HTTP/1.1\r\n\r\n", "hostMissing"],
    ["duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "hostDuplicate"],
    ["invalid Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "host"],
    ["CONNECT without a port", "CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", "connectTarget"],
    ["CONNECT to a path", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", "connectTarget"],
    [
      "CONNECT with content",
      "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 1\r\n\r\nx",
      "connectBody",
    ],
  ];
  for (const [name, text, expected] of rejects) {
    const e = HEAD_ERRORS[expected];
    it(`rejects ${name} with ${e.status} (${e.message})`, () => assert.equal(parseReq(text), e));
  }

  it("limits head size and field count with 431", () => {
    const big = `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"x".repeat(2000)}\r\n\r\n`;
    assert.equal((parseReq(big, 1024) as HeadError).status, 431);
    // Without CRLFCRLF yet, still over the limit: 431 rather than waiting forever.
    assert.equal((parseReq(`GET / HTTP/1.1\r\nX: ${"x".repeat(2000)}`, 1024) as HeadError).status, 431);
    let many = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (let i = 0; i < 10; i++) many += `X-${i}: 1\r\n`;
    assert.equal((parseReq(`${many}\r\n`, 65536, 10) as HeadError).status, 431);
    assert.ok(parseReq(`${many}\r\n`, 65536, 11) instanceof RequestHead);
  });
});

describe("response head", () => {
  function parseRes(text: string): ResponseHead | HeadError {
    const buf = Buffer.from(text, "latin1");
    const sc = new HeadScanner();
    const n = sc.scan(buf, 65536, 100);
    if (n <= 0) return sc.error ?? { status: 0, message: "more" };
    const h = new ResponseHead();
    return parseResponseHead(buf, sc, h) ?? h;
  }

  it("parses status, reason and framing", () => {
    const r = parseRes("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
    assert.ok(r instanceof ResponseHead);
    assert.equal(r.status, 200);
    assert.equal(r.reason, "OK");
    assert.equal(r.contentLength, 12);
    const c = parseRes("HTTP/1.1 204\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert.ok(c instanceof ResponseHead && c.chunked && c.reason === "");
  });

  it("rejects bad responses with 502", () => {
    for (const t of [
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/2 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
    ]) {
      const r = parseRes(t);
      assert.ok(!(r instanceof ResponseHead), t);
      assert.equal(r.status === 400 || r.status === 502, true, t);
    }
  });
});

describe("chunked decoder", () => {
  function decodeAll(parts: string[]): {
    body: string;
    used: number[];
    error: HeadError | null;
    done: boolean;
  } {
    const d = new ChunkedDecoder(16, 64);
    d.reset(true);
    const used: number[] = [];
    let body = "";
    for (const p of parts) {
      const n = d.decode(Buffer.from(p, "latin1"), 0);
      used.push(n);
      if (n < 0) return { body, used, error: d.error, done: false };
      body += Buffer.concat(d.pieces).toString("latin1");
      d.pieces.length = 0;
      d.pieceBytes = 0;
    }
    return { body, used, error: null, done: d.done };
  }

  it("decodes across arbitrary splits and stops at the end", () => {
    const wire = "5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer-A: x\r\n\r\nGET /next";
    for (let split = 1; split < wire.length; split++) {
      const r = decodeAll([wire.slice(0, split), wire.slice(split)]);
      assert.equal(r.error, null);
      assert.equal(r.done, true);
      assert.equal(r.body, "hello0123456789");
      assert.equal((r.used[0] ?? 0) + (r.used[1] ?? 0), wire.length - "GET /next".length);
    }
  });

  it("accepts leading zeros and BWS before extensions", () => {
    assert.equal(decodeAll(["0005 ;a\r\nhello\r\n0\r\n\r\n"]).body, "hello");
  });

  const bad: Array<[string, string, keyof typeof HEAD_ERRORS]> = [
    ["non-hex size", "g\r\n", "chunkSize"],
    ["empty size", "\r\n", "chunkSize"],
    ["signed size", "+5\r\nhello\r\n", "chunkSize"],
    ["0x prefix", "0x5\r\nhello\r\n", "chunkSize"],
    ["overflow", "fffffffffffffffff\r\n", "chunkSize"],
    ["space inside size", "5 5\r\n", "chunkSize"],
    ["bare LF after size", "5\nhello\r\n", "chunkSize"],
    ["missing CRLF after data", "5\r\nhelloX\r\n", "chunkFraming"],
    ["bare LF after data", "5\r\nhello\n0\r\n\r\n", "chunkFraming"],
    ["CTL in extension", "5;a\u0000\r\n", "chunkFraming"],
    ["extension too long", `5;${"a".repeat(40)}\r\n`, "chunkExtTooLong"],
    ["trailer too large", `0\r\nX: ${"a".repeat(100)}\r\n\r\n`, "trailerTooLarge"],
    ["folded trailer", "0\r\nX: 1\r\n 2\r\n\r\n", "trailer"],
    ["bad final CRLF", "0\r\n\rX", "chunkFraming"],
  ];
  for (const [name, wire, expected] of bad) {
    it(`rejects ${name} (${HEAD_ERRORS[expected].message})`, () => {
      assert.equal(decodeAll([wire]).error, HEAD_ERRORS[expected]);
    });
  }
});

/** RFC 9110 §5.6.2 tchar, written out independently of the parser's table. */
const TCHARS = new Set([..."!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]);

describe("request head: every byte and every rule", () => {
  it("a method and a field name are tokens: exactly the tchar bytes", () => {
    for (let b = 0; b < 256; b++) {
      // CR and LF end the line; a colon ends the name.
      if (b === 13 || b === 10 || b === 58) continue;
      const ch = String.fromCharCode(b);
      const method = outcome(`G${ch}T / HTTP/1.1\r\nHost: a\r\n\r\n`);
      const name = outcome(`GET / HTTP/1.1\r\nHost: a\r\nX${ch}Y: 1\r\n\r\n`);
      const token = TCHARS.has(ch);
      assert.equal(method instanceof RequestHead, token, `method byte ${b}: ${String(method)}`);
      assert.equal(name instanceof RequestHead, token, `name byte ${b}: ${String(name)}`);
      if (token) assert.equal((name as RequestHead).names[1], `x${ch}y`.toLowerCase());
      else if (b === 0x20 || b === 9) assert.equal(name, "spaceBeforeColon");
      else if (b < 0x20 || b === 0x7f) assert.equal(name, "ctl");
      else assert.equal(name, "fieldName", `byte ${b}`);
    }
  });

  it("a request-target takes visible ASCII and obs-text; a Host takes its own set", () => {
    const hostChars = new Set(
      [..."-._~!$&'()*+,;=:[]%", ...TCHARS].filter((c) => /[-._~!$&'()*+,;=:[\]%0-9A-Za-z]/.test(c)),
    );
    for (let b = 0x21; b < 256; b++) {
      if (b === 0x7f) continue;
      const ch = String.fromCharCode(b);
      const target = outcome(`GET /${ch} HTTP/1.1\r\nHost: a\r\n\r\n`);
      assert.ok(target instanceof RequestHead, `target byte ${b}: ${String(target)}`);
      const host = outcome(`GET / HTTP/1.1\r\nHost: a${ch}b\r\n\r\n`);
      assert.equal(host instanceof RequestHead, hostChars.has(ch), `host byte ${b}: ${String(host)}`);
      if (!hostChars.has(ch)) assert.equal(host, "host");
    }
    assert.equal(outcome("GET /\u007f HTTP/1.1\r\nHost: a\r\n\r\n"), "ctl");
    assert.equal(req("GET /\u00ff?\u0080 HTTP/1.1\r\nHost: a\r\n\r\n").path, "/\u00ff");
  });

  it("control characters in a head: HTAB allowed, bare LF and CR named, others rejected", () => {
    for (let b = 0; b < 0x20; b++) {
      const r = outcome(`GET / HTTP/1.1\r\nHost: a\r\nX: a${String.fromCharCode(b)}b\r\n\r\n`);
      const want = b === 9 ? "ok" : b === 10 ? "bareLF" : b === 13 ? "bareCR" : "ctl";
      assert.equal(r instanceof RequestHead ? "ok" : r, want, `byte ${b}`);
    }
    assert.equal(
      req("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\u0080\u00ff\r\n\r\n").header("x"),
      "a\tb\u0080\u00ff",
    );
  });

  it("the version: exactly HTTP/1.0 or HTTP/1.1; another well-formed version is 505", () => {
    const v = (version: string) => {
      const r = outcome(`GET / ${version}\r\nHost: a\r\n\r\n`);
      return r instanceof RequestHead ? `minor ${r.minor}` : r;
    };
    assert.deepEqual(
      Object.fromEntries(
        [
          "HTTP/1.1",
          "HTTP/1.0",
          "XTTP/1.1",
          "HXTP/1.1",
          "HTXP/1.1",
          "HTTX/1.1",
          "HTTPX1.1",
          "HTTP/1X1",
          "HTTP/1.1x",
          "HTTP/1.",
          "HTTP/x.1",
          "HTTP/!.1",
          "HTTP/1.x",
          "HTTP/1.!",
          "HTTP/:.1",
          "HTTP/1.:",
          "HTTP/0.1",
          "HTTP/0.9",
          "HTTP/1.9",
          "HTTP/9.0",
          "HTTP/2.0",
        ].map((x) => [x, v(x)]),
      ),
      {
        "HTTP/1.1": "minor 1",
        "HTTP/1.0": "minor 0",
        "XTTP/1.1": "version",
        "HXTP/1.1": "version",
        "HTXP/1.1": "version",
        "HTTX/1.1": "version",
        "HTTPX1.1": "version",
        "HTTP/1X1": "version",
        "HTTP/1.1x": "version",
        "HTTP/1.": "version",
        "HTTP/x.1": "version",
        "HTTP/!.1": "version",
        "HTTP/1.x": "version",
        "HTTP/1.!": "version",
        "HTTP/:.1": "version",
        "HTTP/1.:": "version",
        "HTTP/0.1": "versionUnsupported",
        "HTTP/0.9": "versionUnsupported",
        "HTTP/1.9": "versionUnsupported",
        "HTTP/9.0": "versionUnsupported",
        "HTTP/2.0": "versionUnsupported",
      },
    );
  });

  it("the request line after empty lines: method, target, path, query and origin form are cut right", () => {
    const h = req("\r\n\r\nPATCH /a/b?x=1?y HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.deepEqual(
      [h.method, h.target, h.path, h.query, h.originForm],
      ["PATCH", "/a/b?x=1?y", "/a/b", "x=1?y", "/a/b?x=1?y"],
    );
    const q = req("GET /? HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.deepEqual([q.path, q.query, q.originForm], ["/", "", "/?"]);
    const p = req("GET /p HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.deepEqual([p.path, p.query, p.originForm], ["/p", "", "/p"]);
    assert.equal(outcome("GET\r\nHost: a\r\n\r\n"), "method");
    assert.equal(outcome("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), "method");
    assert.equal(outcome("GET /\r\nHost: a\r\n\r\n"), "target");
    assert.equal(outcome("GET /a\u0000 HTTP/1.1\r\nHost: a\r\n\r\n"), "ctl");
  });

  it("asterisk-form only for OPTIONS; absolute-form's authority replaces Host", () => {
    const o = req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.deepEqual([o.path, o.originForm, o.query], ["*", "*", ""]);
    assert.equal(outcome("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), "target");
    assert.equal(outcome("OPTIONS /* HTTP/1.1\r\nHost: a\r\n\r\n") instanceof RequestHead, true);
    const abs = (t: string) => {
      const r = outcome(`GET ${t} HTTP/1.1\r\nHost: h\r\n\r\n`);
      return r instanceof RequestHead ? [r.host, r.rawHost, r.path, r.query, r.originForm] : r;
    };
    assert.deepEqual(abs("https://A.example:8443/x?y"), ["a.example", "A.example:8443", "/x", "y", "/x?y"]);
    assert.deepEqual(abs("HTTP://a.example"), ["a.example", "a.example", "/", "", "/"]);
    assert.deepEqual(abs("http://a.example?q=1"), ["a.example", "a.example", "/", "q=1", "/?q=1"]);
    assert.deepEqual(abs("http://[::1]:80/p"), ["[::1]", "[::1]:80", "/p", "", "/p"]);
    for (const bad of [
      "http://",
      "http:///p",
      "http://u@a/",
      "http://a^b/",
      "ftp://example.com/",
      "https:/a.example/",
      "a.example/",
    ])
      assert.equal(abs(bad), "target", bad);
  });

  it("Host: required in HTTP/1.1 only, once, a valid authority; its host part lower-cased without the port", () => {
    const host = (v: string) => {
      const r = outcome(`GET / HTTP/1.1\r\nHost: ${v}\r\n\r\n`);
      return r instanceof RequestHead ? [r.host, r.rawHost] : r;
    };
    assert.deepEqual(host("[FE80::1]:8080"), ["[fe80::1]", "[FE80::1]:8080"]);
    assert.deepEqual(host("[::1]"), ["[::1]", "[::1]"]);
    assert.deepEqual(host("A.B"), ["a.b", "A.B"]);
    assert.equal(host("[::1"), "host");
    assert.equal(host(":80"), "host");
    assert.equal(outcome("GET / HTTP/1.1\r\nHost: \r\nHost: a\r\n\r\n"), "hostDuplicate");
    const old = req("GET / HTTP/1.0\r\n\r\n");
    assert.deepEqual([old.host, old.rawHost], ["", ""]);
  });

  it("fields: raw names kept, values trimmed of OWS only, repeated fields joined", () => {
    const h = req(
      "GET / HTTP/1.1\r\nHost: a\r\nX-Mixed-Case: \t v  w \t\r\nX-Empty:\r\nX-Blank: \t \r\nx-mixed-case: 2\r\n\r\n",
    );
    assert.deepEqual(h.rawNames, ["Host", "X-Mixed-Case", "X-Empty", "X-Blank", "x-mixed-case"]);
    assert.deepEqual(h.names, ["host", "x-mixed-case", "x-empty", "x-blank", "x-mixed-case"]);
    assert.deepEqual(h.values, ["a", "v  w", "", "", "2"]);
    assert.equal(h.header("x-mixed-case"), "v  w, 2");
    assert.equal(h.header("x-none"), undefined);
    assert.equal(outcome("GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n"), "noColon");
  });

  it("Content-Length: 1 to 15 digits; identical duplicates merged, zero included", () => {
    const cl = (v: string) => {
      const r = outcome(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${v}\r\n\r\n`);
      return r instanceof RequestHead ? r.contentLength : r;
    };
    assert.equal(cl("0"), 0);
    assert.equal(cl("09"), 9);
    assert.equal(cl("999999999999999"), 999999999999999);
    assert.equal(cl("1000000000000000"), "contentLength");
    assert.equal(cl("1/"), "contentLength");
    assert.equal(cl("1:"), "contentLength");
    const zero = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n");
    assert.deepEqual(zero.names, ["host", "content-length"]);
    assert.equal(
      outcome("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n"),
      "contentLengthConflict",
    );
    assert.equal(
      outcome("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"),
      "clAndTe",
    );
  });

  it("Transfer-Encoding: chunked in any case; a coding with parameters is valid but unsupported", () => {
    const te = (v: string) => {
      const r = outcome(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ${v}\r\n\r\n`);
      return r instanceof RequestHead ? `chunked=${r.chunked} hasTE=${r.hasTE}` : r;
    };
    assert.equal(te("CHUNKED"), "chunked=true hasTE=true");
    assert.equal(te("chunked;q=1"), "teUnknown");
    assert.equal(te("gzip;level=1, chunked"), "teUnknown");
    assert.equal(te(";x"), "teInvalid");
    const plain = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n");
    assert.deepEqual([plain.chunked, plain.hasTE], [false, false]);
  });

  it("Connection: close and keep-alive in any case; other tokens listed (hop-by-hop)", () => {
    const h = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Foo, , Keep-Alive ,TE\r\n\r\n");
    assert.deepEqual(
      [h.connClose, h.connKeepAlive, h.connTokens, h.keepAlive],
      [true, true, ["x-foo", "te"], false],
    );
    const none = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n");
    assert.deepEqual(
      [none.connClose, none.connKeepAlive, none.connTokens, none.keepAlive],
      [false, false, ["upgrade"], true],
    );
    assert.equal(req("GET / HTTP/1.1\r\nHost: a\r\n\r\n").connTokens, null);
    assert.equal(req("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keepAlive, false);
    assert.equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").keepAlive, true);
  });

  it("x-request-id: the first; Upgrade: every value", () => {
    const h = req(
      "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: one\r\nx-request-id: two\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n",
    );
    assert.deepEqual([h.requestId, h.upgrade], ["one", "websocket, h2c"]);
    const none = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.deepEqual([none.requestId, none.upgrade, none.method, none.keepAlive], ["", "", "GET", true]);
    const fresh = new RequestHead();
    assert.deepEqual(
      [
        fresh.method,
        fresh.target,
        fresh.host,
        fresh.path,
        fresh.query,
        fresh.originForm,
        fresh.requestId,
        fresh.upgrade,
        fresh.keepAlive,
        fresh.chunked,
        fresh.rawNames,
      ],
      ["", "", "", "", "", "", "", "", true, false, []],
    );
    assert.equal(new ResponseHead().reason, "");
  });

  it("CONNECT: host:port with a port of 1 to 65535, no content", () => {
    const connect = (t: string, extra = "") => {
      const r = outcome(
        `CONNECT ${t} HTTP/1.1\r\nHost: ${t.replace(/[^-.:[\]0-9a-z]/g, "")}\r\n${extra}\r\n`,
      );
      return r instanceof RequestHead ? [r.host, r.rawHost, r.path, r.originForm, r.keepAlive] : r;
    };
    assert.deepEqual(connect("A.example:443"), ["a.example", "A.example:443", "/", "A.example:443", false]);
    assert.deepEqual(connect("[::1]:1"), ["[::1]", "[::1]:1", "/", "[::1]:1", false]);
    assert.deepEqual(connect("a:65535")[0], "a");
    assert.deepEqual(connect("a:00443")[0], "a");
    assert.deepEqual(connect("a:443", "Content-Length: 0\r\n")[0], "a");
    for (const bad of [
      ":443",
      "a:0",
      "a:65536",
      "a:123456",
      "a:",
      "a:44x",
      "a:x443",
      "a:443x",
      "a:b:443",
      "a^b:443",
      "[::1:443",
      "a",
    ])
      assert.equal(connect(bad), "connectTarget", bad);
    assert.equal(connect("a:443", "Transfer-Encoding: chunked\r\n"), "connectBody");
    assert.equal(connect("a:443", "Content-Length: 1\r\n"), "connectBody");
    // HTTP/2's CONNECT :authority goes through the same check.
    const h2 = new RequestHead();
    assert.equal(connectTarget(h2, "b.example:8443"), null);
    assert.deepEqual([h2.host, h2.path, h2.originForm], ["b.example", "/", "b.example:8443"]);
    assert.equal(connectTarget(new RequestHead(), "b.example"), HEAD_ERRORS.connectTarget);
  });

  it("the scanner: reused after reset; a head ends at its blank line, not before", () => {
    const sc = new HeadScanner();
    const one = Buffer.from("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal(sc.scan(one, 65536, 100), one.length);
    sc.reset();
    const two = Buffer.from("\r\nGET /2 HTTP/1.1\r\n");
    assert.equal(sc.scan(two.subarray(0, 1), 65536, 100), 0, "half a CRLF");
    assert.equal(sc.scan(two, 65536, 100), 0);
    const full = Buffer.concat([two, Buffer.from("Host: b\r\n\r\nnext")]);
    assert.equal(sc.scan(full, 65536, 100), full.length - 4);
    const h = new RequestHead();
    assert.equal(parseRequestHead(full, sc, h), null);
    assert.deepEqual([h.path, h.rawHost], ["/2", "b"]);
    assert.equal(sc.error, null);
    sc.reset();
    assert.equal(sc.scan(Buffer.from("GET / HTTP/1.1\r\nX: \u0001\r\n\r\n"), 65536, 100), -1);
    assert.equal(sc.error, HEAD_ERRORS.ctl);
    sc.reset();
    assert.deepEqual([sc.error, sc.bounds.length], [null, 0]);
  });
});

function parseResponse(text: string): ResponseHead | string {
  const buf = Buffer.from(text, "latin1");
  const sc = new HeadScanner();
  const n = sc.scan(buf, 65536, 100);
  if (n <= 0) return n === 0 ? "more" : (sc.error?.message ?? "");
  const h = new ResponseHead();
  const e = parseResponseHead(buf, sc, h);
  return e === null ? h : e.status === 502 ? e.message : `status ${e.status}`;
}

describe("response head: every rule", () => {
  it("the status line, byte by byte", () => {
    const line = (l: string) => {
      const r = parseResponse(`${l}\r\nContent-Length: 0\r\n\r\n`);
      return r instanceof ResponseHead ? [r.minor, r.status, r.reason] : r;
    };
    const bad = HEAD_ERRORS.statusLine.message;
    assert.deepEqual(line("HTTP/1.1 200"), [1, 200, ""]);
    assert.deepEqual(line("HTTP/1.1 200 "), [1, 200, ""]);
    assert.deepEqual(line("HTTP/1.0 100 Continue"), [0, 100, "Continue"]);
    assert.deepEqual(line("HTTP/1.1 599 A B"), [1, 599, "A B"]);
    for (const l of [
      "HTTP/1.1 20",
      "HTTP/1.1X200",
      "HTTP/1.1 200X",
      "HTTP/1.2 200 OK",
      "HTTP/2.0 200 OK",
      "HTTX/1.1 200 OK",
      "HTTP/1.1 2x0 OK",
      "HTTP/1.1 2/0 OK",
      "HTTP/1.1 2:0 OK",
      "HTTP/1.1 099 OK",
      "HTTP/1.1 :00 OK",
    ])
      assert.equal(line(l), bad, l);
    const after = parseResponse("\r\nHTTP/1.1 404 Not Found\r\nX: 1\r\n\r\n");
    assert.ok(after instanceof ResponseHead);
    assert.deepEqual([after.status, after.reason, after.header("x")], [404, "Not Found", "1"]);
  });

  it("fields: errors say upstream; repeated Transfer-Encoding lines are one list; Host and friends are plain fields", () => {
    assert.equal(
      parseResponse("HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n"),
      "upstream: obsolete line folding",
    );
    assert.equal(
      parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
      "upstream: unsupported transfer coding",
    );
    assert.equal(
      parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
      "upstream: unsupported transfer coding",
    );
    const r = parseResponse(
      "HTTP/1.1 200 OK\r\nHost: a/b\r\nHost: c\r\nX-Request-Id: 1\r\nUpgrade: x\r\nTransfer-Encoding: Chunked\r\n\r\n",
    );
    assert.ok(r instanceof ResponseHead, String(r));
    assert.deepEqual([r.chunked, r.header("host")], [true, "a/b, c"]);
  });
});

describe("chunked decoder: every rule", () => {
  function run(
    wire: string,
    opts: { collect?: boolean; ext?: number; trailer?: number; start?: number } = {},
  ) {
    const d = new ChunkedDecoder(opts.ext ?? 16, opts.trailer ?? 64);
    d.reset(opts.collect ?? true);
    const n = d.decode(Buffer.from(wire, "latin1"), opts.start ?? 0);
    const error = d.error === null ? null : Object.entries(HEAD_ERRORS).find(([, e]) => e === d.error)?.[0];
    return {
      n,
      error,
      done: d.done,
      body: Buffer.concat(d.pieces).toString("latin1"),
      pieceBytes: d.pieceBytes,
    };
  }

  it("sizes in hex, both cases; anything else is not a size", () => {
    for (const [i, digit] of [..."0123456789abcdef"].entries()) {
      for (const d of new Set([digit, digit.toUpperCase()])) {
        const body = "x".repeat(16 + i);
        const r = run(`1${d}\r\n${body}\r\n0\r\n\r\n`);
        assert.deepEqual([r.error, r.done, r.body.length], [null, true, body.length], `size 1${d}`);
      }
    }
    for (const c of ["g", "G", "/", ":", "@", "`", "\u00ff"])
      assert.equal(run(`1${c}\r\n`).error, "chunkSize", c);
  });

  it("the largest size that stays a safe integer is read; one more digit is refused", () => {
    const max = run("1FFFFFFFFFFFFF\r\nabc");
    assert.deepEqual([max.error, max.n, max.done, max.body], [null, 19, false, "abc"]);
    assert.equal(run("20000000000000\r\n").error, "chunkSize");
  });

  it("extensions: whitespace before, any visible byte or HTAB inside, bounded", () => {
    assert.equal(run("5 \t;a\r\nhello\r\n0\r\n\r\n").body, "hello");
    assert.equal(run('5; a="b c"\t\r\nhello\r\n0\r\n\r\n').body, "hello");
    assert.equal(run("5x;a\r\n").error, "chunkSize");
    assert.equal(run("5 x\r\n").error, "chunkSize");
    assert.equal(run("5;a\u007f\r\n").error, "chunkFraming");
    assert.equal(run(`5;${"a".repeat(16)}\r\nhello\r\n0\r\n\r\n`).body, "hello");
    assert.equal(run(`5;${"a".repeat(17)}\r\n`).error, "chunkExtTooLong");
    assert.equal(run(`5 ;${"a".repeat(17)}\r\n`).error, "chunkExtTooLong");
  });

  it("framing: CRLF after the size, after the data, at the end", () => {
    assert.equal(run("5\rX").error, "chunkFraming");
    assert.equal(run("5\r\nhelloX").error, "chunkFraming");
    assert.equal(run("5\r\nhello\rX").error, "chunkFraming");
    assert.equal(run("0\r\n\rX").error, "chunkFraming");
  });

  it("trailers: token names, no CTLs in values, CRLF lines, bounded by every byte", () => {
    assert.deepEqual(
      run("0\r\nA-B: \tx y\u0080\r\nC:\r\n\r\nrest").n,
      "0\r\nA-B: \tx y\u0080\r\nC:\r\n\r\n".length,
    );
    assert.equal(run("0\r\n(: 1\r\n\r\n").error, "trailer");
    assert.equal(run("0\r\nA(: 1\r\n\r\n").error, "trailer");
    assert.equal(run("0\r\nA: 1\u0000\r\n\r\n").error, "trailer");
    assert.equal(run("0\r\nA: 1\u007f\r\n\r\n").error, "trailer");
    assert.equal(run("0\r\nA: 1\rX").error, "trailer");
    // The limit counts every trailer byte but the LFs: "A: " + v + CR, and the final CR.
    const v = (n: number) => run(`0\r\nA: ${"v".repeat(n)}\r\n\r\n`, { trailer: 64 });
    assert.deepEqual([v(59).error, v(59).done], [null, true]);
    assert.equal(v(60).error, "trailerTooLarge");
    // Reached inside a name, and inside a value.
    assert.deepEqual(run(`0\r\n${"N".repeat(9)}:`, { trailer: 10 }).error, null);
    assert.deepEqual(run(`0\r\n${"N".repeat(10)}:`, { trailer: 10 }).error, "trailerTooLarge");
    assert.deepEqual(run(`0\r\n${"N".repeat(100)}`, { trailer: 10 }).error, "trailerTooLarge");
    assert.deepEqual(run("0\r\nN:vvvvvvvv", { trailer: 10 }).error, null);
    assert.deepEqual(run("0\r\nN:vvvvvvvvv", { trailer: 10 }).error, "trailerTooLarge");
    assert.deepEqual(run(`0\r\n${"A:\r\n".repeat(4)}\r\n`, { trailer: 13 }).error, null);
    assert.deepEqual(run(`0\r\n${"A:\r\n".repeat(4)}\r\n`, { trailer: 12 }).error, "trailerTooLarge");
  });

  it("collecting is optional; the count starts at `start`; done only at the end", () => {
    const quiet = run("5\r\nhello\r\n0\r\n\r\n", { collect: false });
    assert.deepEqual([quiet.body, quiet.pieceBytes, quiet.done], ["", 0, true]);
    const loud = run("5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n");
    assert.deepEqual([loud.body, loud.pieceBytes], ["helloabc", 8]);
    const mid = run("xyz5\r\nhello\r\n0\r\n\r\nNEXT", { start: 3 });
    assert.deepEqual([mid.n, mid.done], [15, true]);
    const partial = run("5\r\nhel");
    assert.deepEqual([partial.n, partial.done], [6, false]);
    // A decoder used without reset: not collecting, nothing collected.
    const fresh = new ChunkedDecoder();
    assert.equal(fresh.decode(Buffer.from("3\r\nabc\r\n0\r\n\r\n"), 0), 13);
    assert.deepEqual([fresh.done, fresh.pieces.length, fresh.pieceBytes], [true, 0, 0]);
  });
});
