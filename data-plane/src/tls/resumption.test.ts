/**
 * Session resumption as a client sees it: `openssl s_client -sess_out` then `-sess_in` reports
 * "Reused" on the same ticket key, across a new certificate version of the listener, and "New" once
 * the ticket key has been rotated (after which the fresh ticket resumes again).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { ListenerTlsSchema } from "@agw/core/gen/agw/v1/listener_pb.js";
import { SecretSchema } from "@agw/core/gen/agw/v1/secret_pb.js";
import { create } from "@bufbuild/protobuf";
import { requireOrSkip, tempDir } from "../../../test/helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "../../../test/tls-certs.ts";
import type { ListenerTlsRuntime } from "./manager.ts";
import { TlsManager } from "./manager.ts";
import type { SecretMaterial } from "./secrets.ts";

const run = promisify(execFile);

interface Listener {
  port: number;
  /** Builds a config with the given certificate files, as the data plane does on every update. */
  load(certFile: string, keyFile: string): ListenerTlsRuntime;
  close(): void;
}

async function listen(manager: TlsManager, minVersion: string): Promise<Listener> {
  let current: ListenerTlsRuntime | undefined;
  const server = net.createServer((socket) => current?.acceptor.accept(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    load(certFile, keyFile) {
      const build = manager.build();
      const material = build.secret(
        create(SecretSchema, {
          name: "site",
          kind: {
            case: "tlsCertificate",
            value: {
              certificateChainPem: readFileSync(certFile, "utf8"),
              privateKeyPem: readFileSync(keyFile, "utf8"),
            },
          },
        }),
      );
      const secrets = new Map<string, SecretMaterial>([["site", material]]);
      const rt = build.listenerTls(
        "public",
        create(ListenerTlsSchema, { certificateSecrets: ["site"], minVersion }),
        secrets,
      );
      build.finish();
      rt.acceptor.onSecure = (socket) => {
        socket.end("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
      };
      current = rt;
      return rt;
    },
    close: () => server.close(),
  };
}

/** One s_client connection; returns "New" or "Reused" as openssl prints it. */
async function connect(port: number, version: string, sessionFile: string, resume: boolean): Promise<string> {
  const flags = [
    `-${version}`,
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "site.test",
    resume ? "-sess_in" : "-sess_out",
    sessionFile,
  ];
  // A TLS 1.3 ticket arrives after the handshake: a request keeps the client reading until the server
  // closes, so the ticket is in the session file. s_client exits 1 on that close, hence `; true`.
  const { stdout } = await run(
    "sh",
    [
      "-c",
      `printf 'GET / HTTP/1.1\\r\\n\\r\\n' | openssl s_client ${flags.join(" ")} -ign_eof 2>/dev/null; true`,
    ],
    { timeout: 10_000 },
  );
  const m = /^(New|Reused), /m.exec(stdout);
  assert.ok(m?.[1], `no session line in:\n${stdout.slice(0, 400)}`);
  return m[1];
}

for (const version of ["tls1_3", "tls1_2"]) {
  test(`session resumption (${version}): resumes, survives a new certificate, not a rotated ticket key`, async (t) => {
    if (!requireOrSkip(t, hasOpenssl(), "the openssl command makes the certificates and is the client"))
      return;
    const dir = tempDir("agw-resume-");
    const ca = makeCa(dir, "ca");
    const first = makeLeaf(dir, ca, { cn: "site.test", sans: ["DNS:site.test"], type: "rsa", file: "one" });
    const second = makeLeaf(dir, ca, { cn: "site.test", sans: ["DNS:site.test"], file: "two" });
    const manager = new TlsManager();
    const listener = await listen(manager, version === "tls1_3" ? "TLSv1.3" : "TLSv1.2");
    t.after(() => {
      listener.close();
      manager.close();
    });
    const session = join(dir, "session.pem");
    listener.load(first.certFile, first.keyFile);
    assert.equal(await connect(listener.port, version, session, false), "New");
    assert.equal(await connect(listener.port, version, session, true), "Reused");

    // A new certificate version is a new acceptor with the listener's same ticket key.
    const before = listener.load(first.certFile, first.keyFile).acceptor;
    const after = listener.load(second.certFile, second.keyFile).acceptor;
    assert.notEqual(before, after);
    assert.equal(await connect(listener.port, version, session, true), "Reused");

    manager.rotateTicketKeys();
    assert.equal(await connect(listener.port, version, session, true), "New", "a ticket from the old key");
    assert.equal(await connect(listener.port, version, session, false), "New");
    assert.equal(await connect(listener.port, version, session, true), "Reused", "a ticket from the new key");
  });
}
