/**
 * List + watch of one resource into a local store, the way client-go's reflector does it:
 * a paged list gives the store and a resourceVersion; the watch resumes from the last version it
 * saw (bookmarks included, so quiet resources do not fall behind); a 410 Gone (the version was
 * compacted) relists; any other break re-watches after a bounded backoff. client-node's
 * ListWatch has neither bookmarks nor paging, so this wraps its Watch instead.
 */
import type { Logger } from "@agw/core";
import { type KubernetesObject, Watch } from "@kubernetes/client-node";
import { KubeApiError, type KubeClient } from "./client.ts";

export interface InformerOptions {
  client: KubeClient;
  /** Collection path, e.g. /api/v1/services or /apis/discovery.k8s.io/v1/namespaces/ns/endpointslices. */
  path: string;
  fieldSelector?: string;
  labelSelector?: string;
  log: Logger;
  /**
   * Called after the store changed (not for bookmarks or relists that changed nothing), with the
   * keys (objectKey: "namespace/name", "/name" when cluster-scoped) of the objects that changed.
   */
  onChange: (keys: readonly string[]) => void;
  /**
   * A 403 on the list counts as empty (logged, checked again like a missing CRD): for the
   * cluster-scoped extras a namespace-bound control plane may not be granted.
   */
  forbiddenIsEmpty?: boolean;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;
/** The server ends each watch after this; it is resumed from the last resourceVersion. */
const WATCH_TIMEOUT_SECONDS = 240;

export function objectKey(o: KubernetesObject): string {
  return `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;
}

export class Informer<T extends KubernetesObject> {
  readonly path: string;
  private readonly options: InformerOptions;
  private readonly store = new Map<string, T>();
  private readonly watcher: Watch;
  private resourceVersion = "";
  private abort: AbortController | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoffMs = BACKOFF_MIN_MS;
  private stopped = false;
  /** The API server does not serve this resource (a CRD not installed yet): empty, checked again. */
  private notServed = false;
  /** Counters for the admin API and tests. */
  readonly stats = { lists: 0, watches: 0, bookmarks: 0, gone: 0, errors: 0 };

  constructor(options: InformerOptions) {
    this.options = options;
    this.path = options.path;
    this.watcher = new Watch(options.client.config);
  }

  values(): T[] {
    return [...this.store.values()];
  }

  /** Lists (retrying until it succeeds or stop()), then watches in the background. */
  async start(): Promise<void> {
    await this.relistUntilDone();
    this.watch();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.abort?.abort();
  }

  /**
   * Replaces the store with a fresh list. Used on start, on 410 and by the periodic resync; a
   * resync that finds what the watch already delivered changes nothing downstream.
   */
  async relist(): Promise<void> {
    const query: Record<string, string> = {};
    if (this.options.fieldSelector) query.fieldSelector = this.options.fieldSelector;
    if (this.options.labelSelector) query.labelSelector = this.options.labelSelector;
    const { items, resourceVersion } = await this.options.client.listAll<T>(this.path, query);
    this.stats.lists++;
    const next = new Map(items.map((o) => [objectKey(o), o]));
    const changed = [
      ...[...next]
        .filter(([k, o]) => this.store.get(k)?.metadata?.resourceVersion !== o.metadata?.resourceVersion)
        .map(([k]) => k),
      ...[...this.store.keys()].filter((k) => !next.has(k)),
    ];
    this.store.clear();
    for (const [k, o] of next) this.store.set(k, o);
    this.resourceVersion = resourceVersion;
    if (changed.length > 0) this.options.onChange(changed);
  }

  private async relistUntilDone(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      try {
        await this.relist();
        if (this.notServed) this.options.log.info({ path: this.path }, "resource is served now");
        this.notServed = false;
        return;
      } catch (err) {
        const forbidden = err instanceof KubeApiError && err.status === 403 && this.options.forbiddenIsEmpty;
        if ((err instanceof KubeApiError && err.status === 404) || forbidden) {
          if (!this.notServed)
            this.options.log.warn(
              { path: this.path },
              `${forbidden ? "not permitted (403)" : "not served by the API server (CRD not installed?)"}; treated as empty, checked every ${BACKOFF_MAX_MS / 1000} s`,
            );
          this.notServed = true;
          this.resourceVersion = "";
          if (this.store.size > 0) {
            const keys = [...this.store.keys()];
            this.store.clear();
            this.options.onChange(keys);
          }
          return;
        }
        this.stats.errors++;
        this.options.log.warn({ err: String(err), path: this.path }, "list failed; retrying");
        await new Promise((r) => {
          this.retryTimer = setTimeout(r, this.nextBackoff());
        });
      }
    }
  }

  private nextBackoff(): number {
    const ms = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    return ms * (0.5 + Math.random() / 2);
  }

  private retry(relistFirst: boolean): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(
      async () => {
        if (relistFirst) await this.relistUntilDone();
        this.watch();
      },
      relistFirst ? 0 : this.nextBackoff(),
    );
  }

  private watch(): void {
    if (this.stopped) return;
    if (this.notServed) {
      this.retryTimer = setTimeout(async () => {
        await this.relistUntilDone();
        this.watch();
      }, BACKOFF_MAX_MS);
      return;
    }
    this.stats.watches++;
    let gone = false;
    const query: Record<string, string | number | boolean> = {
      allowWatchBookmarks: true,
      resourceVersion: this.resourceVersion,
      timeoutSeconds: WATCH_TIMEOUT_SECONDS,
    };
    if (this.options.fieldSelector) query.fieldSelector = this.options.fieldSelector;
    if (this.options.labelSelector) query.labelSelector = this.options.labelSelector;
    this.watcher
      .watch(
        this.path,
        query,
        (phase: string, obj: T & { code?: number }) => {
          const rv = obj?.metadata?.resourceVersion;
          switch (phase) {
            case "ADDED":
            case "MODIFIED":
              this.store.set(objectKey(obj), obj);
              break;
            case "DELETED":
              this.store.delete(objectKey(obj));
              break;
            case "BOOKMARK":
              this.stats.bookmarks++;
              this.backoffMs = BACKOFF_MIN_MS;
              if (rv) this.resourceVersion = rv;
              return;
            case "ERROR":
              if (obj.code === 410) gone = true;
              else this.options.log.warn({ status: obj, path: this.path }, "watch error event");
              return;
            default:
              return;
          }
          this.backoffMs = BACKOFF_MIN_MS;
          if (rv) this.resourceVersion = rv;
          this.options.onChange([objectKey(obj)]);
        },
        (err: unknown) => {
          this.abort = undefined;
          if (this.stopped) return;
          const status = (err as { statusCode?: number } | null)?.statusCode;
          if (status === 404) {
            // The resource went away (its CRD was deleted): the relist finds out and empties the store.
            this.retry(true);
            return;
          }
          if (gone || status === 410 || (err instanceof KubeApiError && err.status === 410)) {
            this.stats.gone++;
            this.options.log.info({ path: this.path }, "watch resourceVersion expired (410); relisting");
            this.retry(true);
            return;
          }
          // client-node ends a watch that was silent for 30 s (TimeoutError): resume, quietly.
          const name = (err as Error | null)?.name;
          if (err && name !== "AbortError" && name !== "TimeoutError") {
            this.stats.errors++;
            this.options.log.warn({ err: String(err), path: this.path }, "watch broke; resuming");
          }
          this.retry(false);
        },
      )
      .then(
        (abort) => {
          if (this.stopped) abort.abort();
          else this.abort = abort;
        },
        (err: unknown) => {
          this.stats.errors++;
          this.options.log.warn({ err: String(err), path: this.path }, "watch failed to start");
          this.retry(false);
        },
      );
  }
}
