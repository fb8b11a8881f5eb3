/**
 * A worker thread of a data plane started with several workers: its own serving unit (listeners bound
 * with SO_REUSEPORT next to the primary's, so the kernel spreads connections; engine, upstream pool,
 * metrics), fed with the xDS updates the primary accepted. It has no xDS stream and no admin.
 */
import { parentPort, workerData } from "node:worker_threads";
import { createLogger } from "@agw/core";
import { ServingUnit } from "../serving.ts";
import type { WorkerInit, WorkerReply, WorkerRequest, WorkerStatus } from "./protocol.ts";

const init = workerData as WorkerInit;
const port = parentPort;
if (port === null) throw new Error("data-plane/src/workers/worker.ts runs as a worker thread");
/** Components of the update being applied, from the primary (which fetched and verified them). */
let components: ReadonlyMap<string, Uint8Array> = new Map();
const serving = await ServingUnit.start({
  log: createLogger("data-plane").child({ worker: init.index }),
  bindAddress: init.bindAddress,
  observability: init.observability,
  reusePort: true,
  bucketMemory: init.bucketMemory,
  fetchComponent: async (digest) => {
    const bytes = components.get(digest);
    if (!bytes) throw new Error("the primary thread did not pass this component");
    return bytes;
  },
});

/** Updates apply one after another, in the order the primary accepted them. */
let updates: Promise<unknown> = Promise.resolve();

function inOrder(apply: () => Promise<void>): Promise<unknown> {
  // A rejected update does not stop the next one (the store kept its previous state).
  updates = updates.then(apply, apply);
  return updates;
}

async function handle(req: WorkerRequest): Promise<unknown> {
  switch (req.op) {
    case "sotw":
      return inOrder(() => {
        components = req.components ?? components;
        return serving.apply(req.typeUrl, req.resources, req.version);
      });
    case "delta":
      return inOrder(() => {
        components = req.components ?? components;
        return serving.applyDelta(req.typeUrl, req.updated, req.removed, req.version);
      });
    case "status":
      return {
        worker: init.index,
        ...serving.status(),
        metrics: await serving.observer.metrics.registry.getMetricsAsJSON(),
      } satisfies WorkerStatus;
    case "stats":
      return serving.observer.metrics.counts();
    case "drain": {
      const cut = await serving.drain(req.deadlineMs);
      await serving.close();
      return cut;
    }
  }
}

port.on("message", (message: { id: number; req: WorkerRequest }) => {
  handle(message.req).then(
    (value) => port.postMessage({ id: message.id, ok: true, value } satisfies WorkerReply),
    (e: unknown) =>
      port.postMessage({ id: message.id, ok: false, error: (e as Error).message } satisfies WorkerReply),
  );
});
