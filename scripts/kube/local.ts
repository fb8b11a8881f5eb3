/**
 * `npm run kube:local`: the local Kubernetes API server the tests use (etcd + kube-apiserver from
 * scripts/kube/build.sh, started by scripts/kube/apiserver.ts), with the GatewayRoute CRD applied,
 * for trying the Kubernetes provider by hand (docs/kubernetes.md). No controller-manager, scheduler
 * or kubelet runs: objects are stored and watched, Pods never start, so EndpointSlices are written
 * by hand as in the walk-through.
 *
 * Prints the kubeconfig and the PATH holding the matching kubectl, writes them to
 * `<dir>/env` for `source`, and keeps running until SIGINT/SIGTERM (then removes everything).
 *
 *   --dir DIR       where the kubeconfig and env files go (default: .kube-local in the repository)
 *   --build         run scripts/kube/build.sh first when the binaries are missing (minutes, cold)
 *   --gateway-api   also install the Gateway API CRDs (scripts/kube/gateway-api-crds.sh)
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { KubeClient, loadKubeConfig } from "@agw/control-plane/providers/kubernetes/client";
import { parse } from "yaml";
import { kubeBinDir, kubeUnavailableReason, startTestApiServer } from "./apiserver.ts";
import { applyCrds, gatewayApiCrds } from "./crds.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

const { values } = parseArgs({
  options: {
    dir: { type: "string", default: join(ROOT, ".kube-local") },
    build: { type: "boolean", default: false },
    "gateway-api": { type: "boolean", default: false },
  },
});

const kubectl = join(kubeBinDir(), "kubectl");
if ((kubeUnavailableReason() || !existsSync(kubectl)) && values.build)
  execFileSync("bash", [join(ROOT, "scripts/kube/build.sh")], { stdio: ["ignore", "ignore", "inherit"] });
const unavailable = kubeUnavailableReason();
if (unavailable) {
  console.error(`kube:local: ${unavailable}; run with --build (or bash scripts/kube/build.sh) first`);
  process.exit(1);
}

// A file left by an earlier run must not pass for this one's (the walk-through waits for it).
const envFile = join(values.dir, "env");
rmSync(envFile, { force: true });
const api = await startTestApiServer();
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  rmSync(envFile, { force: true });
  await api.close();
  process.exit(code);
};
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

try {
  const client = new KubeClient(loadKubeConfig(api.kubeconfig));
  const crds = [parse(readFileSync(join(ROOT, "deploy/crds/gateway.agw.dev_gatewayroutes.yaml"), "utf8"))];
  if (values["gateway-api"])
    crds.push(...gatewayApiCrds(["gatewayclasses", "gateways", "httproutes", "referencegrants"]));
  // Established, so that the first `kubectl apply` of a GatewayRoute finds its API.
  await applyCrds(client, crds);

  mkdirSync(values.dir, { recursive: true });
  const kubeconfig = join(values.dir, "kubeconfig");
  copyFileSync(api.kubeconfig, kubeconfig);
  const bin = kubeBinDir();
  const env = envFile;
  writeFileSync(env, `export KUBECONFIG=${kubeconfig}\nexport PATH=${bin}:$PATH\n`);
  console.log(`kube-apiserver ${api.server} is up (etcd + kube-apiserver, no controllers or kubelet).`);
  console.log(`CRDs applied: ${crds.map((c: { metadata: { name: string } }) => c.metadata.name).join(", ")}`);
  console.log("In another shell:");
  console.log(`  source ${env}`);
  console.log(`  # = export KUBECONFIG=${kubeconfig}; export PATH=${bin}:$PATH (kubectl ${bin}/kubectl)`);
  if (!existsSync(kubectl)) console.log(`(${kubectl} is not built: npm run kube:local -- --build builds it)`);
  console.log("Ctrl-C stops it and deletes its data.");
} catch (e) {
  console.error(`kube:local: ${(e as Error).message}`);
  await stop(1);
}
