/**
 * Envoy's aggregated discovery service over gRPC (connect-es on node:http2), both variants:
 *
 * - State of the world (`StreamAggregatedResources`): per stream and type, a nonce per response,
 *   ACK = the data plane echoes the version, NACK = error_detail with the previous version
 *   (recorded, never resent until the snapshot changes), stale nonces ignored, a type pushed only
 *   when its version changed.
 * - Incremental (`DeltaAggregatedResources`): per stream and type, the versions the data plane has
 *   (seeded by `initial_resource_versions` on reconnect); only resources whose content hash differs
 *   are sent, deletions go out as `removed_resources`; wildcard or explicit subscriptions with
 *   `resource_names_subscribe` / `resource_names_unsubscribe`.
 *
 * Make-before-break: on a change, additions and updates go out in push order (clusters, endpoints,
 * secrets, plugins before listeners and routes), removals afterwards in reverse order. In SotW a
 * referenced type that loses resources is first sent as the union of old and new, then shrunk once
 * the types that referenced the old resources have moved on.
 *
 * Streams end gracefully (OK status, then HTTP/2 GOAWAY) at shutdown and after a maximum age, so
 * data planes reconnect (to another replica, or this one) without losing their config.
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import {
  AsyncQueue,
  type Logger,
  RESOURCE_TYPES,
  STATS_LIMITS,
  shortType,
  TYPE_URL,
  type TypeUrl,
} from "@agw/core";
import { PluginComponentService } from "@agw/core/gen/agw/v1/plugin_pb.js";
import { StatsService } from "@agw/core/gen/agw/v1/stats_pb.js";
import { AggregatedDiscoveryService } from "@agw/core/gen/envoy/service/discovery/v3/ads_pb.js";
import {
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  DeltaDiscoveryResponseSchema,
  type DiscoveryRequest,
  type DiscoveryResponse,
  DiscoveryResponseSchema,
} from "@agw/core/gen/envoy/service/discovery/v3/discovery_pb.js";
import { create } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { SnapshotCache, TypeChanges } from "./cache.ts";
import { type DataPlaneRegistry, type DataPlaneState, newTypeState, type TypeState } from "./dataplanes.ts";
import type { Snapshot, TypeSnapshot, VersionedResource } from "./resources.ts";
import { type StreamScope, type Subscribed, typeView, type XdsTransport } from "./scope.ts";
import { deltaResponseSize, GRPC_FRAME_BYTES, sotwResponseSize } from "./wire.ts";

/**
 * `resources` in DiscoveryResponse and DeltaDiscoveryResponse. Responses carry each resource's
 * bytes, encoded once per resource (`VersionedResource`), as raw fields: re-encoding 10,000
 * resources for each of 100 streams is what made initial syncs take seconds.
 */
const SOTW_RESOURCES_FIELD = 2;
const DELTA_RESOURCES_FIELD = 2;

/** Types other types reference: in SotW their removals wait until the referencing types moved on. */
const REFERENCED_TYPES: ReadonlySet<TypeUrl> = new Set([
  TYPE_URL.cluster,
  TYPE_URL.endpoints,
  TYPE_URL.secret,
  TYPE_URL.plugin,
]);

/** Who is on the other end of a stream: set per HTTP/2 request by the server adapter. */
export interface Peer {
  address: string;
  /** The client certificate's subject CN (mTLS only). */
  identity: string | undefined;
  /** mTLS and the private Unix socket are authenticated; plaintext TCP gets no Secret. */
  transport: XdsTransport;
  /** mTLS: why the client certificate was not trusted (the stream is then refused). */
  refused?: string | undefined;
}
const PEER = createContextKey<Peer>(
  { address: "", identity: undefined, transport: "plaintext" },
  { description: "xDS peer" },
);

export interface AdsServiceOptions {
  /** Streams older than this end gracefully (±10% jitter) and the data plane reconnects; 0 = never. */
  maxStreamAgeMs?: number;
  /** agw.v1.StatsService, served beside ADS on the same connections (stats-service.ts). */
  stats?: SideService | undefined;
  /** Streams in their initial sync at once (default 64); more wait their turn (SyncAdmission). */
  maxConcurrentSyncs?: number;
}

/** How long an admitted stream may hold its turn without completing its initial sync. */
const ADMISSION_HOLD_MS = 10_000;

