/**
 * `npm run conformance`: the official Gateway API conformance suite (sigs.k8s.io/gateway-api/
 * conformance, the version of the CRDs in scripts/kube) against AGW, on a cluster that runs on this
 * machine (docs/conformance/README.md):
 * - etcd + kube-apiserver (scripts/kube/apiserver.ts) and kube-controller-manager from the same
 *   k8s.io/kubernetes (Deployments → ReplicaSets → Pods, EndpointSlices, namespace deletion);
 * - the stand-in kubelet (scripts/kube/kubelet.ts, a test harness): Pods of the suite's echo image
 *   run as local processes in network namespaces of their own;
 * - AGW (control plane + data plane, in this process) as the implementation, each Gateway on its
 *   own loopback address (--gateway-addresses 127.0.30.0/24), which the suite reaches directly.
 * Binaries come from scripts/kube/build-conformance.sh (cached; --build builds what is missing).
 *
 *   --build              build what is missing first (tens of minutes, cold)
 *   --run-test NAME      one test only
 *   --report FILE        where the suite writes its report (default docs/conformance/report.yaml)
 *   --keep               keep running after the suite (for a look with kubectl), until Ctrl-C
 *   --supported-features LIST  declare these instead (to try features before declaring them)
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startControlPlane } from "@agw/control-plane";
import { KubeClient, loadKubeConfig } from "@agw/control-plane/providers/kubernetes/client";
import { CONTROLLER_NAME } from "@agw/control-plane/providers/kubernetes/types";
import { startDataPlane } from "@agw/data-plane";
import { parse } from "yaml";
import { kubeBinDir, kubeUnavailableReason, startTestApiServer } from "./apiserver.ts";
import { applyCrds, gatewayApiCrds } from "./crds.ts";
import { startKubelet } from "./kubelet.ts";
import { netnsUnavailableReason } from "./netns.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const GATEWAY_API_VERSION = process.env.AGW_GATEWAY_API_VERSION ?? "v1.6.0";
/** What AGW declares: GATEWAY-HTTP and GATEWAY-GRPC core, and the extended features whose tests pass here. */
export const SUPPORTED_FEATURES = [
  "Gateway",
  "HTTPRoute",
  "GRPCRoute",
  "ReferenceGrant",
  "HTTPRouteQueryParamMatching",
  "HTTPRouteResponseHeaderModification",
  "HTTPRouteSchemeRedirect",
  "HTTPRoutePortRedirect",
  "HTTPRoutePathRedirect",
  "HTTPRouteHostRewrite",
  "HTTPRoutePathRewrite",
  "HTTPRouteRequestTimeout",
  "HTTPRouteBackendTimeout",
  "HTTPRouteMethodMatching",
  "HTTPRoute303RedirectStatusCode",
  "HTTPRoute307RedirectStatusCode",
  "HTTPRoute308RedirectStatusCode",
  "HTTPRouteBackendProtocolH2C",
  "HTTPRouteBackendProtocolWebSocket",
  "HTTPRouteParentRefPort",
  "HTTPRouteNamedRouteRule",
  "GatewayPort8080",
  "GRPCRouteNamedRouteRule",
  "HTTPRouteRequestMirror",
  "HTTPRouteRequestPercentageMirror",
];
/** Tests skipped on purpose (--skip-tests), each with its reason; none today. */
export const SKIPPED: Record<string, string> = {};
const GATEWAY_ADDRESSES = "127.0.30.0/24";

const { values } = parseArgs({
  options: {
    build: { type: "boolean", default: false },
    "run-test": { type: "string" },
    report: { type: "string", default: join(ROOT, "docs/conformance/report.yaml") },
    keep: { type: "boolean", default: false },
    "supported-features": { type: "string" },
  },
});

const log = (line: string) => console.log(`[conformance] ${line}`);
const cacheRoot =
  process.env.AGW_KUBE_CACHE ??
  join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? "/root", ".cache"), "agw-k8s");
