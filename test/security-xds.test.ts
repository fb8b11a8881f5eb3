/**
 * Secrets over xDS, attacked (docs/security.md, "xDS: secrets go only to authenticated data planes
 * that reference them"). One control plane serves xDS three ways at once — plaintext TCP, mTLS TCP
 * and its private Unix socket — with two HTTPS listeners and a TLS Secret no listener uses:
 *
 * - an intruder on plaintext TCP naming itself "intruder" (SotW and Delta) gets no Secret at all,
 *   and the control plane says once why;
 * - a data plane with a valid certificate for another node, claiming node "edge-1", is refused
 *   before any resource is sent;
 * - edge-1 over mTLS and a client of the Unix socket get the referenced Secrets and never the
 *   unreferenced one; a Delta client that subscribes to one listener gets only that listener's;
 * - the Unix socket is 0600 in a 0700 directory.
 */
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import net from "node:net";
import { dirname } from "node:path";
import { test } from "node:test";
import {
  type AdsServer,
  createAdsService,
  startAdsServer,
  startLocalAdsServer,
} from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { irToSnapshot } from "@agw/control-plane/xds/resources";
import { AsyncQueue, createLogger, RESOURCE_TYPES, TYPE_URL } from "@agw/core";
import { SecretSchema } from "@agw/core/gen/agw/v1/secret_pb.js";
import { AggregatedDiscoveryService } from "@agw/core/gen/envoy/service/discovery/v3/ads_pb.js";
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import type { Ir, IrListener } from "@agw/core/ir";
import { create } from "@bufbuild/protobuf";
import { type Any, anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { requireOrSkip, tempDir, waitFor } from "./helpers.ts";
import { hasOpenssl, makeCa, makeLeaf } from "./tls-certs.ts";

const KEY = (name: string) => `-----BEGIN PRIVATE KEY-----\nkey-of-${name}\n-----END PRIVATE KEY-----\n`;

function https(name: string, certificate: string): IrListener {
  return {
    name,
    address: "127.0.0.1",
    port: 1,
    protocol: "https",
    tls: { certificates: [certificate], minVersion: "TLSv1.2", ciphers: "", alpn: [] },
    routes: [],
  };
}

const IR: Ir = {
  listeners: [https("a", "cert-a"), https("b", "cert-b")],
  clusters: [],
  secrets: ["cert-a", "cert-b", "unreferenced"].map((name) => ({
    name,
    certificateChainPem: `-----BEGIN CERTIFICATE-----\n${name}\n-----END CERTIFICATE-----\n`,
    privateKeyPem: KEY(name),
  })),
};

interface Received {
  secrets: Map<string, string>;
  types: Set<string>;
  error: unknown;
  raw: string;
}

type Transport = ReturnType<typeof createGrpcTransport>;

/** A raw ADS client: subscribes to every type (or as told) and records every Secret it receives. */
function collect(transport: Transport, protocol: "sotw" | "delta", nodeId: string, listeners?: string[]) {
  const client = createClient(AggregatedDiscoveryService, transport);
  const got: Received = { secrets: new Map(), types: new Set(), error: undefined, raw: "" };
  const record = (typeUrl: string, resources: Any[]) => {
    got.types.add(typeUrl);
    for (const any of resources) {
      got.raw += Buffer.from(any.value).toString("latin1");
      if (typeUrl !== TYPE_URL.secret) continue;
      const secret = anyUnpack(any, SecretSchema);
      if (secret?.kind.case === "tlsCertificate")
        got.secrets.set(secret.name, secret.kind.value.privateKeyPem);
    }
  };
  const abort = new AbortController();
  const done = (async () => {
    try {
      if (protocol === "sotw") {
        const out = new AsyncQueue<DiscoveryRequest>();
        for (const typeUrl of RESOURCE_TYPES)
          out.push(create(DiscoveryRequestSchema, { node: { id: nodeId }, typeUrl }));
        for await (const r of client.streamAggregatedResources(out, { signal: abort.signal })) {
          record(r.typeUrl, r.resources);
          out.push(
            create(DiscoveryRequestSchema, {
              typeUrl: r.typeUrl,
              responseNonce: r.nonce,
              versionInfo: r.versionInfo,
            }),
          );
        }
      } else {
        const out = new AsyncQueue<DeltaDiscoveryRequest>();
        for (const typeUrl of RESOURCE_TYPES)
          out.push(
            create(DeltaDiscoveryRequestSchema, {
              node: { id: nodeId },
              typeUrl,
              resourceNamesSubscribe: typeUrl === TYPE_URL.listener && listeners ? listeners : [],
            }),
          );
        for await (const r of client.deltaAggregatedResources(out, { signal: abort.signal })) {
          record(
            r.typeUrl,
            r.resources.flatMap((x) => (x.resource ? [x.resource] : [])),
          );
          out.push(create(DeltaDiscoveryRequestSchema, { typeUrl: r.typeUrl, responseNonce: r.nonce }));
        }
      }
    } catch (e) {
      if (!abort.signal.aborted) got.error = e;
    }
  })();
  return {
    got,
    /** Every type answered (or the stream refused), then the stream is closed. */
    async settle(): Promise<Received> {
      await waitFor("every type answered or the stream refused", () =>
        got.error !== undefined || got.types.size === RESOURCE_TYPES.length ? true : undefined,
      );
      abort.abort();
      await done;
      return got;
    },
  };
}

function plaintext(server: AdsServer): Transport {
  return createGrpcTransport({ baseUrl: `http://${server.target}` });
}

function overSocket(server: AdsServer): Transport {
  const path = server.target.slice("unix:".length);
  return createGrpcTransport({
    baseUrl: "http://localhost",
    sessionManager: new Http2SessionManager(
      "http://localhost",
      {},
      { createConnection: () => net.connect(path) },
    ),
  });
}

test("xDS secrets: an intruder on plaintext, or with another node's certificate, gets no key; authenticated data planes get only what their listeners reference", async (t) => {
  if (!requireOrSkip(t, hasOpenssl(), "openssl is needed to make the xDS certificates")) return;
  const dir = tempDir("agw-xds-secrets-");
  const ca = makeCa(dir, "xds-ca");
  const server = makeLeaf(dir, ca, { cn: "control-plane", sans: ["DNS:localhost", "IP:127.0.0.1"] });
  const edge1 = makeLeaf(dir, ca, { cn: "edge-1", clientAuth: true });
  const edge2 = makeLeaf(dir, ca, { cn: "edge-2", clientAuth: true });

  const lines: string[] = [];
  const log = createLogger("test", {
    write: (line: string) => {
      lines.push(line);
      return true;
    },
  } as unknown as NodeJS.WritableStream);
  const cache = new SnapshotCache({ minIntervalMs: 0 });
  cache.set(irToSnapshot(IR));
  const service = createAdsService(cache, new DataPlaneRegistry(), log);
  const tcp = await startAdsServer("127.0.0.1", 0, service);
  const mtls = await startAdsServer("127.0.0.1", 0, service, {
    tls: { cert: server.certPem, key: server.keyPem, ca: ca.pem },
    log,
  });
  const local = await startLocalAdsServer(service);
  t.after(async () => {
    await Promise.all([tcp.close(), mtls.close(), local.close()]);
  });
  const mtlsAs = (leaf: typeof edge1) =>
    createGrpcTransport({
      baseUrl: `https://localhost:${mtls.address.port}`,
      nodeOptions: { ca: ca.pem, cert: leaf.certPem, key: leaf.keyPem },
    });

  // The intruder: plaintext TCP, any node id, both protocols. Every other type arrives, no Secret does.
  for (const protocol of ["sotw", "delta"] as const) {
    const intruder = await collect(plaintext(tcp), protocol, "intruder").settle();
    assert.equal(intruder.error, undefined, `${protocol}: the intruder's stream itself is served`);
    assert.ok(intruder.types.has(TYPE_URL.listener), `${protocol}: listeners arrive`);
    assert.deepEqual([...intruder.secrets.keys()], [], `${protocol}: no Secret over plaintext`);
    assert.doesNotMatch(intruder.raw, /PRIVATE KEY|key-of-/, `${protocol}: no key material in any resource`);
  }
  const withheld = lines.filter((l) => l.includes("secrets withheld"));
  assert.equal(withheld.length, 2, "logged once per plaintext stream");
  assert.match(withheld[0] ?? "", /"node":"intruder"/);

  // A valid certificate for edge-2 claiming node edge-1: refused before anything is sent.
  const impostor = await collect(mtlsAs(edge2), "delta", "edge-1").settle();
  assert.match(String(impostor.error), /does not match the client certificate's identity "edge-2"/);
  assert.equal(impostor.types.size, 0);
  assert.doesNotMatch(impostor.raw, /key-of-/);

  // edge-1 over mTLS and the Unix socket's client: the referenced Secrets, never the unreferenced one.
  const expected = new Map([
    ["cert-a", KEY("cert-a")],
    ["cert-b", KEY("cert-b")],
  ]);
  for (const [name, transport] of [
    ["mTLS", mtlsAs(edge1)],
    ["Unix socket", overSocket(local)],
  ] as const) {
    for (const protocol of ["sotw", "delta"] as const) {
      const got = await collect(transport, protocol, "edge-1").settle();
      assert.equal(got.error, undefined, `${name} ${protocol}`);
      assert.deepEqual(got.secrets, expected, `${name} ${protocol}: referenced Secrets only`);
    }
  }
  // Per stream: a Delta data plane that subscribes to listener "b" gets cert-b and nothing else.
  const scoped = await collect(mtlsAs(edge1), "delta", "edge-1", ["b"]).settle();
  assert.deepEqual([...scoped.secrets.keys()], ["cert-b"]);

  // The socket only this user can open.
  const path = local.target.slice("unix:".length);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(dirname(path)).mode & 0o777, 0o700);
});