/**
 * Server-side admission of initial syncs: when 1,000 data planes reconnect at once (a control plane
 * restart), at most `max` streams get their first responses at a time and the rest wait, their
 * requests queued, until one of them has ACKed (or NACKed) every type, ended, or held its turn for
 * ADMISSION_HOLD_MS. A data plane keeps serving its last config while it waits. With the data
 * planes' jittered backoff, this is what keeps a restart from being a thundering herd.
 */
export class SyncAdmission {
  readonly max: number;
  active = 0;
  /** Most streams ever syncing at once, and how many had to wait: for tests and the bench. */
  peak = 0;
  waited = 0;
  private readonly queue: Array<() => void> = [];

  constructor(max: number) {
    this.max = Math.max(1, max);
  }

  /** Waits for a turn; the returned function gives it back (idempotent). */
  async enter(signal: AbortSignal): Promise<() => void> {
    if (this.active >= this.max) {
      this.waited++;
      await new Promise<void>((resolve) => {
        const go = () => {
          signal.removeEventListener("abort", cancel);
          resolve();
        };
        const cancel = () => {
          const i = this.queue.indexOf(go);
          if (i >= 0) this.queue.splice(i, 1);
          resolve();
        };
        this.queue.push(go);
        signal.addEventListener("abort", cancel, { once: true });
      });
    }
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    let held = true;
    const leave = () => {
      if (!held) return;
      held = false;
      clearTimeout(timer);
      this.active--;
      this.queue.shift()?.();
    };
    const timer = setTimeout(leave, ADMISSION_HOLD_MS).unref();
    return leave;
  }
}

/** A service served on the xDS connections beside ADS, drained with it. */
export type SideService = ServiceImpl<typeof StatsService> & { drain(): void };

export type AdsService = ServiceImpl<typeof AggregatedDiscoveryService> & {
  /** Ends every stream gracefully (OK status); new streams are refused from now on. */
  drain(): void;
  readonly admission: SyncAdmission;
  stats?: SideService | undefined;
};

type StreamEvent<R> =
  | { kind: "request"; request: R }
  | { kind: "snapshot" }
  | { kind: "end"; reason: string };

/** The plumbing both stream variants share: one event queue fed by requests, snapshots and ends. */
function openStream<R>(
  requests: AsyncIterable<R>,
  ctx: HandlerContext,
  cache: SnapshotCache,
  streams: Set<AsyncQueue<StreamEvent<R>>>,
  options: AdsServiceOptions,
  log: Logger,
) {
  const events = new AsyncQueue<StreamEvent<R>>();
  streams.add(events as AsyncQueue<StreamEvent<unknown>> as AsyncQueue<StreamEvent<R>>);
  const unwatch = cache.watch(() => events.push({ kind: "snapshot" }));
  const maxAge = options.maxStreamAgeMs ?? 0;
  const ageTimer =
    maxAge > 0
      ? setTimeout(
          () => events.push({ kind: "end", reason: "max stream age" }),
          maxAge * (0.9 + Math.random() * 0.2),
        ).unref()
      : undefined;
  const pump = (async () => {
    try {
      for await (const request of requests) events.push({ kind: "request", request });
      events.push({ kind: "end", reason: "client closed the stream" });
    } catch (e) {
      if (!ctx.signal.aborted) log.debug({ err: e }, "xDS stream read ended");
      events.push({ kind: "end", reason: "stream error" });
    }
  })();
  return {
    events,
    close() {
      clearTimeout(ageTimer);
      unwatch();
      streams.delete(events as never);
      events.close();
      // Not awaited: when the server ends the stream (shutdown, max age, a refused node) the
      // client's side may still be open; the RPC's end releases the reader.
      pump.catch(() => undefined);
    },
  };
}

/**
 * The node id of the peer of `ctx` asking as `nodeId`: over mTLS the client certificate's CN, which
 * a non-empty `nodeId` must equal. Throws the refusal the peer gets. Every xDS stream and every
 * component fetch (xds/components.ts) is checked here.
 */
export function peerNodeId(ctx: HandlerContext, nodeId: string): { id: string; peer: Peer } {
  const peer = ctx.values.get(PEER);
  if (peer.refused !== undefined)
    throw new ConnectError(
      `the control plane does not trust this data plane's client certificate (${peer.refused}): it must be signed by the CA the control plane was given (--xds-ca)`,
      Code.Unauthenticated,
    );
  let id = nodeId;
  if (peer.identity !== undefined) {
    if (id === "") id = peer.identity;
    else if (id !== peer.identity)
      throw new ConnectError(
        `node.id "${id}" does not match the client certificate's identity "${peer.identity}"`,
        Code.PermissionDenied,
      );
  }
  if (!id) throw new ConnectError("the first request must carry node.id", Code.InvalidArgument);
  return { id, peer };
}

