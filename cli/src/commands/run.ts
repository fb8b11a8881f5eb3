/** `agw run`: the control plane and a data plane in one process, talking xDS over a private Unix socket. */
import { parseArgs } from "node:util";
import { addressOf, startDemoUpstream } from "../demo-upstream.ts";
import {
  ADMIN_OPTIONS,
  ADMIN_USAGE,
  adminAccess,
  type Command,
  configOrKube,
  defaultNodeId,
  drainTimeoutMs,
  HELP_OPTION,
  hostPort,
  KUBE_OPTIONS,
  kubernetesOptions,
  OBSERVABILITY_OPTIONS,
  OBSERVABILITY_USAGE,
  observabilityOptions,
  onShutdown,
  pluginComponentsOption,
  statsIntervalOption,
  statsReportOption,
  validate,
  workersOption,
  XDS_TLS_OPTIONS,
  xdsCertificates,
} from "./common.ts";

const options = {
  config: { type: "string", short: "c" },
  "xds-listen": { type: "string" },
  ...XDS_TLS_OPTIONS,
  "plugin-components": { type: "string" },
  admin: { type: "string" },
  "cp-admin": { type: "string" },
  "node-id": { type: "string" },
  "demo-upstream": { type: "string" },
  workers: { type: "string" },
  "drain-timeout": { type: "string" },
  ...KUBE_OPTIONS,
  "stats-interval": { type: "string" },
  "no-stats-report": { type: "boolean" },
  ...ADMIN_OPTIONS,
  ...OBSERVABILITY_OPTIONS,
  ...HELP_OPTION,
} as const;

export const run: Command = {
  usage: `Usage: agw run -c FILE [options]

  -c, --config FILE        config.yaml to serve (watched for changes)
                           The built-in data plane talks xDS over a private Unix socket (0600 in a
                           0700 directory): no xDS TCP port is opened unless --xds-listen is given
  --xds-listen ADDR:PORT   also serve xDS over TCP there, for more data planes (agw data-plane);
                           plaintext streams get no Secret (TLS keys): use mTLS below
  --xds-cert/--xds-key/--xds-ca FILE
                           mTLS for --xds-listen: the control plane's certificate and key, and the CA
                           that signs data plane certificates (node id = the client certificate's CN).
                           Required unless --xds-listen is loopback or --xds-plaintext is given
  --xds-plaintext          allow plaintext xDS on a non-loopback --xds-listen
  --plugin-components P    who gets plugin components: any xDS peer (default) or authenticated (mTLS
                           or the Unix socket; nothing inlined, plaintext fetches refused)
  --admin ADDR:PORT        data plane admin: /ready, /config_dump, ... (default 127.0.0.1:9901)
  --cp-admin ADDR:PORT     control plane admin: /ready, /dataplanes, /config_dump (default 127.0.0.1:9902)
  --node-id ID             data plane node id (default: the host name)
  --demo-upstream ADDR:PORT  also start the built-in demo upstream there
  --workers N              threads serving traffic (default 1); listeners bind with SO_REUSEPORT
  --drain-timeout S        on SIGTERM/SIGINT, seconds in-flight requests get to finish (default 30)
  --kube                   also read Services, EndpointSlices, GatewayRoutes and TLS Secrets from
                           Kubernetes (kubeconfig: KUBECONFIG, ~/.kube/config or in-cluster); -c optional
  --kubeconfig FILE        as --kube, with this kubeconfig
  --namespace NS           with --kube: watch one namespace only (default: all)
  --gateway-addresses CIDR with --kube: each Gateway API Gateway gets its own address from this IPv4
                           block (e.g. 127.0.20.0/24), shown in its status.addresses
  --stats-interval MS      how often data planes report fleet stats (default 5000): the resolution of
                           the dashboard's charts and agw top
  --no-stats-report        send the control plane no fleet stats (dashboard rates and health)
${ADMIN_USAGE}
${OBSERVABILITY_USAGE}`,
  options,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options, strict: true });
    const [{ startControlPlane }, { startDataPlane }] = await Promise.all([
      import("@agw/control-plane"),
      import("@agw/data-plane"),
    ]);
    const kubernetes = kubernetesOptions(values);
    const { adminToken, adminHosts } = adminAccess(values);
    const observability = observabilityOptions(values);
    const workers = workersOption(values);
    const drainMs = drainTimeoutMs(values);
    const pluginComponents = pluginComponentsOption(values);
    const statsOptions = statsIntervalOption(values);
    const file = configOrKube(values, kubernetes);
    if (file && !(await validate(file))) return 1;
    const demoAt = values["demo-upstream"] && hostPort(values["demo-upstream"], "", "--demo-upstream");
    const demo = demoAt ? await startDemoUpstream(demoAt) : undefined;
    // The built-in data plane dials a private Unix socket: no TCP port, and its Secrets stay on
    // this machine. --xds-listen adds a TCP port for other data planes (mTLS rules as usual).
    const xds = values["xds-listen"] ? hostPort(values["xds-listen"], "", "--xds-listen") : undefined;
    const runTls = xds ? xdsCertificates(values, [xds.host], "control plane") : undefined;
    const cp = await startControlPlane({
      ...(file ? { configFile: file } : {}),
      ...(kubernetes ? { kubernetes } : {}),
      ...(xds ? { xdsHost: xds.host, xdsPort: xds.port } : {}),
      xdsLocal: true,
      xdsTls: runTls,
      admin: hostPort(values["cp-admin"], "127.0.0.1:9902", "--cp-admin"),
      adminToken,
      adminHosts,
      pluginComponents,
      ...statsOptions,
    });
    const dataPlane = startDataPlane({
      ...statsReportOption(values),
      xds: (cp.xdsLocal as NonNullable<typeof cp.xdsLocal>).target,
      nodeId: defaultNodeId(values),
      admin: hostPort(values.admin, "127.0.0.1:9901", "--admin"),
      adminToken,
      adminHosts,
      observability,
      ...workers,
    });
    const dp = await dataPlane;
    onShutdown(async () => {
      await dp.drain(drainMs);
      await dp.close();
      await cp.close();
      demo?.close();
    });
    if (!(await dp.ready(10_000))) console.error("data plane has not received a full config after 10 s");
    const lines = dp.listeners
      .addresses()
      .map((l) => `  listener ${l.name} on ${l.address}:${l.port}: curl http://localhost:${l.port}/`);
    console.log(
      [
        "AGW is running",
        ...lines,
        `  data plane admin: http://${dp.admin?.address.address}:${dp.admin?.address.port}/ready`,
        `  control plane admin: http://${cp.admin?.address.address}:${cp.admin?.address.port}/dataplanes`,
        `  xDS: ${cp.xdsLocal?.target}${cp.xds ? `, ${cp.xds.target}${cp.xds.tls ? " (mTLS)" : ""}` : ""}`,
        ...(demo ? [`  demo upstream: http://${addressOf(demo)}/`] : []),
        ...(file ? [`  config: ${file} (edits apply live)`] : []),
        ...(kubernetes ? [`  kubernetes: ${kubernetes.namespace ?? "all namespaces"}`] : []),
      ].join("\n"),
    );
    return -1;
  },
};
