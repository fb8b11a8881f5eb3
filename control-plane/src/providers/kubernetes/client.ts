/**
 * Raw JSON requests to the API server through @kubernetes/client-node's configuration (auth,
 * TLS, proxy). The typed clients cannot page a list of any resource by path or write a status
 * subresource of a custom resource with a merge patch, which the provider needs.
 */
import {
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  type KubernetesObject,
  RequestContext,
} from "@kubernetes/client-node";

export class KubeApiError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = "KubeApiError";
    this.status = status;
    this.reason = reason;
  }
}

export interface KubeListResponse<T> {
  items: T[];
  metadata: { resourceVersion?: string; continue?: string };
}

const http = new IsomorphicFetchHttpLibrary();

/** Loads a kubeconfig file, or the default chain (KUBECONFIG, ~/.kube/config, in-cluster). */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error("kubeconfig has no current cluster");
  return kc;
}

export class KubeClient {
  readonly config: KubeConfig;
  private readonly server: string;

  constructor(config: KubeConfig) {
    this.config = config;
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.server = cluster.server.replace(/\/$/, "");
  }

  async request<T>(
    method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
    path: string,
    body?: unknown,
    contentType = "application/json",
    timeoutMs = 15_000,
  ): Promise<T> {
    const ctx = new RequestContext(`${this.server}${path}`, HttpMethod[method]);
    ctx.setHeaderParam("accept", "application/json");
    if (body !== undefined) {
      ctx.setHeaderParam("content-type", contentType);
      ctx.setBody(JSON.stringify(body));
    }
    ctx.setSignal(AbortSignal.timeout(timeoutMs));
    await this.config.applySecurityAuthentication(ctx);
    const res = await http.send(ctx).toPromise();
    const text = await res.body.text();
    if (res.httpStatusCode >= 300) {
      let reason = "";
      let message = text;
      try {
        const status = JSON.parse(text) as { reason?: string; message?: string };
        reason = status.reason ?? "";
        message = status.message ?? text;
      } catch {}
      throw new KubeApiError(
        res.httpStatusCode,
        reason,
        `${method} ${path}: ${res.httpStatusCode} ${message}`,
      );
    }
    return JSON.parse(text) as T;
  }

  /** Lists every page (limit/continue); returns the items and the list's resourceVersion. */
  async listAll<T extends KubernetesObject>(
    path: string,
    query: Record<string, string> = {},
    pageSize = 500,
  ): Promise<{ items: T[]; resourceVersion: string }> {
    const items: T[] = [];
    let next = "";
    for (;;) {
      const params = new URLSearchParams({ ...query, limit: String(pageSize) });
      if (next) params.set("continue", next);
      const page = await this.request<KubeListResponse<T>>("GET", `${path}?${params}`);
      items.push(...page.items);
      next = page.metadata.continue ?? "";
      if (!next) return { items, resourceVersion: page.metadata.resourceVersion ?? "" };
    }
  }
}
