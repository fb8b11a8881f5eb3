/**
 * The control plane: file provider → translator → IR → snapshot cache → ADS server, plus a small
 * admin API. Later sources (Kubernetes) feed the same translator path.
 */
import {
  type AdminServer,
  type ConfigError,
  createLogger,
  type Ir,
  type IrSecret,
  type Logger,
  startAdminServer,
} from "@agw/core";
import { FleetStats } from "./dashboard/fleet-stats.ts";
import { ConfigHistory } from "./dashboard/history.ts";
import { ControlPlaneObservability } from "./dashboard/index.ts";
import { FileProvider } from "./providers/file.ts";
import { mergeIr } from "./providers/kubernetes/merge.ts";
import type { KubernetesProvider, KubernetesProviderOptions } from "./providers/kubernetes/provider.ts";
import type { KubeTranslation } from "./providers/kubernetes/translate.ts";
import {
  type AdsServer,
  type AdsTlsOptions,
  createAdsService,
  startAdsServer,
  startLocalAdsServer,
} from "./xds/ads-server.ts";
import { SnapshotCache } from "./xds/cache.ts";
import { type ComponentPolicy, ComponentStore, createComponentService } from "./xds/components.ts";
import { DataPlaneRegistry } from "./xds/dataplanes.ts";
import { SnapshotBuilder } from "./xds/resources.ts";
import { createStatsService } from "./xds/stats-service.ts";
import type { XdsTlsSecretRef } from "./xds/tls-secret.ts";

export interface ControlPlaneOptions {
  /** config.yaml; optional when `kubernetes` is given. */
  configFile?: string;
  /** Also read Services, EndpointSlices, GatewayRoutes and TLS Secrets (docs/kubernetes.md). */
  kubernetes?: Omit<KubernetesProviderOptions, "log" | "onTranslation">;
  /**
   * xDS over TCP, for data planes on other hosts (or processes): mTLS with `xdsTls`/`xdsTlsSecret`,
   * else plaintext, whose streams get no Secret. Omitted = no TCP port.
   */
  xdsHost?: string;
  xdsPort?: number;
  /** Also serve xDS on a private Unix socket (0600 in a 0700 directory): `agw run`'s own data plane. */
  xdsLocal?: boolean;
  /** mTLS for xDS (data planes need a client certificate from `ca`); omitted = plaintext. */
  xdsTls?: AdsTlsOptions | undefined;
  /** mTLS material from a Kubernetes Secret (tls.crt, tls.key, ca.crt), watched for rotation; needs `kubernetes`. */
  xdsTlsSecret?: XdsTlsSecretRef | undefined;
  /** xDS streams end gracefully after about this long and data planes reconnect (default 30 min). */
  xdsMaxStreamAgeMs?: number;
  /** Who may get plugin components (xds/components.ts); default "any" xDS peer. */
  pluginComponents?: ComponentPolicy;
  /** Admin listener; omit to run without one. */
  admin?: { host: string; port: number };
  /** Lets remote admin and dashboard clients in with the token; without it the admin is local-only. */
  adminToken?: string | undefined;
  /** Host names the admin answers besides IP addresses, localhost and its listen address. */
  adminHosts?: readonly string[] | undefined;
  /** How often data planes report fleet stats, ms (default 5,000; the dashboard's resolution). */
  statsIntervalMs?: number;
  log?: Logger;
}

