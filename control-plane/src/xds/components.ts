/**
 * Plugin components, held by digest for delivery to data planes (docs/plugins.md, "Delivery"). When
 * a snapshot is built, each plugin's component is read where its source says (a file the control
 * plane can read, or a Kubernetes ConfigMap's binaryData) and kept under the digest config.yaml pins
 * or, when it pins none, the bytes' own. The snapshot builder inlines small ones in the Plugin
 * resource; PluginComponentService serves the others, by digest, to data planes on their xDS
 * connection. Only digests of the current and the previous snapshot are held, so a data plane still
 * applying the previous snapshot can finish its fetch, and nothing else is ever served.
 */
import { open } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { IrPlugin, Logger } from "@agw/core";
import {
  type FetchComponentResponse,
  FetchComponentResponseSchema,
  type PluginComponentService,
} from "@agw/core/gen/agw/v1/plugin_pb.js";
import {
  COMPONENT_CHUNK_BYTES,
  COMPONENT_MAX_BYTES,
  componentDigest,
  isComponentDigest,
  isConfigMapSource,
} from "@agw/core/xds/plugin-component";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { peerNodeId } from "./ads-server.ts";

/**
 * Who may fetch a component: "any" peer the xDS server accepts (the peers that receive Plugin
 * resources), or only "authenticated" ones (mTLS, the Unix socket of `agw run`); then no component
 * is inlined either, so a plaintext stream gets none of their bytes.
 */
export type ComponentPolicy = "any" | "authenticated";

/** A component's bytes from a source the control plane knows, or a reason it has none. */
export type ComponentRead = { bytes: Uint8Array } | { error: string };

/** Reads "configmap:" sources (the Kubernetes provider's ConfigMaps). */
export type ConfigMapReader = (source: string) => ComponentRead;

async function readFileSource(source: string): Promise<ComponentRead> {
  const path = source.startsWith("file://") ? fileURLToPath(source) : source;
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(path, "r");
    const { size } = await handle.stat();
    if (size > COMPONENT_MAX_BYTES)
      return { error: `${path}: ${size} bytes, more than the ${COMPONENT_MAX_BYTES} a component may have` };
    return { bytes: new Uint8Array(await handle.readFile()) };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    await handle?.close();
  }
}

interface Held {
  bytes: Uint8Array;
  verified: boolean;
}

export class ComponentStore {
  private readonly log: Logger;
  /** digest → bytes; `verified`: the bytes hash to the digest (else the config pinned another). */
  private current = new Map<string, Held>();
  private previous = new Map<string, Held>();
  /** Errors already logged, by plugin: a source that stays unreadable is logged once. */
  private reported = new Map<string, string>();

  constructor(log: Logger) {
    this.log = log;
  }

  /**
   * `plugins` with digest and size filled in from their components, which are held from now on. A
   * component that cannot be read leaves its plugin as it was (a data plane refuses a plugin it
   * gets no bytes for, naming it); one whose bytes differ from its pinned digest is held under
   * that digest all the same, and every data plane refuses it as a digest mismatch.
   */
  async resolve(plugins: readonly IrPlugin[], configMaps?: ConfigMapReader): Promise<IrPlugin[]> {
    const next = new Map<string, Held>();
    const out: IrPlugin[] = [];
    const reported = new Map<string, string>();
    for (const p of plugins) {
      // Content-addressed: bytes known to hash to the digest are not read again.
      const known = p.digest !== "" ? (this.current.get(p.digest) ?? this.previous.get(p.digest)) : undefined;
      const held = known?.verified ? known.bytes : undefined;
      const read: ComponentRead = held
        ? { bytes: held }
        : isConfigMapSource(p.source)
          ? configMaps
            ? configMaps(p.source)
            : { error: "a configmap: source needs the Kubernetes source (--kube)" }
          : await readFileSource(p.source);
      if ("error" in read) {
        reported.set(p.name, read.error);
        if (this.reported.get(p.name) !== read.error)
          this.log.error(
            { plugin: p.name, source: p.source, error: read.error },
            "plugin component not readable: data planes will refuse the plugin",
          );
        out.push(p);
        continue;
      }
      const actual = held && p.digest !== "" ? p.digest : componentDigest(read.bytes);
      const digest = p.digest || actual;
      if (actual !== digest) {
        const error = `digest mismatch: config pins ${digest}, the component is ${actual}`;
        reported.set(p.name, error);
        if (this.reported.get(p.name) !== error)
          this.log.error(
            { plugin: p.name, source: p.source, expected: digest, actual },
            "plugin component does not match its pinned digest: data planes will refuse it",
          );
      }
      next.set(digest, { bytes: read.bytes, verified: actual === digest });
      out.push({ ...p, digest, size: read.bytes.byteLength });
    }
    this.reported = reported;
    const changed = next.size !== this.current.size || [...next.keys()].some((d) => !this.current.has(d));
    if (changed) this.previous = this.current;
    this.current = next;
    return out;
  }

  /** The bytes held under `digest` (current or previous snapshot), if any. */
  get(digest: string): Uint8Array | undefined {
    return (this.current.get(digest) ?? this.previous.get(digest))?.bytes;
  }
}

/**
 * PluginComponentService: a held component, by digest, to a peer checked as an xDS stream is
 * (peerNodeId: a trusted client certificate whose CN is the node id asked as) and allowed by
 * `policy`. Nothing but held digests is served: no path or name a client gives is ever opened.
 */
export function createComponentService(
  store: ComponentStore,
  policy: ComponentPolicy,
  log: Logger,
): ServiceImpl<typeof PluginComponentService> {
  return {
    async *fetchComponent(req, ctx: HandlerContext): AsyncGenerator<FetchComponentResponse> {
      const { id, peer } = peerNodeId(ctx, req.nodeId);
      if (policy === "authenticated" && peer.transport === "plaintext") {
        log.warn(
          { node: id, peer: peer.address, digest: req.digest },
          "plugin component refused: plaintext TCP is unauthenticated (--plugin-components authenticated)",
        );
        throw new ConnectError(
          "plugin components go only to authenticated data planes (mTLS or agw run's Unix socket): this connection is plaintext TCP",
          Code.Unauthenticated,
        );
      }
      if (!isComponentDigest(req.digest))
        throw new ConnectError(`not a component digest: ${JSON.stringify(req.digest)}`, Code.InvalidArgument);
      const bytes = store.get(req.digest);
      if (!bytes)
        throw new ConnectError(
          `no plugin component ${req.digest} in the control plane's snapshot`,
          Code.NotFound,
        );
      log.info({ node: id, digest: req.digest, bytes: bytes.byteLength }, "plugin component served");
      for (let at = 0; at < bytes.byteLength; at += COMPONENT_CHUNK_BYTES)
        yield create(FetchComponentResponseSchema, { chunk: bytes.subarray(at, at + COMPONENT_CHUNK_BYTES) });
    },
  };
}