function register(
  registry: DataPlaneRegistry,
  ctx: HandlerContext,
  nodeId: string,
  protocol: DataPlaneState["protocol"],
  log: Logger,
): DataPlaneState {
  const { id, peer } = peerNodeId(ctx, nodeId);
  const state = registry.open({
    nodeId: id,
    protocol,
    peer: peer.address,
    identity: peer.identity,
    transport: peer.transport,
  });
  log.info(
    { node: id, stream: state.streamId, protocol, peer: peer.address, transport: peer.transport },
    "data plane connected",
  );
  return state;
}

/**
 * Logs, once per stream, that Secrets exist but this unauthenticated stream gets none of them: the
 * operator then knows why a data plane's HTTPS listener has no certificate.
 */
function withheldSecretsNotice(log: Logger): (state: DataPlaneState, snapshot: Snapshot) => void {
  let logged = false;
  return (state, snapshot) => {
    if (logged || state.transport !== "plaintext") return;
    const secrets = snapshot.get(TYPE_URL.secret)?.resources.size ?? 0;
    if (secrets === 0) return;
    logged = true;
    log.warn(
      { node: state.nodeId, stream: state.streamId, peer: state.peer, withheld: secrets },
      "secrets withheld from this data plane: its xDS stream is plaintext TCP, unauthenticated; secrets go only over mTLS (--xds-cert/--xds-key/--xds-ca) or agw run's private Unix socket",
    );
  };
}

function typeStateOf(state: DataPlaneState, typeUrl: TypeUrl): TypeState {
  let typeState = state.types.get(typeUrl);
  if (!typeState) {
    typeState = newTypeState();
    state.types.set(typeUrl, typeState);
  }
  return typeState;
}

function recordNack(
  log: Logger,
  state: DataPlaneState,
  typeUrl: string,
  typeState: TypeState,
  version: string,
  nonce: string,
  message: string,
  runningVersion: string,
): void {
  typeState.lastNack = { version, nonce, message, at: new Date().toISOString() };
  typeState.nacks++;
  log.warn(
    {
      node: state.nodeId,
      type: shortType(typeUrl),
      rejected_version: version,
      running_version: runningVersion,
      error: message,
    },
    "data plane rejected config (NACK)",
  );
}

function recordAck(
  log: Logger,
  state: DataPlaneState,
  typeUrl: string,
  typeState: TypeState,
  version: string,
) {
  typeState.ackedVersion = version;
  typeState.ackedAt = new Date().toISOString();
  typeState.acks++;
  log.debug({ node: state.nodeId, type: shortType(typeUrl), version }, "ACK");
}

function knownType(log: Logger, state: DataPlaneState, typeUrl: string): TypeUrl | undefined {
  const known = RESOURCE_TYPES.find((t) => t === typeUrl);
  if (!known) log.warn({ node: state.nodeId, type: typeUrl }, "request for an unknown resource type ignored");
  return known;
}

/** Per stream and type in Delta: what the data plane subscribed to and which versions it has. */
interface DeltaSubscription {
  wildcard: boolean;
  names: Set<string>;
  /**
   * The versions the data plane has (or was last sent): exactly those of `syncedTo` when set, else
   * `known` (name → version). A wildcard stream in step with the snapshots keeps no map of its own.
   */
  syncedTo: TypeSnapshot | undefined;
  known: Map<string, string>;
  /** nonce → system version of responses not yet ACKed or NACKed. */
  inFlight: Map<string, string>;
  /**
   * Whether this type got its first response. It is sent even when empty (the type is complete), also
   * when the subscription came before the control plane's first config: then with that config.
   */
  answered: boolean;
}

/** The data plane's versions as a map of this stream's own, built from `syncedTo` on demand. */
function knownVersions(sub: DeltaSubscription): Map<string, string> {
  if (sub.syncedTo) {
    sub.known = new Map([...sub.syncedTo.resources.values()].map((r) => [r.name, r.version]));
    sub.syncedTo = undefined;
  }
  return sub.known;
}

/**
 * What to send for one type, recorded as sent. A wildcard stream that had the previous publication
 * takes the changes computed once for all streams; any other compares resource by resource.
 */
