/**
 * Holds the current snapshot and tells streams when it changed. Streams compare per-type (SotW) or
 * per-resource (Delta) versions, so a change to one resource sends only that resource. What changed
 * between two consecutive publications is computed once here, and every Delta stream that had the
 * previous snapshot applies it as is instead of comparing every resource itself.
 *
 * Change storms are throttled: the first change after a quiet period is published at once (no
 * added latency for a lone edit); further changes within `minIntervalMs` of a publication are
 * coalesced into one publication when the interval ends. A storm of 1000 endpoint updates in a
 * second therefore becomes about 1000 / minIntervalMs pushes, each delayed at most minIntervalMs.
 */
import type { TypeUrl } from "@agw/core";
import type { Snapshot, TypeSnapshot, VersionedResource } from "./resources.ts";

/** One type's difference between two consecutive publications. */
export interface TypeChanges {
  from: TypeSnapshot;
  to: TypeSnapshot;
  /** Resources added or whose version changed, in `to`'s (name) order. */
  updated: VersionedResource[];
  removed: string[];
}

function typeChanges(from: TypeSnapshot, to: TypeSnapshot): TypeChanges {
  // The builder replaced resources of `from` (same names): it knows what, no need to compare 10,000.
  if (to.changedFrom?.from.deref() === from)
    return { from, to, updated: [...to.changedFrom.updated], removed: [] };
  const updated: VersionedResource[] = [];
  for (const r of to.resources.values())
    if (from.resources.get(r.name)?.version !== r.version) updated.push(r);
  const removed: string[] = [];
  for (const name of from.resources.keys()) if (!to.resources.has(name)) removed.push(name);
  return { from, to, updated, removed };
}

export interface SnapshotCacheOptions {
  /** Minimum time between two publications; 0 publishes every change. */
  minIntervalMs?: number;
}

export const DEFAULT_MIN_INTERVAL_MS = 100;

export class SnapshotCache {
  private published: Snapshot | undefined;
  private pending: Snapshot | undefined;
  private changes = new Map<TypeUrl, TypeChanges>();
  private lastPublishedAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private readonly minIntervalMs: number;
  private readonly watchers = new Set<() => void>();
  /** Snapshots set vs published, for the admin endpoint: shows how much a storm was coalesced. */
  readonly stats = { set: 0, published: 0 };

  constructor(options: SnapshotCacheOptions = {}) {
    this.minIntervalMs = options.minIntervalMs ?? DEFAULT_MIN_INTERVAL_MS;
  }

  /** Undefined until the first valid config: streams wait rather than push an empty config. */
  get snapshot(): Snapshot | undefined {
    return this.published;
  }

  set(snapshot: Snapshot): void {
    this.stats.set++;
    this.pending = snapshot;
    if (this.timer) return;
    const wait = this.lastPublishedAt + this.minIntervalMs - performance.now();
    if (wait <= 0) this.publish();
    else this.timer = setTimeout(() => this.publish(), wait);
  }

  /** Publishes a pending snapshot now (shutdown, tests). */
  flush(): void {
    if (this.pending) this.publish();
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** What the last publication changed in a type (undefined: the type is new or unchanged). */
  changesOf(typeUrl: TypeUrl): TypeChanges | undefined {
    return this.changes.get(typeUrl);
  }

  /** Calls `onChange` after every publication; returns the unsubscribe function. */
  watch(onChange: () => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }

  private publish(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pending) return;
    const previous = this.published;
    this.changes = new Map();
    for (const [typeUrl, to] of this.pending) {
      const from = previous?.get(typeUrl);
      if (from && from !== to) this.changes.set(typeUrl, typeChanges(from, to));
    }
    this.published = this.pending;
    this.pending = undefined;
    this.lastPublishedAt = performance.now();
    this.stats.published++;
    for (const watcher of this.watchers) watcher();
  }
}
