/**
 * Interop with an xDS implementation nobody here wrote: a small Go peer on envoyproxy's
 * go-control-plane (scripts/interop/go-xds-peer, built into a cache directory outside the repo by
 * scripts/interop/build-go-peer.sh). Its server (LinearCache per type, MuxCache, SotW and Delta)
 * feeds our data plane; its SotW ADS client consumes from our control plane.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { promisify } from "node:util";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { irToSnapshot, type Snapshot } from "@agw/control-plane/xds/resources";
import { createLogger, RESOURCE_TYPES, TYPE_URL } from "@agw/core";
import type { Ir, IrRoute } from "@agw/core/ir";
import { startDataPlane } from "@agw/data-plane";
import { freePort, get, ROOT, requireOrSkip, tempDir, waitFor } from "./helpers.ts";

const run = promisify(execFile);
const silent = createLogger("test", { write: () => true } as unknown as NodeJS.WritableStream);

async function buildPeer(): Promise<{ path?: string; error?: string }> {
  try {
    const { stdout } = await run("bash", [join(ROOT, "scripts/interop/build-go-peer.sh")], {
      timeout: 600_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { path: stdout.trim().split("\n").pop() ?? "" };
  } catch (e) {
    return { error: `${(e as Error).message}`.slice(0, 2000) };
  }
}

function ir(listenerPort: number, originPort: number, routes: IrRoute[]): Ir {
  return {
    listeners: [{ name: "web", address: "127.0.0.1", port: listenerPort, protocol: "http", routes }],
    clusters: [
      {
        name: "origin",
        lb: "round_robin",
        connectTimeoutMs: 1000,
        idleTimeoutMs: 5000,
        maxIdlePerEndpoint: 4,
        maxRequestsPerConnection: 0,
        endpoints: [{ address: "127.0.0.1", port: originPort, weight: 1 }],
      },
    ],
  };
}

function route(name: string, prefix: string, tag: string): IrRoute {
  return {
    name,
    order: 0,
    hosts: [],
    path: { kind: "prefix", value: prefix },
    methods: [],
    headers: [],
    query: [],
    target: { cluster: "origin" },
    timeoutMs: 5000,
    requestHeaders: { add: [], set: [], remove: [] },
    responseHeaders: { add: [], set: [["x-route", tag]], remove: [] },
    plugins: [],
  };
}

/** The peer's resource file: {typeUrl: {name: base64 of the resource's bytes}}. */
function resourcesFile(dir: string, name: string, snapshot: Snapshot): string {
  const out: Record<string, Record<string, string>> = {};
  for (const typeUrl of RESOURCE_TYPES)
    out[typeUrl] = Object.fromEntries(
      [...(snapshot.get(typeUrl)?.resources.values() ?? [])].map((r) => [
        r.name,
        Buffer.from(r.resource.value).toString("base64"),
      ]),
    );
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(out));
  return file;
}

function lines(child: ReturnType<typeof spawn>) {
  const seen: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    try {
      seen.push(JSON.parse(line));
    } catch {
      seen.push({ raw: line });
    }
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return { seen, stderr: () => stderr };
}