function deltaChanges(
  snap: TypeSnapshot | undefined,
  sub: DeltaSubscription,
  justSubscribed: readonly string[],
  published: TypeChanges | undefined,
): { updated: VersionedResource[]; removed: string[] } {
  if (snap && sub.wildcard && sub.syncedTo && justSubscribed.length === 0) {
    if (sub.syncedTo === snap) return { updated: [], removed: [] };
    if (published && published.from === sub.syncedTo && published.to === snap) {
      sub.syncedTo = snap;
      return { updated: published.updated, removed: published.removed };
    }
  }
  const known = knownVersions(sub);
  const resources = snap?.resources ?? new Map<string, VersionedResource>();
  const updated: VersionedResource[] = [];
  const consider = (r: VersionedResource) => {
    if (known.get(r.name) !== r.version) updated.push(r);
  };
  if (sub.wildcard) for (const r of resources.values()) consider(r);
  else
    for (const name of sub.names) {
      const r = resources.get(name);
      if (r) consider(r);
    }
  const removed: string[] = [];
  for (const name of known.keys()) if (!resources.has(name)) removed.push(name);
  // A name subscribed explicitly that does not exist is reported as removed, so the data plane
  // does not wait for it.
  for (const name of justSubscribed)
    if (!resources.has(name) && !known.has(name) && !removed.includes(name)) removed.push(name);
  if (sub.wildcard && snap) {
    // After this response the data plane has exactly the snapshot's versions.
    sub.syncedTo = snap;
    sub.known = new Map();
  } else {
    for (const r of updated) known.set(r.name, r.version);
    for (const name of removed) known.delete(name);
  }
  return { updated, removed };
}

