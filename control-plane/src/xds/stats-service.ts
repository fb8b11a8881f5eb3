/**
 * agw.v1.StatsService, the control plane's side of fleet stats (proto/agw/v1/stats.proto): served on
 * the xDS connections (ads-server.ts), authenticated as the xDS streams are (peerNodeId). The
 * first answer tells the data plane the interval; reports go to FleetStats (dashboard/fleet-stats.ts).
 *
 * Bounds (docs/security.md, "Fleet stats"): a report is at most STATS_LIMITS.reportBytes (the
 * router refuses a bigger message); one stream per node id (a new one ends the old one); reports
 * faster than half the interval are ignored; FleetStats takes only names the config has.
 */
import { AsyncQueue, type Logger } from "@agw/core";
import {
  type ReportStatsRequest,
  type ReportStatsResponse,
  ReportStatsResponseSchema,
} from "@agw/core/gen/agw/v1/stats_pb.js";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { FleetStats } from "../dashboard/fleet-stats.ts";
import { peerNodeId, type SideService } from "./ads-server.ts";

type Event =
  | { kind: "report"; report: ReportStatsRequest }
  | { kind: "end" }
  | { kind: "error"; error: unknown };

export function createStatsService(fleet: FleetStats, log: Logger): SideService {
  /** The open stream of each node id: a newer stream of the same node ends it. */
  const streams = new Map<string, AsyncQueue<Event>>();
  const all = new Set<AsyncQueue<Event>>();
  let draining = false;
  return {
    drain() {
      draining = true;
      for (const events of all) events.push({ kind: "end" });
    },

    async *reportStats(requests: AsyncIterable<ReportStatsRequest>, ctx: HandlerContext) {
      if (draining) throw new ConnectError("control plane shutting down", Code.Unavailable);
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done) return;
      const { id, peer } = peerNodeId(ctx, first.value.nodeId);
      if (!fleet.admits(id))
        throw new ConnectError("too many data planes report fleet stats", Code.ResourceExhausted);
      const events = new AsyncQueue<Event>();
      streams.get(id)?.push({ kind: "end" });
      streams.set(id, events);
      all.add(events);
      const pump = (async () => {
        try {
          for (let next = await iterator.next(); !next.done; next = await iterator.next())
            events.push({ kind: "report", report: next.value });
          events.push({ kind: "end" });
        } catch (e) {
          // E.g. a report over the size bound: the stream ends with the reason.
          if (!ctx.signal.aborted)
            log.warn({ node: id, error: (e as Error).message }, "fleet stats stream refused");
          events.push({ kind: "error", error: e });
        }
      })();
      log.debug({ node: id, peer: peer.address }, "fleet stats stream opened");
      let lastAt = 0;
      try {
        yield create(ReportStatsResponseSchema, { intervalMs: fleet.intervalMs }) as ReportStatsResponse;
        for await (const event of events) {
          if (event.kind === "end") break;
          if (event.kind === "error") throw event.error;
          const now = Date.now();
          // A data plane reports once per interval; one that sends faster is not listened to more.
          if (now - lastAt < fleet.intervalMs / 2) continue;
          lastAt = now;
          fleet.add(id, peer.transport, event.report, now);
        }
      } finally {
        all.delete(events);
        if (streams.get(id) === events) streams.delete(id);
        events.close();
        pump.catch(() => undefined);
      }
    },
  };
}
