/**
 * Checks agw.v1.Secret resources before anything uses them: PEM that parses, a key that matches its
 * certificate, a certificate inside its validity period. Key material stays in memory; error messages
 * name the secret and the fault, never the content (OpenSSL's messages carry no key bytes either).
 */
import { createHash, type X509Certificate } from "node:crypto";
import type { Secret } from "@agw/core/gen/agw/v1/secret_pb.js";
import { checkKeyPair, PemError, parseCertificates as parsePem } from "@agw/core/pem";

export interface CertificateMaterial {
  readonly kind: "certificate";
  readonly name: string;
  readonly chainPem: string;
  readonly keyPem: string;
  /** Lower-case DNS names the leaf serves (SAN dNSName; the subject CN when it has none). */
  readonly serverNames: readonly string[];
  /** sha256 over the chain and key: equal material, equal secure contexts. */
  readonly digest: string;
  readonly notAfter: Date;
}

export interface CaMaterial {
  readonly kind: "ca";
  readonly name: string;
  readonly caPem: string;
  /** Peers must present one of these SANs; empty accepts any the CA signed. */
  readonly matchSubjectAltNames: readonly string[];
  readonly digest: string;
}

export type SecretMaterial = CertificateMaterial | CaMaterial;

export class SecretError extends Error {}

/** Runs a PEM check; a PemError becomes a SecretError naming the proto field at fault. */
function pemCheck<T>(check: () => T, certificateField: string): T {
  try {
    return check();
  } catch (e) {
    if (!(e instanceof PemError)) throw e;
    throw new SecretError(`${e.part === "key" ? "private_key_pem" : certificateField}: ${e.message}`);
  }
}

function sha256(...parts: string[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\0");
  return h.digest("hex");
}

/** "DNS:a.example, IP Address:127.0.0.1" → typed entries. */
export function subjectAltNames(cert: X509Certificate): Array<{ type: string; value: string }> {
  const raw = cert.subjectAltName;
  if (!raw) return [];
  return raw.split(/,\s*/).flatMap((entry) => {
    const i = entry.indexOf(":");
    return i < 0 ? [] : [{ type: entry.slice(0, i), value: entry.slice(i + 1) }];
  });
}

export function commonName(subject: string): string | undefined {
  for (const line of subject.split("\n")) if (line.startsWith("CN=")) return line.slice(3);
  return undefined;
}

function checkValidity(leaf: X509Certificate, what: string, now: number): void {
  const from = new Date(leaf.validFrom);
  const to = new Date(leaf.validTo);
  if (now < from.getTime())
    throw new SecretError(`${what}: certificate is not valid yet (valid from ${from.toISOString()})`);
  if (now > to.getTime()) throw new SecretError(`${what}: certificate expired on ${to.toISOString()}`);
}

function certificateMaterial(
  name: string,
  chainPem: string,
  keyPem: string,
  checkDates: boolean,
): CertificateMaterial {
  const { leaf } = pemCheck(() => checkKeyPair(chainPem, keyPem), "certificate_chain_pem");
  if (checkDates) checkValidity(leaf, "certificate_chain_pem", Date.now());
  const dns = subjectAltNames(leaf)
    .filter((s) => s.type === "DNS")
    .map((s) => s.value.toLowerCase());
  const cn = commonName(leaf.subject);
  return {
    kind: "certificate",
    name,
    chainPem,
    keyPem,
    serverNames: dns.length > 0 ? dns : cn ? [cn.toLowerCase()] : [],
    digest: sha256(chainPem, keyPem),
    notAfter: new Date(leaf.validTo),
  };
}

/**
 * Validates one Secret; throws a SecretError describing the first fault. `checkDates(digest)` says
 * whether the certificate's validity period is checked (new material) or not (already serving).
 */
export function checkSecret(
  secret: Secret,
  checkDates: (digest: string) => boolean = () => true,
): SecretMaterial {
  const kind = secret.kind;
  switch (kind.case) {
    case "tlsCertificate": {
      const { certificateChainPem, privateKeyPem } = kind.value;
      return certificateMaterial(
        secret.name,
        certificateChainPem,
        privateKeyPem,
        checkDates(sha256(certificateChainPem, privateKeyPem)),
      );
    }
    case "validationContext": {
      const pem = kind.value.trustedCaPem;
      pemCheck(() => parsePem(pem), "trusted_ca_pem");
      return {
        kind: "ca",
        name: secret.name,
        caPem: pem,
        matchSubjectAltNames: kind.value.matchSubjectAltNames,
        digest: sha256(pem, ...kind.value.matchSubjectAltNames),
      };
    }
    default:
      throw new SecretError("neither tls_certificate nor validation_context is set");
  }
}
