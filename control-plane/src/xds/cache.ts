/**
 * Holds the current snapshot and tells streams when it changed. Streams compare per-type versions
 * themselves, so a change to one type pushes only that type.
 */
import type { Snapshot } from "./resources.ts";

export class SnapshotCache {
  private current: Snapshot | undefined;
  private readonly watchers = new Set<() => void>();

  /** Undefined until the first valid config: streams wait rather than push an empty config. */
  get snapshot(): Snapshot | undefined {
    return this.current;
  }

  set(snapshot: Snapshot): void {
    this.current = snapshot;
    for (const watcher of this.watchers) watcher();
  }

  /** Calls `onChange` after every set; returns the unsubscribe function. */
  watch(onChange: () => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }
}
