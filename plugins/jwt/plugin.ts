/**
 * jwt: lets a request through only with a valid `Authorization: Bearer <JWT>`.
 * RS256, ES256, ES384 and EdDSA (Ed25519) against a JWKS fetched through the http-request import
 * (the plugin's `httpAllowHosts` must list its host), cached in the plugin's kv store for
 * `jwksTtlMs`; a token whose `kid` the cache lacks refetches the JWKS at once (key rotation), at most
 * once per `refetchMinMs`. HS256 with `secret` only (never with a JWKS key). Claims: exp and nbf with
 * `clockSkewSec`, `issuer` and `audience` when configured. The verified subject goes upstream as
 * `x-jwt-sub`. Refused: 401 with a JSON error saying why.
 *
 * Config: { "jwksUrl": "https://idp/.well-known/jwks.json", "issuer": "...", "audience": "...",
 *           "secret": "...", "clockSkewSec": 60, "jwksTtlMs": 300000, "refetchMinMs": 1000,
 *           "algorithms": ["ES256", ...] (default: every one below; HS256 only with a secret) }
 *
 * No algorithm confusion: the token's `alg` must be accepted, and the key it names must be of the
 * algorithm's type (kty, crv, and the key's own `alg` when it has one); `none` is never accepted.
 * SHA-256, HMAC and RS256 are plain JavaScript here; ES256, ES384 and EdDSA go through the host's
 * crypto interface (`crypto: true` in the plugin's config), P-256 arithmetic being too slow in QuickJS.
 */
import { nowMs } from "agw:plugin/clock@0.2.0";
import { get as getConfig } from "agw:plugin/config@0.2.0";
import { verify as hostVerify } from "agw:plugin/crypto@0.2.0";
import { send } from "agw:plugin/http-request@0.2.0";
import { get as kvGet, set as kvSet } from "agw:plugin/kv@0.2.0";
import { log } from "agw:plugin/log@0.2.0";

interface JwtConfig {
  jwksUrl: string;
  issuer: string;
  audience: string;
  secret: string;
  clockSkewSec: number;
  jwksTtlMs: number;
  refetchMinMs: number;
  algorithms: string[];
}

interface Jwk {
  kty?: string;
  kid?: string;
  alg?: string;
  crv?: string;
  n?: string;
  e?: string;
}

/** The asymmetric algorithms and the keys they take; the host verifies all but RS256. */
const ASYMMETRIC: Record<string, { kty: string; crv?: string; host?: string }> = {
  RS256: { kty: "RSA" },
  ES256: { kty: "EC", crv: "P-256", host: "es256" },
  ES384: { kty: "EC", crv: "P-384", host: "es384" },
  EdDSA: { kty: "OKP", crv: "Ed25519", host: "ed25519" },
};
const ALL_ALGORITHMS = ["HS256", ...Object.keys(ASYMMETRIC)];

let lastJson = "";
let config: JwtConfig = {
  jwksUrl: "",
  issuer: "",
  audience: "",
  secret: "",
  clockSkewSec: 60,
  jwksTtlMs: 300000,
  refetchMinMs: 1000,
  algorithms: ALL_ALGORITHMS,
};

function currentConfig(): JwtConfig {
  const json = getConfig();
  if (json !== lastJson) {
    const raw = JSON.parse(json) as Record<string, unknown>;
    config = {
      jwksUrl: String(raw.jwksUrl ?? ""),
      issuer: String(raw.issuer ?? ""),
      audience: String(raw.audience ?? ""),
      secret: String(raw.secret ?? ""),
      clockSkewSec: Number(raw.clockSkewSec ?? 60),
      jwksTtlMs: Number(raw.jwksTtlMs ?? 300000),
      refetchMinMs: Number(raw.refetchMinMs ?? 1000),
      algorithms: Array.isArray(raw.algorithms) ? raw.algorithms.map(String) : ALL_ALGORITHMS,
    };
    lastJson = json;
  }
  return config;
}

// ---------------------------------------------------------------- bytes

function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

function utf8(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return decodeURIComponent(escape(s));
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function base64url(text: string): Uint8Array {
  const clean = text.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const v = B64.indexOf(ch);
    if (v < 0) throw new Error("invalid base64url");
    value = (value << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >> bits) & 0xff);
    }
  }
  return new Uint8Array(out);
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

