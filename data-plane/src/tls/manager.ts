/**
 * The TLS manager: turns checked secrets plus listener and cluster TLS settings into secure contexts
 * when a config is built (never per connection), one context per certificate version and policy,
 * reused across builds while its inputs are unchanged. It also owns the session ticket keys of each
 * listener and rotates them.
 */
import { createHash, randomBytes } from "node:crypto";
import tls, { type PeerCertificate, type SecureContext } from "node:tls";
import type { UpstreamTls } from "@agw/core/gen/agw/v1/cluster_pb.js";
import type { ListenerTls } from "@agw/core/gen/agw/v1/listener_pb.js";
import type { Secret } from "@agw/core/gen/agw/v1/secret_pb.js";
import type { DownstreamTlsAcceptor, ListenerTlsRuntime, UpstreamTlsRuntime } from "../runtime/types.ts";
import { peerCommonName, TlsAcceptor } from "./acceptor.ts";
import {
  type CaMaterial,
  type CertificateMaterial,
  checkSecret,
  SecretError,
  type SecretMaterial,
} from "./secrets.ts";
import { addServerName, lookupServerName } from "./sni.ts";

export type { ListenerTlsRuntime, UpstreamTlsRuntime } from "../runtime/types.ts";

/**
 * Application protocols the engine speaks downstream. ALPN only ever selects from these; the engine
 * dispatches on the negotiated one (HttpProxy.handleConnection: "h2" goes to engine/h2-server.ts).
 */
export const ENGINE_ALPN: readonly string[] = ["h2", "http/1.1"];

/**
 * What is offered to an upstream: its cluster's one protocol (HTTP/1.1 pool or HTTP/2 sessions),
 * never both, since a connection cannot switch engines after the handshake.
 */
export const UPSTREAM_ALPN: readonly string[] = ["http/1.1"];
export const UPSTREAM_H2_ALPN: readonly string[] = ["h2"];

const DEFAULT_TICKET_ROTATION_MS = 60 * 60 * 1000;

/** The SNI lookup: exact name, then a one-label wildcard, then the default. */
export function selectContext(rt: ListenerTlsRuntime, servername: string): SecureContext {
  return lookupServerName(rt, servername.toLowerCase()) ?? rt.defaultContext;
}

