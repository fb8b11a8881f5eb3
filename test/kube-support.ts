/** What the tests against a real kube-apiserver (scripts/kube) share. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { KubeClient } from "@agw/control-plane/providers/kubernetes/client";
import { parse } from "yaml";
import { ROOT, waitFor } from "./helpers.ts";

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