// ---------------------------------------------------------------- SHA-256, HMAC

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

function sha256(data: Uint8Array): Uint8Array {
  const length = data.length;
  const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 4, length * 8);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15] as number;
      const b = w[i - 2] as number;
      const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
      const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
      w[i] = ((w[i - 16] as number) + s0 + (w[i - 7] as number) + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h as unknown as number[];
    for (let i = 0; i < 64; i++) {
      const s1 = rotr(e as number, 6) ^ rotr(e as number, 11) ^ rotr(e as number, 25);
      const ch = ((e as number) & (f as number)) ^ (~(e as number) & (g as number));
      const t1 = ((hh as number) + s1 + ch + (K[i] as number) + (w[i] as number)) | 0;
      const s0 = rotr(a as number, 2) ^ rotr(a as number, 13) ^ rotr(a as number, 22);
      const maj =
        ((a as number) & (b as number)) ^ ((a as number) & (c as number)) ^ ((b as number) & (c as number));
      const t2 = (s0 + maj) | 0;
      hh = g;
      g = f;
      f = e;
      e = ((d as number) + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    const next = [a, b, c, d, e, f, g, hh] as number[];
    for (let i = 0; i < 8; i++) h[i] = ((h[i] as number) + (next[i] as number)) | 0;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, h[i] as number);
  return out;
}

function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  const block = new Uint8Array(64);
  block.set(key.length > 64 ? sha256(key) : key);
  const inner = new Uint8Array(64 + data.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = (block[i] as number) ^ 0x36;
    outer[i] = (block[i] as number) ^ 0x5c;
  }
  inner.set(data, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

// ---------------------------------------------------------------- RSA (PKCS#1 v1.5, SHA-256)

const SHA256_DIGEST_INFO = "3031300d060960864801650304020105000420";

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let b = base % modulus;
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
    e >>= 1n;
  }
  return result;
}

function verifyRs256(jwk: Jwk, input: Uint8Array, signature: Uint8Array): boolean {
  if (jwk.kty !== "RSA" || !jwk.n || !jwk.e) return false;
  const nBytes = base64url(jwk.n);
  const n = BigInt(`0x${hex(nBytes)}`);
  const e = BigInt(`0x${hex(base64url(jwk.e))}`);
  const k = nBytes[0] === 0 ? nBytes.length - 1 : nBytes.length;
  if (signature.length !== k) return false;
  const em = modPow(BigInt(`0x${hex(signature)}`), e, n)
    .toString(16)
    .padStart(2 * k, "0");
  const tail = `00${SHA256_DIGEST_INFO}${hex(sha256(input))}`;
  const expected = `0001${"f".repeat(2 * k - 4 - tail.length)}${tail}`;
  return em === expected;
}

// ---------------------------------------------------------------- JWKS

/** The JWKS from the kv cache, fetched when missing or when `refetch` and not fetched just now. */
function jwks(cfg: JwtConfig, refetch: boolean): Jwk[] | string {
  // An absent option<string> arrives as null from componentize-qjs.
  const cached = kvGet("jwks") ?? undefined;
  if (cached !== undefined && !refetch) return JSON.parse(cached) as Jwk[];
  if (cached !== undefined && (kvGet("jwks-recent") ?? undefined) !== undefined)
    return JSON.parse(cached) as Jwk[];
  if (!cfg.jwksUrl) return "no jwksUrl configured";
  let body: string;
  try {
    const res = send({
      method: "GET",
      url: cfg.jwksUrl,
      headers: [["accept", "application/json"]],
      body: new Uint8Array(0),
      timeoutMs: 0,
    });
    if (res.status !== 200) return `the JWKS endpoint answered ${res.status}`;
    body = utf8(res.body);
  } catch (e) {
    const payload = (e as { payload?: unknown }).payload ?? (e as Error).message;
    log("warn", `jwt: fetching the JWKS failed: ${String(payload)}`);
    return cached === undefined ? "the JWKS could not be fetched" : (JSON.parse(cached) as Jwk[]);
  }
  const keys = (JSON.parse(body) as { keys?: Jwk[] }).keys ?? [];
  // u64 parameters take a number in componentize-qjs guests; a BigInt traps.
  kvSet("jwks", JSON.stringify(keys), cfg.jwksTtlMs);
  kvSet("jwks-recent", "1", Math.max(cfg.refetchMinMs, 1));
  return keys;
}

