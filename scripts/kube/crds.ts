/** CRDs for the local API server (tests, `npm run kube:local`, the conformance harness). */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { KubeApiError, type KubeClient } from "@agw/control-plane/providers/kubernetes/client";
import { parse } from "yaml";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * The Gateway API standard-channel CRDs (scripts/kube/gateway-api-crds.sh: upstream's, from Go's
 * module cache), those named by plural, or all of them.
 */
export function gatewayApiCrds(plurals?: string[]): object[] {
  const dir = execFileSync("bash", [join(ROOT, "scripts/kube/gateway-api-crds.sh")], {
    encoding: "utf8",
  }).trim();
  const files = plurals
    ? plurals.map((p) => `gateway.networking.k8s.io_${p}.yaml`)
    : readdirSync(dir).filter(
        (f) => /^gateway\.networking\.k8s\.io_.*\.yaml$/.test(f) && !f.includes("_vap_"),
      );
  return files.map((f) => parse(readFileSync(join(dir, f), "utf8")) as object);
}

/** Creates each CRD (one already there is kept) and waits until the API server serves it. */
export async function applyCrds(client: KubeClient, crds: object[], timeoutMs = 30_000): Promise<void> {
  for (const crd of crds)
    await client
      .request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
      .catch((e: unknown) => {
        if (!(e instanceof KubeApiError && e.status === 409)) throw e;
      });
  for (const crd of crds as Array<{ metadata: { name: string } }>) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = await client.request<{ status?: { conditions?: Array<{ type: string; status: string }> } }>(
        "GET",
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`,
      );
      if (c.status?.conditions?.some((x) => x.type === "Established" && x.status === "True")) break;
      if (Date.now() > deadline)
        throw new Error(`CRD ${crd.metadata.name} not established after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
