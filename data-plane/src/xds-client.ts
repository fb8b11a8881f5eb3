/**
 * The data plane's ADS client, incremental (Delta, the default) or state of the world. It subscribes
 * to every AGW type (wildcard), hands each response to the config store, and ACKs or NACKs (with
 * error_detail) by whether that throws.
 *
 * Control plane replicas: `servers` lists "host:port" entries; a host name that resolves to several
 * addresses counts as several replicas. Each new stream goes to the next address, so a failed or
 * closed stream fails over; once every address has failed in a row, retries back off
 * exponentially with full jitter. While disconnected the data plane keeps serving its last config;
 * on reconnect it sends what it runs (SotW: version per type; Delta: `initial_resource_versions`),
 * so only what changed meanwhile is sent again.
 */
import { lookup } from "node:dns/promises";
import net, { isIP } from "node:net";
import { AsyncQueue, type Logger, RESOURCE_TYPES, shortType, type TypeUrl } from "@agw/core";
import { PluginComponentService } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { AggregatedDiscoveryService } from "@agw/core/gen/envoy/service/discovery/v3/ads_pb.js";
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import { COMPONENT_FETCH_TIMEOUT_MS } from "@agw/core/xds/plugin-component";
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { type Client, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

export interface DeltaResource {
  name: string;
  version: string;
  resource: Any;
}

export interface XdsTlsOptions {
  /** CA that signed the control plane's certificate. */
  ca: string | Buffer;
  /** This data plane's client certificate and key. */
  cert: string | Buffer;
  key: string | Buffer;
  /** The name the control plane's certificate must carry; default: the host dialled, when a name. */
  serverName?: string;
}

export interface XdsClientOptions {
  /** "host:port" of each control plane replica (or one DNS name resolving to several). */
  servers: readonly string[];
  nodeId: string;
  log: Logger;
  /** "delta" (incremental, default when onDeltaUpdate is given) or "sotw". */
  protocol?: "delta" | "sotw";
  /** SotW: applies one type's full resource set; throwing rejects it (NACK with the message). */
  onUpdate?(typeUrl: TypeUrl, resources: Any[], version: string): Promise<void>;
  /** Delta: applies changed and removed resources of one type; throwing rejects them (NACK). */
  onDeltaUpdate?(
    typeUrl: TypeUrl,
    updated: DeltaResource[],
    removed: string[],
    version: string,
  ): Promise<void>;
  /** mTLS; omitted = plaintext. */
  tls?: XdsTlsOptions | undefined;
  backoff?: { initialMs: number; maxMs: number };
  /**
   * Another stream to run on the xDS stream's connection once it is established (fleet stats), so it
   * has the same authentication and follows failover; aborted when the xDS stream ends. Its failure
   * does not end the xDS stream.
   */
  sideStream?(transport: Transport, signal: AbortSignal): Promise<void>;
}

/** A server entry "unix:PATH" is a Unix socket (agw run's private one). */
export const UNIX_PREFIX = "unix:";

interface Target {
  host: string;
  address: string;
  port: number;
  socketPath?: string;
}

/** Verification errors that mean "--xds-ca did not sign the control plane's certificate". */
const UNTRUSTED = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

/**
 * A failed stream in words an operator can act on. Node's own messages for a CA mismatch end with a
 * hint about `--use-system-ca` (wrong here: xDS trusts --xds-ca only), and a refused client
 * certificate used to show as a bare `read ECONNRESET`.
 */
export function explainXdsFailure(e: unknown, tls: boolean): string {
  const err = e as Error & { code?: unknown; cause?: { code?: unknown; message?: string } };
  const message = err instanceof ConnectError ? err.rawMessage : String(err?.message ?? e);
  const code =
    typeof err?.cause?.code === "string" ? err.cause.code : typeof err?.code === "string" ? err.code : "";
  if (tls && UNTRUSTED.has(code))
    return `the control plane's certificate is not trusted (${code}): --xds-ca must be the CA that signed the control plane's certificate`;
  if (tls && code === "CERT_HAS_EXPIRED")
    return "the control plane's certificate has expired (CERT_HAS_EXPIRED)";
  if (tls && code === "ERR_TLS_CERT_ALTNAME_INVALID")
    return `the control plane's certificate does not name the address dialled: ${err.cause?.message ?? message}`;
  if (tls && (code === "ECONNRESET" || /ECONNRESET|socket hang up/.test(message)))
    return `the control plane closed the TLS connection (${message}): it may not trust this data plane's certificate (--xds-cert must be signed by the CA the control plane has as --xds-ca)`;
  return message;
}

/** google.rpc.Code INVALID_ARGUMENT */
const INVALID_ARGUMENT = 3;
const READ_MAX_BYTES = 256 * 1024 * 1024;

/**
 * connect-node's session manager, with every HTTP/2 session that carries a stream holding an 'error'
 * listener for its whole life. When the keep-alive PING times out (a stopped or starved control plane),
 * connect-node destroys the session with an error; the stream fails first, our loop aborts the manager,
 * which removes its own listeners from the already destroyed session, and the 'error' event then
 * arrives with no listener: an uncaught exception that killed the data plane
 * (test/xds-stalled.test.ts; connect-node 2.2.0, cf. connectrpc/connect-es#1795). The stream's
 * failure is what we act on; the session's error is only logged.
 */
class GuardedSessionManager extends Http2SessionManager {
  readonly #guarded = new WeakSet<object>();
  readonly #log: Logger;
  constructor(
    url: ConstructorParameters<typeof Http2SessionManager>[0],
    ping: ConstructorParameters<typeof Http2SessionManager>[1],
    options: ConstructorParameters<typeof Http2SessionManager>[2],
    log: Logger,
  ) {
    super(url, ping, options);
    this.#log = log;
  }
  override async request(...args: Parameters<Http2SessionManager["request"]>) {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !this.#guarded.has(session)) {
      this.#guarded.add(session);
      session.on("error", (e: Error) => this.#log.debug({ err: e.message }, "xDS HTTP/2 session error"));
    }
    return stream;
  }
}

type AdsClient = Client<typeof AggregatedDiscoveryService>;

export class XdsClient {
  private readonly options: XdsClientOptions;
  private readonly protocol: "delta" | "sotw";
  /** SotW: the version accepted per type. */
  private readonly accepted = new Map<string, string>();
  /** Delta: name → version of every accepted resource, per type. */
  private readonly acceptedResources = new Map<string, Map<string, string>>();
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  connected = false;
  /** "host:port" of the control plane the current (or last) stream went to. */
  server = "";
  /** Streams opened so far (reconnects + 1). */
  streams = 0;
  /** Plugin components, on the current stream's connection (same replica, same identity). */
  private components: Client<typeof PluginComponentService> | undefined;

  constructor(options: XdsClientOptions) {
    if (options.servers.length === 0) throw new Error("at least one xDS server address is required");
    this.options = options;
    this.protocol = options.protocol ?? (options.onDeltaUpdate ? "delta" : "sotw");
    if (this.protocol === "delta" && !options.onDeltaUpdate) throw new Error("delta xDS needs onDeltaUpdate");
    if (this.protocol === "sotw" && !options.onUpdate) throw new Error("SotW xDS needs onUpdate");
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  /** Every configured entry expanded to addresses (a DNS name may give several). */
  private async resolve(): Promise<Target[]> {
    const out: Target[] = [];
    for (const entry of this.options.servers) {
      if (entry.startsWith(UNIX_PREFIX)) {
        const path = entry.slice(UNIX_PREFIX.length);
        out.push({ host: entry, address: path, port: 0, socketPath: path });
        continue;
      }
      const colon = entry.lastIndexOf(":");
      const host = entry.slice(0, colon).replace(/^\[|\]$/g, "");
      const port = Number(entry.slice(colon + 1));
      if (isIP(host)) {
        out.push({ host, address: host, port });
        continue;
      }
      try {
        for (const a of await lookup(host, { all: true })) out.push({ host, address: a.address, port });
      } catch (e) {
        this.options.log.warn(
          { server: entry, error: (e as Error).message },
          "xDS server name did not resolve",
        );
      }
    }
    return out;
  }

  private async loop(): Promise<void> {
    const { log } = this.options;
    const { initialMs, maxMs } = this.options.backoff ?? { initialMs: 250, maxMs: 15_000 };
    const signal = this.abort.signal;
    let failures = 0;
    let next = 0;
    while (!signal.aborted) {
      const targets = await this.resolve();
      const target = targets[next++ % Math.max(1, targets.length)];
      let established = false;
      if (target) {
        const socketPath = target.socketPath;
        const display = socketPath
          ? target.host
          : `${target.host === target.address ? target.address : `${target.host}/${target.address}`}:${target.port}`;
        const hostForUrl = target.address.includes(":") ? `[${target.address}]` : target.address;
        const tls = socketPath ? undefined : this.options.tls;
        const sessions = new GuardedSessionManager(
          socketPath ? "http://localhost" : `${tls ? "https" : "http"}://${hostForUrl}:${target.port}`,
          { pingIntervalMs: 15_000, pingTimeoutMs: 10_000 },
          socketPath
            ? { createConnection: () => net.connect(socketPath) }
            : tls
              ? {
                  ca: tls.ca,
                  cert: tls.cert,
                  key: tls.key,
                  ...(tls.serverName
                    ? { servername: tls.serverName }
                    : isIP(target.host)
                      ? {}
                      : { servername: target.host }),
                }
              : {},
          log,
        );
        const transport = createGrpcTransport({
          baseUrl: sessions.authority,
          sessionManager: sessions,
          readMaxBytes: READ_MAX_BYTES,
        });
        const client = createClient(AggregatedDiscoveryService, transport);
        this.components = createClient(PluginComponentService, transport);
        this.server = display;
        this.streams++;
        const side = new AbortController();
        let sideStream: Promise<void> | undefined;
        const onEstablished = () => {
          if (!established) {
            log.info({ server: display, protocol: this.protocol }, "xDS stream established");
            sideStream = this.options.sideStream?.(transport, side.signal).catch((e: unknown) => {
              log.debug({ err: e }, "xDS side stream failed");
            });
          }
          established = true;
          this.connected = true;
        };
        try {
          if (this.protocol === "delta") await this.deltaStream(client, onEstablished);
          else await this.sotwStream(client, onEstablished);
          if (!signal.aborted) log.warn({ server: display }, "xDS stream closed by the control plane");
        } catch (e) {
          if (!signal.aborted)
            log.warn(
              { server: display, error: explainXdsFailure(e, tls !== undefined) },
              "xDS stream failed; serving the last config",
            );
        } finally {
          this.connected = false;
          this.components = undefined;
          side.abort();
          await sideStream;
          sessions.abort();
        }
      }
      if (signal.aborted) break;
      failures = established ? 0 : failures + 1;
      // Fail over at once while some replica is untried; back off once all of them failed in a row.
      const round = Math.max(1, targets.length);
      const delay =
        failures === 0
          ? Math.random() * initialMs
          : failures < round
            ? 0
            : Math.random() * Math.min(maxMs, initialMs * 2 ** (failures - round));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * A plugin component by digest from the control plane this stream is on, over its connection (so
   * with this data plane's xDS identity): at most `size` bytes, within COMPONENT_FETCH_TIMEOUT_MS.
   * Called while an update of that stream is applied; the caller checks the digest.
   */
  async fetchComponent(digest: string, size: number): Promise<Uint8Array> {
    const client = this.components;
    if (!client) throw new Error("no xDS connection to fetch it on");
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(COMPONENT_FETCH_TIMEOUT_MS)]);
    const bytes = new Uint8Array(size);
    let received = 0;
    try {
      for await (const { chunk } of client.fetchComponent(
        { nodeId: this.options.nodeId, digest },
        { signal },
      )) {
        if (received + chunk.byteLength > size)
          throw new Error(`the control plane sent more than the ${size} bytes the resource announced`);
        bytes.set(chunk, received);
        received += chunk.byteLength;
      }
    } catch (e) {
      if (signal.reason instanceof DOMException && signal.reason.name === "TimeoutError")
        throw new Error(
          `no complete component within ${COMPONENT_FETCH_TIMEOUT_MS} ms (${received} of ${size} bytes)`,
        );
      throw new Error(explainXdsFailure(e, this.options.tls !== undefined));
    }
    if (received !== size)
      throw new Error(`the control plane sent ${received} of the ${size} bytes announced`);
    return bytes;
  }

  private sotwRequest(
    typeUrl: string,
    init: { responseNonce?: string; errorDetail?: { code: number; message: string } },
  ): DiscoveryRequest {
    return create(DiscoveryRequestSchema, {
      node: { id: this.options.nodeId, userAgentName: "agw" },
      typeUrl,
      versionInfo: this.accepted.get(typeUrl) ?? "",
      ...init,
    });
  }

  private async sotwStream(client: AdsClient, onEstablished: () => void): Promise<void> {
    const { log } = this.options;
    const onUpdate = this.options.onUpdate as NonNullable<XdsClientOptions["onUpdate"]>;
    const outbound = new AsyncQueue<DiscoveryRequest>();
    for (const typeUrl of RESOURCE_TYPES) outbound.push(this.sotwRequest(typeUrl, {}));
    try {
      for await (const response of client.streamAggregatedResources(outbound, {
        signal: this.abort.signal,
      })) {
        onEstablished();
        const typeUrl = RESOURCE_TYPES.find((t) => t === response.typeUrl);
        if (!typeUrl) {
          outbound.push(
            this.sotwRequest(response.typeUrl, {
              responseNonce: response.nonce,
              errorDetail: { code: INVALID_ARGUMENT, message: `unknown resource type ${response.typeUrl}` },
            }),
          );
          continue;
        }
        try {
          await onUpdate(typeUrl, response.resources, response.versionInfo);
          this.accepted.set(typeUrl, response.versionInfo);
          outbound.push(this.sotwRequest(typeUrl, { responseNonce: response.nonce }));
        } catch (e) {
          const message = (e as Error).message;
          log.warn(
            { type: shortType(typeUrl), version: response.versionInfo, error: message },
            "config rejected (NACK)",
          );
          outbound.push(
            this.sotwRequest(typeUrl, {
              responseNonce: response.nonce,
              errorDetail: { code: INVALID_ARGUMENT, message },
            }),
          );
        }
      }
    } finally {
      outbound.close();
    }
  }

  private async deltaStream(client: AdsClient, onEstablished: () => void): Promise<void> {
    const { log, nodeId } = this.options;
    const onDeltaUpdate = this.options.onDeltaUpdate as NonNullable<XdsClientOptions["onDeltaUpdate"]>;
    const outbound = new AsyncQueue<DeltaDiscoveryRequest>();
    for (const typeUrl of RESOURCE_TYPES)
      outbound.push(
        create(DeltaDiscoveryRequestSchema, {
          node: { id: nodeId, userAgentName: "agw" },
          typeUrl,
          initialResourceVersions: Object.fromEntries(this.acceptedResources.get(typeUrl) ?? []),
        }),
      );
    try {
      for await (const response of client.deltaAggregatedResources(outbound, { signal: this.abort.signal })) {
        onEstablished();
        const typeUrl = RESOURCE_TYPES.find((t) => t === response.typeUrl);
        const reply = (errorDetail?: { code: number; message: string }) =>
          outbound.push(
            create(DeltaDiscoveryRequestSchema, {
              typeUrl: response.typeUrl,
              responseNonce: response.nonce,
              ...(errorDetail ? { errorDetail } : {}),
            }),
          );
        if (!typeUrl) {
          reply({ code: INVALID_ARGUMENT, message: `unknown resource type ${response.typeUrl}` });
          continue;
        }
        const updated: DeltaResource[] = [];
        for (const r of response.resources)
          if (r.resource) updated.push({ name: r.name, version: r.version, resource: r.resource });
        try {
          await onDeltaUpdate(typeUrl, updated, response.removedResources, response.systemVersionInfo);
          let versions = this.acceptedResources.get(typeUrl);
          if (!versions) {
            versions = new Map();
            this.acceptedResources.set(typeUrl, versions);
          }
          for (const r of updated) versions.set(r.name, r.version);
          for (const name of response.removedResources) versions.delete(name);
          reply();
        } catch (e) {
          const message = (e as Error).message;
          log.warn(
            { type: shortType(typeUrl), version: response.systemVersionInfo, error: message },
            "config rejected (NACK)",
          );
          reply({ code: INVALID_ARGUMENT, message });
        }
      }
    } finally {
      outbound.close();
    }
  }
}
