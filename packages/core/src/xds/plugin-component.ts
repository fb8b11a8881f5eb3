/**
 * How a plugin's component travels from the control plane to data planes (docs/plugins.md,
 * "Delivery"): content-addressed by its sha256 digest, inline in the agw.v1.Plugin resource when
 * small, otherwise fetched by digest from the control plane over the xDS connection. Both sides read
 * their bounds from here.
 */
import { createHash } from "node:crypto";

/**
 * Largest component sent inline. SotW sends every Plugin of a snapshot in one DiscoveryResponse, and
 * gRPC implementations commonly refuse messages over 4 MiB by default: 256 KiB keeps a dozen inline
 * plugins under that, holds WAT, C and Rust guests (a few KB to a few hundred), and sends JS guests
 * (1.6 MB with QuickJS, several MB with componentize-js) by digest, fetched once per data plane and
 * change rather than re-sent with every Plugin update.
 */
export const INLINE_COMPONENT_MAX_BYTES = 256 * 1024;

/** Largest component either side handles (read, served or fetched). */
export const COMPONENT_MAX_BYTES = 64 * 1024 * 1024;

/** Chunk size of PluginComponentService.FetchComponent responses. */
export const COMPONENT_CHUNK_BYTES = 256 * 1024;

/** How long a data plane waits for one component before the update is NACKed. */
export const COMPONENT_FETCH_TIMEOUT_MS = 60_000;

/** "sha256:<hex>" of `bytes`: the one digest of a component. */
export function componentDigest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Whether `digest` is a well-formed component digest. */
export function isComponentDigest(digest: string): boolean {
  return /^sha256:[0-9a-f]{64}$/.test(digest);
}

const CONFIGMAP_PREFIX = "configmap:";

/** A plugin source "configmap:NAMESPACE/NAME/KEY": a key of a Kubernetes ConfigMap's binaryData. */
export function isConfigMapSource(source: string): boolean {
  return source.startsWith(CONFIGMAP_PREFIX);
}

export interface ConfigMapKeyRef {
  namespace: string;
  name: string;
  key: string;
}

/** The ConfigMap key a "configmap:" source names, or undefined when it is malformed. */
export function configMapSource(source: string): ConfigMapKeyRef | undefined {
  if (!isConfigMapSource(source)) return undefined;
  const parts = source.slice(CONFIGMAP_PREFIX.length).split("/");
  if (parts.length !== 3 || parts.some((p) => p === "")) return undefined;
  const [namespace, name, key] = parts as [string, string, string];
  return { namespace, name, key };
}
