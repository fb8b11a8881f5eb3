/**
 * The primary data plane's worker threads (`--workers N`: the primary is worker 0, N-1 threads here).
 * One xDS stream per data plane, on the primary: every update the primary accepted is forwarded to
 * every worker, and the primary ACKs once they have all applied it.
 */
import { Worker } from "node:worker_threads";
import type { Logger } from "@agw/core";
import type { StatsCounts } from "../observability/metrics.ts";
import type { WorkerInit, WorkerReply, WorkerRequest, WorkerStatus } from "./protocol.ts";

class WorkerThread {
  readonly index: number;
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private nextId = 1;
  private exited: Error | null = null;

  constructor(init: WorkerInit, log: Logger) {
    this.index = init.index;
    this.worker = new Worker(new URL("./worker.ts", import.meta.url), { workerData: init });
    this.worker.on("message", (reply: WorkerReply) => {
      const p = this.pending.get(reply.id);
      if (p === undefined) return;
      this.pending.delete(reply.id);
      if (reply.ok) p.resolve(reply.value);
      else p.reject(new Error(`worker ${this.index}: ${reply.error}`));
    });
    this.worker.on("error", (err) => log.error({ err, worker: this.index }, "worker failed"));
    this.worker.on("exit", (code) => {
      this.exited = new Error(`worker ${this.index} exited with code ${code}`);
      for (const p of this.pending.values()) p.reject(this.exited);
      this.pending.clear();
    });
  }

  call(req: WorkerRequest): Promise<unknown> {
    if (this.exited !== null) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, req });
    });
  }

  async terminate(): Promise<void> {
    if (this.exited === null) await this.worker.terminate();
  }
}

export class WorkerGroup {
  private readonly threads: WorkerThread[] = [];
  private readonly log: Logger;

  /** Starts `count` worker threads (indexes 1..count). */
  constructor(count: number, init: Omit<WorkerInit, "index">, log: Logger) {
    this.log = log;
    for (let i = 1; i <= count; i++) this.threads.push(new WorkerThread({ ...init, index: i }, log));
  }

  get size(): number {
    return this.threads.length;
  }

  /**
   * An update the primary accepted. A worker that fails it (it decodes the same bytes the same way,
   * so only a local failure such as a port another process holds) keeps its previous config; the
   * error is logged rather than NACKed, since the primary already serves the update.
   */
  async forward(req: WorkerRequest): Promise<void> {
    const results = await Promise.allSettled(this.threads.map((t) => t.call(req)));
    for (const r of results)
      if (r.status === "rejected") this.log.error({ err: r.reason }, "worker rejected an accepted update");
  }

  async status(): Promise<WorkerStatus[]> {
    return (await Promise.all(this.threads.map((t) => t.call({ op: "status" })))) as WorkerStatus[];
  }

  /** Every worker's cumulative request counts. */
  async counts(): Promise<StatsCounts[]> {
    return (await Promise.all(this.threads.map((t) => t.call({ op: "stats" })))) as StatsCounts[];
  }

  /** Drains every worker (see drainProxies); resolves with the connections cut at the deadline. */
  async drain(deadlineMs: number): Promise<number> {
    const cut = await Promise.allSettled(this.threads.map((t) => t.call({ op: "drain", deadlineMs })));
    return cut.reduce((n, r) => n + (r.status === "fulfilled" ? (r.value as number) : 0), 0);
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.terminate()));
  }
}
