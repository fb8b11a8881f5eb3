/**
 * The data plane's ADS client (state of the world). It subscribes to every AGW type, hands each
 * response to `onUpdate`, and ACKs (echoing the version) or NACKs (previous version + error_detail)
 * by whether that throws. It reconnects with exponential backoff and full jitter; while it is
 * disconnected, the data plane keeps serving the last config it accepted.
 */
import { AsyncQueue, type Logger, RESOURCE_TYPES, shortType, type TypeUrl } from "@agw/core";
import { AggregatedDiscoveryService } from "@agw/core/gen/envoy/service/discovery/v3/ads_pb.js";
import {
  type DiscoveryRequest,
  DiscoveryRequestSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

export interface XdsClientOptions {
  /** "host:port" of the control plane's ADS server. */
  server: string;
  nodeId: string;
  log: Logger;
  /** Applies one type's full resource set; throwing rejects it (NACK with the error's message). */
  onUpdate(typeUrl: TypeUrl, resources: Any[], version: string): Promise<void>;
  backoff?: { initialMs: number; maxMs: number };
}

/** google.rpc.Code INVALID_ARGUMENT */
const INVALID_ARGUMENT = 3;

export class XdsClient {
  private readonly options: XdsClientOptions;
  private readonly accepted = new Map<string, string>();
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  connected = false;

  constructor(options: XdsClientOptions) {
    this.options = options;
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private request(
    typeUrl: string,
    init: { responseNonce?: string; errorDetail?: { code: number; message: string } },
  ) {
    return create(DiscoveryRequestSchema, {
      node: { id: this.options.nodeId, userAgentName: "agw" },
      typeUrl,
      versionInfo: this.accepted.get(typeUrl) ?? "",
      ...init,
    });
  }

  private async loop(): Promise<void> {
    const { log, server } = this.options;
    const { initialMs, maxMs } = this.options.backoff ?? { initialMs: 250, maxMs: 15_000 };
    const signal = this.abort.signal;
    const transport = createGrpcTransport({
      baseUrl: `http://${server}`,
      pingIntervalMs: 15_000,
      pingTimeoutMs: 10_000,
    });
    const client = createClient(AggregatedDiscoveryService, transport);
    let attempt = 0;
    while (!signal.aborted) {
      const outbound = new AsyncQueue<DiscoveryRequest>();
      for (const typeUrl of RESOURCE_TYPES) outbound.push(this.request(typeUrl, {}));
      try {
        for await (const response of client.streamAggregatedResources(outbound, { signal })) {
          if (!this.connected) log.info({ server }, "xDS stream established");
          this.connected = true;
          attempt = 0;
          const typeUrl = RESOURCE_TYPES.find((t) => t === response.typeUrl);
          if (!typeUrl) {
            outbound.push(
              this.request(response.typeUrl, {
                responseNonce: response.nonce,
                errorDetail: { code: INVALID_ARGUMENT, message: `unknown resource type ${response.typeUrl}` },
              }),
            );
            continue;
          }
          try {
            await this.options.onUpdate(typeUrl, response.resources, response.versionInfo);
            this.accepted.set(typeUrl, response.versionInfo);
            outbound.push(this.request(typeUrl, { responseNonce: response.nonce }));
          } catch (e) {
            const message = (e as Error).message;
            log.warn(
              { type: shortType(typeUrl), version: response.versionInfo, error: message },
              "config rejected (NACK)",
            );
            outbound.push(
              this.request(typeUrl, {
                responseNonce: response.nonce,
                errorDetail: { code: INVALID_ARGUMENT, message },
              }),
            );
          }
        }
        if (!signal.aborted) log.warn({ server }, "xDS stream closed by the control plane");
      } catch (e) {
        if (!signal.aborted)
          log.warn({ server, error: (e as Error).message }, "xDS stream failed; serving the last config");
      } finally {
        outbound.close();
        this.connected = false;
      }
      if (signal.aborted) break;
      const delay = Math.random() * Math.min(maxMs, initialMs * 2 ** attempt);
      attempt++;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}
