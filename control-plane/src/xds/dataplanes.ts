/** What the control plane knows about each connected data plane: the xDS state per stream and type. */

export interface TypeState {
  /** Version and nonce of the last response sent on this stream. */
  sentVersion: string;
  sentNonce: string;
  /** Version the data plane last ACKed (the config it runs for this type). */
  ackedVersion: string;
  ackedAt: string | undefined;
  lastNack: { version: string; nonce: string; message: string; at: string } | undefined;
}

export interface DataPlaneState {
  streamId: number;
  nodeId: string;
  connectedSince: string;
  types: Map<string, TypeState>;
}

export class DataPlaneRegistry {
  private readonly streams = new Map<number, DataPlaneState>();
  private nextId = 1;

  open(nodeId: string): DataPlaneState {
    const state: DataPlaneState = {
      streamId: this.nextId++,
      nodeId,
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
      connected_since: dp.connectedSince,
      types: Object.fromEntries(
        [...dp.types].map(([type, t]) => [
          type,
          {
            sent_version: t.sentVersion,
            acked_version: t.ackedVersion,
            acked_at: t.ackedAt,
            last_nack: t.lastNack,
          },
        ]),
      ),
    }));
  }
}