export interface ControlPlane {
  /** xDS over TCP (xdsHost/xdsPort), if asked for. */
  readonly xds: AdsServer | undefined;
  /** xDS on the private Unix socket (xdsLocal), if asked for. */
  readonly xdsLocal: AdsServer | undefined;
  readonly admin: AdminServer | undefined;
  readonly cache: SnapshotCache;
  readonly dataPlanes: DataPlaneRegistry;
  readonly kubernetes: KubernetesProvider | undefined;
  /** The data planes' stats reports, last 15 minutes (the dashboard's charts). */
  readonly fleet: FleetStats;
  close(): Promise<void>;
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.log ?? createLogger("control-plane");
  const cache = new SnapshotCache();
  const dataPlanes = new DataPlaneRegistry();
  const components = new ComponentStore(log);
  const componentPolicy = options.pluginComponents ?? "any";
  // Inline only what every stream may have: under "authenticated" a plaintext stream gets no bytes.
  const snapshots = new SnapshotBuilder(componentPolicy === "any" ? (d) => components.get(d) : undefined);
  let ir: Ir | undefined;
  const fleet = new FleetStats({ intervalMs: options.statsIntervalMs, ir: () => ir });
  const history = new ConfigHistory();
  /** Which sources changed since the last publication (config history). */
  const changedBy = new Set<string>();
  const observability = new ControlPlaneObservability({
    cache,
    dataPlanes,
    ir: () => ir,
    configErrors: () => lastErrors,
    fleet,
    history,
  });
  let lastErrors: ConfigError[] = [];
  let fileIr: Ir | undefined;
  let kubeIr: KubeTranslation | undefined;
  let listenerErrors: string[] = [];
  let servedKubeSecrets = new Map<string, IrSecret>();
  let rejected: ReadonlyMap<string, string[]> = new Map();

  // Nothing is served until every configured source has delivered once: a data plane must not
  // see the file's routes without the cluster's, or the other way round.
  const publishNow = async () => {
    if (options.configFile && !fileIr) return;
    if (options.kubernetes && !kubeIr) return;
    const merged = mergeIr(fileIr, kubeIr, servedKubeSecrets);
    servedKubeSecrets = merged.servedSecrets;
    if (merged.rejected.size > 0 && JSON.stringify([...merged.rejected]) !== JSON.stringify([...rejected]))
      for (const [route, why] of merged.rejected)
        log.error({ route, errors: why }, "Kubernetes route left out: data planes would refuse it");
    rejected = merged.rejected;
    // Components are read here, not in the sources: the IR carries digests, never bytes.
    const next = merged.ir.plugins
      ? { ...merged.ir, plugins: await components.resolve(merged.ir.plugins, kube?.configMapComponent) }
      : merged.ir;
    // In slices: 20,000 routes are seconds of encoding, and `agw run` serves on this event loop.
    const snapshot = await snapshots.buildSliced(next);
    ir = next;
    if (JSON.stringify(merged.listenerErrors) !== JSON.stringify(listenerErrors))
      for (const e of merged.listenerErrors) log.error({ listener: e }, "listener not served");
    listenerErrors = merged.listenerErrors;
    cache.set(snapshot);
    observability.published(snapshot);
    history.record(merged.ir, snapshot, [...changedBy].join(", ") || "start");
    changedBy.clear();
    const versions = Object.fromEntries(
      [...(cache.snapshot ?? [])].map(([t, s]) => [t.split(".").pop(), s.version]),
    );
    log.info({ versions }, "snapshot updated");
    kube?.published(rejected);
  };
  // One build at a time (the builder reuses its previous build); a change that arrives during a
  // build is built after it, from the sources' state by then.
  let building: Promise<void> | undefined;
  let rebuild = false;
  const publish = () => {
    if (building) {
      rebuild = true;
      return;
    }
    building = (async () => {
      do {
        rebuild = false;
        await publishNow();
      } while (rebuild);
    })()
      .catch((err: unknown) => log.error({ err }, "snapshot build failed; still serving the last one"))
      .finally(() => {
        building = undefined;
      });
  };

  // The Kubernetes client is loaded only when asked for: it costs ~85 MiB of RSS and 1–2.5 s of
  // start-up (measured by importing @kubernetes/client-node alone on Node 24, 2026-11-25).
  const program = options.kubernetes
    ? new (await import("./providers/kubernetes/programmed.ts")).ProgramTracker(cache, dataPlanes)
    : undefined;
  const kube = options.kubernetes
    ? new (await import("./providers/kubernetes/provider.ts")).KubernetesProvider({
        ...options.kubernetes,
        log,
        ...(program && { program }),
        onTranslation(translation, changedObjects) {
          kubeIr = translation;
          if (changedObjects.length === 0) changedBy.add("kubernetes");
          for (const name of changedObjects) changedBy.add(name);
          publish();
        },
        onComponents: () => publish(),
      })
    : undefined;

