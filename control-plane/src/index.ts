/**
 * The control plane: file provider → translator → IR → snapshot cache → ADS server, plus a small
 * admin API. Later sources (Kubernetes) feed the same translator path.
 */
import {
  type AdminServer,
  type ConfigError,
  createLogger,
  type Ir,
  type Logger,
  startAdminServer,
} from "@agw/core";
import { FileProvider } from "./providers/file.ts";
import { translateConfig } from "./translator.ts";
import { type AdsServer, createAdsService, startAdsServer } from "./xds/ads-server.ts";
import { SnapshotCache } from "./xds/cache.ts";
import { DataPlaneRegistry } from "./xds/dataplanes.ts";
import { irToSnapshot } from "./xds/resources.ts";

export interface ControlPlaneOptions {
  configFile: string;
  xdsHost: string;
  xdsPort: number;
  /** Admin listener; omit to run without one. */
  admin?: { host: string; port: number };
  log?: Logger;
}

export interface ControlPlane {
  readonly xds: AdsServer;
  readonly admin: AdminServer | undefined;
  readonly cache: SnapshotCache;
  readonly dataPlanes: DataPlaneRegistry;
  close(): Promise<void>;
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.log ?? createLogger("control-plane");
  const cache = new SnapshotCache();
  const dataPlanes = new DataPlaneRegistry();
  let ir: Ir | undefined;
  let lastErrors: ConfigError[] = [];

  const provider = new FileProvider(
    options.configFile,
    {
      onConfig(config) {
        ir = translateConfig(config);
        lastErrors = [];
        cache.set(irToSnapshot(ir));
        const versions = Object.fromEntries(
          [...(cache.snapshot ?? [])].map(([t, s]) => [t.split(".").pop(), s.version]),
        );
        log.info({ versions }, "snapshot updated");
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
  );

  const xds = await startAdsServer(
    options.xdsHost,
    options.xdsPort,
    createAdsService(cache, dataPlanes, log),
  );
  await provider.start();
  const admin = options.admin
    ? await startAdminServer(options.admin.host, options.admin.port, {
        "/ready": () =>
          cache.snapshot ? { body: "ready\n" } : { status: 503, body: "no valid config yet\n" },
        "/dataplanes": () => ({ body: dataPlanes.toJSON() }),
        "/config_dump": () => ({
          body: {
            ir,
            config_errors: lastErrors.map(String),
            versions: Object.fromEntries([...(cache.snapshot ?? [])].map(([t, s]) => [t, s.version])),
          },
        }),
      })
    : undefined;
  log.info(
    { xds: `${xds.address.address}:${xds.address.port}`, admin: admin?.address },
    "control plane started",
  );

  return {
    xds,
    admin,
    cache,
    dataPlanes,
    async close() {
      provider.stop();
      await Promise.all([xds.close(), admin?.close()]);
    },
  };
}
