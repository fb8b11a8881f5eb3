/** The Kubernetes objects the provider reads, and the GatewayRoute CRD's shape (deploy/crds). */
import type { KubernetesObject, V1EndpointSlice, V1Secret, V1Service } from "@kubernetes/client-node";
import type { ClusterPolicyInput, RoutePolicyInput } from "../../translator.ts";

export type Service = V1Service;
export type EndpointSlice = V1EndpointSlice;
export type Secret = V1Secret;

export const GATEWAY_ROUTE = {
  group: "gateway.agw.dev",
  version: "v1alpha1",
  plural: "gatewayroutes",
  kind: "GatewayRoute",
} as const;

export interface GatewayRouteValueMatch {
  name: string;
  type?: "Exact" | "RegularExpression" | "Present";
  value?: string;
  invert?: boolean;
}

export interface GatewayRouteHeaderModifier {
  add?: Array<{ name: string; value: string }>;
  set?: Array<{ name: string; value: string }>;
  remove?: string[];
}

export interface GatewayRouteRule {
  matches?: Array<{
    path?: { type?: "Exact" | "PathPrefix" | "RegularExpression"; value?: string };
    method?: string;
    headers?: GatewayRouteValueMatch[];
    queryParams?: GatewayRouteValueMatch[];
  }>;
  backendRefs?: Array<{ name: string; port: number | string; weight?: number }>;
  filters?: {
    requestHeaderModifier?: GatewayRouteHeaderModifier;
    responseHeaderModifier?: GatewayRouteHeaderModifier;
  };
  timeout?: string;
  plugins?: Array<{ name: string; config?: Record<string, unknown> }>;
  /** Spelled as in config.yaml (docs/traffic/); validated with config.yaml's schema. */
  retry?: RoutePolicyInput["retry"];
  rewrite?: RoutePolicyInput["rewrite"];
  redirect?: RoutePolicyInput["redirect"];
  directResponse?: RoutePolicyInput["directResponse"];
  cors?: RoutePolicyInput["cors"];
  /** config.yaml's mirror with a Service port in place of a cluster name. */
  mirror?: {
    backendRef: { name: string; port: number | string };
    percent?: number;
    maxBodyBytes?: number;
  };
  /** config.yaml's cluster policies for the clusters of this rule's backendRefs (docs/kubernetes.md). */
  backendPolicy?: ClusterPolicyInput;
}

export interface GatewayRoute extends KubernetesObject {
  spec?: {
    listener?: {
      name: string;
      port: number;
      address?: string;
      /** HTTPS: the kubernetes.io/tls Secrets to serve, in the route's own namespace. */
      tls?: { certificateRefs?: Array<{ name: string; namespace?: string }> };
    };
    hostnames?: string[];
    rules?: GatewayRouteRule[];
  };
  status?: {
    observedGeneration?: number;
    conditions?: Array<{
      type: string;
      status: string;
      reason: string;
      message: string;
      observedGeneration?: number;
      lastTransitionTime: string;
    }>;
  };
}

/** Gateway API (gateway.networking.k8s.io/v1): the Gateways and HTTPRoutes the provider reads. */
export const GATEWAY_API = { group: "gateway.networking.k8s.io", version: "v1" } as const;

/** Gateways of this class are AGW's: their HTTP listeners become AGW listeners. */
export const GATEWAY_CLASS_NAME = "agw";

export interface Gateway extends KubernetesObject {
  spec?: {
    gatewayClassName?: string;
    listeners?: Array<{ name: string; port: number; protocol: string; hostname?: string }>;
  };
}

export interface HttpRouteValueMatch {
  type?: "Exact" | "RegularExpression";
  name: string;
  value: string;
}

export interface HttpRouteHeaderFilter {
  add?: Array<{ name: string; value: string }>;
  set?: Array<{ name: string; value: string }>;
  remove?: string[];
}

export interface HttpRouteRule {
  matches?: Array<{
    path?: { type?: "Exact" | "PathPrefix" | "RegularExpression"; value?: string };
    method?: string;
    headers?: HttpRouteValueMatch[];
    queryParams?: HttpRouteValueMatch[];
  }>;
  filters?: Array<{
    type: string;
    requestHeaderModifier?: HttpRouteHeaderFilter;
    responseHeaderModifier?: HttpRouteHeaderFilter;
  }>;
  backendRefs?: Array<{
    group?: string;
    kind?: string;
    name: string;
    namespace?: string;
    port?: number;
    weight?: number;
  }>;
  timeouts?: { request?: string; backendRequest?: string };
}

export interface HttpRoute extends KubernetesObject {
  spec?: {
    parentRefs?: Array<{
      group?: string;
      kind?: string;
      namespace?: string;
      name: string;
      sectionName?: string;
      port?: number;
    }>;
    hostnames?: string[];
    rules?: HttpRouteRule[];
  };
}
