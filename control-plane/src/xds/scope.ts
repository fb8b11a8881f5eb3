/**
 * What one xDS stream may see of a snapshot (Envoy SDS's and Istio's model): Secret resources go
 * only to an authenticated data plane (mTLS, whose node id is its certificate's identity, or the
 * private Unix socket of `agw run`), and only those named by the listeners and clusters that stream
 * receives. Every other type is the snapshot's own.
 *
 * A stream that receives every listener and cluster (SotW, a wildcard Delta subscription) sees the
 * snapshot's Secret set as is — the snapshot holds referenced Secrets only — so its identity is
 * kept and Delta streams still share the changes computed once per publication.
 */
import { TYPE_URL, type TypeUrl } from "@agw/core";
import { type Snapshot, type TypeSnapshot, typeSnapshot } from "./resources.ts";

/** How a stream's peer was authenticated; "plaintext" gets no Secret at all. */
export type XdsTransport = "mtls" | "unix" | "plaintext";

/** The listener or cluster names a stream receives: every one, or these. */
export type Subscribed = "all" | ReadonlySet<string>;

export interface StreamScope {
  transport: XdsTransport;
  listeners(): Subscribed;
  clusters(): Subscribed;
}

/** The Secret type an unauthenticated stream sees: always the same empty set. */
export const NO_SECRETS: TypeSnapshot = typeSnapshot([]);

const filtered = new WeakMap<TypeSnapshot, Map<string, TypeSnapshot>>();

function referencedBy(snap: TypeSnapshot | undefined, subscribed: Subscribed, into: Set<string>): void {
  if (!snap) return;
  const names = subscribed === "all" ? snap.resources.keys() : subscribed.values();
  for (const name of names) for (const s of snap.resources.get(name)?.secrets ?? []) into.add(s);
}

/** The Secret resources this stream may receive from `snapshot`. */
export function scopedSecrets(snapshot: Snapshot, scope: StreamScope): TypeSnapshot | undefined {
  const secrets = snapshot.get(TYPE_URL.secret);
  if (!secrets) return undefined;
  if (scope.transport === "plaintext") return NO_SECRETS;
  const listeners = scope.listeners();
  const clusters = scope.clusters();
  if (listeners === "all" && clusters === "all") return secrets;
  const names = new Set<string>();
  referencedBy(snapshot.get(TYPE_URL.listener), listeners, names);
  referencedBy(snapshot.get(TYPE_URL.cluster), clusters, names);
  const key = [...names].sort().join("\n");
  let byKey = filtered.get(secrets);
  if (!byKey) {
    byKey = new Map();
    filtered.set(secrets, byKey);
  }
  let view = byKey.get(key);
  if (!view) {
    view = typeSnapshot([...secrets.resources.values()].filter((r) => names.has(r.name)));
    byKey.set(key, view);
  }
  return view;
}

/** One type of `snapshot` as this stream sees it. */
export function typeView(snapshot: Snapshot, typeUrl: TypeUrl, scope: StreamScope): TypeSnapshot | undefined {
  return typeUrl === TYPE_URL.secret ? scopedSecrets(snapshot, scope) : snapshot.get(typeUrl);
}
