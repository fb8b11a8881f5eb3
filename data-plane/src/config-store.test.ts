/**
 * The ACK/NACK decisions of the config store, on the real store with real listeners: an update that
 * is valid is applied (ACK) or kept warming; an invalid one throws (NACK) with the resource named and
 * changes nothing; a later good update of the type clears the rejection.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { TYPE_URL } from "@agw/core";
import { ClusterLoadAssignmentSchema, ClusterSchema } from "@agw/core/gen/agw/v1/cluster_pb.js";
import { RouteSchema } from "@agw/core/gen/agw/v1/route_pb.js";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { cluster, config, endpoint, type Gateway, startGateway } from "../test/gateway.ts";

describe("config store: ACK, NACK, warming", () => {
  const gateways: Gateway[] = [];
  after(async () => {
    for (const g of gateways) await g.close();
  });

  async function gateway(): Promise<Gateway> {
    const g = await startGateway(
      config(
        "v1",
        [{ prefix: "/", cluster: "a" }],
        [cluster("a", [endpoint(1001)]), cluster("b", [endpoint(1002)])],
      ),
    );
    gateways.push(g);
    return g;
  }

  it("an invalid update is rejected with the resource named, and nothing changes", async () => {
    const g = await gateway();
    const store = g.serving.store;
    const before = store.current();
    const bad = create(ClusterLoadAssignmentSchema, {
      clusterName: "a",
      endpoints: [{ address: "", port: 1 }],
    });
    await assert.rejects(
      store.apply(TYPE_URL.endpoints, [anyPack(ClusterLoadAssignmentSchema, bad)], "v2"),
      /agw\.v1\.ClusterLoadAssignment a: endpoint without an address/,
    );
    assert.equal(store.current(), before, "the active config is the same object");
    assert.match(store.rejections["agw.v1.ClusterLoadAssignment"] ?? "", /endpoint without an address/);
    assert.equal(store.ready, true);
    // A good update of that type is ACKed and clears the rejection.
    const good = [
      create(ClusterLoadAssignmentSchema, {
        clusterName: "a",
        endpoints: [{ address: "127.0.0.1", port: 2001 }],
      }),
      create(ClusterLoadAssignmentSchema, {
        clusterName: "b",
        endpoints: [{ address: "127.0.0.1", port: 2002 }],
      }),
    ];
    await store.apply(
      TYPE_URL.endpoints,
      good.map((m) => anyPack(ClusterLoadAssignmentSchema, m)),
      "v3",
    );
    assert.deepEqual(store.rejections, {});
    assert.notEqual(store.current(), before);
    assert.equal(store.current().clusters.get("a")?.endpoints[0]?.port, 2001);
    assert.match(store.current().version, /ClusterLoadAssignment=v3/);
  });

  it("a duplicate name, a resource of another type, or a Delta resource named differently inside: NACK", async () => {
    const store = (await gateway()).serving.store;
    const before = store.current();
    const c = anyPack(ClusterSchema, create(ClusterSchema, { name: "a" }));
    await assert.rejects(
      store.apply(TYPE_URL.cluster, [c, c], "v2"),
      /agw\.v1\.Cluster a: duplicate resource name/,
    );
    await assert.rejects(store.apply(TYPE_URL.endpoints, [c], "v2"), /unexpected resource/);
    await assert.rejects(
      store.applyDelta(TYPE_URL.cluster, [{ name: "z", version: "1", resource: c }], [], "v2"),
      /agw\.v1\.Cluster z: resource is named "a" inside/,
    );
    assert.equal(store.current(), before);
  });

  it("a route to a cluster not received yet warms: accepted, the previous config serves, then it goes live", async () => {
    const store = (await gateway()).serving.store;
    const before = store.current();
    const route = create(RouteSchema, {
      name: "r0",
      routeConfig: "test-routes",
      match: { path: { case: "prefix", value: "/" } },
      action: { target: { case: "cluster", value: "late" } },
    });
    await store.applyDelta(
      TYPE_URL.route,
      [{ name: "test-routes/r0", version: "2", resource: anyPack(RouteSchema, route) }],
      [],
      "v2",
    );
    assert.equal(store.current(), before, "still the previous config");
    assert.deepEqual(store.warming, ["agw.v1.Route test-routes/r0 -> agw.v1.Cluster late"]);
    assert.equal(store.ready, false);
    await store.applyDelta(
      TYPE_URL.cluster,
      [
        {
          name: "late",
          version: "2",
          resource: anyPack(ClusterSchema, create(ClusterSchema, { name: "late" })),
        },
      ],
      [],
      "v2",
    );
    assert.equal(store.current(), before, "the cluster's endpoints are still missing");
    const cla = create(ClusterLoadAssignmentSchema, {
      clusterName: "late",
      endpoints: [{ address: "127.0.0.1", port: 3000 }],
    });
    await store.applyDelta(
      TYPE_URL.endpoints,
      [{ name: "late", version: "2", resource: anyPack(ClusterLoadAssignmentSchema, cla) }],
      [],
      "v2",
    );
    assert.deepEqual(store.warming, []);
    assert.equal(store.ready, true);
    assert.ok(store.current().clusters.has("late"));
    // A Delta removal of a cluster a route still uses warms again rather than breaking the route.
    const live = store.current();
    await store.applyDelta(TYPE_URL.cluster, [], ["late"], "v3");
    assert.equal(store.current(), live);
    assert.deepEqual(store.warming, ["agw.v1.Route test-routes/r0 -> agw.v1.Cluster late"]);
  });

  it("an empty Delta for a type already received changes only its version, with no rebuild", async () => {
    const store = (await gateway()).serving.store;
    const before = store.current();
    await store.applyDelta(TYPE_URL.cluster, [], [], "v9");
    assert.equal(store.current(), before);
    assert.equal((store.dump()["agw.v1.Cluster"] as { version: string }).version, "v9");
  });
});