  const configFile = options.configFile;
  if (!configFile && !kube) throw new Error("a config file or the Kubernetes source is required");
  const provider = configFile
    ? new FileProvider(
        configFile,
        {
          onConfig(translated) {
            fileIr = translated;
            changedBy.add(`file ${configFile}`);
            lastErrors = [];
            publish();
          },
          onInvalid(errors) {
            lastErrors = errors;
            log.error(
              { errors: errors.map(String) },
              ir
                ? "invalid config ignored; still serving the last good config"
                : "invalid config; waiting for a valid one",
            );
          },
        },
        log,
      )
    : undefined;

  let rotateXdsTls: ((tls: AdsTlsOptions) => void) | undefined;
  const secretRef = options.xdsTlsSecret;
  if (secretRef && !kube) throw new Error("an xDS TLS Secret needs the Kubernetes source");
  const tlsSecret =
    secretRef && kube
      ? (await import("./xds/tls-secret.ts")).watchXdsTlsSecret({
          client: kube.client,
          ref: secretRef,
          log,
          onRotate: (tls) => rotateXdsTls?.(tls),
        })
      : undefined;
  const xdsTls = tlsSecret
    ? await tlsSecret.first(30_000).catch((e: unknown) => {
        tlsSecret.stop();
        throw e;
      })
    : options.xdsTls;
  if (options.xdsHost === undefined && !options.xdsLocal)
    throw new Error("xDS needs a TCP address (xdsHost/xdsPort) or the local Unix socket (xdsLocal)");
  const service = createAdsService(cache, dataPlanes, log, {
    maxStreamAgeMs: options.xdsMaxStreamAgeMs ?? 30 * 60_000,
    stats: createStatsService(fleet, log),
  });
  const componentService = createComponentService(components, componentPolicy, log);
  const xdsLocal = options.xdsLocal
    ? await startLocalAdsServer(service, { components: componentService })
    : undefined;
  const xds =
    options.xdsHost !== undefined
      ? await startAdsServer(options.xdsHost, options.xdsPort ?? 0, service, {
          tls: xdsTls,
          log,
          components: componentService,
        }).catch(async (e: unknown) => {
          await xdsLocal?.close();
          throw e;
        })
      : undefined;
  rotateXdsTls = (tls) => xds?.setTls(tls);
  await provider?.start();
  await kube?.start();
  await building;
  const admin = options.admin
    ? await startAdminServer(
        options.admin.host,
        options.admin.port,
        {
          "/ready": () =>
            cache.snapshot ? { body: "ready\n" } : { status: 503, body: "no valid config yet\n" },
          "/dataplanes": () => ({ body: dataPlanes.toJSON() }),
          ...observability.routes(),
          "/config_dump": () => ({
            body: {
              ir,
              config_errors: lastErrors.map(String),
              listener_errors: listenerErrors,
              kubernetes: kube && {
                identity: kube.identity,
                leading: kube.leading,
                secret_errors: kube.translation?.secretErrors,
                routes: kube.reports(),
                informers: kube.informerStats(),
              },
              versions: Object.fromEntries([...(cache.snapshot ?? [])].map(([t, s]) => [t, s.version])),
            },
          }),
        },
        { token: options.adminToken, allowedHosts: options.adminHosts },
      )
    : undefined;
  log.info({ xds: xds?.target, xds_local: xdsLocal?.target, admin: admin?.address }, "control plane started");

  return {
    xds,
    xdsLocal,
    admin,
    cache,
    dataPlanes,
    kubernetes: kube,
    fleet,
    async close() {
      provider?.stop();
      tlsSecret?.stop();
      program?.close();
      await kube?.stop();
      await Promise.all([xds?.close(), xdsLocal?.close(), admin?.close()]);
    },
  };
}
