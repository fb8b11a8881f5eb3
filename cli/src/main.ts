#!/usr/bin/env node
/** The `agw` command. */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { certificateCommonName, xdsTransportSecurity } from "@agw/control-plane/xds/transport-security";
import { loadConfigFile } from "@agw/core/config/loader";
import { parseDuration } from "@agw/core/config/schema";
import { checkHostPort } from "@agw/core/config/semantic";
import { addressOf, startDemoUpstream } from "./demo-upstream.ts";
import { PLUGIN_USAGE, PluginUsageError, pluginCommand } from "./plugin.ts";
import { TOP_USAGE, topCommand } from "./top.ts";

const USAGE: Record<string, string> = {
  main: `agw — API gateway (control plane + data plane over xDS)

Usage: agw <command> [options]

Commands:
  run            all-in-one: control plane and data plane on this machine, talking xDS over gRPC
  control-plane  watch a config file and serve it over xDS
  data-plane     connect to a control plane and proxy traffic
  validate       check a config file; exit 0, or 1 listing every error
  demo-upstream  the small echo server used by the quickstart
  plugin         scaffold (new) and build (build) a TypeScript plugin
  top            live routes and clusters by rate, errors or p99, from a control plane (terminal)
  ebpf-agent     short-circuit same-node TCP (data plane <-> app) with sockmap eBPF (root)

Run 'agw <command> --help' for the options of a command, 'agw --version' for the version,
'agw completion bash|zsh' for shell completion (e.g. source <(agw completion bash)).`,
  run: `Usage: agw run -c FILE [options]

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
  --admin-token TOKEN      let remote admin clients in with Authorization: Bearer TOKEN (or
                           ?token=); without it the admin answers loopback clients only
                           (also AGW_ADMIN_TOKEN)
  --admin-allow-host NAME  also answer admin requests whose Host is NAME (repeatable); IP addresses
                           and localhost always are, other names are refused (DNS rebinding)
  --access-log FILE        JSON access log lines to FILE (or stdout)
  --access-log-fields LIST comma-separated fields (default all; docs/operability.md)
  --access-log-sample R    fraction of requests logged, 0..1 (default 1)
  --access-log-off ROUTES  comma-separated route names never logged
  --no-request-metrics     keep no per-request metrics (counts, latencies); to measure what they cost
  --otlp-endpoint URL      export traces over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces
  --trace-sample R         fraction of new traces sampled, 0..1 (default 1)`,
  "control-plane": `Usage: agw control-plane -c FILE [options]

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
  --admin-token TOKEN      let remote admin clients in with Authorization: Bearer TOKEN (or
                           ?token=); without it the admin answers loopback clients only
                           (also AGW_ADMIN_TOKEN)
  --admin-allow-host NAME  also answer admin requests whose Host is NAME (repeatable); IP addresses
                           and localhost always are, other names are refused (DNS rebinding)`,
  "data-plane": `Usage: agw data-plane --xds ADDR:PORT --node-id ID [options]

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
  --admin-token TOKEN      let remote admin clients in with Authorization: Bearer TOKEN (or
                           ?token=); without it the admin answers loopback clients only
                           (also AGW_ADMIN_TOKEN)
  --admin-allow-host NAME  also answer admin requests whose Host is NAME (repeatable); IP addresses
                           and localhost always are, other names are refused (DNS rebinding)
  --access-log FILE        JSON access log lines to FILE (or stdout)
  --access-log-fields LIST comma-separated fields (default all; docs/operability.md)
  --access-log-sample R    fraction of requests logged, 0..1 (default 1)
  --access-log-off ROUTES  comma-separated route names never logged
  --no-request-metrics     keep no per-request metrics (counts, latencies); to measure what they cost
  --otlp-endpoint URL      export traces over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces
  --trace-sample R         fraction of new traces sampled, 0..1 (default 1)`,
  validate: `Usage: agw validate -c FILE

  -c, --config FILE        config.yaml to check; prints every error as FILE:LINE PATH: MESSAGE`,
  "ebpf-agent": `Usage: agw ebpf-agent [options]

Data a process sends to a peer socket on this node goes straight to the peer's receive queue instead
of through the TCP/IP stack and lo. Opt-in and scoped to a cgroup v2 directory; connections it does not
handle stay plain TCP, and when it stops (even killed) everything it attached goes with it.

  --cgroup PATH            cgroup v2 directory whose new sockets are eligible (default: the cgroup2 root)
  --local-address CIDR     an address of this node (repeatable; default: loopback and every interface address)
  --port N                 only connections with this local or remote port (repeatable; default: any)
  --queue-budget BYTES     bytes a peer may leave unread before messages fall back to TCP (default 1048576)
  --metrics ADDR:PORT      Prometheus /metrics, /ready, /status (default 127.0.0.1:9903)
  --inert-if-unsupported   when this machine cannot run it, serve metrics (agw_ebpf_attached 0) instead of exiting 1
  --admin-allow-host NAME  also answer metrics requests whose Host is NAME (repeatable); IP addresses
                           and localhost always are`,
  plugin: PLUGIN_USAGE,
  top: TOP_USAGE,
  "demo-upstream": `Usage: agw demo-upstream [options]

An HTTP server that answers every request with a JSON echo of it (method, url, headers, body size)
and says which instance answered: the x-upstream-id header and "upstream" in the body.

  --port N                 listen on 127.0.0.1:N; repeat for several instances in one process
  --listen ADDR:PORT       listen on ADDR:PORT; repeatable (default, without --port: 127.0.0.1:9080)
  --id ID                  the instance's name in x-upstream-id and the body (default: its ADDR:PORT);
                           only with one address
  --status N               answer every request with this status, 200..599 (default 200)
  --delay DURATION         wait this long before the response head, e.g. 500ms, 3s (default 0)
  --log                    print a line per request: ID METHOD URL host=HOST`,
};

