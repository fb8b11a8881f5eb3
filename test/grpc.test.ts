/**
 * gRPC through the gateway: a real grpc-js server behind a cluster with protocol: http2, a grpc-js
 * client in front of `agw run`. Unary, server-streaming, client-streaming and interleaved bidi calls;
 * status codes, messages and (trailing) metadata from the server; deadlines; no endpoint; a config
 * push while a bidi stream is open.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { freePort, type Proc, startGateway, tempDir, waitFor } from "./helpers.ts";

interface Msg {
  readonly text?: string;
  readonly count?: number;
  readonly delayMs?: number;
  readonly failWith?: number;
}

const serialize = (m: Msg) => Buffer.from(JSON.stringify(m));
const deserialize = (b: Buffer) => JSON.parse(b.toString()) as Msg;

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/agw.test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  };
}

const ECHO = {
  Unary: method("Unary", false, false),
  Numbers: method("Numbers", false, true),
  Sum: method("Sum", true, false),
  Chat: method("Chat", true, true),
};

function trailer(pairs: Record<string, string>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(pairs)) md.set(k, v);
  return md;
}

const impl: grpc.UntypedServiceImplementation = {
  Unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
    const req = call.request;
    if (req.failWith !== undefined) {
      cb({
        code: req.failWith,
        details: `no such thing: ${req.text}`,
        metadata: trailer({ "x-why": "missing" }),
      });
      return;
    }
    call.sendMetadata(trailer({ "x-seen-client": String(call.metadata.get("x-client")[0] ?? "") }));
    setTimeout(
      () => cb(null, { text: `hello ${req.text}` }, trailer({ "x-trailer": "end-of-unary" })),
      req.delayMs ?? 0,
    );
  },
  Numbers(call: grpc.ServerWritableStream<Msg, Msg>) {
    for (let i = 0; i < (call.request.count ?? 0); i++) call.write({ count: i });
    call.end(trailer({ "x-total": String(call.request.count) }));
  },
  Sum(call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
    let sum = 0;
    call.on("data", (m: Msg) => {
      sum += m.count ?? 0;
    });
    call.on("end", () => cb(null, { count: sum }));
  },
  Chat(call: grpc.ServerDuplexStream<Msg, Msg>) {
    call.on("data", (m: Msg) => call.write({ text: `echo ${m.text}` }));
    call.on("end", () => call.end());
  },
};

describe("gRPC through a protocol: http2 cluster", { timeout: 60_000 }, () => {
  let server: grpc.Server;
  let gw: Proc;
  let client: grpc.Client;
  let file = "";
  let adminPort = 0;
  let yaml = (_extra: string) => "";

  before(async () => {
    server = new grpc.Server();
    server.addService(ECHO, impl);
    const grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, port) =>
        e ? reject(e) : resolve(port),
      ),
    );
    const dir = tempDir();
    file = join(dir, "config.yaml");
    const port = await freePort();
    yaml = (extra) => `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { name: nowhere, match: { path: { prefix: /agw.test.Nowhere/ } }, cluster: empty }
      - { name: echo, cluster: echo }
clusters:
  - name: echo
    protocol: http2
    endpoints: ["127.0.0.1:${grpcPort}"]
  - name: empty
    protocol: http2
    endpoints: []
${extra}`;
    writeFileSync(file, yaml(""));
    ({ proc: gw, adminPort } = await startGateway(file));
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    await gw?.stop();
    server?.forceShutdown();
  });

  function unary(
    req: Msg,
    options: grpc.CallOptions = {},
    path = ECHO.Unary.path,
  ): Promise<{ err: grpc.ServiceError | null; res?: Msg }> {
    return new Promise((resolve) => {
      client.makeUnaryRequest(path, serialize, deserialize, req, new grpc.Metadata(), options, (err, res) =>
        resolve({ err, ...(res && { res }) }),
      );
    });
  }

  it("unary: the response, the server's header and trailing metadata", async () => {
    const got = await new Promise<{ res: Msg; headers: grpc.Metadata; trailers: grpc.Metadata }>(
      (resolve, reject) => {
        let headers = new grpc.Metadata();
        let res: Msg | undefined;
        const call = client.makeUnaryRequest(
          ECHO.Unary.path,
          serialize,
          deserialize,
          { text: "world" },
          trailer({ "x-client": "grpc-test" }),
          {},
          (err, r) => {
            if (err) reject(err);
            res = r;
          },
        );
        call.on("metadata", (md) => {
          headers = md;
        });
        call.on("status", (s) => resolve({ res: res as Msg, headers, trailers: s.metadata }));
      },
    );
    assert.deepEqual(got.res, { text: "hello world" });
    assert.equal(got.headers.get("x-seen-client")[0], "grpc-test");
    assert.ok(got.headers.get("x-request-id")[0], "the gateway adds x-request-id");
    assert.equal(got.trailers.get("x-trailer")[0], "end-of-unary");
  });

  it("a status code and message from the server reach the client (trailers-only response)", async () => {
    const { err } = await unary({ text: "widget", failWith: grpc.status.NOT_FOUND });
    assert.equal(err?.code, grpc.status.NOT_FOUND);
    assert.equal(err?.details, "no such thing: widget");
    assert.equal(err?.metadata.get("x-why")[0], "missing");
  });

  it("server streaming: 2000 messages in order, then the trailing metadata", async () => {
    const call = client.makeServerStreamRequest(ECHO.Numbers.path, serialize, deserialize, { count: 2000 });
    const seen: number[] = [];
    call.on("data", (m: Msg) => seen.push(m.count ?? -1));
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    assert.equal(status.code, grpc.status.OK);
    assert.equal(seen.length, 2000);
    assert.ok(seen.every((n, i) => n === i));
    assert.equal(status.metadata.get("x-total")[0], "2000");
  });

  it("client streaming: the server sums what the client sent", async () => {
    const res = await new Promise<Msg>((resolve, reject) => {
      const call = client.makeClientStreamRequest(ECHO.Sum.path, serialize, deserialize, (e, r) =>
        e ? reject(e) : resolve(r as Msg),
      );
      for (let i = 1; i <= 100; i++) call.write({ count: i });
      call.end();
    });
    assert.deepEqual(res, { count: 5050 });
  });

  /** Sends one message and waits for its echo, `n` times: only works if both directions flow unbuffered. */
  async function pingPong(call: grpc.ClientDuplexStream<Msg, Msg>, from: number, n: number): Promise<void> {
    for (let i = from; i < from + n; i++) {
      const reply = new Promise<Msg>((resolve) => call.once("data", resolve));
      call.write({ text: `m${i}` });
      assert.deepEqual(await reply, { text: `echo m${i}` });
    }
  }

  it("bidi: interleaved, one message answered before the next is sent", async () => {
    const call = client.makeBidiStreamRequest(ECHO.Chat.path, serialize, deserialize);
    await pingPong(call, 0, 50);
    call.end();
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    assert.equal(status.code, grpc.status.OK);
  });

  it("a bidi stream opened before a config push keeps flowing after it", async () => {
    const call = client.makeBidiStreamRequest(ECHO.Chat.path, serialize, deserialize);
    await pingPong(call, 0, 5);
    writeFileSync(
      file,
      yaml(`  - name: pushed
    endpoints: ["127.0.0.1:9"]
`),
    );
    await waitFor("the pushed config on the data plane", async () =>
      (await (await fetch(`http://127.0.0.1:${adminPort}/config_dump`)).text()).includes('"pushed"')
        ? true
        : undefined,
    );
    await pingPong(call, 5, 5);
    call.end();
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    assert.equal(status.code, grpc.status.OK);
    assert.equal((await unary({ text: "after push" })).res?.text, "hello after push");
  });

  it("a deadline shorter than the server's delay: DEADLINE_EXCEEDED", async () => {
    const { err } = await unary({ text: "slow", delayMs: 2000 }, { deadline: Date.now() + 200 });
    assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
  });

  it("calls are counted in the metrics like any request, per route and cluster", async () => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/stats/prometheus`)).text();
    const m =
      /agw_downstream_requests_total\{listener="web",route="echo",cluster="echo",code_class="2xx"\} (\d+)/.exec(
        text,
      );
    assert.ok(
      m && Number(m[1]) >= 5,
      text
        .split("\n")
        .filter((l) => l.includes("downstream_requests"))
        .join("\n"),
    );
  });

  it("a cluster without endpoints: UNAVAILABLE with the gateway's reason", async () => {
    const { err } = await unary({ text: "x" }, {}, "/agw.test.Nowhere/Unary");
    assert.equal(err?.code, grpc.status.UNAVAILABLE);
    assert.equal(err?.details, "the cluster has no endpoint");
    assert.equal(err?.metadata.get("x-agw-error")[0], "no_healthy_upstream");
  });
});
