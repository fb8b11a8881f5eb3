import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ChunkedDecoder,
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

function status(text: string): number {
  const r = parseReq(text);
  if (r === "more") return 0;
  return r instanceof RequestHead ? 200 : r.status;
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

  const rejects: Array<[string, string, number]> = [
    ["CL + TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400],
    ["CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400],
    ["negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400],
    ["plus CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400],
    ["hex CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400],
    ["overflow CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400],
    ["empty CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400],
    ["unknown TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501],
    ["chunked not alone", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501],
    ["chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501],
    ["malformed TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", 400],
    ["TE with space inside", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", 400],
    [
      "duplicate TE",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      400,
    ],
    ["TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n", 400],
    ["tab fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400],
    ["NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u0000b\r\n\r\n", 400],
    ["VT in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u000bb\r\n\r\n", 400],
    ["DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u007fb\r\n\r\n", 400],
    ["bare LF line end", "GET / HTTP/1.1\nHost: a\n\n", 400],
    ["bare LF in header", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\nX-B: 2\r\n\r\n", 400],
    ["bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n", 400],
    ["space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", 400],
    ["tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\t: 1\r\n\r\n", 400],
    ["bad name char", "GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", 400],
    ["empty name", "GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 400],
    ["no colon", "GET / HTTP/1.1\r\nHost: a\r\nXA\r\n\r\n", 400],
    ["bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["bad target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505],
    ["HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505],
    ["garbage version", "GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400],
    ["lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400],
    ["no version", "GET /\r\nHost: a\r\n\r\n", 400],
    ["missing Host", "GET / HTTP/1.1\r\n\r\n", 400],
    ["duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ["invalid Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400],
    ["CONNECT without a port", "CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["CONNECT to a path", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["CONNECT with content", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 1\r\n\r\nx", 400],
  ];
  for (const [name, text, expected] of rejects) {
    it(`rejects ${name} with ${expected}`, () => assert.equal(status(text), expected));
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

  const bad: Array<[string, string]> = [
    ["non-hex size", "g\r\n"],
    ["empty size", "\r\n"],
    ["signed size", "+5\r\nhello\r\n"],
    ["0x prefix", "0x5\r\nhello\r\n"],
    ["overflow", "fffffffffffffffff\r\n"],
    ["space inside size", "5 5\r\n"],
    ["bare LF after size", "5\nhello\r\n"],
    ["missing CRLF after data", "5\r\nhelloX\r\n"],
    ["bare LF after data", "5\r\nhello\n0\r\n\r\n"],
    ["CTL in extension", "5;a\u0000\r\n"],
    ["extension too long", `5;${"a".repeat(40)}\r\n`],
    ["trailer too large", `0\r\nX: ${"a".repeat(100)}\r\n\r\n`],
    ["folded trailer", "0\r\nX: 1\r\n 2\r\n\r\n"],
    ["bad final CRLF", "0\r\n\rX"],
  ];
  for (const [name, wire] of bad) {
    it(`rejects ${name}`, () => {
      const r = decodeAll([wire]);
      assert.ok(r.error !== null, name);
      assert.equal(r.error.status, 400);
    });
  }
});