// ---------------------------------------------------------------- the filter

function refuse(error: string, message: string) {
  return {
    tag: "respond",
    val: {
      status: 401,
      headers: [
        ["content-type", "application/json"],
        ["www-authenticate", `Bearer error="invalid_token", error_description="${message}"`],
      ],
      body: ascii(JSON.stringify({ error, message })),
    },
  };
}

function verify(cfg: JwtConfig, token: string): string | { sub: string } {
  const parts = token.split(".");
  if (parts.length !== 3) return "malformed token";
  const [h, p, s] = parts as [string, string, string];
  let header: { alg?: string; kid?: string };
  let claims: Record<string, unknown>;
  let signature: Uint8Array;
  try {
    header = JSON.parse(utf8(base64url(h)));
    claims = JSON.parse(utf8(base64url(p)));
    signature = base64url(s);
  } catch {
    return "malformed token";
  }
  const input = ascii(`${h}.${p}`);
  const alg = String(header.alg);
  if (!cfg.algorithms.includes(alg) || !ALL_ALGORITHMS.includes(alg))
    return `algorithm ${alg} is not accepted`;
  if (alg === "HS256") {
    if (!cfg.secret) return "HS256 is not accepted";
    if (hex(hmacSha256(ascii(cfg.secret), input)) !== hex(signature)) return "bad signature";
  } else {
    const want = ASYMMETRIC[alg] as { kty: string; crv?: string; host?: string };
    let keys = jwks(cfg, false);
    const fits = (k: Jwk) => k.kty === want.kty && (want.crv === undefined || k.crv === want.crv);
    // A token without kid takes the first key of its algorithm's type.
    const find = (ks: Jwk[]) => ks.find((k) => (header.kid === undefined ? fits(k) : k.kid === header.kid));
    let key = typeof keys === "string" ? undefined : find(keys);
    if (key === undefined) {
      keys = jwks(cfg, true);
      if (typeof keys === "string") return keys;
      key = find(keys);
    }
    if (key === undefined) return `no key "${header.kid ?? ""}" in the JWKS`;
    if (!fits(key) || (key.alg !== undefined && key.alg !== alg))
      return `key "${key.kid ?? ""}" is not a key for ${alg}`;
    if (want.host === undefined) {
      if (!verifyRs256(key, input, signature)) return "bad signature";
    } else {
      try {
        if (!hostVerify(want.host, { tag: "jwk", val: JSON.stringify(key) }, input, signature))
          return "bad signature";
      } catch (e) {
        const payload = (e as { payload?: unknown }).payload ?? (e as Error).message;
        log("warn", `jwt: ${alg} verification failed: ${String(payload)}`);
        return `${alg} cannot be verified`;
      }
    }
  }
  const now = Number(nowMs()) / 1000;
  if (typeof claims.exp === "number" && now > claims.exp + cfg.clockSkewSec) return "token expired";
  if (typeof claims.nbf === "number" && now + cfg.clockSkewSec < claims.nbf) return "token not valid yet";
  if (cfg.issuer && claims.iss !== cfg.issuer) return "wrong issuer";
  if (cfg.audience) {
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(cfg.audience)) return "wrong audience";
  }
  return { sub: typeof claims.sub === "string" ? claims.sub : "" };
}

export function onRequest(request: { headers: [string, string][] }) {
  const cfg = currentConfig();
  let token: string | undefined;
  for (const [name, value] of request.headers)
    if (name === "authorization" && /^bearer /i.test(value)) token = value.slice(7).trim();
  if (token === undefined) return refuse("missing_token", "a bearer token is required");
  const result = verify(cfg, token);
  if (typeof result === "string") return refuse("invalid_token", result);
  return {
    tag: "mutate",
    val: { setHeaders: [["x-jwt-sub", result.sub]], removeHeaders: [], path: undefined },
  };
}