class UsageError extends Error {}

/** The flags a command takes: the ones its usage names, so the help and the parser cannot disagree. */
function commandFlags(command: string): Set<string> {
  return new Set([
    "help",
    ...[...(USAGE[command] ?? "").matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1] ?? ""),
  ]);
}

/** `agw completion bash|zsh`: commands, then each command's flags, then file names. */
function completion(shell: string | undefined): string {
  const commands = [...Object.keys(USAGE).filter((c) => c !== "main"), "completion"];
  const flags = (c: string) => [...commandFlags(c)].map((f) => `--${f}`).join(" ");
  if (shell === "bash")
    return [
      "# agw completion for bash: source <(agw completion bash)",
      "_agw() {",
      `  local cur="\${COMP_WORDS[COMP_CWORD]}" opts=""`,
      '  if [ "$COMP_CWORD" -eq 1 ]; then',
      `    COMPREPLY=($(compgen -W "${commands.join(" ")} --help --version" -- "$cur"))`,
      "    return",
      "  fi",
      `  case "\${COMP_WORDS[1]}" in`,
      ...commands.filter((c) => c !== "completion").map((c) => `    ${c}) opts="${flags(c)}" ;;`),
      '    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")); return ;;',
      "  esac",
      '  if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi',
      "}",
      "complete -o filenames -F _agw agw",
    ].join("\n");
  if (shell === "zsh")
    return [
      "#compdef agw",
      "# agw completion for zsh: source <(agw completion zsh) after compinit",
      "_agw() {",
      "  if (( CURRENT == 2 )); then",
      `    compadd -- ${commands.join(" ")} --help --version`,
      "    return",
      "  fi",
      "  case $words[2] in",
      ...commands
        .filter((c) => c !== "completion")
        .map((c) => `    ${c}) [[ $PREFIX == -* ]] && { compadd -- ${flags(c)}; return } ;;`),
      "    completion) compadd -- bash zsh; return ;;",
      "  esac",
      "  _files",
      "}",
      "compdef _agw agw",
    ].join("\n");
  throw new UsageError(
    `completion: expected bash or zsh, got ${shell === undefined ? "nothing" : `"${shell}"`}`,
  );
}

/** The flag each address we listen on came from, to name it when the port cannot be had. */
const listenFlags: Array<{ flag: string; port: number }> = [];

function hostPort(text: string | undefined, fallback: string, flag: string): { host: string; port: number } {
  const value = text ?? fallback;
  const hp = value.endsWith(":0")
    ? { host: value.slice(0, -2).replace(/^\[|\]$/g, ""), port: 0 }
    : checkHostPort(value);
  if (typeof hp === "string") throw new UsageError(`${flag}: ${hp}`);
  if (flag !== "--xds") listenFlags.push({ flag, port: hp.port });
  return hp;
}

const LISTEN_FAILURES: Record<string, string> = {
  EADDRINUSE: "the address is already in use (another agw, or another program, listens there)",
  EACCES: "permission denied (ports below 1024 need privileges)",
  EADDRNOTAVAIL: "no interface of this machine has that address",
};

