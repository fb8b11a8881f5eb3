/**
 * The control plane's xDS mTLS material from a Kubernetes Secret (type kubernetes.io/tls, with
 * `ca.crt` = the CA that signs data planes' client certificates), watched: a rotated Secret
 * replaces the serving certificate and the client CA for new connections; one that does not parse
 * or whose key does not match is reported and the previous material kept.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { Logger } from "@agw/core";
import type { KubeClient } from "../providers/kubernetes/client.ts";
import { Informer } from "../providers/kubernetes/informer.ts";
import type { Secret } from "../providers/kubernetes/types.ts";
import type { AdsTlsOptions } from "./ads-server.ts";

export interface XdsTlsSecretRef {
  namespace: string;
  name: string;
}

/** "namespace/name" → a reference, or a message for the user. */
export function parseSecretRef(value: string): XdsTlsSecretRef {
  const [namespace, name, ...rest] = value.split("/");
  if (!namespace || !name || rest.length > 0)
    throw new Error(`--xds-tls-secret ${value}: expected NAMESPACE/NAME`);
  return { namespace, name };
}

/** The Secret's certificate, key and client CA, or why they cannot be used. */
export function xdsTlsFromSecret(secret: Secret): AdsTlsOptions | string {
  const field = (k: string) => Buffer.from(secret.data?.[k] ?? "", "base64").toString("utf8");
  const cert = field("tls.crt");
  const key = field("tls.key");
  const ca = field("ca.crt");
  if (!cert.trim() || !key.trim() || !ca.trim()) return "needs tls.crt, tls.key and ca.crt";
  try {
    const x509 = new X509Certificate(cert);
    if (!x509.checkPrivateKey(createPrivateKey(key))) return "tls.key does not match tls.crt";
    new X509Certificate(ca);
  } catch (e) {
    return `not usable PEM: ${(e as Error).message}`;
  }
  return { cert, key, ca };
}

export interface XdsTlsSecretWatch {
  /** The first usable material; rejects after `timeoutMs` with the reason it is not usable. */
  first(timeoutMs: number): Promise<AdsTlsOptions>;
  stop(): void;
}

export function watchXdsTlsSecret(options: {
  client: KubeClient;
  ref: XdsTlsSecretRef;
  log: Logger;
  /** Called with each new usable version after the first. */
  onRotate(tls: AdsTlsOptions): void;
}): XdsTlsSecretWatch {
  const { ref, log } = options;
  const where = `${ref.namespace}/${ref.name}`;
  let current: AdsTlsOptions | undefined;
  let problem = "not found";
  let resolveFirst: ((tls: AdsTlsOptions) => void) | undefined;
  const informer: Informer<Secret> = new Informer<Secret>({
    client: options.client,
    path: `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/secrets`,
    fieldSelector: `metadata.name=${ref.name}`,
    log,
    onChange: () => {
      const secret = informer.values()[0];
      const tls = secret ? xdsTlsFromSecret(secret) : "not found";
      if (typeof tls === "string") {
        problem = tls;
        log.error(
          { secret: where, error: tls },
          "xDS TLS Secret not usable; keeping the previous certificates",
        );
        return;
      }
      if (current && current.cert === tls.cert && current.key === tls.key && current.ca === tls.ca) return;
      const rotated = current !== undefined;
      current = tls;
      if (rotated) {
        log.info({ secret: where }, "xDS TLS Secret rotated");
        options.onRotate(tls);
      } else resolveFirst?.(tls);
    },
  });
  void informer.start();
  return {
    first(timeoutMs) {
      if (current) return Promise.resolve(current);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`xDS TLS Secret ${where}: ${problem} (waited ${timeoutMs / 1000} s)`)),
          timeoutMs,
        );
        resolveFirst = (tls) => {
          clearTimeout(timer);
          resolve(tls);
        };
      });
    },
    stop: () => informer.stop(),
  };
}
