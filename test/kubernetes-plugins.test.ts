/**
 * A plugin whose component lives in a Kubernetes ConfigMap (docs/plugins.md, "Delivery"), against a
 * real etcd + kube-apiserver: config.yaml defines the plugin with `source:
 * configmap:NS/NAME/KEY`, a GatewayRoute names it, an `agw control-plane --kubeconfig` reads the
 * labelled ConfigMap's binaryData, and an `agw data-plane` started in an empty directory runs it.
 * Replacing the ConfigMap's component is a new digest that the data plane loads; an unlabelled
 * ConfigMap is never read.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { KubeClient } from "@agw/control-plane/providers/kubernetes/client";
import { componentDigest } from "@agw/core/xds/plugin-component";
import { buildWat } from "../plugins/sdk/build.ts";
import { WAT_GUESTS } from "../plugins/testdata/wat-guests.ts";
import type { TestApiServer } from "../scripts/kube/apiserver.ts";
import { agw, freePort, get, tempDir, waitFor } from "./helpers.ts";
import { installGatewayRouteCrd, useKubeApiServer } from "./kube-support.ts";

/** Several real processes each: up to 115 s seen at load 29 on 2 cores, past the suite's 120 s default. */
const SLOW = { timeout: 300_000 };
const NS = "agw-plugins";
let api: TestApiServer | undefined;
let client: KubeClient;

const ready = useKubeApiServer({ timeoutMs: 150_000 }, async (kube) => {
  ({ api, client } = kube);
  await installGatewayRouteCrd(client);
  await client.request("POST", "/api/v1/namespaces", { metadata: { name: NS } });
});

const ns = (plural: string, group = "/api/v1") => `${group}/namespaces/${NS}/${plural}`;

function configMap(name: string, component: Uint8Array, labelled = true) {
  return {
    metadata: {
      name,
      namespace: NS,
      ...(labelled && { labels: { "agw.dev/plugin-component": "true" } }),
    },
    binaryData: { "component.wasm": Buffer.from(component).toString("base64") },
  };
}

test(
  "a GatewayRoute runs a plugin whose component is a ConfigMap's binaryData; a new component in the ConfigMap is loaded; an unlabelled ConfigMap is not read",
  SLOW,
  async (t) => {
    if (!ready(t) || !api) return;
    const deny = await buildWat(WAT_GUESTS.deny as string);
    const pass = await buildWat(WAT_GUESTS.pass as string);
    await client.request("POST", ns("configmaps"), configMap("gate", deny));
    await client.request("POST", ns("configmaps"), configMap("hidden", pass, false));
    // A Service whose endpoint nothing answers: a request the plugin lets through fails upstream.
    await client.request("POST", ns("services"), {
      metadata: { name: "web", namespace: NS },
      spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] },
    });
    await client.request("POST", ns("endpointslices", "/apis/discovery.k8s.io/v1"), {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: "web-a", namespace: NS, labels: { "kubernetes.io/service-name": "web" } },
      addressType: "IPv4",
      ports: [{ name: "http", port: 9, protocol: "TCP" }],
      endpoints: [{ addresses: ["192.0.2.10"], conditions: { ready: true } }],
    });
    const listenerPort = await freePort();
    await client.request("POST", ns("gatewayroutes", "/apis/gateway.agw.dev/v1alpha1"), {
      apiVersion: "gateway.agw.dev/v1alpha1",
      kind: "GatewayRoute",
      metadata: { name: "gated", namespace: NS },
      spec: {
        listener: { name: `port-${listenerPort}`, port: listenerPort },
        rules: [
          {
            matches: [{ path: { type: "PathPrefix", value: "/gated" } }],
            backendRefs: [{ name: "web", port: 80 }],
            plugins: [{ name: "gate" }],
          },
        ],
      },
    });

    const dir = tempDir("agw-kube-plugins-");
    const file = join(dir, "config.yaml");
    writeFileSync(file, `plugins:\n  - name: gate\n    source: configmap:${NS}/gate/component.wasm\n`);
    const [xdsPort, cpAdmin, dpAdmin] = await Promise.all([freePort(), freePort(), freePort()]);
    const cp = agw([
      "control-plane",
      "-c",
      file,
      "--kubeconfig",
      api.kubeconfig,
      "--namespace",
      NS,
      "--xds-listen",
      `127.0.0.1:${xdsPort}`,
      "--admin",
      `127.0.0.1:${cpAdmin}`,
    ]);
    const dp = agw(
      [
        "data-plane",
        "--xds",
        `127.0.0.1:${xdsPort}`,
        "--node-id",
        "kube-edge",
        "--admin",
        `127.0.0.1:${dpAdmin}`,
        "--bind-address",
        "127.0.0.1",
      ],
      {},
      tempDir("agw-dp-empty-"),
    );
    const output = () => `${cp.output()}\n${dp.output()}`;
    t.after(async () => {
      await Promise.all([dp.stop(), cp.stop()]);
    });
    const url = `http://127.0.0.1:${listenerPort}/gated`;
    try {
      const denied = await waitFor(
        "the ConfigMap's deny guest answering",
        async () => {
          const r = await get(url).catch(() => undefined);
          return r?.status === 403 ? r : undefined;
        },
        90_000,
      );
      assert.equal(denied.headers.get("x-agw-error"), "plugin_denied");
      const dump = JSON.parse((await get(`http://127.0.0.1:${cpAdmin}/config_dump`)).body);
      const plugin = dump.ir.plugins.find((p: { name: string }) => p.name === "gate");
      assert.equal(plugin.digest, componentDigest(deny));
      assert.equal(plugin.size, deny.byteLength);

      // A new component in the same ConfigMap: the data plane loads the new digest.
      await client.request("PUT", `${ns("configmaps")}/gate`, configMap("gate", pass));
      await waitFor(
        "the pass guest letting the request through to the (unreachable) upstream",
        async () => {
          const r = await get(url).catch(() => undefined);
          return r && r.status !== 403 ? r : undefined;
        },
        90_000,
      );

      // Pointing the plugin at an unlabelled ConfigMap: the control plane says it cannot read it and
      // the data plane refuses the plugin, naming it, while the pass guest keeps serving.
      writeFileSync(file, `plugins:\n  - name: gate\n    source: configmap:${NS}/hidden/component.wasm\n`);
      await waitFor(
        "the control plane refusing the unlabelled ConfigMap",
        () =>
          /no ConfigMap agw-plugins\/hidden labelled agw\.dev\/plugin-component/.test(cp.output())
            ? true
            : undefined,
        60_000,
      );
      const nack = await waitFor(
        "the data plane's NACK",
        async () => {
          const planes = JSON.parse((await get(`http://127.0.0.1:${cpAdmin}/dataplanes`)).body);
          return planes[0]?.types["type.googleapis.com/agw.v1.Plugin"]?.last_nack?.message as
            | string
            | undefined;
        },
        60_000,
      );
      assert.match(nack, /agw\.v1\.Plugin gate: no digest/);
      assert.notEqual((await get(url)).status, 403);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${output()}`);
    }
  },
);
