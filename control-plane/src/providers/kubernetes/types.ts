/** The Kubernetes objects the provider reads, and the GatewayRoute CRD's shape (deploy/crds). */
import type {
  KubernetesObject,
  V1EndpointSlice,
  V1Namespace,
  V1Secret,
  V1Service,
} from "@kubernetes/client-node";
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
  /**
   * `namespace` is set only by the HTTPRoute conversion, after its ReferenceGrant check; the
   * translation ignores it on a GatewayRoute (whose CRD has no such field).
   */
  backendRefs?: Array<{ name: string; port: number | string; weight?: number; namespace?: string }>;
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
  rateLimit?: RoutePolicyInput["rateLimit"];
  compression?: RoutePolicyInput["compression"];
  /** IP allow and deny lists on the client address (docs/access-control.md). */
  ipRules?: RoutePolicyInput["ipRules"];
  /** config.yaml's mirror with a Service port in place of a cluster name. */
  mirror?: {
    backendRef: { name: string; port: number | string; namespace?: string };
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

/** GatewayClasses with this controllerName are AGW's; so are their Gateways. */
export const CONTROLLER_NAME = "agw.dev/gateway-controller";

/** A Gateway API object's condition, as written to its status. */
export interface StatusCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

export interface GatewayClass extends KubernetesObject {
  spec?: { controllerName?: string };
  status?: { conditions?: StatusCondition[] };
}

export interface GatewayListenerSpec {
  name: string;
  port: number;
  protocol: string;
  hostname?: string;
  tls?: {
    mode?: "Terminate" | "Passthrough";
    certificateRefs?: Array<{ group?: string; kind?: string; name: string; namespace?: string }>;
  };
  allowedRoutes?: {
    namespaces?: { from?: "All" | "Same" | "Selector" | "None"; selector?: LabelSelector };
    kinds?: Array<{ group?: string; kind: string }>;
  };
}

export interface GatewayStatus {
  addresses?: Array<{ type?: string; value: string }>;
  conditions?: StatusCondition[];
  listeners?: Array<{
    name: string;
    supportedKinds: Array<{ group?: string; kind: string }>;
    attachedRoutes: number;
    conditions: StatusCondition[];
  }>;
}

export interface Gateway extends KubernetesObject {
  spec?: {
    gatewayClassName?: string;
    addresses?: Array<{ type?: string; value: string }>;
    listeners?: GatewayListenerSpec[];
    infrastructure?: { parametersRef?: { group: string; kind: string; name: string } };
  };
  status?: GatewayStatus;
}

/** gateway.networking.k8s.io/v1beta1 ReferenceGrant: lets objects of other namespaces refer here. */
export interface ReferenceGrant extends KubernetesObject {
  spec?: {
    from?: Array<{ group: string; kind: string; namespace: string }>;
    to?: Array<{ group: string; kind: string; name?: string }>;
  };
}

export type Namespace = V1Namespace;

export interface RouteParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface RouteParentStatus {
  parentRef: RouteParentRef;
  controllerName: string;
  conditions: StatusCondition[];
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

export interface HttpRoutePathModifier {
  type: "ReplaceFullPath" | "ReplacePrefixMatch";
  replaceFullPath?: string;
  replacePrefixMatch?: string;
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
    requestRedirect?: {
      scheme?: string;
      hostname?: string;
      path?: HttpRoutePathModifier;
      port?: number;
      statusCode?: number;
    };
    urlRewrite?: { hostname?: string; path?: HttpRoutePathModifier };
    requestMirror?: {
      backendRef: { group?: string; kind?: string; name: string; namespace?: string; port?: number };
      percent?: number;
      fraction?: { numerator: number; denominator?: number };
    };
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
    parentRefs?: RouteParentRef[];
    hostnames?: string[];
    rules?: HttpRouteRule[];
  };
  status?: { parents?: RouteParentStatus[] };
}

/**
 * gateway.networking.k8s.io/v1 GRPCRoute: gateway-api.ts turns each into an HTTPRoute-shaped route
 * (a method match is a match on the request's path, /SERVICE/METHOD) whose backends speak HTTP/2.
 */
export interface GrpcRouteRule {
  name?: string;
  matches?: Array<{
    method?: { type?: "Exact" | "RegularExpression"; service?: string; method?: string };
    headers?: HttpRouteValueMatch[];
  }>;
  filters?: HttpRouteRule["filters"];
  backendRefs?: HttpRouteRule["backendRefs"];
}

export interface GrpcRoute extends KubernetesObject {
  spec?: {
    parentRefs?: RouteParentRef[];
    hostnames?: string[];
    rules?: GrpcRouteRule[];
  };
  status?: { parents?: RouteParentStatus[] };
}
