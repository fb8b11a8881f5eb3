/** What the control plane knows about each connected data plane: the xDS state per stream and type. */
import type { XdsTransport } from "./scope.ts";

export interface TypeState {
  /** Version and nonce of the last response sent on this stream. */
  sentVersion: string;
  sentNonce: string;
  /** Version the data plane last ACKed (the config it runs for this type). */
  ackedVersion: string;
  ackedAt: string | undefined;
  lastNack: { version: string; nonce: string; message: string; at: string } | undefined;
  /** Responses and gRPC message bytes sent for this type on this stream; ACKs and NACKs received. */
  responses: number;
  bytes: number;
  acks: number;
  nacks: number;
}

export function newTypeState(): TypeState {
  return {
    sentVersion: "",
    sentNonce: "",
    ackedVersion: "",
    ackedAt: undefined,
    lastNack: undefined,
    responses: 0,
    bytes: 0,
    acks: 0,
    nacks: 0,
  };
}

export interface DataPlaneState {
  streamId: number;
  nodeId: string;
  protocol: "sotw" | "delta";
  /** Remote address of the stream's connection. */
  peer: string;
  /** Identity from the client certificate (mTLS), if any. */
  identity: string | undefined;
  /** How the stream was authenticated: mTLS, the private Unix socket, or not at all (no Secrets). */
  transport: XdsTransport;
  connectedSince: string;
  types: Map<string, TypeState>;
}

export class DataPlaneRegistry {
  private readonly streams = new Map<number, DataPlaneState>();
  private nextId = 1;

  open(
    init: Pick<DataPlaneState, "nodeId" | "protocol" | "peer" | "identity" | "transport">,
  ): DataPlaneState {
    const state: DataPlaneState = {
      ...init,
      streamId: this.nextId++,
      connectedSince: new Date().toISOString(),
      types: new Map(),
    };
    this.streams.set(state.streamId, state);
    return state;
  }

  close(state: DataPlaneState): void {
    this.streams.delete(state.streamId);
  }

  list(): DataPlaneState[] {
    return [...this.streams.values()];
  }

  /** JSON for the admin endpoint. */
  toJSON(): unknown {
    return this.list().map((dp) => ({
      node_id: dp.nodeId,
      stream_id: dp.streamId,
      protocol: dp.protocol,
      peer: dp.peer,
      identity: dp.identity,
      transport: dp.transport,
      secrets: dp.transport === "plaintext" ? "withheld (unauthenticated)" : "referenced only",
      connected_since: dp.connectedSince,
      types: Object.fromEntries(
        [...dp.types].map(([type, t]) => [
          type,
          {
            sent_version: t.sentVersion,
            acked_version: t.ackedVersion,
            acked_at: t.ackedAt,
            in_sync: t.sentNonce !== "" && t.ackedVersion === t.sentVersion,
            last_nack: t.lastNack,
            responses: t.responses,
            bytes: t.bytes,
            acks: t.acks,
            nacks: t.nacks,
          },
        ]),
      ),
    }));
  }
}
