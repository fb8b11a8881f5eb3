/**
 * Load balancers. Each is built once per config from the cluster's endpoints, weights and persistent
 * endpoint states, and picks per request. Unavailable endpoints (failing active checks, ejected by
 * outlier detection) are skipped unless too few are available (the panic threshold), as in Envoy.
 */
import type { AffinitySpec, Endpoint, RequestView } from "../runtime/types.ts";

export type { AffinitySpec };

import { hash32 } from "./hash.ts";
import type { EndpointState } from "./state.ts";

export type HashSource =
  | { readonly kind: "header"; readonly name: string }
  | { readonly kind: "cookie"; readonly name: string }
  | { readonly kind: "query"; readonly name: string }
  | { readonly kind: "source_ip" };

export interface LbSpec {
  readonly policy: "round_robin" | "least_request" | "ring_hash" | "random";
  /** ring_hash: where the key comes from; the first source present in the request is used. */
  readonly hashOn: readonly HashSource[];
  /** ring_hash: points per unit of weight (the ring's density). */
  readonly ringPointsPerWeight: number;
  /** Below this share (percent) of available endpoints, every endpoint is used. 0 disables. */
  readonly panicThresholdPercent: number;
}

export type Pick = (
  req: RequestView | undefined,
  clientIp: string,
  avoid: Endpoint | null,
) => Endpoint | undefined;

export interface Balanced {
  readonly endpoints: readonly Endpoint[];
  readonly weights: readonly number[];
  readonly states: readonly EndpointState[];
  readonly spec: LbSpec;
}

/** Whether health is ignored right now: too few endpoints available. */
function panicking(states: readonly EndpointState[], threshold: number, now: number): boolean {
  let up = 0;
  for (const s of states) if (s.available(now)) up++;
  if (up === 0) return true;
  return threshold > 0 && up * 100 < states.length * threshold;
}

/** Cookie value of `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function queryValue(query: string, name: string): string | undefined {
  if (query === "") return undefined;
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    if (key === name) return eq < 0 ? "" : part.slice(eq + 1);
  }
  return undefined;
}

/** The request's hash key: the first source that is present. */
export function hashKey(
  sources: readonly HashSource[],
  req: RequestView | undefined,
  clientIp: string,
): string | undefined {
  for (const s of sources) {
    let v: string | undefined;
    switch (s.kind) {
      case "header":
        v = req?.header(s.name);
        break;
      case "cookie":
        v = cookieValue(req?.header("cookie"), s.name);
        break;
      case "query":
        v = req === undefined ? undefined : queryValue(req.query, s.name);
        break;
      case "source_ip":
        v = clientIp === "" ? undefined : clientIp;
        break;
    }
    if (v !== undefined) return v;
  }
  return undefined;
}

/** Smooth weighted round robin (nginx's): even spread, weights honoured, no bursts. */
export function smoothRoundRobin(weights: readonly number[]): () => number {
  const n = weights.length;
  if (weights.every((w) => w === weights[0])) {
    let next = 0;
    return () => next++ % n;
  }
  const current = weights.map(() => 0);
  const total = weights.reduce((a, b) => a + b, 0);
  return () => {
    let best = 0;
    for (let i = 0; i < n; i++) {
      current[i] = (current[i] ?? 0) + (weights[i] ?? 1);
      if ((current[i] ?? 0) > (current[best] ?? 0)) best = i;
    }
    current[best] = (current[best] ?? 0) - total;
    return best;
  };
}

/** Index by weighted random choice. */
function weightedRandom(weights: readonly number[], total: number): number {
  let r = Math.random() * total;
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i] ?? 0;
    if (r < 0) return i;
  }
  return weights.length - 1;
}

export interface Ring {
  /** Sorted point positions. */
  readonly points: Uint32Array;
  /** Endpoint index owning each point. */
  readonly owners: Int32Array;
}

/** Most points on one ring; heavier weights are scaled down to fit. */
const MAX_RING_POINTS = 1 << 20;

/**
 * A ring with points proportional to weight: endpoint `key` gets weight × pointsPerWeight points at
 * hash32(`${key}_${i}`). Unlike Envoy's ring_hash (whose ring size is shared out among the endpoints),
 * an endpoint's points do not depend on the other endpoints, so adding one of N endpoints moves about
 * 1/N of the keys, all to the new endpoint. The ring depends only on the endpoints and weights:
 * identical on every data plane and across config pushes.
 */
export function buildRing(
  keys: readonly string[],
  weights: readonly number[],
  pointsPerWeight: number,
): Ring {
  const total = weights.reduce((a, b) => a + b, 0);
  const scale = Math.min(pointsPerWeight, MAX_RING_POINTS / Math.max(1, total));
  const entries: Array<[number, number]> = [];
  keys.forEach((key, i) => {
    const n = Math.max(1, Math.round((weights[i] ?? 1) * scale));
    for (let j = 0; j < n; j++) entries.push([hash32(`${key}_${j}`), i]);
  });
  entries.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return {
    points: Uint32Array.from(entries, (e) => e[0]),
    owners: Int32Array.from(entries, (e) => e[1]),
  };
}

