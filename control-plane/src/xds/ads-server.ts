/**
 * Envoy's aggregated discovery service, state-of-the-world variant, over gRPC (connect-es on
 * node:http2). Per stream and type: a nonce per response, ACK = the data plane echoes the version,
 * NACK = error_detail with the previous version (recorded, never resent until the snapshot changes),
 * stale nonces ignored, and a type is pushed only when its version changed.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { AsyncQueue, type Logger, RESOURCE_TYPES, shortType, type TypeUrl } from "@agw/core";
import { AggregatedDiscoveryService } from "@agw/core/gen/envoy/service/discovery/v3/ads_pb.js";
import {
  type DiscoveryRequest,
  type DiscoveryResponse,
  DiscoveryResponseSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { SnapshotCache } from "./cache.ts";
import type { DataPlaneRegistry, DataPlaneState, TypeState } from "./dataplanes.ts";
import type { Snapshot } from "./resources.ts";

/** HTTP/2 keepalive: connect-node's server sends no pings of its own. */
const PING_INTERVAL_MS = 30_000;

type StreamEvent = { kind: "request"; request: DiscoveryRequest } | { kind: "snapshot" } | { kind: "end" };

export function createAdsService(
  cache: SnapshotCache,
  registry: DataPlaneRegistry,
  log: Logger,
): ServiceImpl<typeof AggregatedDiscoveryService> {
  return {
    async *streamAggregatedResources(requests: AsyncIterable<DiscoveryRequest>, ctx: HandlerContext) {
      const events = new AsyncQueue<StreamEvent>();
      const unwatch = cache.watch(() => events.push({ kind: "snapshot" }));
      let state: DataPlaneState | undefined;
      let nonce = 0;
      const pump = (async () => {
        try {
          for await (const request of requests) events.push({ kind: "request", request });
        } catch (e) {
          if (!ctx.signal.aborted) log.debug({ err: e }, "xDS stream read ended");
        } finally {
          events.push({ kind: "end" });
        }
      })();

      const respond = (snapshot: Snapshot, typeUrl: TypeUrl, typeState: TypeState): DiscoveryResponse => {
        const snap = snapshot.get(typeUrl);
        const version = snap?.version ?? "";
        typeState.sentVersion = version;
        typeState.sentNonce = String(++nonce);
        return create(DiscoveryResponseSchema, {
          versionInfo: version,
          typeUrl,
          nonce: typeState.sentNonce,
          resources: snap ? [...snap.resources.values()].map((r) => r.resource) : [],
        });
      };

      try {
        for await (const event of events) {
          if (event.kind === "end") break;
          if (event.kind === "snapshot") {
            const snapshot = cache.snapshot;
            if (!state || !snapshot) continue;
            for (const typeUrl of RESOURCE_TYPES) {
              const typeState = state.types.get(typeUrl);
              if (
                typeState &&
                typeState.sentNonce !== "" &&
                typeState.sentVersion === snapshot.get(typeUrl)?.version
              ) {
                continue;
              }
              if (typeState) yield respond(snapshot, typeUrl, typeState);
            }
            continue;
          }
          const req = event.request;
          if (!state) {
            const nodeId = req.node?.id ?? "";
            if (!nodeId)
              throw new ConnectError("the first DiscoveryRequest must carry node.id", Code.InvalidArgument);
            state = registry.open(nodeId);
            log.info({ node: nodeId, stream: state.streamId }, "data plane connected");
          }
          const typeUrl = RESOURCE_TYPES.find((t) => t === req.typeUrl);
          if (!typeUrl) {
            log.warn(
              { node: state.nodeId, type: req.typeUrl },
              "request for an unknown resource type ignored",
            );
            continue;
          }
          let typeState = state.types.get(req.typeUrl);
          if (!typeState) {
            typeState = {
              sentVersion: "",
              sentNonce: "",
              ackedVersion: "",
              ackedAt: undefined,
              lastNack: undefined,
            };
            state.types.set(req.typeUrl, typeState);
          }
          if (req.responseNonce === "") {
            // A new subscription (or a reconnect that carries the version it runs): always answer,
            // even with zero resources, so the data plane knows the type is complete.
            typeState.ackedVersion = req.versionInfo;
            const snapshot = cache.snapshot;
            if (snapshot) yield respond(snapshot, typeUrl, typeState);
            continue;
          }
          if (req.responseNonce !== typeState.sentNonce) continue;
          if (req.errorDetail) {
            typeState.lastNack = {
              version: typeState.sentVersion,
              nonce: req.responseNonce,
              message: req.errorDetail.message,
              at: new Date().toISOString(),
            };
            log.warn(
              {
                node: state.nodeId,
                type: shortType(req.typeUrl),
                rejected_version: typeState.sentVersion,
                running_version: req.versionInfo,
                error: req.errorDetail.message,
              },
              "data plane rejected config (NACK)",
            );
          } else {
            typeState.ackedVersion = req.versionInfo;
            typeState.ackedAt = new Date().toISOString();
            log.debug({ node: state.nodeId, type: shortType(req.typeUrl), version: req.versionInfo }, "ACK");
          }
        }
      } finally {
        unwatch();
        events.close();
        await pump.catch(() => undefined);
        if (state) {
          registry.close(state);
          log.info({ node: state.nodeId, stream: state.streamId }, "data plane disconnected");
        }
      }
    },

    deltaAggregatedResources() {
      throw new ConnectError(
        "incremental (delta) xDS is not served yet; use StreamAggregatedResources",
        Code.Unimplemented,
      );
    },
  };
}

export interface AdsServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

export async function startAdsServer(
  host: string,
  port: number,
  service: ServiceImpl<typeof AggregatedDiscoveryService>,
): Promise<AdsServer> {
  const handler = connectNodeAdapter({
    routes: (router) => router.service(AggregatedDiscoveryService, service),
  });
  const server = http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    const timer = setInterval(() => {
      if (!session.destroyed) session.ping(() => undefined);
    }, PING_INTERVAL_MS).unref();
    session.once("close", () => {
      clearInterval(timer);
      sessions.delete(session);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}
