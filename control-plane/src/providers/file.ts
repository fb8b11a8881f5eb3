/**
 * Watches config.yaml, and loads and translates it off the event loop (config-loader.ts). The
 * directory is watched rather than the file, so saves that replace the file (editors writing a temp
 * file and renaming it, Kubernetes ConfigMap symlink swaps) are seen.
 * Events are debounced, identical content is ignored, and an invalid file is reported and never
 * replaces the last good config.
 */
import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { ConfigError, type Ir, type Logger } from "@agw/core";
import { OffThreadConfigLoader } from "./config-loader.ts";

export interface FileProviderEvents {
  /** A valid file, translated. */
  onConfig(ir: Ir): void;
  onInvalid(errors: ConfigError[]): void;
}

const DEBOUNCE_MS = 50;

export class FileProvider {
  private readonly file: string;
  private readonly events: FileProviderEvents;
  private readonly log: Logger;
  private watcher: FSWatcher | undefined;
  /**
   * Directories of the secret files and plugin components config.yaml names, so a renewed
   * certificate or a rebuilt component is pushed too.
   */
  private readonly secretWatchers = new Map<string, FSWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private lastHash = "";
  private loading: Promise<void> = Promise.resolve();
  /** Parsing and validating happen off the event loop that may be serving (agw run). */
  private readonly loader = new OffThreadConfigLoader();
  private stopped = false;

  constructor(file: string, events: FileProviderEvents, log: Logger) {
    this.file = resolve(file);
    this.events = events;
    this.log = log;
  }

  /** Loads once, then watches. Resolves after the first load, valid or not. */
  async start(): Promise<void> {
    this.watcher = watch(dirname(this.file), { persistent: false }, () => this.schedule());
    this.watcher.on("error", (err) => this.log.error({ err, file: this.file }, "config watch failed"));
    await this.reload();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.watcher?.close();
    for (const w of this.secretWatchers.values()) w.close();
    this.secretWatchers.clear();
    this.loader.stop();
  }

  private watchSecretDirs(files: readonly string[]): void {
    const dirs = new Set(files.map((f) => dirname(f)));
    dirs.delete(dirname(this.file));
    for (const [dir, w] of this.secretWatchers) {
      if (dirs.has(dir)) continue;
      w.close();
      this.secretWatchers.delete(dir);
    }
    for (const dir of dirs) {
      if (this.secretWatchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, () => this.schedule());
        w.on("error", (err) => this.log.error({ err, dir }, "secret/plugin watch failed"));
        this.secretWatchers.set(dir, w);
      } catch (err) {
        this.log.error({ err, dir }, "secret/plugin watch failed");
      }
    }
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.loading = this.loading.then(() => this.reload());
    }, DEBOUNCE_MS);
  }

  /**
   * Never rejects: a failure while applying a valid file is reported as an error of the file (the
   * last good config stays), and the reload chain goes on to the next save.
   */
  private async reload(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.apply();
    } catch (e) {
      this.lastHash = "";
      try {
        this.events.onInvalid([new ConfigError(this.file, 0, [], `not applied: ${(e as Error).message}`)]);
      } catch (err) {
        this.log.error({ err, file: this.file }, "config reload failed");
      }
    }
  }

  private async apply(): Promise<void> {
    const result = await this.loader.load(this.file);
    if (!result.ok) {
      const text = result.errors.map(String).join("\n");
      const hash = createHash("sha256").update(text).digest("hex");
      if (hash === this.lastHash) return;
      this.lastHash = hash;
      this.events.onInvalid(result.errors);
      return;
    }
    this.watchSecretDirs([...result.secretFiles, ...result.pluginFiles]);
    if (result.hash === this.lastHash) return;
    this.lastHash = result.hash;
    this.log.info({ file: basename(this.file) }, "config loaded");
    this.events.onConfig(result.ir);
  }
}
