/**
 * The internal representation every config source translates into (config.yaml today, Kubernetes
 * later). Defaults are filled in and units are normalised here, so the xDS layer maps fields 1:1.
 */
export type PathMatch = { kind: "exact" | "prefix" | "regex"; value: string };

export interface ValueMatch {
  name: string;
  kind: "exact" | "regex" | "present";
  value: string;
  invert: boolean;
}

export interface HeaderOps {
  add: Array<[string, string]>;
  set: Array<[string, string]>;
  remove: string[];
}

export type RouteTarget = { cluster: string } | { weighted: Array<{ name: string; weight: number }> };

export interface IrRoute {
  name: string;
  order: number;
  hosts: string[];
  path: PathMatch;
  methods: string[];
  headers: ValueMatch[];
  query: ValueMatch[];
  target: RouteTarget;
  timeoutMs: number;
  requestHeaders: HeaderOps;
  responseHeaders: HeaderOps;
  plugins: Array<{ name: string; config: Record<string, unknown> }>;
}

export interface IrListener {
  name: string;
  address: string;
  port: number;
  protocol: "http";
  routes: IrRoute[];
}

export interface IrEndpoint {
  address: string;
  port: number;
  weight: number;
}

export interface IrCluster {
  name: string;
  lb: "round_robin";
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxIdlePerEndpoint: number;
  maxRequestsPerConnection: number;
  endpoints: IrEndpoint[];
}

/** A certificate and its key, named "namespace/name" when it comes from a Kubernetes Secret. */
export interface IrSecret {
  name: string;
  certificateChainPem: string;
  privateKeyPem: string;
}

export interface Ir {
  listeners: IrListener[];
  clusters: IrCluster[];
  /** Absent when no source supplies secrets. */
  secrets?: IrSecret[];
}

export const DEFAULTS = {
  listenerAddress: "0.0.0.0",
  routeTimeoutMs: 15_000,
  connectTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxIdlePerEndpoint: 64,
} as const;
