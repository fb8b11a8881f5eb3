/**
 * Active health checking (Envoy's `health_checks` semantics): every endpoint of a cluster with a check
 * is probed each interval (plus a random jitter, so checks of many data planes do not line up), by an
 * HTTP GET or a TCP connect. `unhealthyThreshold` failures in a row take it out of load balancing,
 * `healthyThreshold` successes in a row bring it back. Checkers follow the active config: started for
 * new endpoints, kept (with their verdict) for unchanged ones, stopped for removed ones.
 */
import http from "node:http";
import net from "node:net";
import type { Endpoint, HealthCheckSpec } from "../runtime/types.ts";

export type { HealthCheckSpec };

import type { ClusterStates, EndpointState } from "./state.ts";

/** One probe: resolves true when the endpoint answered as expected within the timeout. */
export function probe(ep: Endpoint, spec: HealthCheckSpec): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => {
      cleanup();
      done(false);
    }, spec.timeoutMs);
    let cleanup = () => {};
    if (spec.kind === "tcp") {
      const s = net.connect({ host: ep.host, port: ep.port });
      cleanup = () => s.destroy();
      s.on("connect", () => {
        s.destroy();
        done(true);
      });
      s.on("error", () => done(false));
      return;
    }
    const req = http.request({
      host: ep.host,
      port: ep.port,
      path: spec.path,
      method: "GET",
      agent: false,
      headers: {
        host: spec.host !== "" ? spec.host : ep.key,
        "user-agent": "agw-health-check",
        connection: "close",
      },
    });
    cleanup = () => req.destroy();
    req.on("response", (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      res.on("error", () => {});
      req.destroy();
      done(spec.expectedStatuses.some(([from, to]) => status >= from && status < to));
    });
    req.on("error", () => done(false));
    req.end();
  });
}

interface Checker {
  readonly specJson: string;
  stop(): void;
}

function startChecker(ep: Endpoint, state: EndpointState, spec: HealthCheckSpec): Checker {
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const schedule = (first: boolean) => {
    if (stopped) return;
    const jitter = spec.jitterMs > 0 ? Math.random() * spec.jitterMs : 0;
    timer = setTimeout(run, (first ? 0 : spec.intervalMs) + jitter);
    timer.unref();
  };
  const run = async () => {
    const ok = await probe(ep, spec);
    if (stopped) return;
    if (ok) {
      state.checkFailures = 0;
      state.checkSuccesses++;
      if (!state.checkHealthy && state.checkSuccesses >= spec.healthyThreshold) state.checkHealthy = true;
    } else {
      state.checkSuccesses = 0;
      state.checkFailures++;
      if (state.checkHealthy && state.checkFailures >= spec.unhealthyThreshold) state.checkHealthy = false;
    }
    schedule(false);
  };
  schedule(true);
  return {
    specJson: JSON.stringify(spec),
    stop: () => {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}

export interface CheckedCluster {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  readonly healthCheck?: HealthCheckSpec | undefined;
}

/** The checkers of one data plane, reconciled with each active config. */
export class HealthCheckers {
  private readonly checkers = new Map<string, Checker>();
  private readonly states: ClusterStates;

  constructor(states: ClusterStates) {
    this.states = states;
  }

  /** Starts, keeps or stops checkers so that exactly the active config's checks run. */
  activate(clusters: Iterable<CheckedCluster>): void {
    const wanted = new Set<string>();
    for (const c of clusters) {
      const spec = c.healthCheck;
      const state = this.states.find(c.name);
      if (spec === undefined || state === undefined) {
        // Without checks an endpoint is healthy as far as checking goes.
        for (const s of state?.endpoints.values() ?? []) s.checkHealthy = true;
        continue;
      }
      const json = JSON.stringify(spec);
      for (const ep of c.endpoints) {
        const id = `${c.name} ${ep.key}`;
        const es = state.endpoints.get(ep.key);
        if (es === undefined) continue;
        wanted.add(id);
        const old = this.checkers.get(id);
        if (old?.specJson === json) continue;
        old?.stop();
        this.checkers.set(id, startChecker(ep, es, spec));
      }
    }
    for (const [id, checker] of this.checkers)
      if (!wanted.has(id)) {
        checker.stop();
        this.checkers.delete(id);
      }
  }

  close(): void {
    for (const c of this.checkers.values()) c.stop();
    this.checkers.clear();
  }
}