/** The first ring position at or after `h` (wrapping). */
export function ringIndex(ring: Ring, h: number): number {
  const pts = ring.points;
  let lo = 0;
  let hi = pts.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((pts[mid] as number) < h) lo = mid + 1;
    else hi = mid;
  }
  return lo === pts.length ? 0 : lo;
}

/** The endpoint picker for a cluster. */
export function makePick(b: Balanced): Pick {
  const { endpoints, weights, states, spec } = b;
  const n = endpoints.length;
  if (n === 0) return () => undefined;
  const totalWeight = weights.reduce((a, c) => a + c, 0);
  const usable = (i: number, avoid: Endpoint | null, panic: boolean, now: number) =>
    (panic || (states[i] as EndpointState).available(now)) &&
    (avoid === null || endpoints[i] !== avoid || n === 1);

  switch (spec.policy) {
    case "ring_hash": {
      const ring = buildRing(
        endpoints.map((e) => e.key),
        weights,
        spec.ringPointsPerWeight,
      );
      const owners = ring.owners;
      return (req, clientIp, avoid) => {
        const now = Date.now();
        const panic = panicking(states, spec.panicThresholdPercent, now);
        const key = hashKey(spec.hashOn, req, clientIp);
        // No key: any endpoint, as Envoy does.
        let at = ringIndex(ring, key === undefined ? (Math.random() * 0x100000000) >>> 0 : hash32(key));
        // Walk on to the next usable owner: only the keys of an unusable endpoint move.
        for (let step = 0; step < owners.length; step++) {
          const i = owners[at] as number;
          if (usable(i, avoid, panic, now)) return endpoints[i];
          at = at + 1 === owners.length ? 0 : at + 1;
        }
        return undefined;
      };
    }
    case "least_request": {
      const equal = weights.every((w) => w === weights[0]);
      return (_req, _ip, avoid) => {
        const now = Date.now();
        const panic = panicking(states, spec.panicThresholdPercent, now);
        // Power of two choices: two random usable endpoints, the one with fewer requests in flight
        // (relative to its weight) wins.
        let best = -1;
        for (let tries = 0, chosen = 0; chosen < 2 && tries < 4 * n; tries++) {
          const i = equal ? Math.floor(Math.random() * n) : weightedRandom(weights, totalWeight);
          if (i === best || !usable(i, avoid, panic, now)) continue;
          chosen++;
          if (best < 0) best = i;
          else {
            const a = (states[i] as EndpointState).active / (weights[i] ?? 1);
            const c = (states[best] as EndpointState).active / (weights[best] ?? 1);
            if (a < c) best = i;
          }
        }
        if (best < 0) for (let i = 0; i < n; i++) if (usable(i, avoid, panic, now)) return endpoints[i];
        return best < 0 ? undefined : endpoints[best];
      };
    }
    case "random":
      return (_req, _ip, avoid) => {
        const now = Date.now();
        const panic = panicking(states, spec.panicThresholdPercent, now);
        for (let tries = 0; tries < 4 * n; tries++) {
          const i = weightedRandom(weights, totalWeight);
          if (usable(i, avoid, panic, now)) return endpoints[i];
        }
        for (let i = 0; i < n; i++) if (usable(i, avoid, panic, now)) return endpoints[i];
        return undefined;
      };
    default: {
      const next = smoothRoundRobin(weights);
      return (_req, _ip, avoid) => {
        const now = Date.now();
        const panic = panicking(states, spec.panicThresholdPercent, now);
        for (let tries = 0; tries < 2 * n; tries++) {
          const i = next();
          if (usable(i, avoid, panic, now)) return endpoints[i];
        }
        return undefined;
      };
    }
  }
}

/** Opaque per-endpoint token stored in the affinity cookie (does not reveal the address). */
export function affinityToken(ep: Endpoint): string {
  return hash32(ep.key, 0x5eed).toString(36);
}

/**
 * Wraps `pick`: a request whose cookie names a usable endpoint goes there; others are balanced (and
 * the engine sets the cookie on the response, see RequestTraffic).
 */
export function withAffinity(pick: Pick, b: Balanced, spec: AffinitySpec): Pick {
  const byToken = new Map<string, number>();
  b.endpoints.forEach((e, i) => {
    byToken.set(affinityToken(e), i);
  });
  return (req, clientIp, avoid) => {
    const token = cookieValue(req?.header("cookie"), spec.cookie);
    if (token !== undefined) {
      const i = byToken.get(token);
      const ep = i === undefined ? undefined : b.endpoints[i];
      if (
        i !== undefined &&
        ep !== undefined &&
        ep !== avoid &&
        (b.states[i] as EndpointState).available(Date.now())
      )
        return ep;
    }
    return pick(req, clientIp, avoid);
  };
}

export function affinityCookie(spec: AffinitySpec, ep: Endpoint): string {
  const age = spec.ttlSeconds > 0 ? `; Max-Age=${spec.ttlSeconds}` : "";
  return `${spec.cookie}=${affinityToken(ep)}; Path=${spec.path}${age}; HttpOnly`;
}
