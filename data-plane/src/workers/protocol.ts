/** Messages between the primary data plane thread and its worker threads. */
import type { TypeUrl } from "@agw/core";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import type { ObservabilityOptions } from "../observability/index.ts";
import type { ServingStatus } from "../serving.ts";
import type { BucketMemory } from "../shaping/bucket-table.ts";
import type { DeltaResource } from "../xds-client.ts";

export interface WorkerInit {
  /** 1..N-1; the primary thread is worker 0. */
  readonly index: number;
  readonly bindAddress: string | undefined;
  readonly observability: ObservabilityOptions | undefined;
  /** The primary's rate-limit buckets: shared memory, so a limit holds across every worker. */
  readonly bucketMemory: BucketMemory;
}

/**
 * Accepted xDS updates are forwarded as they came off the wire (protobuf Any bytes, structured-cloned)
 * and each worker decodes and builds its own RuntimeConfig: a built config (compiled router, TLS
 * contexts, plugin instances) cannot cross threads, and the bytes are small.
 */
export type WorkerRequest =
  | {
      readonly op: "sotw";
      readonly typeUrl: TypeUrl;
      readonly resources: Any[];
      readonly version: string;
      /** Plugin updates: the components the primary fetched and verified, by digest. */
      readonly components?: ReadonlyMap<string, Uint8Array> | undefined;
    }
  | {
      readonly op: "delta";
      readonly typeUrl: TypeUrl;
      readonly updated: DeltaResource[];
      readonly removed: string[];
      readonly version: string;
      readonly components?: ReadonlyMap<string, Uint8Array> | undefined;
    }
  | { readonly op: "status" }
  /** The worker's cumulative request counts (StatsCounts), for the fleet stats report. */
  | { readonly op: "stats" }
  | { readonly op: "drain"; readonly deadlineMs: number };

export interface WorkerStatus extends ServingStatus {
  readonly worker: number;
  readonly metrics: MetricObjectWithValues<MetricValue<string>>[];
}

export interface WorkerReply {
  readonly id: number;
  readonly ok: boolean;
  readonly value?: unknown;
  readonly error?: string;
}