test("interop with go-control-plane: its server feeds our data plane, its client reads our control plane", async (t) => {
  const peer = await buildPeer();
  if (!requireOrSkip(t, peer.path !== undefined, `the Go interop peer could not be built: ${peer.error}`))
    return;
  const bin = peer.path as string;
  const dir = tempDir("agw-interop-");
  const origin = http.createServer((_req, res) => res.end("origin\n"));
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const originPort = (origin.address() as AddressInfo).port;
  const listenerPort = await freePort();
  const cleanup: Array<() => Promise<void> | void> = [() => void origin.close()];
  t.after(async () => {
    for (const fn of cleanup.reverse()) await fn();
  });

  await t.test("go-control-plane server → AGW data planes (Delta and SotW)", async () => {
    const v1 = irToSnapshot(ir(listenerPort, originPort, [route("a", "/a", "a1"), route("b", "/b", "b1")]));
    const server = spawn(
      bin,
      ["serve", "--listen", "127.0.0.1:0", "--resources", resourcesFile(dir, "v1.json", v1)],
      {
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    cleanup.push(() => void server.kill());
    const out = lines(server);
    const listening = await waitFor("the Go server", () => out.seen.find((l) => l.event === "listening"));
    const address = String(listening.address);

    const planes = await Promise.all(
      (["delta", "sotw"] as const).map((protocol, i) =>
        startDataPlane({
          xds: address,
          xdsProtocol: protocol,
          nodeId: `agw-${protocol}`,
          bindAddress: `127.0.0.${i + 2}`,
          log: silent,
        }),
      ),
    );
    cleanup.push(async () => {
      for (const p of planes) await p.close();
    });
    for (const [i, p] of planes.entries()) {
      assert.ok(
        await p.ready(15_000),
        `data plane ${i} got a full config from go-control-plane\n${out.stderr()}`,
      );
      const res = await get(`http://127.0.0.${i + 2}:${listenerPort}/a`);
      assert.deepEqual([res.status, res.headers.get("x-route")], [200, "a1"]);
    }

    // A change and a deletion, served by go-control-plane's caches (Delta: changed + removed only).
    const v2 = irToSnapshot(ir(listenerPort, originPort, [route("a", "/a", "a2")]));
    server.stdin?.write(`${resourcesFile(dir, "v2.json", v2)}\n`);
    for (const i of [0, 1]) {
      await waitFor(`data plane ${i} on the new config`, async () => {
        const a = await get(`http://127.0.0.${i + 2}:${listenerPort}/a`);
        const b = await get(`http://127.0.0.${i + 2}:${listenerPort}/b`);
        return a.headers.get("x-route") === "a2" && b.status === 404 ? true : undefined;
      });
    }
    const acks = out.seen.filter((l) => (l.event === "request" || l.event === "delta_request") && l.nonce);
    assert.ok(
      acks.some((l) => l.node === "agw-delta" || l.event === "delta_request"),
      "Delta ACKs reached the peer",
    );
    assert.ok(
      acks.some((l) => l.node === "agw-sotw"),
      "SotW ACKs reached the peer",
    );
    assert.ok(!out.seen.some((l) => typeof l.error === "string" && l.error !== ""), "no NACKs");
  });

  await t.test("AGW control plane → go-control-plane's ADS client", async () => {
    const cache = new SnapshotCache({ minIntervalMs: 0 });
    const registry = new DataPlaneRegistry();
    const v1 = irToSnapshot(ir(listenerPort, originPort, [route("a", "/a", "a1")]));
    cache.set(v1);
    const server = await startAdsServer("127.0.0.1", 0, createAdsService(cache, registry, silent));
    cleanup.push(() => server.close());
    const client = spawn(
      bin,
      [
        "fetch",
        "--server",
        `127.0.0.1:${server.address.port}`,
        "--node",
        "go-xds-peer",
        "--responses",
        // One per type, then one for the only type the change below touches (Route).
        String(RESOURCE_TYPES.length + 1),
        ...RESOURCE_TYPES.flatMap((type) => ["--type", type]),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const exit = new Promise<number | null>((resolve) => client.once("exit", resolve));
    cleanup.push(() => void client.kill());
    const out = lines(client);
    const digests = (s: Snapshot, type: string) =>
      [...(s.get(type as never)?.resources.values() ?? [])].map((r) =>
        createHash("sha256").update(r.resource.value).digest("hex").slice(0, 16),
      );
    await waitFor("a first response per type, ACKed", () =>
      registry.list().length === RESOURCE_TYPES.length &&
      registry.list().every((d) => [...d.types.values()].every((s) => s.acks > 0))
        ? true
        : undefined,
    ).catch((e) => {
      throw new Error(`${e.message}\n${out.stderr()}`);
    });
    const firstRoutes = out.seen.find((l) => l.event === "response" && l.type === TYPE_URL.route);
    assert.deepEqual(
      firstRoutes?.digests,
      digests(v1, TYPE_URL.route),
      "the bytes we sent, as go-control-plane saw them",
    );

    const v2 = irToSnapshot(ir(listenerPort, originPort, [route("a", "/a", "a2"), route("c", "/c", "c")]));
    cache.set(v2);
    const exited = await exit;
    assert.equal(exited, 0, out.stderr());
    const routeResponses = out.seen.filter((l) => l.event === "response" && l.type === TYPE_URL.route);
    assert.equal(routeResponses.length, 2);
    assert.deepEqual(routeResponses[1]?.digests, digests(v2, TYPE_URL.route));
  });
});