export function createAdsService(
  cache: SnapshotCache,
  registry: DataPlaneRegistry,
  log: Logger,
  options: AdsServiceOptions = {},
): AdsService {
  const streams = new Set<AsyncQueue<StreamEvent<unknown>>>();
  const admission = new SyncAdmission(options.maxConcurrentSyncs ?? 64);
  let draining = false;
  const refuseWhileDraining = () => {
    if (draining) throw new ConnectError("control plane shutting down", Code.Unavailable);
  };

  return {
    stats: options.stats,
    admission,
    drain() {
      draining = true;
      options.stats?.drain();
      for (const events of streams) events.push({ kind: "end", reason: "control plane shutting down" });
    },

    async *streamAggregatedResources(requests: AsyncIterable<DiscoveryRequest>, ctx: HandlerContext) {
      refuseWhileDraining();
      const stream = openStream(requests, ctx, cache, streams as never, options, log);
      let state: DataPlaneState | undefined;
      /** Gives back this stream's admission turn (SyncAdmission) once its initial sync is done. */
      let leave = () => {};
      let nonce = 0;
      const noticeWithheld = withheldSecretsNotice(log);
      // SotW sends every listener and cluster: the scope is every Secret they name.
      const scopeOf = (s: DataPlaneState): StreamScope => ({
        transport: s.transport,
        listeners: () => "all",
        clusters: () => "all",
      });
      /** What each type's last response contained, to detect SotW removals. */
      const sentResources = new Map<TypeUrl, ReadonlyMap<string, VersionedResource>>();

      const respond = (
        typeUrl: TypeUrl,
        typeState: TypeState,
        version: string,
        resources: ReadonlyMap<string, VersionedResource>,
      ): DiscoveryResponse => {
        typeState.sentVersion = version;
        typeState.sentNonce = String(++nonce);
        typeState.responses++;
        typeState.bytes +=
          GRPC_FRAME_BYTES + sotwResponseSize(version, typeUrl, typeState.sentNonce, resources.values());
        sentResources.set(typeUrl, resources);
        const response = create(DiscoveryResponseSchema, {
          versionInfo: version,
          typeUrl,
          nonce: typeState.sentNonce,
        });
        response.$unknown = [...resources.values()].map((r) => ({
          no: SOTW_RESOURCES_FIELD,
          wireType: WireType.LengthDelimited,
          data: r.sotwBytes,
        }));
        return response;
      };
      try {
        for await (const event of stream.events) {
          if (event.kind === "end") {
            if (state) log.info({ node: state.nodeId, reason: event.reason }, "closing xDS stream");
            break;
          }
          if (event.kind === "snapshot") {
            const snapshot = cache.snapshot;
            if (!state || !snapshot) continue;
            const shrinkLater: TypeUrl[] = [];
            const scope = scopeOf(state);
            noticeWithheld(state, snapshot);
            for (const typeUrl of RESOURCE_TYPES) {
              const typeState = state.types.get(typeUrl);
              const snap = typeView(snapshot, typeUrl, scope);
              if (!typeState || !snap) continue;
              if (typeState.sentNonce !== "" && typeState.sentVersion === snap.version) continue;
              const before = sentResources.get(typeUrl);
              const loses = before && [...before.keys()].some((name) => !snap.resources.has(name));
              if (REFERENCED_TYPES.has(typeUrl) && loses && before) {
                const union = new Map([...before, ...snap.resources]);
                yield respond(typeUrl, typeState, `${snap.version}+previous`, union);
                shrinkLater.unshift(typeUrl);
              } else {
                yield respond(typeUrl, typeState, snap.version, snap.resources);
              }
            }
            for (const typeUrl of shrinkLater) {
              const snap = typeView(snapshot, typeUrl, scope);
              const typeState = state.types.get(typeUrl);
              if (snap && typeState) yield respond(typeUrl, typeState, snap.version, snap.resources);
            }
            continue;
          }
          const req = event.request;
          if (!state) {
            state = register(registry, ctx, req.node?.id ?? "", "sotw", log);
            leave = await admission.enter(ctx.signal);
          }
          const typeUrl = knownType(log, state, req.typeUrl);
          if (!typeUrl) continue;
          const typeState = typeStateOf(state, typeUrl);
          if (req.responseNonce === "") {
            // A new subscription (or a reconnect that carries the version it runs): always answer,
            // even with zero resources, so the data plane knows the type is complete.
            typeState.ackedVersion = req.versionInfo;
            const snapshot = cache.snapshot;
            if (snapshot) {
              noticeWithheld(state, snapshot);
              const snap = typeView(snapshot, typeUrl, scopeOf(state));
              yield respond(typeUrl, typeState, snap?.version ?? "", snap?.resources ?? new Map());
            }
            continue;
          }
          if (req.responseNonce !== typeState.sentNonce) continue;
          if (req.errorDetail)
            recordNack(
              log,
              state,
              typeUrl,
              typeState,
              typeState.sentVersion,
              req.responseNonce,
              req.errorDetail.message,
              req.versionInfo,
            );
          else recordAck(log, state, typeUrl, typeState, req.versionInfo);
          const settled = (t: TypeState) =>
            t.sentNonce !== "" && (t.ackedVersion === t.sentVersion || t.lastNack?.nonce === t.sentNonce);
          if (state.types.size >= RESOURCE_TYPES.length && [...state.types.values()].every(settled)) leave();
        }
      } finally {
        leave();
        stream.close();
        if (state) {
          registry.close(state);
          log.info({ node: state.nodeId, stream: state.streamId }, "data plane disconnected");
        }
      }
    },

    async *deltaAggregatedResources(requests: AsyncIterable<DeltaDiscoveryRequest>, ctx: HandlerContext) {
      refuseWhileDraining();
      const stream = openStream(requests, ctx, cache, streams as never, options, log);
      let state: DataPlaneState | undefined;
      /** Gives back this stream's admission turn (SyncAdmission) once its initial sync is done. */
      let leave = () => {};
      let nonce = 0;
      const subscriptions = new Map<TypeUrl, DeltaSubscription>();
      const noticeWithheld = withheldSecretsNotice(log);
      const subscribed = (typeUrl: TypeUrl): Subscribed => {
        const sub = subscriptions.get(typeUrl);
        return !sub ? new Set() : sub.wildcard ? "all" : sub.names;
      };
      // Secrets named by the listeners and clusters this stream subscribed to, if authenticated.
      const scopeOf = (s: DataPlaneState): StreamScope => ({
        transport: s.transport,
        listeners: () => subscribed(TYPE_URL.listener),
        clusters: () => subscribed(TYPE_URL.cluster),
      });

      const respond = (
        typeUrl: TypeUrl,
        updated: VersionedResource[],
        removed: string[],
      ): DeltaDiscoveryResponse | undefined => {
        const sub = subscriptions.get(typeUrl);
        const typeState = state?.types.get(typeUrl);
        if (!sub || !typeState || !state) return undefined;
        const snapshot = cache.snapshot;
        const version = (snapshot && typeView(snapshot, typeUrl, scopeOf(state))?.version) ?? "";
        const responseNonce = String(++nonce);
        sub.answered = true;
        sub.inFlight.set(responseNonce, version);
        typeState.sentVersion = version;
        typeState.sentNonce = responseNonce;
        typeState.responses++;
        typeState.bytes +=
          GRPC_FRAME_BYTES + deltaResponseSize(version, typeUrl, responseNonce, updated, removed);
        const response = create(DeltaDiscoveryResponseSchema, {
          systemVersionInfo: version,
          typeUrl,
          nonce: responseNonce,
          removedResources: removed,
        });
        response.$unknown = updated.map((r) => ({
          no: DELTA_RESOURCES_FIELD,
          wireType: WireType.LengthDelimited,
          data: r.deltaBytes,
        }));
        return response;
      };

      try {
        for await (const event of stream.events) {
          if (event.kind === "end") {
            if (state) log.info({ node: state.nodeId, reason: event.reason }, "closing xDS stream");
            break;
          }
          const snapshot = cache.snapshot;
          if (event.kind === "snapshot") {
            if (!snapshot || !state) continue;
            noticeWithheld(state, snapshot);
            const scope = scopeOf(state);
            // Make-before-break: additions and updates in push order, then removals in reverse.
            const removals = new Map<TypeUrl, string[]>();
            for (const typeUrl of RESOURCE_TYPES) {
              const sub = subscriptions.get(typeUrl);
              if (!sub) continue;
              const { updated, removed } = deltaChanges(
                typeView(snapshot, typeUrl, scope),
                sub,
                [],
                cache.changesOf(typeUrl),
              );
              if (removed.length > 0) removals.set(typeUrl, removed);
              if (updated.length > 0 || !sub.answered) {
                const response = respond(typeUrl, updated, []);
                if (response) yield response;
              }
            }
            for (const typeUrl of [...RESOURCE_TYPES].reverse()) {
              const removed = removals.get(typeUrl);
              const response = removed && respond(typeUrl, [], removed);
              if (response) yield response;
            }
            continue;
          }
          const req = event.request;
          if (!state) {
            state = register(registry, ctx, req.node?.id ?? "", "delta", log);
            leave = await admission.enter(ctx.signal);
          }
          const typeUrl = knownType(log, state, req.typeUrl);
          if (!typeUrl) continue;
          const typeState = typeStateOf(state, typeUrl);

          if (req.responseNonce !== "") {
            const sub = subscriptions.get(typeUrl);
            const version = sub?.inFlight.get(req.responseNonce);
            if (sub && version !== undefined) {
              // Responses are answered in order: everything up to this nonce is settled.
              for (const n of sub.inFlight.keys()) {
                sub.inFlight.delete(n);
                if (n === req.responseNonce) break;
              }
              if (req.errorDetail)
                recordNack(
                  log,
                  state,
                  typeUrl,
                  typeState,
                  version,
                  req.responseNonce,
                  req.errorDetail.message,
                  typeState.ackedVersion,
                );
              else recordAck(log, state, typeUrl, typeState, version);
              const subs = [...subscriptions.values()];
              if (
                subs.length >= RESOURCE_TYPES.length &&
                subs.every((x) => x.answered && x.inFlight.size === 0)
              )
                leave();
            }
          }

          let sub = subscriptions.get(typeUrl);
          if (!sub) {
            sub = {
              // Envoy's legacy wildcard: a first request that names nothing subscribes to everything.
              wildcard: req.resourceNamesSubscribe.length === 0,
              names: new Set(),
              syncedTo: undefined,
              known: new Map(Object.entries(req.initialResourceVersions)),
              inFlight: new Map(),
              answered: false,
            };
            subscriptions.set(typeUrl, sub);
          }
          const justSubscribed: string[] = [];
          for (const name of req.resourceNamesSubscribe) {
            if (name === "*") sub.wildcard = true;
            else if (!sub.names.has(name)) {
              sub.names.add(name);
              justSubscribed.push(name);
            }
          }
          for (const name of req.resourceNamesUnsubscribe) {
            if (name === "*") sub.wildcard = false;
            else sub.names.delete(name);
          }
          // Forget what the data plane dropped, so a later resubscription sends it again.
          if (!sub.wildcard) {
            const known = knownVersions(sub);
            for (const name of [...known.keys()]) if (!sub.names.has(name)) known.delete(name);
          }
          if (!snapshot) continue;
          noticeWithheld(state, snapshot);
          const scope = scopeOf(state);
          // A listener or cluster subscription decides which Secrets this stream gets: the Secrets
          // it now names go out before it (make-before-break), those it no longer names after it.
          const secretSub = subscriptions.get(TYPE_URL.secret);
          const rescopes = (typeUrl === TYPE_URL.listener || typeUrl === TYPE_URL.cluster) && secretSub;
          const secretChanges = rescopes
            ? deltaChanges(typeView(snapshot, TYPE_URL.secret, scope), secretSub, [], undefined)
            : undefined;
          if (secretChanges && secretChanges.updated.length > 0) {
            const response = respond(TYPE_URL.secret, secretChanges.updated, []);
            if (response) yield response;
          }
          const { updated, removed } = deltaChanges(
            typeView(snapshot, typeUrl, scope),
            sub,
            justSubscribed,
            undefined,
          );
          // The first answer for a type is sent even when empty: it tells the data plane the type
          // is complete (e.g. a reconnect whose versions all still match).
          if (!sub.answered || updated.length > 0 || removed.length > 0) {
            const response = respond(typeUrl, updated, removed);
            if (response) yield response;
          }
          if (secretChanges && secretChanges.removed.length > 0) {
            const response = respond(TYPE_URL.secret, [], secretChanges.removed);
            if (response) yield response;
          }
        }
      } finally {
        leave();
        stream.close();
        if (state) {
          registry.close(state);
          log.info({ node: state.nodeId, stream: state.streamId }, "data plane disconnected");
        }
      }
    },
  };
}

