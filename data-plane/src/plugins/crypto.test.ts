/**
 * The crypto host interface against real keys and signatures made with node:crypto: each algorithm
 * verifies what it should, refuses tampered data, and refuses a key of the wrong kind (no
 * algorithm confusion), private key material and inputs past the caps.
 */
import assert from "node:assert/strict";
import { constants, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { test } from "node:test";
import { CRYPTO_LIMITS, verifySignature } from "./crypto.ts";

const data = new TextEncoder().encode("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9");
const jwk = (k: KeyObject) => ({ tag: "jwk" as const, val: JSON.stringify(k.export({ format: "jwk" })) });
const pem = (k: KeyObject) => ({
  tag: "pem" as const,
  val: String(k.export({ format: "pem", type: "spki" })),
});

function refused(f: () => unknown, reason: RegExp): void {
  assert.throws(f, (e: { payload?: string }) => typeof e.payload === "string" && reason.test(e.payload));
}

const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" });
const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
const ed = generateKeyPairSync("ed25519");
const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });

test("ES256, ES384, Ed25519, RS256 and PS256 verify real signatures and refuse tampered ones", () => {
  const cases = [
    ["es256", p256, sign("sha256", data, { key: p256.privateKey, dsaEncoding: "ieee-p1363" })],
    ["es384", p384, sign("sha384", data, { key: p384.privateKey, dsaEncoding: "ieee-p1363" })],
    ["ed25519", ed, sign(null, data, ed.privateKey)],
    ["rs256", rsa, sign("sha256", data, rsa.privateKey)],
    [
      "ps256",
      rsa,
      sign("sha256", data, {
        key: rsa.privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
      }),
    ],
  ] as const;
  for (const [alg, pair, sig] of cases) {
    for (const key of [jwk(pair.publicKey), pem(pair.publicKey)])
      assert.equal(verifySignature(alg, key, data, sig), true, `${alg} ${key.tag}`);
    const tampered = Uint8Array.from(data);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
    assert.equal(verifySignature(alg, jwk(pair.publicKey), tampered, sig), false, `${alg} tampered data`);
    const badSig = Uint8Array.from(sig);
    badSig[5] = (badSig[5] as number) ^ 0x80;
    assert.equal(verifySignature(alg, jwk(pair.publicKey), data, badSig), false, `${alg} tampered signature`);
  }
  // A DER-encoded ECDSA signature is not the JWS form (r || s): refused, not reinterpreted.
  const der = sign("sha256", data, p256.privateKey);
  assert.equal(verifySignature("es256", jwk(p256.publicKey), data, der), false);
});

test("a key of the wrong kind is refused: no algorithm confusion", () => {
  const sig = sign("sha256", data, { key: p256.privateKey, dsaEncoding: "ieee-p1363" });
  refused(() => verifySignature("es256", jwk(p384.publicKey), data, sig), /es256 needs an EC prime256v1 key/);
  refused(() => verifySignature("es256", jwk(rsa.publicKey), data, sig), /needs an EC/);
  refused(() => verifySignature("es256", jwk(ed.publicKey), data, sig), /needs an EC/);
  refused(() => verifySignature("rs256", jwk(p256.publicKey), data, sig), /rs256 needs an RSA key/);
  refused(() => verifySignature("ed25519", jwk(p256.publicKey), data, sig), /needs an Ed25519 key/);
  refused(() => verifySignature("hs256", jwk(p256.publicKey), data, sig), /unknown algorithm hs256/);
  refused(() => verifySignature("none", jwk(p256.publicKey), data, sig), /unknown algorithm none/);
  const small = generateKeyPairSync("rsa", { modulusLength: 1024 });
  refused(() => verifySignature("rs256", jwk(small.publicKey), data, sig), /2048 bits/);
});

test("private or symmetric key material, non-keys and oversized inputs are refused", () => {
  const priv = { tag: "jwk" as const, val: JSON.stringify(p256.privateKey.export({ format: "jwk" })) };
  refused(() => verifySignature("es256", priv, data, new Uint8Array(64)), /private or symmetric/);
  const oct = { tag: "jwk" as const, val: JSON.stringify({ kty: "oct", k: "c2VjcmV0" }) };
  refused(() => verifySignature("es256", oct, data, new Uint8Array(64)), /private or symmetric/);
  const privPem = {
    tag: "pem" as const,
    val: String(p256.privateKey.export({ format: "pem", type: "pkcs8" })),
  };
  refused(() => verifySignature("es256", privPem, data, new Uint8Array(64)), /PUBLIC KEY/);
  refused(
    () => verifySignature("es256", { tag: "jwk", val: "{" }, data, new Uint8Array(64)),
    /cannot read the key/,
  );
  const big = { tag: "jwk" as const, val: " ".repeat(CRYPTO_LIMITS.keyMaxBytes + 1) };
  refused(() => verifySignature("es256", big, data, new Uint8Array(64)), /key larger than/);
  const sig = sign("sha256", data, { key: p256.privateKey, dsaEncoding: "ieee-p1363" });
  refused(
    () => verifySignature("es256", jwk(p256.publicKey), new Uint8Array(CRYPTO_LIMITS.dataMaxBytes + 1), sig),
    /data larger than/,
  );
});
