/**
 * A listener removed by a config push drains like Envoy's: its port closes, an idle keep-alive
 * connection on it is closed by the gateway, and a request in flight on it finishes with
 * `connection: close`; the other listener keeps serving on the same keep-alive connection.
 */
import assert from "node:assert/strict";
import { renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { freePort, startGateway, tempDir, waitFor } from "./helpers.ts";

function save(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

function config(ports: Record<string, number>, origin: number): string {
  const listeners = Object.entries(ports)
    .map(
      ([name, port]) =>
        `  - name: ${name}\n    address: 127.0.0.1\n    port: ${port}\n    routes:\n      - name: ${name}-all\n        cluster: origin\n`,
    )
    .join("");
  return `listeners:\n${listeners}clusters:\n  - name: origin\n    endpoints: [ "127.0.0.1:${origin}" ]\n`;
}

/** A raw keep-alive client: sends requests, reads whole responses (Content-Length framed), sees the close. */
class RawClient {
  readonly socket: net.Socket;
  private buf = "";
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.setEncoding("latin1");
    this.socket.on("data", (d: string) => {
      this.buf += d;
    });
    this.socket.on("error", () => {});
    this.socket.on("close", () => {
      this.closed = true;
    });
  }

  async request(path: string): Promise<{ head: string; body: string }> {
    this.socket.write(`GET ${path} HTTP/1.1\r\nhost: test\r\n\r\n`);
    return waitFor(`the response to ${path}`, () => {
      const end = this.buf.indexOf("\r\n\r\n");
      if (end < 0) return undefined;
      const head = this.buf.slice(0, end);
      const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (this.buf.length < end + 4 + length) return undefined;
      const body = this.buf.slice(end + 4, end + 4 + length);
      this.buf = this.buf.slice(end + 4 + length);
      return { head, body };
    });
  }
}

test("a removed listener drains: idle keep-alive closed, in-flight request finished with connection: close", async (t) => {
  // /slow is held at the origin until the test lets it go: in flight for as long as the test needs.
  let slowArrived = false;
  let releaseSlow = () => {};
  const slowReleased = new Promise<void>((r) => {
    releaseSlow = r;
  });
  const origin = http.createServer((req, res) => {
    if (req.url !== "/slow") return void res.end(`origin ${req.url}`);
    slowArrived = true;
    void slowReleased.then(() => res.end(`origin ${req.url}`));
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  t.after(() => origin.close());
  const originPort = (origin.address() as AddressInfo).port;

  const [keep, gone] = await Promise.all([freePort(), freePort()]);
  const file = join(tempDir(), "config.yaml");
  save(file, config({ keep, gone }, originPort));
  const { proc: gw } = await startGateway(file);
  t.after(() => gw.stop());
  await waitFor(
    "both listeners",
    async () => {
      const a = await fetch(`http://127.0.0.1:${keep}/`);
      const b = await fetch(`http://127.0.0.1:${gone}/`);
      return a.status === 200 && b.status === 200 ? true : undefined;
    },
    20_000,
  );

  const idle = new RawClient(gone);
  assert.equal((await idle.request("/first")).body, "origin /first");
  const busy = new RawClient(gone);
  const inFlight = busy.request("/slow");
  const other = new RawClient(keep);
  assert.equal((await other.request("/before")).body, "origin /before");
  await waitFor("the slow request to reach the origin before the push", () =>
    slowArrived ? true : undefined,
  );

  save(file, config({ keep }, originPort));

  await waitFor(
    "the removed listener's port to close",
    () =>
      new Promise<true | undefined>((resolve) => {
        const s = net.connect(gone, "127.0.0.1");
        s.on("connect", () => {
          s.destroy();
          resolve(undefined);
        });
        s.on("error", () => resolve(true));
      }),
  );
  await waitFor("the idle keep-alive connection to be closed by the gateway", () =>
    idle.closed ? true : undefined,
  );
  assert.equal(busy.closed, false, "the in-flight request's connection is still open");
  releaseSlow();
  const finished = await inFlight;
  assert.match(finished.head, /^HTTP\/1\.1 200/);
  assert.match(finished.head, /\r\nconnection: close/i);
  assert.equal(finished.body, "origin /slow");
  await waitFor("the in-flight connection to close after its response", () =>
    busy.closed ? true : undefined,
  );

  assert.equal((await other.request("/after")).body, "origin /after");
  assert.equal(other.closed, false, "the kept listener's connection stays open");
  other.socket.destroy();
});