function digest(...parts: string[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\0");
  return h.digest("hex").slice(0, 24);
}

/** A peer name matches a rule exactly, or a "*.x" rule matches one DNS label. */
function nameMatches(rule: string, name: string): boolean {
  if (rule.startsWith("*.")) {
    const dot = name.indexOf(".");
    return dot > 0 && name.slice(dot + 1).toLowerCase() === rule.slice(2).toLowerCase();
  }
  return rule.toLowerCase() === name.toLowerCase();
}

/** SAN values of a peer certificate ("DNS:a, URI:spiffe://x, IP Address:1.2.3.4"). */
export function peerSans(cert: PeerCertificate): string[] {
  const raw = cert.subjectaltname;
  if (!raw) return [];
  return raw.split(/,\s*/).map((entry) => entry.slice(entry.indexOf(":") + 1));
}

function sanCheck(rules: readonly string[], cert: PeerCertificate): string | undefined {
  if (rules.length === 0) return undefined;
  const sans = peerSans(cert);
  return sans.some((san) => rules.some((rule) => nameMatches(rule, san)))
    ? undefined
    : `no subject alternative name matches (${sans.join(", ") || "none"})`;
}

function tlsError(message: string): SecretError {
  return new SecretError(message);
}

interface CacheEntry {
  readonly value: SecureContext | TlsAcceptor<ListenerTlsRuntime>;
  /** Listener whose ticket keys an acceptor carries; "" for client contexts. */
  readonly listener: string;
}

/** One build's view of the cache: entries it uses survive, the rest are released when it finishes. */
export class TlsBuild {
  private readonly manager: TlsManager;
  readonly used = new Map<string, CacheEntry>();
  readonly secrets = new Set<string>();

  constructor(manager: TlsManager) {
    this.manager = manager;
  }

  private reuse<T extends SecureContext | TlsAcceptor<ListenerTlsRuntime>>(
    key: string,
    listener: string,
    make: () => T,
  ): T {
    const hit = this.used.get(key) ?? this.manager.cached(key);
    const entry = hit ?? { value: make(), listener };
    this.used.set(key, entry);
    return entry.value as T;
  }

  private context(key: string, listener: string, make: () => SecureContext): SecureContext {
    return this.reuse(key, listener, make);
  }

  private acceptor(
    key: string,
    listener: string,
    make: () => TlsAcceptor<ListenerTlsRuntime>,
  ): TlsAcceptor<ListenerTlsRuntime> {
    return this.reuse(key, listener, make);
  }

  listenerTls(
    listener: string,
    spec: ListenerTls,
    secrets: ReadonlyMap<string, SecretMaterial>,
  ): ListenerTlsRuntime {
    if (spec.certificateSecrets.length === 0) throw tlsError("https needs at least one certificate");
    const minVersion = spec.minVersion || "TLSv1.2";
    if (minVersion !== "TLSv1.2" && minVersion !== "TLSv1.3")
      throw tlsError(`min_version "${minVersion}" is not TLSv1.2 or TLSv1.3`);
    let ca: CaMaterial | undefined;
    if (spec.clientCaSecret) {
      const s = secrets.get(spec.clientCaSecret);
      if (s?.kind !== "ca")
        throw tlsError(
          `client CA secret "${spec.clientCaSecret}" ${s ? "is not a CA bundle" : "does not exist"}`,
        );
      ca = s;
    }
    const sessionIdContext = digest("session", listener).slice(0, 32);
    const policy = digest(listener, minVersion, spec.cipherSuites, ca?.digest ?? "");
    const contextOptions = (cert: CertificateMaterial): tls.SecureContextOptions => ({
      cert: cert.chainPem,
      key: cert.keyPem,
      minVersion,
      ...(spec.cipherSuites && { ciphers: spec.cipherSuites }),
      ...(ca && { ca: ca.caPem }),
      honorCipherOrder: true,
      sessionIdContext,
    });
    const exact = new Map<string, SecureContext>();
    const wildcard = new Map<string, SecureContext>();
    const certificates: Array<{ name: string; digest: string; serverNames: readonly string[] }> = [];
    let defaultCert: CertificateMaterial | undefined;
    let defaultContext: SecureContext | undefined;
    for (const name of spec.certificateSecrets) {
      const s = secrets.get(name);
      if (s?.kind !== "certificate")
        throw tlsError(
          `certificate secret "${name}" ${s ? "is a CA bundle, not a certificate" : "does not exist"}`,
        );
      const context = this.context(`c:${policy}:${s.digest}`, listener, () => {
        try {
          return tls.createSecureContext(contextOptions(s));
        } catch (e) {
          throw tlsError(`certificate "${name}": ${(e as Error).message}`);
        }
      });
      defaultCert ??= s;
      defaultContext ??= context;
      certificates.push({ name, digest: s.digest, serverNames: s.serverNames });
      // The first certificate listed for a name wins: the list is in preference order.
      for (const host of s.serverNames) addServerName({ exact, wildcard }, host, context);
    }
    const alpn = (spec.alpn.length > 0 ? spec.alpn : ["http/1.1"]).filter((p) => ENGINE_ALPN.includes(p));
    if (alpn.length === 0) throw tlsError(`none of the ALPN protocols ${spec.alpn.join(", ")} is supported`);
    const sanRules = [...spec.matchClientSubjectAltNames];
    const caRules = ca?.matchSubjectAltNames ?? [];
    const commonNames = new Set(spec.matchClientCommonNames);
    const runtime: ListenerTlsRuntime = {
      acceptor: undefined as unknown as TlsAcceptor<ListenerTlsRuntime>,
      exact,
      wildcard,
      defaultContext: defaultContext as SecureContext,
      checkClient(cert) {
        const bad = sanCheck(sanRules, cert) ?? sanCheck(caRules, cert);
        if (bad) return bad;
        const cn = peerCommonName(cert);
        if (commonNames.size > 0 && !commonNames.has(cn))
          return `subject common name "${cn}" is not accepted`;
        return undefined;
      },
      certificates,
    };
    const acceptorKey = digest(
      "acceptor",
      policy,
      alpn.join(","),
      String(spec.requireClientCertificate),
      sanRules.join(","),
      [...commonNames].join(","),
      ...certificates.map((c) => c.digest),
    );
    const acceptor = this.acceptor(acceptorKey, listener, () => {
      const serverOptions: tls.TlsOptions = {
        ...contextOptions(defaultCert as CertificateMaterial),
        ticketKeys: this.manager.ticketKeys(listener),
        SNICallback: (servername, cb) => cb(null, selectContext(runtime, servername)),
        ALPNProtocols: [...alpn],
        requestCert: ca !== undefined,
        rejectUnauthorized: ca !== undefined && spec.requireClientCertificate,
      };
      return new TlsAcceptor(serverOptions, runtime);
    });
    (runtime as { acceptor: DownstreamTlsAcceptor }).acceptor = acceptor;
    return acceptor.runtime;
  }

  /** Checks a Secret; validity dates only for material not accepted before, so expiry never blocks other updates. */
  secret(secret: Secret): SecretMaterial {
    const material = checkSecret(secret, (digest) => !this.manager.acceptedSecret(digest));
    this.secrets.add(material.digest);
    return material;
  }

  upstreamTls(
    spec: UpstreamTls,
    secrets: ReadonlyMap<string, SecretMaterial>,
    http2 = false,
  ): UpstreamTlsRuntime {
    let ca: CaMaterial | undefined;
    if (spec.caSecret) {
      const s = secrets.get(spec.caSecret);
      if (s?.kind !== "ca")
        throw tlsError(`CA secret "${spec.caSecret}" ${s ? "is not a CA bundle" : "does not exist"}`);
      ca = s;
    }
    let cert: CertificateMaterial | undefined;
    if (spec.clientCertificateSecret) {
      const s = secrets.get(spec.clientCertificateSecret);
      if (s?.kind !== "certificate")
        throw tlsError(
          `client certificate secret "${spec.clientCertificateSecret}" ${s ? "is a CA bundle" : "does not exist"}`,
        );
      cert = s;
    }
    const offered = http2 ? UPSTREAM_H2_ALPN : UPSTREAM_ALPN;
    const alpn = (spec.alpn.length > 0 ? spec.alpn : offered).filter((p) => offered.includes(p));
    if (alpn.length === 0)
      throw tlsError(
        http2
          ? `protocol http2 needs h2 in alpn (got ${spec.alpn.join(", ")})`
          : `none of the ALPN protocols ${spec.alpn.join(", ")} is supported`,
      );
    const key = digest("upstream", ca?.digest ?? "system", cert?.digest ?? "");
    const secureContext = this.context(`u:${key}`, "", () => {
      try {
        return tls.createSecureContext({
          ...(ca && { ca: ca.caPem }),
          ...(cert && { cert: cert.chainPem, key: cert.keyPem }),
        });
      } catch (e) {
        throw tlsError((e as Error).message);
      }
    });
    return {
      secureContext,
      sni: spec.sni,
      alpn,
      matchSubjectAltNames: ca?.matchSubjectAltNames ?? [],
      digest: digest(key, spec.sni, alpn.join(",")),
    };
  }

  /** The build succeeded: its contexts become the cache, the unused ones are released. */
  finish(): void {
    this.manager.replaceCache(this.used, this.secrets);
  }
}

export interface TlsManagerOptions {
  /** How often each listener's session ticket key is replaced. Default 1 hour. */
  readonly ticketKeyRotationMs?: number;
}

export class TlsManager {
  private cache = new Map<string, CacheEntry>();
  private secretDigests = new Set<string>();
  private readonly tickets = new Map<string, Buffer>();
  private readonly timer: NodeJS.Timeout;

  constructor(options: TlsManagerOptions = {}) {
    this.timer = setInterval(
      () => this.rotateTicketKeys(),
      options.ticketKeyRotationMs ?? DEFAULT_TICKET_ROTATION_MS,
    );
    this.timer.unref();
  }

  build(): TlsBuild {
    return new TlsBuild(this);
  }

  /** @internal */
  acceptedSecret(digest: string): boolean {
    return this.secretDigests.has(digest);
  }

  /** @internal */
  cached(key: string): CacheEntry | undefined {
    return this.cache.get(key);
  }

  /** @internal */
  replaceCache(used: Map<string, CacheEntry>, secrets: Set<string>): void {
    this.cache = used;
    this.secretDigests = secrets;
    const listeners = new Set([...used.values()].map((e) => e.listener));
    for (const name of this.tickets.keys()) if (!listeners.has(name)) this.tickets.delete(name);
  }

  /** @internal The listener's current 48-byte ticket key (name, HMAC and AES keys). */
  ticketKeys(listener: string): Buffer {
    let key = this.tickets.get(listener);
    if (key === undefined) {
      key = randomBytes(48);
      this.tickets.set(listener, key);
    }
    return key;
  }

  /**
   * New ticket keys for every listener, applied to the live contexts: tickets issued before no longer
   * resume (those clients make one full handshake) and a leaked key stops being useful.
   */
  rotateTicketKeys(): void {
    for (const listener of this.tickets.keys()) this.tickets.set(listener, randomBytes(48));
    for (const entry of this.cache.values()) {
      const key = this.tickets.get(entry.listener);
      if (key && entry.value instanceof TlsAcceptor) entry.value.server.setTicketKeys(key);
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