export interface AdsTlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** CA that signs the data planes' client certificates; a client without one is refused. */
  ca: string | Buffer;
}

export interface AdsServerOptions {
  /** mTLS; omitted = plaintext HTTP/2. */
  tls?: AdsTlsOptions | undefined;
  /** HTTP/2 keepalive: connect-node's server sends no pings of its own. */
  pingIntervalMs?: number;
  /** Where refused TLS handshakes are logged. */
  log?: Logger;
  /** Serves plugin components by digest (xds/components.ts). */
  components?: ComponentServiceImpl | undefined;
}

export interface AdsServer {
  /** The TCP address; for a Unix socket, `address` is its path and `port` 0. */
  readonly address: AddressInfo;
  /** What a data plane dials: "host:port", or "unix:PATH". */
  readonly target: string;
  readonly tls: boolean;
  /** New certificate, key and client CA for connections from now on (rotation); mTLS servers only. */
  setTls(tls: AdsTlsOptions): void;
  /** Graceful: streams end with OK, sessions get GOAWAY; whatever remains after 2 s is cut. */
  close(): Promise<void>;
}

function peerOf(req: http2.Http2ServerRequest, transport: XdsTransport): Peer {
  const socket = req.stream?.session?.socket as TLSSocket | undefined;
  if (transport === "unix") return { address: "unix", identity: undefined, transport };
  const address = socket ? `${socket.remoteAddress}:${socket.remotePort}` : "";
  if (transport === "mtls" && socket?.authorized !== true)
    return { address, identity: undefined, transport, refused: refusal(socket) };
  const cert = typeof socket?.getPeerCertificate === "function" ? socket.getPeerCertificate() : undefined;
  const cn = cert?.subject?.CN;
  return { address, identity: cert && cn ? (Array.isArray(cn) ? cn[0] : cn) : undefined, transport };
}

