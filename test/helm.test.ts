/**
 * The Helm chart's secure defaults (docs/security.md), rendered by a real helm (scripts/kube/helm.sh):
 * xDS over mTLS only, with certificates the chart generates (genCA/genSignedCert) or Secrets of the
 * user's; both admin APIs on loopback; no --xds-plaintext anywhere. The generated certificates are
 * then used for real: a data plane with the chart's client certificate, dialling the headless
 * Service's name, gets its config from an ADS server holding the chart's server certificate. The
 * server-side dry run of every rendered object is in test/kubernetes.test.ts.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { createAdsService, startAdsServer } from "@agw/control-plane/xds/ads-server";
import { SnapshotCache } from "@agw/control-plane/xds/cache";
import { DataPlaneRegistry } from "@agw/control-plane/xds/dataplanes";
import { irToSnapshot } from "@agw/control-plane/xds/resources";
import { certificateCommonName } from "@agw/control-plane/xds/transport-security";
import { createLogger } from "@agw/core";
import { startDataPlane } from "@agw/data-plane";
import { parseAllDocuments } from "yaml";
import { ROOT, requireOrSkip } from "./helpers.ts";

interface K8sObject {
  kind: string;
  metadata: { name: string };
  spec?: unknown;
  data?: Record<string, string>;
}

const quiet = createLogger("test", { write: () => true } as unknown as NodeJS.WritableStream);

test("the Helm chart: mTLS-only xDS with certificates it generates, admins on loopback, no plaintext", async (t) => {
  const build = spawnSync("bash", [join(ROOT, "scripts/kube/helm.sh")], { encoding: "utf8" });
  if (!requireOrSkip(t, build.status === 0, `helm could not be built: ${build.stderr.slice(-500)}`)) return;
  const render = (...set: string[]) =>
    parseAllDocuments(
      execFileSync(
        build.stdout.trim(),
        ["template", "agw", join(ROOT, "deploy/helm/agw"), "--namespace", "agw-system", ...set],
        { encoding: "utf8" },
      ),
    )
      .map((d) => d.toJS())
      .filter(Boolean) as K8sObject[];
  const generated = render();
  const own = render(
    "--set",
    "xds.tls.generate=false",
    "--set",
    "xds.tls.controlPlaneSecret=my-cp",
    "--set",
    "xds.tls.dataPlaneSecret=my-edge",
  );
  const spec = (objects: K8sObject[], name: string) =>
    JSON.stringify(objects.find((o) => o.kind === "Deployment" && o.metadata.name === name)?.spec);
  for (const objects of [generated, own]) {
    assert.doesNotMatch(JSON.stringify(objects), /--xds-plaintext/);
    assert.match(spec(objects, "agw-control-plane"), /"--admin=127\.0\.0\.1:9902"/);
    assert.match(spec(objects, "agw-data-plane"), /"--admin=127\.0\.0\.1:9901"/);
    assert.match(spec(objects, "agw-data-plane"), /"--xds-cert=\/etc\/agw\/xds\/tls\.crt"/);
    assert.doesNotMatch(spec(objects, "agw-data-plane"), /--node-id/, "the node id is the certificate's CN");
  }
  assert.match(spec(generated, "agw-control-plane"), /--xds-tls-secret=agw-system\/agw-xds-control-plane"/);
  assert.match(spec(generated, "agw-data-plane"), /"secretName":"agw-xds-data-plane"/);
  assert.match(spec(own, "agw-control-plane"), /--xds-tls-secret=agw-system\/my-cp"/);
  assert.match(spec(own, "agw-data-plane"), /"secretName":"my-edge"/);
  assert.deepEqual(
    own.filter((o) => o.kind === "Secret"),
    [],
    "xds.tls.generate=false: the Secrets are the user's",
  );

  const secret = (name: string) => {
    const data = generated.find((o) => o.kind === "Secret" && o.metadata.name === name)?.data ?? {};
    const pem = (key: string) => Buffer.from(data[key] ?? "", "base64").toString();
    return { cert: pem("tls.crt"), key: pem("tls.key"), ca: pem("ca.crt") };
  };
  const cpTls = secret("agw-xds-control-plane");
  const dpTls = secret("agw-xds-data-plane");
  const cache = new SnapshotCache({ minIntervalMs: 0 });
  cache.set(irToSnapshot({ listeners: [], clusters: [] }));
  const registry = new DataPlaneRegistry();
  const xds = await startAdsServer("127.0.0.1", 0, createAdsService(cache, registry, quiet), {
    tls: cpTls,
  });
  t.after(() => xds.close());
  const dp = await startDataPlane({
    xds: `127.0.0.1:${xds.address.port}`,
    // The name data planes dial in the cluster (the headless Service), checked against the SANs.
    xdsTls: { ...dpTls, serverName: "agw-control-plane-replicas.agw-system.svc" },
    nodeId: certificateCommonName(Buffer.from(dpTls.cert)),
    log: quiet,
  });
  t.after(() => dp.close());
  assert.ok(await dp.ready(30_000), "the data plane took its config over the chart's mTLS");
  assert.deepEqual(
    registry.list().map((d) => [d.nodeId, d.identity, d.transport]),
    [["agw-data-plane", "agw-data-plane", "mtls"]],
  );
});

test("the Helm chart: helm lint; this repository's image, non-root and read-only, exec probes on the admins, drain, PDBs, HPA", (t) => {
  const build = spawnSync("bash", [join(ROOT, "scripts/kube/helm.sh")], { encoding: "utf8" });
  if (!requireOrSkip(t, build.status === 0, `helm could not be built: ${build.stderr.slice(-500)}`)) return;
  const helm = build.stdout.trim();
  const lint = spawnSync(helm, ["lint", "--strict", join(ROOT, "deploy/helm/agw")], { encoding: "utf8" });
  assert.equal(lint.status, 0, `helm lint: ${lint.stdout}${lint.stderr}`);
  const render = (...set: string[]) =>
    parseAllDocuments(
      execFileSync(helm, ["template", "agw", join(ROOT, "deploy/helm/agw"), "-n", "agw-system", ...set], {
        encoding: "utf8",
      }),
    )
      .map((d) => d.toJS())
      .filter(Boolean) as Array<K8sObject & { spec: Record<string, unknown> }>;
  interface Container {
    image: string;
    args: string[];
    readinessProbe: { exec: { command: string[] } };
    livenessProbe: { exec: { command: string[] } };
    securityContext: Record<string, unknown>;
    volumeMounts: Array<{ mountPath: string }>;
  }
  const pod = (objects: ReturnType<typeof render>, name: string) => {
    const d = objects.find((o) => o.kind === "Deployment" && o.metadata.name === name);
    assert.ok(d, `a Deployment ${name}`);
    return (
      d.spec as { template: { spec: { containers: Container[]; terminationGracePeriodSeconds?: number } } }
    ).template.spec;
  };
  const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
  const objects = render();
  for (const [name, admin, live] of [
    ["agw-control-plane", "9902", "ready"],
    ["agw-data-plane", "9901", "healthz"],
  ] as const) {
    const [c] = pod(objects, name).containers;
    assert.ok(c);
    // the image scripts/image/build.ts builds: its version label is package.json's version
    assert.equal(c.image, `registry.example.com/agw:${version}`);
    assert.deepEqual(c.readinessProbe.exec.command, [
      "/usr/local/bin/node",
      "/app/cli/src/probe.ts",
      `http://127.0.0.1:${admin}/ready`,
    ]);
    assert.deepEqual(c.livenessProbe.exec.command, [
      "/usr/local/bin/node",
      "/app/cli/src/probe.ts",
      `http://127.0.0.1:${admin}/${live}`,
      "--live",
    ]);
    assert.ok(c.args.includes(`--admin=127.0.0.1:${admin}`), "the probes reach the admin the pod starts");
    assert.deepEqual(
      [c.securityContext.runAsNonRoot, c.securityContext.readOnlyRootFilesystem, c.securityContext.runAsUser],
      [true, true, 65532],
    );
    assert.deepEqual(c.securityContext.capabilities, { drop: ["ALL"] });
    assert.ok(
      c.volumeMounts.some((m) => m.mountPath === "/tmp"),
      "a writable /tmp on a read-only root",
    );
  }
  const dp = pod(render("--set", "dataPlane.drainTimeoutSeconds=50"), "agw-data-plane");
  assert.ok(dp.containers[0]?.args.includes("--drain-timeout=50"));
  assert.equal(dp.terminationGracePeriodSeconds, 60, "the drain, the preStop pause (5 s) and 5 s more");
  assert.deepEqual(
    objects.filter((o) => o.kind === "PodDisruptionBudget").map((o) => [o.metadata.name, o.spec]),
    [
      [
        "agw-control-plane",
        { selector: { matchLabels: { "app.kubernetes.io/name": "agw-control-plane" } }, minAvailable: 1 },
      ],
      [
        "agw-data-plane",
        { selector: { matchLabels: { "app.kubernetes.io/name": "agw-data-plane" } }, maxUnavailable: 1 },
      ],
    ],
  );
  assert.ok(!objects.some((o) => o.kind === "HorizontalPodAutoscaler"), "the HPA is an opt-in example");
  const scaled = render("--set", "dataPlane.autoscaling.enabled=true");
  assert.ok(scaled.some((o) => o.kind === "HorizontalPodAutoscaler"));
  assert.equal(
    (
      (scaled.find((o) => o.kind === "Deployment" && o.metadata.name === "agw-data-plane")?.spec ?? {}) as {
        replicas?: number;
      }
    ).replicas,
    undefined,
    "with the HPA, the Deployment leaves replicas to it",
  );
  assert.ok(
    !render("--set", "controlPlane.replicas=1").some(
      (o) => o.kind === "PodDisruptionBudget" && o.metadata.name === "agw-control-plane",
    ),
    "no PDB for a single control plane (it would block every drain)",
  );
});
