/** `agw control-plane`: watch a config file (and Kubernetes) and serve it over xDS. */
import { parseArgs } from "node:util";
import {
  ADMIN_OPTIONS,
  ADMIN_USAGE,
  adminAccess,
  type Command,
  configOrKube,
  HELP_OPTION,
  hostPort,
  KUBE_OPTIONS,
  kubernetesOptions,
  onShutdown,
  pluginComponentsOption,
  statsIntervalOption,
  UsageError,
  XDS_TLS_OPTIONS,
  xdsCertificates,
} from "./common.ts";

const options = {
  config: { type: "string", short: "c" },
  "xds-listen": { type: "string" },
  ...XDS_TLS_OPTIONS,
  "xds-tls-secret": { type: "string" },
  "plugin-components": { type: "string" },
  admin: { type: "string" },
  ...KUBE_OPTIONS,
  "stats-interval": { type: "string" },
  ...ADMIN_OPTIONS,
  ...HELP_OPTION,
} as const;

export const controlPlane: Command = {
  usage: `Usage: agw control-plane -c FILE [options]

  -c, --config FILE        config.yaml to serve (watched for changes)
  --xds-listen ADDR:PORT   gRPC (xDS) address (default 127.0.0.1:18000)
  --xds-cert/--xds-key/--xds-ca FILE
                           mTLS for xDS: the control plane's certificate and key, and the CA that
                           signs data plane certificates (node id = the client certificate's CN).
                           Required unless --xds-listen is loopback or --xds-plaintext is given
  --xds-plaintext          allow plaintext xDS on a non-loopback --xds-listen (its data planes get no
                           Secret: HTTPS listeners need mTLS)
  --xds-tls-secret NS/NAME mTLS for xDS from a Kubernetes Secret (tls.crt, tls.key, ca.crt = the CA of
                           data plane certificates), watched for rotation; needs --kube/--kubeconfig
  --plugin-components P    who gets plugin components: any xDS peer (default) or authenticated (mTLS
                           or the Unix socket; nothing inlined, plaintext fetches refused)
  --admin ADDR:PORT        admin: /ready, /dataplanes, /config_dump (default 127.0.0.1:9902)
  --kube                   also read Services, EndpointSlices, GatewayRoutes and TLS Secrets from
                           Kubernetes (kubeconfig: KUBECONFIG, ~/.kube/config or in-cluster); -c optional
  --kubeconfig FILE        as --kube, with this kubeconfig
  --namespace NS           with --kube: watch one namespace only (default: all)
  --gateway-addresses CIDR with --kube: each Gateway API Gateway gets its own address from this IPv4
                           block (e.g. 127.0.20.0/24), shown in its status.addresses
  --stats-interval MS      how often data planes report fleet stats (default 5000): the resolution of
                           the dashboard's charts and agw top
${ADMIN_USAGE}`,
  options,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options, strict: true });
    const kubernetes = kubernetesOptions(values);
    const { adminToken, adminHosts } = adminAccess(values);
    const statsOptions = statsIntervalOption(values);
    const pluginComponents = pluginComponentsOption(values);
    const { startControlPlane } = await import("@agw/control-plane");
    const file = configOrKube(values, kubernetes);
    const xds = hostPort(values["xds-listen"], "127.0.0.1:18000", "--xds-listen");
    const tlsSecret = await xdsTlsSecret(values, kubernetes !== undefined);
    const cp = await startControlPlane({
      ...(file ? { configFile: file } : {}),
      ...(kubernetes ? { kubernetes } : {}),
      xdsHost: xds.host,
      xdsPort: xds.port,
      ...(tlsSecret
        ? { xdsTlsSecret: tlsSecret }
        : { xdsTls: xdsCertificates(values, [xds.host], "control plane") }),
      admin: hostPort(values.admin, "127.0.0.1:9902", "--admin"),
      adminToken,
      adminHosts,
      pluginComponents,
      ...statsOptions,
    });
    console.log(
      `control plane: xDS on ${cp.xds?.target}, admin http://${cp.admin?.address.address}:${cp.admin?.address.port}/dataplanes`,
    );
    onShutdown(() => cp.close());
    return -1;
  },
};

async function xdsTlsSecret(
  values: {
    "xds-tls-secret"?: string;
    "xds-cert"?: string;
    "xds-key"?: string;
    "xds-ca"?: string;
    "xds-plaintext"?: boolean;
  },
  kubernetes: boolean,
) {
  const ref = values["xds-tls-secret"];
  if (ref === undefined) return undefined;
  if (!kubernetes) throw new UsageError("--xds-tls-secret needs --kube or --kubeconfig");
  if (values["xds-cert"] || values["xds-key"] || values["xds-ca"] || values["xds-plaintext"])
    throw new UsageError(
      "--xds-tls-secret cannot be combined with --xds-cert/--xds-key/--xds-ca/--xds-plaintext",
    );
  const { parseSecretRef } = await import("@agw/control-plane/xds/tls-secret");
  try {
    return parseSecretRef(ref);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