function refusal(socket: TLSSocket | undefined): string {
  const reason = socket?.authorizationError;
  const presented = socket && Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
  return presented ? String(reason ?? "not verified") : "no client certificate";
}

type AdsServiceImpl = ServiceImpl<typeof AggregatedDiscoveryService> & {
  drain?(): void;
  stats?: SideService | undefined;
};

type ComponentServiceImpl = ServiceImpl<typeof PluginComponentService>;

function adsHandler(service: AdsServiceImpl, transport: XdsTransport, components?: ComponentServiceImpl) {
  return connectNodeAdapter({
    routes: (router) => {
      router.service(AggregatedDiscoveryService, service);
      // Plugin components too large to inline, on the same connections and the same peer checks.
      if (components) router.service(PluginComponentService, components);
      if (service.stats)
        router.service(StatsService, service.stats, { readMaxBytes: STATS_LIMITS.reportBytes });
    },
    // No response compression (connect-node gzips by default whenever the client accepts it): an
    // initial sync of 10,000 routes to 100 data planes spent ~40% of the control plane's CPU in
    // gzip (bench/RESULTS.md), and changes are far below the 1 KiB compression threshold anyway.
    acceptCompression: [],
    contextValues: (req) =>
      createContextValues().set(PEER, peerOf(req as http2.Http2ServerRequest, transport)),
  });
}

/**
 * Refused clients of an mTLS server, logged with the peer's address and the reason. Node verifies a
 * client certificate only after the TLS 1.3 handshake and, when it rejects one itself, closes the
 * socket without a word to either side: the data plane saw `read ECONNRESET` and the control plane
 * logged nothing. So the server verifies (`rejectUnauthorized: false`, `requestCert: true`), logs a
 * certificate it does not trust here, and refuses every stream on that connection before anything
 * is sent, with a message the data plane logs (UNAUTHENTICATED, see `register`).
 */