const suiteDir = join(cacheRoot, `gateway-api-conformance-${GATEWAY_API_VERSION}`);
const kcm = join(kubeBinDir(), "kube-controller-manager");
const missing = () =>
  [kcm, join(suiteDir, "echo-basic"), join(suiteDir, "conformance.test")].filter((f) => !existsSync(f));
if (missing().length > 0 && values.build)
  execFileSync("bash", [join(ROOT, "scripts/kube/build-conformance.sh")], {
    stdio: ["ignore", "inherit", "inherit"],
  });
const unavailable =
  kubeUnavailableReason() ??
  netnsUnavailableReason() ??
  (missing().length > 0 ? `not built: ${missing().join(", ")} (run with --build)` : undefined);
if (unavailable) {
  console.error(`conformance: ${unavailable}`);
  process.exit(1);
}

const cleanups: Array<() => Promise<void> | void> = [];
const cleanup = async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
};
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
process.on("SIGTERM", () => void cleanup().then(() => process.exit(143)));

function startProcess(bin: string, args: string[], name: string): ChildProcess {
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let tail = "";
  const keep = (d: Buffer) => {
    tail = (tail + d.toString()).slice(-8_000);
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  proc.once("exit", (code, signal) => {
    if (signal !== "SIGTERM") log(`${name} exited (${code ?? signal}); last output:\n${tail}`);
  });
  cleanups.push(() => {
    proc.kill("SIGTERM");
  });
  return proc;
}

interface ProfileReport {
  name: string;
  core?: { result?: string; statistics?: Record<string, number>; skippedTests?: string[] };
  extended?: {
    result?: string;
    statistics?: Record<string, number>;
    skippedTests?: string[];
    failedTests?: string[];
    unsupportedFeatures?: string[];
  };
  summary?: string;
}

/**
 * The report's verdict, printed per profile: core and extended counts, every skipped test with the
 * reason it was skipped, and the features not declared (their tests are not run, by design). Any
 * core test failed or skipped, or an extended one failed, is a failed run: CI (.ci/run) fails.
 */
export function summarize(file: string, print: (line: string) => void, oneTest?: string): { ok: boolean } {
  if (!existsSync(file)) {
    print(`no report at ${file}: the suite did not finish`);
    return { ok: false };
  }
  const report = parse(readFileSync(file, "utf8")) as { profiles?: ProfileReport[] };
  let ok = (report.profiles ?? []).length > 0;
  for (const p of report.profiles ?? []) {
    const c = p.core?.statistics ?? {};
    const e = p.extended?.statistics ?? {};
    print(
      `${p.name}: core ${c.Passed ?? 0} passed, ${c.Failed ?? 0} failed, ${c.Skipped ?? 0} skipped; ` +
        `extended ${e.Passed ?? 0} passed, ${e.Failed ?? 0} failed, ${e.Skipped ?? 0} skipped`,
    );
    if (p.extended?.unsupportedFeatures?.length)
      print(
        `  not declared (their tests are not run; docs/kubernetes.md says why): ${(p.extended.unsupportedFeatures ?? []).join(", ")}`,
      );
    if (oneTest) continue; // --run-test: every other test is skipped
    for (const t of [...(p.core?.skippedTests ?? []), ...(p.extended?.skippedTests ?? [])])
      print(`  skipped ${t}: ${SKIPPED[t] ?? "explicitly skipped (no reason recorded: add one to SKIPPED)"}`);
    if ((c.Failed ?? 0) > 0 || (c.Skipped ?? 0) > 0 || (e.Failed ?? 0) > 0 || p.core?.result !== "success")
      ok = false;
  }
  print(ok ? "conformance: passed" : "conformance: FAILED");
  return { ok };
}

let code = 1;
try {
  const api = await startTestApiServer();
  cleanups.push(() => api.close());
  log(`kube-apiserver ${api.server}`);
  const client = new KubeClient(loadKubeConfig(api.kubeconfig));
  startProcess(
    kcm,
    [
      `--kubeconfig=${api.kubeconfig}`,
      "--controllers=deployment,replicaset,endpointslice,namespace,garbagecollector,serviceaccount",
      "--leader-elect=false",
      "--secure-port=0",
      "--concurrent-deployment-syncs=10",
      "--v=0",
    ],
    "kube-controller-manager",
  );
  await applyCrds(client, gatewayApiCrds());
  const kubelet = await startKubelet({ client, echoBasic: join(suiteDir, "echo-basic"), log });
  cleanups.push(() => kubelet.close());
  log(`stand-in kubelet: node ${kubelet.nodeName}, pods on ${kubelet.podCidr}`);
  await client.request("POST", "/apis/gateway.networking.k8s.io/v1/gatewayclasses", {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "GatewayClass",
    metadata: { name: "agw" },
    spec: { controllerName: CONTROLLER_NAME },
  });
  const quiet = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet } as never;
  const cp = await startControlPlane({
    xdsLocal: true,
    log: quiet,
    kubernetes: {
      kubeconfig: api.kubeconfig,
      gatewayAddressPool: GATEWAY_ADDRESSES,
      leaderElection: { namespace: "default", identity: "conformance" },
    },
  });
  cleanups.push(() => cp.close());
  const dp = await startDataPlane({ xds: `${cp.xdsLocal?.target}`, nodeId: "conformance", log: quiet });
  cleanups.push(() => dp.close());
  log(`AGW running; Gateways get addresses from ${GATEWAY_ADDRESSES}`);
  // The base manifests include a CoreDNS Deployment, the UDPRoute tests' DNS server: its image
  // cannot run here (no registry; the stand-in kubelet runs echo-basic only) and GATEWAY-HTTP does
  // not use it, but the suite waits for every Pod of the namespace to be Ready. It is removed as it
  // appears, and said so.
  const unrunnable = setInterval(() => {
    client
      .request("DELETE", "/apis/apps/v1/namespaces/gateway-conformance-infra/deployments/coredns", {
        apiVersion: "v1",
        kind: "DeleteOptions",
        propagationPolicy: "Background",
      })
      .then(
        () =>
          log(
            "removed Deployment gateway-conformance-infra/coredns (UDPRoute's DNS server: its image cannot run here)",
          ),
        () => {},
      );
  }, 1_000);
  cleanups.push(() => clearInterval(unrunnable));

  mkdirSync(dirname(values.report), { recursive: true });
  const args = [
    "-test.run",
    "^TestConformance$",
    "-test.v",
    "-test.timeout",
    "90m",
    "--gateway-class=agw",
    "--conformance-profiles=GATEWAY-HTTP,GATEWAY-GRPC",
    `--supported-features=${values["supported-features"] ?? SUPPORTED_FEATURES.join(",")}`,
    "--organization=agw",
    "--project=agw",
    "--url=https://agw.dev",
    "--version=0.1.0",
    "--contact=agw maintainers",
    `--report-output=${values.report}`,
    ...(values["run-test"] ? [`--run-test=${values["run-test"]}`] : []),
    ...(Object.keys(SKIPPED).length > 0 ? [`--skip-tests=${Object.keys(SKIPPED).join(",")}`] : []),
  ];
  log(`conformance.test ${args.join(" ")}`);
  const suite = spawn(join(suiteDir, "conformance.test"), args, {
    env: { ...process.env, KUBECONFIG: api.kubeconfig },
    stdio: ["ignore", "inherit", "inherit"],
  });
  cleanups.push(() => {
    if (suite.exitCode === null) suite.kill("SIGTERM");
  });
  code = await new Promise<number>((r) => suite.once("exit", (c) => r(c ?? 1)));
  log(`suite exited with ${code}; report: ${values.report}`);
  const verdict = summarize(values.report, log, values["run-test"]);
  if (code === 0 && !verdict.ok) code = 1;
  if (values.keep) {
    log(`KUBECONFIG=${api.kubeconfig}; Ctrl-C stops everything`);
    await new Promise(() => {});
  }
} catch (e) {
  console.error(`conformance: ${(e as Error).stack ?? e}`);
} finally {
  await cleanup();
}
process.exit(code);
