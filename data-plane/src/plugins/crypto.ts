/**
 * The `crypto` host interface (wit/plugin.wit): signature verification for guests, on node:crypto.
 * Verify only: the guest brings the public key, the data and the signature; nothing secret of the
 * host is reachable. The key must fit the algorithm (an RSA key is refused for es256, a P-384 key
 * for es256, an EC key for rs256...), so a guest that passes through an attacker's `alg` cannot be
 * led into algorithm confusion by the host. Host CPU does not burn guest fuel, so calls, key sizes
 * and data sizes are capped per call.
 */
import { constants, createPublicKey, type JsonWebKey, type KeyObject, verify } from "node:crypto";

export const CRYPTO_LIMITS = {
  /** Verifications per guest call. */
  verifiesPerCall: 16,
  keyMaxBytes: 16 << 10,
  dataMaxBytes: 1 << 20,
  /** Parsed keys kept (by their text). */
  keyCache: 64,
} as const;

type Algorithm = "es256" | "es384" | "ed25519" | "rs256" | "rs384" | "rs512" | "ps256" | "ps384" | "ps512";
export type PublicKeyArg = { tag: "jwk"; val: string } | { tag: "pem"; val: string };

interface AlgSpec {
  readonly keyType: "ec" | "ed25519" | "rsa";
  readonly curve?: string;
  readonly hash: string | null;
  readonly pss?: true;
  readonly sigBytes?: number;
}

const ALGS: Readonly<Record<Algorithm, AlgSpec>> = {
  es256: { keyType: "ec", curve: "prime256v1", hash: "sha256", sigBytes: 64 },
  es384: { keyType: "ec", curve: "secp384r1", hash: "sha384", sigBytes: 96 },
  ed25519: { keyType: "ed25519", hash: null, sigBytes: 64 },
  rs256: { keyType: "rsa", hash: "sha256" },
  rs384: { keyType: "rsa", hash: "sha384" },
  rs512: { keyType: "rsa", hash: "sha512" },
  ps256: { keyType: "rsa", hash: "sha256", pss: true },
  ps384: { keyType: "rsa", hash: "sha384", pss: true },
  ps512: { keyType: "rsa", hash: "sha512", pss: true },
};

/** Thrown as the `payload` jco lowers into the result's error case. */
function refuse(message: string): never {
  throw { payload: message };
}

const keys = new Map<string, KeyObject>();

function publicKey(arg: PublicKeyArg): KeyObject {
  const text = String(arg.val);
  if (Buffer.byteLength(text) > CRYPTO_LIMITS.keyMaxBytes)
    refuse(`key larger than ${CRYPTO_LIMITS.keyMaxBytes} bytes`);
  const cacheKey = `${arg.tag}\n${text}`;
  const cached = keys.get(cacheKey);
  if (cached !== undefined) return cached;
  let key: KeyObject;
  try {
    if (arg.tag === "jwk") {
      const jwk = JSON.parse(text) as Record<string, unknown>;
      if (jwk === null || typeof jwk !== "object") refuse("the jwk is not a JSON object");
      if ("d" in jwk || "k" in jwk) refuse("the jwk holds private or symmetric key material");
      key = createPublicKey({ key: jwk as JsonWebKey, format: "jwk" });
    } else {
      if (!text.includes("-----BEGIN PUBLIC KEY-----")) refuse('expected a PEM "PUBLIC KEY"');
      key = createPublicKey({ key: text, format: "pem" });
    }
  } catch (e) {
    if ((e as { payload?: unknown }).payload !== undefined) throw e;
    refuse(`cannot read the key: ${(e as Error).message}`);
  }
  if (key.type !== "public") refuse("not a public key");
  if (keys.size >= CRYPTO_LIMITS.keyCache) keys.delete(keys.keys().next().value as string);
  keys.set(cacheKey, key);
  return key;
}

/** `verify` of the crypto interface: true or false, or throws the error the guest gets. */
export function verifySignature(
  algorithm: string,
  keyArg: PublicKeyArg,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  const spec = ALGS[algorithm as Algorithm];
  if (spec === undefined) refuse(`unknown algorithm ${algorithm}`);
  if (data.length > CRYPTO_LIMITS.dataMaxBytes)
    refuse(`data larger than ${CRYPTO_LIMITS.dataMaxBytes} bytes`);
  const key = publicKey(keyArg);
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  if (spec.keyType === "rsa") {
    if (type !== "rsa" && !(spec.pss && type === "rsa-pss"))
      refuse(`${algorithm} needs an RSA key, not ${type}`);
    if ((details?.modulusLength ?? 0) < 2048) refuse(`${algorithm} needs an RSA key of 2048 bits or more`);
  } else if (spec.keyType === "ec") {
    if (type !== "ec" || details?.namedCurve !== spec.curve)
      refuse(`${algorithm} needs an EC ${spec.curve} key, not ${type} ${details?.namedCurve ?? ""}`.trim());
  } else if (type !== "ed25519") refuse(`${algorithm} needs an Ed25519 key, not ${type}`);
  if (spec.sigBytes !== undefined && signature.length !== spec.sigBytes) return false;
  return verify(
    spec.hash,
    data,
    spec.keyType === "ec"
      ? { key, dsaEncoding: "ieee-p1363" }
      : spec.pss
        ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
        : key,
    signature,
  );
}
