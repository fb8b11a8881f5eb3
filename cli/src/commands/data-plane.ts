/** `agw data-plane`: connect to a control plane (or several replicas) and proxy traffic. */
import { parseArgs } from "node:util";
import { certificateCommonName } from "@agw/control-plane/xds/transport-security";
import {
  ADMIN_OPTIONS,
  ADMIN_USAGE,
  adminAccess,
  type Command,
  defaultNodeId,
  drainTimeoutMs,
  HELP_OPTION,
  hostPort,
  OBSERVABILITY_OPTIONS,
  OBSERVABILITY_USAGE,
  observabilityOptions,
  onShutdown,
  statsReportOption,
  UsageError,
  workersOption,
  XDS_TLS_OPTIONS,
  xdsCertificates,
} from "./common.ts";

const options = {
  xds: { type: "string", multiple: true },
  "xds-protocol": { type: "string" },
  ...XDS_TLS_OPTIONS,
  "node-id": { type: "string" },
  admin: { type: "string" },
  "bind-address": { type: "string" },
  workers: { type: "string" },
  "drain-timeout": { type: "string" },
  "no-stats-report": { type: "boolean" },
  ...ADMIN_OPTIONS,
  ...OBSERVABILITY_OPTIONS,
  ...HELP_OPTION,
} as const;

export const dataPlane: Command = {
  usage: `Usage: agw data-plane --xds ADDR:PORT --node-id ID [options]

  --xds ADDR:PORT          control plane gRPC (xDS) address; repeat (or comma-separate) for replicas,
                           a DNS name resolving to several addresses counts as several;
                           unix:PATH for a Unix socket
  --xds-protocol P         delta (incremental, default) or sotw (state of the world)
  --xds-cert/--xds-key/--xds-ca FILE
                           mTLS to the control plane: this data plane's certificate and key, and the
                           CA of the control plane's certificate. Required unless every --xds
                           address is loopback or --xds-plaintext is given
  --xds-plaintext          allow plaintext xDS to a non-loopback control plane (no Secret is sent
                           over plaintext: HTTPS listeners need mTLS)
  --node-id ID             this data plane's node id (default: the CN of --xds-cert, else the host
                           name)
  --admin ADDR:PORT        admin: /ready, /healthz, /config_dump, /server_info (default 127.0.0.1:9901)
  --bind-address ADDR      bind every listener on ADDR instead of its configured address
  --workers N              threads serving traffic (default 1); listeners bind with SO_REUSEPORT
  --drain-timeout S        on SIGTERM/SIGINT, seconds in-flight requests get to finish (default 30)
                           (several data planes on one host, e.g. 127.0.0.2 and 127.0.0.3)
  --no-stats-report        send the control plane no fleet stats (dashboard rates and health)
${ADMIN_USAGE}
${OBSERVABILITY_USAGE}`,
  options,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options, strict: true });
    const { adminToken, adminHosts } = adminAccess(values);
    const observability = observabilityOptions(values);
    const workers = workersOption(values);
    const drainMs = drainTimeoutMs(values);
    const { startDataPlane } = await import("@agw/data-plane");
    const servers = (values.xds ?? []).flatMap((x) => x.split(",")).filter((x) => x !== "");
    if (servers.length === 0) throw new UsageError("--xds ADDR:PORT is required");
    const xdsHosts = servers.filter((s) => !s.startsWith("unix:")).map((s) => hostPort(s, "", "--xds").host);
    const xdsProtocol = values["xds-protocol"] ?? "delta";
    if (xdsProtocol !== "delta" && xdsProtocol !== "sotw")
      throw new UsageError(`--xds-protocol: expected delta or sotw, got "${xdsProtocol}"`);
    const xdsTls = xdsCertificates(values, xdsHosts, "data plane");
    // With mTLS the control plane takes the node id from the client certificate: default to it.
    const dpNodeId =
      values["node-id"] ?? (xdsTls ? certificateCommonName(xdsTls.cert) : defaultNodeId(values));
    const dp = await startDataPlane({
      xds: servers,
      xdsProtocol,
      xdsTls,
      nodeId: dpNodeId,
      admin: hostPort(values.admin, "127.0.0.1:9901", "--admin"),
      adminToken,
      adminHosts,
      observability,
      ...statsReportOption(values),
      ...(values["bind-address"] ? { bindAddress: values["bind-address"] } : {}),
      ...workers,
    });
    console.log(
      `data plane ${dpNodeId}: xDS ${servers.join(",")}, admin http://${dp.admin?.address.address}:${dp.admin?.address.port}/ready`,
    );
    onShutdown(async () => {
      await dp.drain(drainMs);
      await dp.close();
    });
    return -1;
  },
};
