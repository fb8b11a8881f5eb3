/**
 * The one check of PEM material: certificates that parse, a private key that parses, is RSA or ECDSA,
 * and matches its certificate. Used where a secret enters (config validation, Kubernetes Secrets, the
 * data plane's xDS Secrets). Messages name the fault, never the content (OpenSSL's carry no key bytes).
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";

export class PemError extends Error {
  /** Which half is at fault: the certificate (chain, or CA bundle) or the private key. */
  readonly part: "certificate" | "key";
  constructor(part: "certificate" | "key", message: string) {
    super(message);
    this.part = part;
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM bundle, in order; throws a PemError when there is none or one is malformed. */
export function parseCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new PemError("certificate", "no PEM certificate found");
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (e) {
      throw new PemError("certificate", `certificate ${i + 1} is malformed (${(e as Error).message})`);
    }
  });
}

/** The chain's leaf and the key, when the key parses, is RSA or ECDSA, and matches the leaf. */
export function checkKeyPair(chainPem: string, keyPem: string): { leaf: X509Certificate; key: KeyObject } {
  const [leaf] = parseCertificates(chainPem);
  if (!leaf) throw new PemError("certificate", "no PEM certificate found");
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new PemError("key", `malformed private key (${(e as Error).message})`);
  }
  if (key.asymmetricKeyType !== "rsa" && key.asymmetricKeyType !== "ec")
    throw new PemError("key", `${key.asymmetricKeyType} keys are not supported (RSA or ECDSA)`);
  if (!leaf.checkPrivateKey(key)) throw new PemError("key", "the key does not match the certificate");
  return { leaf, key };
}
