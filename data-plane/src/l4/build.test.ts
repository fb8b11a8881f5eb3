/**
 * What the data plane accepts in a pushed L4 Listener (a control plane other than AGW's may send
 * anything): the checks that NACK it, and the SNI table built from a good one.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ClusterLoadAssignmentSchema, ClusterSchema } from "@agw/core/gen/agw/v1/cluster_pb.js";
import { type Listener, ListenerSchema, Protocol } from "@agw/core/gen/agw/v1/listener_pb.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { buildRuntimeConfig, type ResourceSet } from "../runtime/build.ts";
import { lookupServerName } from "../tls/sni.ts";

function build(listener: MessageInitShape<typeof ListenerSchema>, clusterTls = false) {
  const clusters = ["a", "b"].map((name) =>
    create(ClusterSchema, { name, ...(clusterTls && name === "b" && { tls: { sni: "b" } }) }),
  );
  const set: ResourceSet = {
    listeners: new Map<string, Listener>([
      ["l", create(ListenerSchema, { name: "l", port: 9000, ...listener })],
    ]),
    routeConfigs: new Map(),
    routes: new Map(),
    clusters: new Map(clusters.map((c) => [c.name, c])),
    endpoints: new Map(
      clusters.map((c) => [
        c.name,
        create(ClusterLoadAssignmentSchema, {
          clusterName: c.name,
          endpoints: [{ address: "127.0.0.1", port: 1 }],
        }),
      ]),
    ),
  };
  return buildRuntimeConfig(set, undefined, "v");
}

const passthrough = (sniRoutes: Array<{ serverNames: string[]; cluster: string }>, cluster = "") => ({
  protocol: Protocol.TLS_PASSTHROUGH,
  l4: { cluster, sniRoutes },
});

test("a good passthrough listener: exact names before one-label wildcards, defaults filled in", () => {
  const l4 = build(
    passthrough([
      { serverNames: ["*.example.com"], cluster: "a" },
      { serverNames: ["api.example.com"], cluster: "b" },
    ]),
  ).listeners.get("l")?.l4;
  assert.ok(l4);
  assert.equal(lookupServerName(l4.sni, "api.example.com"), "b");
  assert.equal(lookupServerName(l4.sni, "www.example.com"), "a");
  assert.equal(lookupServerName(l4.sni, "a.www.example.com"), undefined);
  assert.equal(lookupServerName(l4.sni, "example.com"), undefined);
  assert.equal(l4.idleTimeoutMs, 3_600_000);
  assert.equal(l4.clientHelloTimeoutMs, 10_000);
  assert.equal(l4.maxClientHelloBytes, 16_384);
  assert.equal(l4.maxConnectAttempts, 1);
});

test("pushed L4 listeners that make no sense are refused (NACK) with the reason", () => {
  const refused = (listener: MessageInitShape<typeof ListenerSchema>, why: RegExp, clusterTls = false) =>
    assert.throws(() => build(listener, clusterTls), why);
  refused({ protocol: Protocol.TCP }, /a tcp listener needs l4/);
  refused({ protocol: Protocol.TCP, l4: {} }, /needs l4.cluster/);
  refused({ protocol: Protocol.TCP, routeConfig: "r", l4: { cluster: "a" } }, /has no route_config/);
  refused(
    { protocol: Protocol.TCP, l4: { cluster: "a", sniRoutes: [{ serverNames: ["x"], cluster: "a" }] } },
    /sni_routes need/,
  );
  refused({ protocol: Protocol.HTTP, l4: { cluster: "a" } }, /l4 needs protocol TCP or TLS_PASSTHROUGH/);
  refused(passthrough([]), /needs sni_routes or a cluster/);
  refused(passthrough([{ serverNames: ["Upper.example.com"], cluster: "a" }]), /lower-case DNS name/);
  refused(passthrough([{ serverNames: ["a.*.example.com"], cluster: "a" }]), /lower-case DNS name/);
  refused(passthrough([{ serverNames: ["x.example.com", "x.example.com"], cluster: "a" }]), /routed twice/);
  refused(passthrough([{ serverNames: ["x.example.com"], cluster: "b" }]), /cluster b has tls/, true);
  refused({ ...passthrough([], "a"), l4: { cluster: "a", maxClientHelloBytes: 1_000_000 } }, /out of range/);
});
