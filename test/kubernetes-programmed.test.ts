/**
 * Programmed means the data planes ACKed: the ProgramTracker the Kubernetes provider writes route
 * status with, over a real ADS server and real data planes (Delta and SotW), no API server needed.
 * A route is Pending while no data plane is connected and until each connected one has ACKed its
 * current version (a newer version of the route is Pending again until ACKed); a data plane that
 * refuses (NACKs) the route's listener makes it Rejected, with the node and the reason.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ProgramTracker } from "@agw/control-plane/providers/kubernetes/programmed";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { SnapshotBuilder } from "@agw/control-plane/xds/resources";
import { DEFAULTS, type Ir, type IrListener, type IrRoute } from "@agw/core/ir";
import { startDataPlane } from "@agw/data-plane";
import { freePort, waitFor } from "./helpers.ts";

const quiet = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet } as never;

const route = (name: string, body: string): IrRoute => ({
  name,
  order: 0,
  hosts: [],
  path: { kind: "prefix", value: `/${name}` },
  methods: [],
  headers: [],
  query: [],
  target: { cluster: "" },
  directResponse: { status: 200, body, contentType: "text/plain" },
  timeoutMs: DEFAULTS.routeTimeoutMs,
  requestHeaders: { add: [], set: [], remove: [] },
  responseHeaders: { add: [], set: [], remove: [] },
  plugins: [],
});
const listener = (name: string, address: string, port: number, routes: IrRoute[]): IrListener => ({
  name,
  address,
  port,
  protocol: "http",
  routes,
});

async function controlPlane(t: import("node:test").TestContext) {
  const cache = new SnapshotCache({ minIntervalMs: 0 });
  const registry = new DataPlaneRegistry();
  const tracker = new ProgramTracker(cache, registry);
  const ads = await startAdsServer("127.0.0.1", 0, createAdsService(cache, registry, quiet));
  t.after(async () => {
    tracker.close();
    await ads.close();
  });
  const builder = new SnapshotBuilder();
  return { cache, registry, tracker, ads, publish: (ir: Ir) => cache.set(builder.build(ir)) };
}

for (const xdsProtocol of ["delta", "sotw"] as const)
  test(`Programmed follows the data planes' ACKs (${xdsProtocol}): Pending without one, True once it ACKed, Pending again for a newer version`, async (t) => {
    const cp = await controlPlane(t);
    const port = await freePort();
    cp.publish({ listeners: [listener("public", "0.0.0.0", port, [route("a", "one")])], clusters: [] });
    const state = () => cp.tracker.state("public", ["a"]);
    assert.deepEqual(
      { ...state() },
      { status: "False", reason: "Pending", message: "No data plane is connected." },
    );
    assert.deepEqual(cp.tracker.state("public", ["missing"]).message, "Not published to data planes yet.");

    const dp = await startDataPlane({
      xds: `127.0.0.1:${cp.ads.address.port}`,
      xdsProtocol,
      nodeId: `dp-${xdsProtocol}`,
      bindAddress: "127.0.0.1",
      log: quiet,
    });
    t.after(() => dp.close());
    const before = cp.tracker.fingerprint();
    assert.ok(await dp.ready(15_000));
    const programmed = await waitFor("Programmed", () => (state().status === "True" ? state() : undefined));
    assert.equal(programmed.message, "Acknowledged by 1 data plane(s).");
    assert.notEqual(cp.tracker.fingerprint(), before, "ACKs change the fingerprint the provider polls");
    assert.equal((await fetch(`http://127.0.0.1:${port}/a`)).status, 200);

    // A new version of the route: not programmed until the data plane ACKed that version.
    cp.publish({ listeners: [listener("public", "0.0.0.0", port, [route("a", "two")])], clusters: [] });
    assert.equal(state().reason, "Pending");
    assert.match(
      state().message,
      new RegExp(`Waiting for 1 of 1 data plane\\(s\\) to acknowledge it: dp-${xdsProtocol}`),
    );
    await waitFor("the new version Programmed", () => (state().status === "True" ? true : undefined));
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/a`)).text(), "two");

    // The data plane goes: nothing runs the route any more.
    await dp.close();
    await waitFor("no data plane", () =>
      state().message === "No data plane is connected." ? true : undefined,
    );
  });

test("a data plane's NACK is reported on the routes of the listener it names (Rejected, with node and reason); the others on that update are Pending", async (t) => {
  const cp = await controlPlane(t);
  const port = await freePort();
  // Two addresses, one port: fine for the control plane, refused by a data plane that binds every
  // listener on one address (--bind-address).
  cp.publish({
    listeners: [
      listener("first", "127.0.0.1", port, [route("a", "a")]),
      listener("second", "127.0.0.2", port, [route("b", "b")]),
    ],
    clusters: [],
  });
  const dp = await startDataPlane({
    xds: `127.0.0.1:${cp.ads.address.port}`,
    nodeId: "dp-bound",
    bindAddress: "127.0.0.1",
    log: quiet,
  });
  t.after(() => dp.close());
  const refused = await waitFor("second Rejected", () => {
    const s = cp.tracker.state("second", ["b"]);
    return s.reason === "Rejected" ? s : undefined;
  });
  assert.equal(refused.status, "False");
  assert.match(
    refused.message,
    /^Refused by 1 data plane\(s\): dp-bound: agw\.v1\.Listener second: address 127\.0\.0\.1:\d+ is also used by listener first$/,
  );
  assert.equal(cp.tracker.state("first", ["a"]).reason, "Pending");
});
