/** What the tests against a real kube-apiserver (scripts/kube) share. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, type TestContext } from "node:test";
import { KubeClient, loadKubeConfig } from "@agw/control-plane/providers/kubernetes/client";
import { parse } from "yaml";
import { kubeUnavailableReason, startTestApiServer, type TestApiServer } from "../scripts/kube/apiserver.ts";
import { createPodNetwork, netnsUnavailableReason, type PodNetwork } from "../scripts/kube/netns.ts";
import { ROOT, requireOrSkip, waitFor } from "./helpers.ts";

export interface KubeFixture {
  readonly api: TestApiServer;
  readonly client: KubeClient;
  /** Present when `pods` was asked for. */
  readonly pods: PodNetwork | undefined;
}

/**
 * One etcd + kube-apiserver for a test file: started in `before()` (with `pods` upstream addresses in
 * a network namespace when asked: EndpointSlices refuse loopback), handed to `setup` (CRDs,
 * namespaces), stopped in `after()`. Returns `ready(t)`, which every test calls first: it skips the
 * test when a prerequisite is missing (a failure under AGW_TEST_STRICT=1) and fails it when the API
 * server could not start.
 */
export function useKubeApiServer(
  options: { pods?: number; timeoutMs: number },
  setup: (kube: KubeFixture) => Promise<void>,
): (t: TestContext) => boolean {
  const unavailable = kubeUnavailableReason() ?? (options.pods ? netnsUnavailableReason() : undefined);
  let api: TestApiServer | undefined;
  let pods: PodNetwork | undefined;
  let startError: unknown;
  before(
    async () => {
      if (unavailable) return;
      try {
        if (options.pods) pods = createPodNetwork(options.pods);
        api = await startTestApiServer();
      } catch (e) {
        startError = e;
        return;
      }
      await setup({ api, client: new KubeClient(loadKubeConfig(api.kubeconfig)), pods });
    },
    { timeout: options.timeoutMs },
  );
  after(async () => {
    pods?.close();
    await api?.close();
  });
  return (t) => {
    if (!requireOrSkip(t, !unavailable, `kube-apiserver unavailable: ${unavailable}`)) return false;
    if (startError) throw new Error(`kube-apiserver could not start: ${(startError as Error).message}`);
    return true;
  };
}

/** Installs deploy/crds' GatewayRoute CRD and waits until the API server serves it. */
export async function installGatewayRouteCrd(client: KubeClient): Promise<void> {
  const crd = parse(readFileSync(join(ROOT, "deploy/crds/gateway.agw.dev_gatewayroutes.yaml"), "utf8"));
  await client.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
  await waitFor(
    "GatewayRoute CRD established",
    async () => {
      const c = await client.request<{ status?: { conditions?: Array<{ type: string; status: string }> } }>(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gatewayroutes.gateway.agw.dev",
      );
      return c.status?.conditions?.some((x) => x.type === "Established" && x.status === "True") || undefined;
    },
    30_000,
  );
}
