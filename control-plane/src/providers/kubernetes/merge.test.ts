import assert from "node:assert/strict";
import { test } from "node:test";
import type { Ir, IrListener } from "@agw/core/ir";
import { mergeIr } from "./merge.ts";

const https = (name: string, certificates: string[]): IrListener => ({
  name,
  address: "127.0.0.1",
  port: 8443,
  protocol: "https",
  tls: { certificates, minVersion: "TLSv1.2", ciphers: "", alpn: [] },
  routes: [],
});
const secret = (name: string) => ({ name, certificateChainPem: "c", privateKeyPem: "k" });

test("a config.yaml listener naming a Kubernetes TLS Secret is served once the Secret is, and reported until then", () => {
  const file: Ir = {
    listeners: [https("site", ["prod/site"]), https("local", ["local-cert"])],
    clusters: [],
    secrets: [secret("local-cert")],
  };
  const waiting = mergeIr(file, { listeners: [], clusters: [], secrets: [] });
  assert.deepEqual(
    waiting.ir.listeners.map((l) => l.name),
    ["local"],
  );
  assert.match(
    waiting.listenerErrors.join(),
    /^listener site: Kubernetes TLS Secret prod\/site is not served/,
  );

  const served = mergeIr(file, { listeners: [], clusters: [], secrets: [secret("prod/site")] });
  assert.deepEqual(
    served.ir.listeners.map((l) => l.name),
    ["site", "local"],
  );
  assert.deepEqual(served.listenerErrors, []);

  assert.match(mergeIr(file, undefined).listenerErrors.join(), /needs the Kubernetes source/);
});

test("a rotation to a bad PEM keeps serving the last good certificate; a deleted Secret takes the listener out", () => {
  const file: Ir = { listeners: [https("site", ["prod/site"])], clusters: [] };
  const good = mergeIr(file, { listeners: [], clusters: [], secrets: [secret("prod/site")] });
  const bad = mergeIr(
    file,
    {
      listeners: [],
      clusters: [],
      secrets: [],
      secretErrors: ["prod/site: tls.crt is not a PEM certificate"],
    },
    good.servedSecrets,
  );
  assert.deepEqual(bad.ir.secrets, [secret("prod/site")]);
  assert.deepEqual(bad.listenerErrors, []);
  const deleted = mergeIr(file, { listeners: [], clusters: [], secrets: [] }, bad.servedSecrets);
  assert.deepEqual(deleted.ir.listeners, []);
  assert.equal(deleted.listenerErrors.length, 1);
});
