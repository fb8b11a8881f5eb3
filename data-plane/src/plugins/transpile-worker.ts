/**
 * Runs `transpile` (jco + the fuel/memory instrumentation: seconds of CPU for a QuickJS guest) on a
 * worker thread, so a data plane loading a new or rebuilt plugin keeps serving on its event loop.
 */
import { parentPort, workerData } from "node:worker_threads";
import { transpile } from "./compile.ts";

const { bytes, memoryMaxBytes } = workerData as { bytes: Uint8Array; memoryMaxBytes: number };
const t = await transpile(bytes, { memoryMaxBytes });
parentPort?.postMessage({ meta: t.meta, files: [...t.files] });
