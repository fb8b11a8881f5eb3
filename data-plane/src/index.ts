/**
 * The data plane: xDS client → ConfigStore (validate, build, swap) → listeners → proxy engine,
 * plus the admin listener (/ready, /healthz, /config_dump, /server_info).
 */
import { type AdminServer, createLogger, type Logger, startAdminServer } from "@agw/core";
import { ConfigStore } from "./config-store.ts";
import { HttpProxy } from "./engine/proxy.ts";
import { UpstreamPool } from "./engine/upstream-pool.ts";
import { ListenerManager } from "./listeners.ts";
import type { RuntimeConfig } from "./runtime/types.ts";
import { TlsManager } from "./tls/manager.ts";
import { XdsClient, type XdsTlsOptions } from "./xds-client.ts";

export interface DataPlaneOptions {
  /** "host:port" of the control plane's ADS server, or of each replica (a DNS name may give several). */
  xds: string | readonly string[];
  /** xDS variant; incremental (delta) by default. */
  xdsProtocol?: "delta" | "sotw";
  /** mTLS to the control plane; omitted = plaintext. */
  xdsTls?: XdsTlsOptions | undefined;
  nodeId: string;
  admin?: { host: string; port: number };
  /** Binds every listener on this address instead of the configured one. */
  bindAddress?: string;
  log?: Logger;
}

function endpointKeys(config: RuntimeConfig): Set<string> {
  const keys = new Set<string>();
  for (const cluster of config.clusters.values()) for (const e of cluster.endpoints) keys.add(e.key);
  return keys;
}

export interface DataPlane {
  readonly store: ConfigStore;
  readonly listeners: ListenerManager;
  readonly xds: XdsClient;
  readonly admin: AdminServer | undefined;
  /** Resolves once the first config has been applied. */
  ready(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export async function startDataPlane(options: DataPlaneOptions): Promise<DataPlane> {
  const log = options.log ?? createLogger("data-plane");
  const startedAt = new Date().toISOString();
  const pool = new UpstreamPool();
  let store: ConfigStore | undefined;
  const listeners = new ListenerManager((listenerName) => {
    const proxy = new HttpProxy({ listenerName, getConfig: () => (store as ConfigStore).current(), pool });
    return (socket, tls) => proxy.handleConnection(socket, tls);
  }, log);
  const tls = new TlsManager();
  store = new ConfigStore(listeners, log, {
    bindAddress: options.bindAddress,
    tls,
    onSwap: (config) => pool.retainOnly(endpointKeys(config)),
  });
  const configStore = store;
  const xds = new XdsClient({
    servers: typeof options.xds === "string" ? [options.xds] : options.xds,
    nodeId: options.nodeId,
    log,
    protocol: options.xdsProtocol ?? "delta",
    tls: options.xdsTls,
    onUpdate: (typeUrl, resources, version) => configStore.apply(typeUrl, resources, version),
    onDeltaUpdate: (typeUrl, updated, removed, version) =>
      configStore.applyDelta(typeUrl, updated, removed, version),
  });
  const admin = options.admin
    ? await startAdminServer(options.admin.host, options.admin.port, {
        "/ready": () =>
          configStore.ready ? { body: "ready\n" } : { status: 503, body: "waiting for the first config\n" },
        "/healthz": () => ({ body: "ok\n" }),
        "/config_dump": () => ({
          body: {
            version: configStore.current().version,
            warming: configStore.warming,
            resources: configStore.dump(),
          },
        }),
        "/server_info": () => ({
          body: {
            node_id: options.nodeId,
            xds_servers: options.xds,
            xds_server: xds.server,
            xds_connected: xds.connected,
            xds_streams: xds.streams,
            xds_tls: options.xdsTls !== undefined,
            started_at: startedAt,
            node_version: process.version,
            listeners: listeners.addresses(),
          },
        }),
      })
    : undefined;
  xds.start();
  return {
    store: configStore,
    listeners,
    xds,
    admin,
    async ready(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!configStore.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return configStore.ready;
    },
    async close() {
      await xds.stop();
      listeners.closeAll();
      tls.close();
      pool.close();
      await admin?.close();
    },
  };
}