function logRefusedClients(server: http2.Http2SecureServer, log: Logger | undefined): void {
  const addresses = new WeakMap<object, string>();
  server.on("connection", (socket: net.Socket) => {
    addresses.set(socket, `${socket.remoteAddress}:${socket.remotePort}`);
  });
  const addressOf = (socket: TLSSocket) =>
    addresses.get((socket as unknown as { _parent?: object })._parent ?? socket) ??
    `${socket.remoteAddress}:${socket.remotePort}`;
  server.prependListener("secureConnection", (socket: TLSSocket) => {
    if (socket.authorized) return;
    log?.warn(
      { peer: addressOf(socket), reason: refusal(socket) },
      "xDS client certificate refused: not signed by the CA of data plane certificates (--xds-ca)",
    );
  });
  server.on("tlsClientError", (err: Error & { code?: string }, socket: TLSSocket) => {
    // A client that hangs up mid-handshake (e.g. it did not trust our certificate) says so itself.
    if (err.code === "ECONNRESET") return;
    log?.warn(
      { peer: addressOf(socket), reason: err.code ? `${err.code}: ${err.message}` : err.message },
      "xDS TLS handshake failed",
    );
  });
}

export async function startAdsServer(
  host: string,
  port: number,
  service: AdsServiceImpl,
  options: AdsServerOptions = {},
): Promise<AdsServer> {
  const tls = options.tls;
  const handler = adsHandler(service, tls ? "mtls" : "plaintext", options.components);
  const server = tls
    ? http2.createSecureServer(
        // Verified by us, not by Node's silent close: see logRefusedClients and peerOf.
        { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: false },
        handler,
      )
    : http2.createServer(handler);
  if (tls) logRefusedClients(server as http2.Http2SecureServer, options.log);
  await listen(server, (done) => server.listen(port, host, done));
  const address = server.address() as AddressInfo;
  const hostForTarget = address.address.includes(":") ? `[${address.address}]` : address.address;
  return serve(server, service, options, address, `${hostForTarget}:${address.port}`, tls !== undefined);
}

/**
 * xDS on a Unix socket that only this user can open: mode 0600 inside a fresh 0700 directory. A
 * stream on it is authenticated by the file system (it is how `agw run` connects its own data
 * plane, without an open TCP port), so its data plane may receive Secrets under any node id.
 */
export async function startLocalAdsServer(
  service: AdsServiceImpl,
  options: AdsServerOptions = {},
): Promise<AdsServer> {
  const dir = mkdtempSync(join(tmpdir(), "agw-xds-"));
  chmodSync(dir, 0o700);
  const path = join(dir, "xds.sock");
  const server = http2.createServer(adsHandler(service, "unix", options.components));
  try {
    await listen(server, (done) => server.listen({ path, readableAll: false, writableAll: false }, done));
    chmodSync(path, 0o600);
  } catch (e) {
    server.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const served = serve(
    server,
    service,
    options,
    { address: path, family: "unix", port: 0 },
    `unix:${path}`,
    false,
  );
  return {
    ...served,
    async close() {
      await served.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function listen(server: net.Server, start: (done: () => void) => void): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    start(() => {
      server.off("error", reject);
      resolve();
    });
  });
}

function serve(
  server: http2.Http2Server | http2.Http2SecureServer,
  service: AdsServiceImpl,
  options: AdsServerOptions,
  address: AddressInfo,
  target: string,
  tls: boolean,
): AdsServer {
  const sessions = new Set<http2.ServerHttp2Session>();
  const pingIntervalMs = options.pingIntervalMs ?? 30_000;
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    const timer = setInterval(() => {
      if (!session.destroyed) session.ping(() => undefined);
    }, pingIntervalMs).unref();
    session.once("close", () => {
      clearInterval(timer);
      sessions.delete(session);
    });
  });
  return {
    address,
    target,
    tls,
    setTls(next) {
      if (!tls) throw new Error("this xDS server is plaintext: it has no certificates to replace");
      (server as http2.Http2SecureServer).setSecureContext({ cert: next.cert, key: next.key, ca: next.ca });
    },
    async close() {
      service.drain?.();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Let the ended streams' trailers reach the data planes before GOAWAY.
      await new Promise((r) => setImmediate(r));
      for (const session of sessions) session.close();
      const deadline = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, 2_000);
      await closed;
      clearTimeout(deadline);
    },
  };
}