/** One line for a port we could not listen on (admin, metrics, xDS, demo upstream), or undefined. */
function listenFailure(e: unknown): string | undefined {
  const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
  if (err?.syscall !== "listen" || !err.code || !(err.code in LISTEN_FAILURES)) return undefined;
  const at = err.port !== undefined ? `${err.address}:${err.port}` : String(err.address ?? "");
  const flag = listenFlags.find((f) => f.port !== 0 && f.port === err.port)?.flag;
  return `cannot listen on ${at}${flag ? ` (${flag})` : ""}: ${LISTEN_FAILURES[err.code]}${flag ? `; choose another address with ${flag}` : ""}`;
}

function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

async function validate(file: string): Promise<boolean> {
  const result = await loadConfigFile(file);
  if (result.ok) return true;
  for (const e of result.errors) console.error(String(e));
  console.error(`${result.errors.length} error${result.errors.length === 1 ? "" : "s"} in ${file}`);
  return false;
}

async function main(argv: string[]): Promise<number> {
  const command = argv[0];
  if (!command || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE.main);
    return command ? 0 : 1;
  }
  if (command === "--version" || command === "-V" || command === "version") {
    const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    console.log(`agw ${version} (node ${process.version})`);
    return 0;
  }
  if (command === "completion") {
    console.log(completion(argv[1]));
    return 0;
  }
  if (command === "top") return topCommand(argv.slice(1));
  if (!(command in USAGE) || command === "main") throw new UsageError(`unknown command "${command}"`);
  if (command === "plugin")
    return pluginCommand(argv.slice(1)).catch((e: unknown) => {
      throw e instanceof PluginUsageError ? new UsageError(e.message) : e;
    });
  const { values, tokens } = parseArgs({
    args: argv.slice(1),
    options: {
      config: { type: "string", short: "c" },
      "xds-listen": { type: "string" },
      xds: { type: "string", multiple: true },
      "xds-protocol": { type: "string" },
      "xds-cert": { type: "string" },
      "xds-key": { type: "string" },
      "xds-ca": { type: "string" },
      "xds-plaintext": { type: "boolean" },
      "xds-tls-secret": { type: "string" },
      "plugin-components": { type: "string" },
      admin: { type: "string" },
      "cp-admin": { type: "string" },
      "node-id": { type: "string" },
      "demo-upstream": { type: "string" },
      "bind-address": { type: "string" },
      workers: { type: "string" },
      "drain-timeout": { type: "string" },
      listen: { type: "string", multiple: true },
      id: { type: "string" },
      status: { type: "string" },
      delay: { type: "string" },
      log: { type: "boolean" },
      cgroup: { type: "string" },
      "local-address": { type: "string", multiple: true },
      port: { type: "string", multiple: true },
      "queue-budget": { type: "string" },
      metrics: { type: "string" },
      "inert-if-unsupported": { type: "boolean" },
      kube: { type: "boolean" },
      kubeconfig: { type: "string" },
      namespace: { type: "string" },
      "gateway-addresses": { type: "string" },
      "admin-token": { type: "string" },
      "admin-allow-host": { type: "string", multiple: true },
      "access-log": { type: "string" },
      "access-log-fields": { type: "string" },
      "access-log-sample": { type: "string" },
      "access-log-off": { type: "string" },
      "no-request-metrics": { type: "boolean" },
      "stats-interval": { type: "string" },
      "no-stats-report": { type: "boolean" },
      "otlp-endpoint": { type: "string" },
      "trace-sample": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    tokens: true,
  });
  // One parser knows every flag; each command takes only those its usage names.
  const allowed = commandFlags(command);
  for (const token of tokens) {
    if (token.kind !== "option" || allowed.has(token.name)) continue;
    const owners = Object.keys(USAGE).filter((c) => c !== "main" && commandFlags(c).has(token.name));
    throw new UsageError(
      `${token.rawName} is not an option of agw ${command}${owners.length > 0 ? ` (it belongs to agw ${owners.join(", agw ")})` : ""}; see 'agw ${command} --help'`,
    );
  }
  if (values.help) {
    console.log(USAGE[command]);
    return 0;
  }
  const adminToken = values["admin-token"] ?? process.env.AGW_ADMIN_TOKEN;
  const adminHosts = values["admin-allow-host"];
  const list = (text: string | undefined) =>
    text
      ?.split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  const fraction = (text: string | undefined, flag: string) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!(n >= 0 && n <= 1)) throw new UsageError(`${flag}: expected a number within 0..1, got "${text}"`);
    return n;
  };
  const observability = {
    requestMetrics: !values["no-request-metrics"],
    accessLog: values["access-log"]
      ? {
          path: values["access-log"],
          ...(values["access-log-fields"] ? { fields: list(values["access-log-fields"]) ?? [] } : {}),
          sampleRate: fraction(values["access-log-sample"], "--access-log-sample") ?? 1,
          disabledRoutes: list(values["access-log-off"]) ?? [],
        }
      : undefined,
    tracing: values["otlp-endpoint"]
      ? {
          otlpEndpoint: values["otlp-endpoint"],
          sampleRate: fraction(values["trace-sample"], "--trace-sample") ?? 1,
        }
      : undefined,
  };
  const needConfig = () => {
    if (!values.config) throw new UsageError("-c/--config FILE is required");
    return values.config;
  };
  const kubernetes =
    values.kube || values.kubeconfig
      ? {
          ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
          ...(values.namespace ? { namespace: values.namespace } : {}),
          ...(values["gateway-addresses"] ? { gatewayAddressPool: values["gateway-addresses"] } : {}),
        }
      : undefined;
  const configOrKube = () => (kubernetes && !values.config ? undefined : needConfig());
  const nodeId = values["node-id"] ?? (await import("node:os")).hostname();
  const xdsCertificates = (hosts: string[], role: "control plane" | "data plane") => {
    try {
      return xdsTransportSecurity(
        { cert: values["xds-cert"], key: values["xds-key"], ca: values["xds-ca"] },
        values["xds-plaintext"] ?? false,
        hosts,
        role,
      );
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };

  const workers = values.workers === undefined ? undefined : Number(values.workers);
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 1))
    throw new UsageError(`--workers: expected a whole number ≥ 1, got "${values.workers}"`);
  const statsInterval = values["stats-interval"] === undefined ? undefined : Number(values["stats-interval"]);
  if (statsInterval !== undefined && !(Number.isInteger(statsInterval) && statsInterval >= 1000))
    throw new UsageError(`--stats-interval: expected milliseconds ≥ 1000, got "${values["stats-interval"]}"`);
  const statsOptions = statsInterval !== undefined ? { statsIntervalMs: statsInterval } : {};
  const statsReport = values["no-stats-report"] ? { statsReport: false } : {};
  const drainMs = Number(values["drain-timeout"] ?? 30) * 1000;
  if (!Number.isFinite(drainMs) || drainMs < 0)
    throw new UsageError(`--drain-timeout: expected seconds ≥ 0, got "${values["drain-timeout"]}"`);

  const xdsTlsSecret = async () => {
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
  };

  const pluginComponents = values["plugin-components"] ?? "any";
  if (pluginComponents !== "any" && pluginComponents !== "authenticated")
    throw new UsageError(`--plugin-components: expected any or authenticated, got "${pluginComponents}"`);

  switch (command) {
    case "validate": {
      const file = needConfig();
      const ok = await validate(file);
      if (ok) console.log(`${file}: valid`);
      return ok ? 0 : 1;
    }
    case "demo-upstream": {
      const addresses = [
        ...(values.port ?? []).map((p) => {
          if (!/^\d{1,5}$/.test(p) || Number(p) > 65535)
            throw new UsageError(`--port: expected a port number within 0..65535, got "${p}"`);
          listenFlags.push({ flag: "--port", port: Number(p) });
          return { host: "127.0.0.1", port: Number(p) };
        }),
        ...(values.listen ?? []).map((l) => hostPort(l, "", "--listen")),
      ];
      if (addresses.length === 0) addresses.push(hostPort(undefined, "127.0.0.1:9080", "--listen"));
      if (values.id !== undefined && addresses.length > 1)
        throw new UsageError("--id names one instance: give one --port or --listen with it");
      const status = values.status === undefined ? 200 : Number(values.status);
      if (!Number.isInteger(status) || status < 200 || status > 599)
        throw new UsageError(`--status: expected a status within 200..599, got "${values.status}"`);
      const delayMs = values.delay === undefined ? 0 : parseDuration(values.delay);
      if (delayMs === undefined)
        throw new UsageError(`--delay: expected a duration such as 500ms or 3s, got "${values.delay}"`);
      const servers = await Promise.all(
        addresses.map((a) =>
          startDemoUpstream({
            ...a,
            ...(values.id !== undefined ? { id: values.id } : {}),
            status,
            delayMs,
            ...(values.log ? { log: (line: string) => console.log(line) } : {}),
          }),
        ),
      );
      for (const server of servers) console.log(`demo upstream listening on http://${addressOf(server)}`);
      onShutdown(async () => {
        for (const server of servers) server.close();
      });
      return -1;
    }
    case "control-plane": {
      const { startControlPlane } = await import("@agw/control-plane");
      const file = configOrKube();
      const xds = hostPort(values["xds-listen"], "127.0.0.1:18000", "--xds-listen");
      const tlsSecret = await xdsTlsSecret();
      const cp = await startControlPlane({
        ...(file ? { configFile: file } : {}),
        ...(kubernetes ? { kubernetes } : {}),
        xdsHost: xds.host,
        xdsPort: xds.port,
        ...(tlsSecret
          ? { xdsTlsSecret: tlsSecret }
          : { xdsTls: xdsCertificates([xds.host], "control plane") }),
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
    }
    case "data-plane": {
      const { startDataPlane } = await import("@agw/data-plane");
      const servers = (values.xds ?? []).flatMap((x) => x.split(",")).filter((x) => x !== "");
      if (servers.length === 0) throw new UsageError("--xds ADDR:PORT is required");
      const xdsHosts = servers
        .filter((s) => !s.startsWith("unix:"))
        .map((s) => hostPort(s, "", "--xds").host);
      const xdsProtocol = values["xds-protocol"] ?? "delta";
      if (xdsProtocol !== "delta" && xdsProtocol !== "sotw")
        throw new UsageError(`--xds-protocol: expected delta or sotw, got "${xdsProtocol}"`);
      const xdsTls = xdsCertificates(xdsHosts, "data plane");
      // With mTLS the control plane takes the node id from the client certificate: default to it.
      const dpNodeId = values["node-id"] ?? (xdsTls ? certificateCommonName(xdsTls.cert) : nodeId);
      const dp = await startDataPlane({
        xds: servers,
        xdsProtocol,
        xdsTls,
        nodeId: dpNodeId,
        admin: hostPort(values.admin, "127.0.0.1:9901", "--admin"),
        adminToken,
        adminHosts,
        observability,
        ...statsReport,
        ...(values["bind-address"] ? { bindAddress: values["bind-address"] } : {}),
        ...(workers !== undefined ? { workers } : {}),
      });
      console.log(
        `data plane ${dpNodeId}: xDS ${servers.join(",")}, admin http://${dp.admin?.address.address}:${dp.admin?.address.port}/ready`,
      );
      onShutdown(async () => {
        await dp.drain(drainMs);
        await dp.close();
      });
      return -1;
    }
    case "ebpf-agent": {
      const { runAgentCommand } = await import("@agw/ebpf-agent/cli");
      return runAgentCommand({
        cgroup: values.cgroup,
        localAddresses: values["local-address"],
        ports: values.port,
        queueBudget: values["queue-budget"],
        metrics: hostPort(values.metrics, "127.0.0.1:9903", "--metrics"),
        inertIfUnsupported: values["inert-if-unsupported"],
        allowedHosts: adminHosts,
      }).catch((e: unknown) => {
        throw e instanceof RangeError ? new UsageError(e.message) : e;
      });
    }
    case "run": {
      const [{ startControlPlane }, { startDataPlane }] = await Promise.all([
        import("@agw/control-plane"),
        import("@agw/data-plane"),
      ]);
      const file = configOrKube();
      if (file && !(await validate(file))) return 1;
      const demoAt = values["demo-upstream"] && hostPort(values["demo-upstream"], "", "--demo-upstream");
      const demo = demoAt ? await startDemoUpstream(demoAt) : undefined;
      // The built-in data plane dials a private Unix socket: no TCP port, and its Secrets stay on
      // this machine. --xds-listen adds a TCP port for other data planes (mTLS rules as usual).
      const xds = values["xds-listen"] ? hostPort(values["xds-listen"], "", "--xds-listen") : undefined;
      const runTls = xds ? xdsCertificates([xds.host], "control plane") : undefined;
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
        ...statsReport,
        xds: (cp.xdsLocal as NonNullable<typeof cp.xdsLocal>).target,
        nodeId,
        admin: hostPort(values.admin, "127.0.0.1:9901", "--admin"),
        adminToken,
        adminHosts,
        observability,
        ...(workers !== undefined ? { workers } : {}),
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
    }
  }
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`agw: ${(e as Error).message}\nRun 'agw --help' for usage.`);
      process.exit(2);
    }
    const listen = listenFailure(e);
    console.error(listen ? `agw: ${listen}` : `agw: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
