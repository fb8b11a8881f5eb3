/** The Kubernetes objects the provider reads, and the GatewayRoute CRD's shape (deploy/crds). */
import type { KubernetesObject, V1EndpointSlice, V1Secret, V1Service } from "@kubernetes/client-node";

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
}

export interface GatewayRoute extends KubernetesObject {
  spec?: {
    listener?: { name: string; port: number; address?: string };
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
