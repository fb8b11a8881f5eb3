/**
 * Whether the data planes run a route object's resources, from what the control plane knows of
 * each stream (xds/dataplanes.ts): the version of each type every data plane last ACKed, and its
 * last NACK. A route is programmed when every connected data plane has ACKed a publication in which
 * the route's Route resources and its Listener had the versions they have now. Publications are
 * remembered for the last HISTORY versions of each type, which is what lets a data plane that
 * ACKed an older publication still count for the routes that publication already carried.
 */
import { TYPE_URL, type TypeUrl } from "@agw/core/xds/types";
import type { SnapshotCache } from "../../xds/cache.ts";
import type { DataPlaneRegistry, TypeState } from "../../xds/dataplanes.ts";
import { routeResourceName, type TypeSnapshot } from "../../xds/resources.ts";
import type { Condition } from "./translate.ts";

const HISTORY = 64;
const TRACKED: TypeUrl[] = [TYPE_URL.listener, TYPE_URL.route];
/** Data plane names listed in a condition message at most. */
const NAMED = 5;

export type ProgramState = Omit<Condition, "type">;

function names(list: string[]): string {
  return list.length <= NAMED
    ? list.join(", ")
    : `${list.slice(0, NAMED).join(", ")} and ${list.length - NAMED} more`;
}

/** Does a NACK's message (data-plane/src/runtime/build.ts ResourceError) name one of `resources`? */
function mentionsAny(message: string, resources: string[]): boolean {
  return resources.some((r) => message.includes(`${r}:`));
}

export class ProgramTracker {
  private readonly cache: SnapshotCache;
  private readonly registry: DataPlaneRegistry;
  private readonly history = new Map<TypeUrl, Map<string, TypeSnapshot>>(TRACKED.map((t) => [t, new Map()]));
  private readonly unwatch: () => void;

  constructor(cache: SnapshotCache, registry: DataPlaneRegistry) {
    this.cache = cache;
    this.registry = registry;
    this.unwatch = cache.watch(() => this.record());
    this.record();
  }

  close(): void {
    this.unwatch();
  }

  private record(): void {
    for (const type of TRACKED) {
      const snap = this.cache.snapshot?.get(type);
      const versions = this.history.get(type);
      if (!snap || !versions || versions.has(snap.version)) continue;
      versions.set(snap.version, snap);
      if (versions.size > HISTORY) versions.delete(versions.keys().next().value as string);
    }
  }

  /** Changes with each publication and whenever a data plane connects, leaves, ACKs or NACKs. */
  fingerprint(): string {
    return `${this.cache.stats.published} ${this.registry
      .list()
      .map((dp) => {
        const counts = TRACKED.map((t) => {
          const s = dp.types.get(t);
          return s ? `${s.acks}.${s.nacks}` : "-";
        });
        return `${dp.streamId}:${counts.join(",")}`;
      })
      .join(" ")}`;
  }

  /** Programmed, as a condition's status, reason and message, for routes `routeNames` of `listener`. */
  state(listener: string, routeNames: string[]): ProgramState {
    const wanted = new Map<TypeUrl, string[]>([
      [TYPE_URL.listener, [listener]],
      [TYPE_URL.route, routeNames.map((r) => routeResourceName(listener, r))],
    ]);
    const current = this.cache.snapshot;
    for (const [type, list] of wanted)
      if (list.some((name) => !current?.get(type)?.resources.has(name)))
        return { status: "False", reason: "Pending", message: "Not published to data planes yet." };
    const dataPlanes = this.registry.list().filter((dp) => dp.types.has(TYPE_URL.route));
    if (dataPlanes.length === 0)
      return { status: "False", reason: "Pending", message: "No data plane is connected." };
    const refused: string[] = [];
    const waiting: string[] = [];
    const resourceNames = [
      `agw.v1.Listener ${listener}`,
      ...(wanted.get(TYPE_URL.route) ?? []).map((r) => `agw.v1.Route ${r}`),
    ];
    for (const dp of dataPlanes) {
      let acked = true;
      let nack: string | undefined;
      for (const [type, list] of wanted) {
        const t: TypeState | undefined = dp.types.get(type);
        const latestRefused =
          t?.lastNack !== undefined &&
          t.lastNack.version === t.sentVersion &&
          t.ackedVersion !== t.sentVersion;
        if (t && latestRefused && t.lastNack && mentionsAny(t.lastNack.message, resourceNames))
          nack = t.lastNack.message;
        const ackedSnap = t ? this.history.get(type)?.get(t.ackedVersion) : undefined;
        const now = current?.get(type);
        if (
          !ackedSnap ||
          !list.every((n) => ackedSnap.resources.get(n)?.version === now?.resources.get(n)?.version)
        )
          acked = false;
      }
      if (nack !== undefined) refused.push(`${dp.nodeId}: ${nack}`);
      else if (!acked) waiting.push(dp.nodeId);
    }
    if (refused.length > 0)
      return {
        status: "False",
        reason: "Rejected",
        message: `Refused by ${refused.length} data plane(s): ${names(refused)}`,
      };
    if (waiting.length > 0)
      return {
        status: "False",
        reason: "Pending",
        message: `Waiting for ${waiting.length} of ${dataPlanes.length} data plane(s) to acknowledge it: ${names(waiting)}.`,
      };
    return {
      status: "True",
      reason: "Programmed",
      message: `Acknowledged by ${dataPlanes.length} data plane(s).`,
    };
  }
}
