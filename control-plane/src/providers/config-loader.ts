/**
 * Loads config.yaml (read, YAML parse, schema and semantic checks: `loadConfigFile`) and translates
 * it to IR on a worker thread of its own. For 20,000 routes that is seconds of CPU and of garbage
 * collection; on the main thread it stalled the requests `agw run` proxies on the same event loop
 * for 6.6 s. The worker is started on the first load, kept for the next ones, and does not keep the
 * process alive. Its start (importing the loader and translator a second time) is 0.8 s of
 * `agw run`'s start-up; loading the first file on the main thread and booting the worker beside the
 * rest of the start-up was tried (bench/RESULTS.md, 2026-12-03): an edit made in the first seconds
 * then waited for the worker's boot, over a second on a loaded machine.
 */
import { createHash } from "node:crypto";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { ConfigError, type Ir, type IrCluster, type IrRoute, loadConfigFile } from "@agw/core";
import { translateConfig } from "../translator.ts";

/** A valid file's IR, the hash of its config (equal configs, equal hashes) and the files it reads. */
export type LoadResult =
  | { ok: true; ir: Ir; hash: string; secretFiles: string[]; pluginFiles: string[] }
  | { ok: false; errors: ConfigError[] };

async function loadAndTranslate(file: string): Promise<LoadResult> {
  const loaded = await loadConfigFile(file);
  if (!loaded.ok) return loaded;
  const hash = createHash("sha256").update(JSON.stringify(loaded.config)).digest("hex");
  return {
    ok: true,
    ir: translateConfig(loaded.config),
    hash,
    secretFiles: loaded.secretFiles,
    pluginFiles: loaded.pluginFiles,
  };
}

const ROLE = "agw-config-loader";

/**
 * A load's answer, in parts: a large IR cloned in one message took the main thread seconds to
 * deserialize (1.6 s for 20,000 routes on a busy machine), so routes and clusters come a few hundred
 * at a time, each part sent when the main thread asks for it after a turn of its event loop (a port
 * delivers all its queued messages in one go, which would be one long task again).
 */
type Reply =
  | { id: number; routes: IrRoute[]; listener: number }
  | { id: number; clusters: IrCluster[] }
  | { id: number; result: LoadResult }
  | { id: number; error: string };

type Request = { id: number; file: string } | { id: number; next: true };

const PART = 256;
const MAX_HEAP_MB = 1024;

if (!isMainThread && workerData === ROLE && parentPort) {
  const port = parentPort;
  const queued = new Map<number, Reply[]>();
  const send = (id: number) => {
    const parts = queued.get(id);
    const reply = parts?.shift();
    if (parts?.length === 0) queued.delete(id);
    if (reply) port.postMessage(reply);
  };
  port.on("message", async (req: Request) => {
    if ("next" in req) return send(req.id);
    const { id, file } = req;
    const parts: Reply[] = [];
    try {
      const result = await loadAndTranslate(file);
      if (result.ok) {
        const { ir } = result;
        ir.listeners.forEach((l, i) => {
          for (let at = 0; at < l.routes.length; at += PART)
            parts.push({ id, listener: i, routes: l.routes.slice(at, at + PART) });
          l.routes = [];
        });
        for (let at = 0; at < ir.clusters.length; at += PART)
          parts.push({ id, clusters: ir.clusters.slice(at, at + PART) });
        ir.clusters = [];
      }
      parts.push({ id, result });
    } catch (e) {
      parts.push({ id, error: (e as Error).message });
    }
    queued.set(id, parts);
    send(id);
  });
}

interface Pending {
  file: string;
  resolve: (r: LoadResult) => void;
  routes: Map<number, IrRoute[]>;
  clusters: IrCluster[];
}

export class OffThreadConfigLoader {
  private worker: Worker | undefined;
  private stopped = false;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();

  /** The file's IR or its errors; a crashed load is an error of the file. */
  async load(file: string): Promise<LoadResult> {
    // A reload scheduled before stop() must not start a worker after it (it kept the process alive).
    if (this.stopped) return failure(file, "the config loader was stopped");
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, { file, resolve, routes: new Map(), clusters: [] });
      this.start().postMessage({ id, file } satisfies Request);
    });
  }

  /** Ends the worker; loads in flight end as errors. */
  stop(): void {
    this.stopped = true;
    const worker = this.worker;
    this.worker = undefined;
    void worker?.terminate();
    this.failAll("the config loader was stopped");
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // The heap cap makes a file that would exhaust memory end this worker (ERR_WORKER_OUT_OF_MEMORY,
    // reported as an error of the file), not the process; the loader's own bounds keep real files far
    // below it (docs/security.md, "Config input").
    const worker = new Worker(new URL(import.meta.url), {
      workerData: ROLE,
      resourceLimits: { maxOldGenerationSizeMb: MAX_HEAP_MB },
    });
    worker.unref();
    worker.on("message", (reply: Reply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      if ("routes" in reply || "clusters" in reply) {
        if ("routes" in reply) {
          const list = waiting.routes.get(reply.listener) ?? [];
          for (const r of reply.routes) list.push(r);
          waiting.routes.set(reply.listener, list);
        } else for (const c of reply.clusters) waiting.clusters.push(c);
        setImmediate(() => this.worker?.postMessage({ id: reply.id, next: true } satisfies Request));
        return;
      }
      this.pending.delete(reply.id);
      if ("error" in reply) {
        waiting.resolve(failure(waiting.file, reply.error));
        return;
      }
      const result = reply.result;
      if (result.ok) {
        result.ir.listeners.forEach((l, i) => {
          l.routes = waiting.routes.get(i) ?? [];
        });
        result.ir.clusters = waiting.clusters;
      } else {
        // Structured cloning keeps the fields of a ConfigError, not its class.
        for (const e of result.errors) Object.setPrototypeOf(e, ConfigError.prototype);
      }
      waiting.resolve(result);
    });
    const lost = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.failAll(why);
    };
    worker.on("error", (err) => lost(`the config loader failed: ${err.message}`));
    worker.on("exit", (code) => lost(`the config loader exited (${code})`));
    this.worker = worker;
    return worker;
  }

  private failAll(why: string): void {
    for (const [id, { file, resolve }] of this.pending) {
      this.pending.delete(id);
      resolve(failure(file, why));
    }
  }
}

function failure(file: string, message: string): LoadResult {
  return { ok: false, errors: [new ConfigError(file, 0, [], message)] };
}
