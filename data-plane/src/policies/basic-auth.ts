/**
 * HTTP basic auth (RFC 7617) on a route (docs/access-control.md), the exchange's phase right after
 * the route's IP rules, the same for HTTP/1.1, h2c and h2.
 *
 * Passwords are checked against bcrypt hashes by @node-rs/bcrypt on libuv's thread pool: a check costs
 * tens of milliseconds of CPU and never blocks the event loop. Verified credentials are remembered
 * (BasicAuthUsers.cache) by an HMAC of user and password under a key made at start-up, so a client
 * sending the same good credentials costs one bcrypt per five minutes, and nothing kept in memory is
 * a password or helps to find one. An unknown user's password is checked against the costliest hash of
 * the Secret (the result ignored), so the answer's timing does not tell which users exist. At most MAX_VERIFYING checks run at once per
 * process; past that a request gets 503 auth_busy rather than queueing CPU work an attacker chose.
 * Credentials never reach a log: the error says only that they are missing or wrong.
 */
import { createHmac, randomBytes } from "node:crypto";
import { verify } from "@node-rs/bcrypt";
import { AGW_ERRORS } from "../engine/errors.ts";
import type { AuthRefusal, RequestView, RouteAuth } from "../runtime/types.ts";

const CACHE_TTL_MS = 5 * 60_000;
const CACHE_MAX = 10_000;
/** bcrypt checks in flight per process (the thread pool has 4 threads by default). */
export const MAX_VERIFYING = 16;
let verifying = 0;

const HMAC_KEY = randomBytes(32);

export type { AuthRefusal } from "../runtime/types.ts";

/** One Secret's users, built once per config; its cache lives as long as the config. */
export class BasicAuthUsers {
  private readonly hashes: ReadonlyMap<string, string>;
  /** The hash of the highest cost: unknown users cost as much as known ones. */
  private readonly decoy: string;
  /** HMAC(user:password) → when the verification expires. */
  private readonly verified = new Map<string, number>();

  constructor(users: ReadonlyArray<{ readonly name: string; readonly hash: string }>) {
    this.hashes = new Map(users.map((u) => [u.name, u.hash]));
    // "$2b$NN$...": the cost is characters 4-5.
    this.decoy = users.reduce(
      (a, u) => (u.hash.slice(4, 6) > a.slice(4, 6) ? u.hash : a),
      users[0]?.hash ?? "",
    );
  }

  /** Whether `user` with `password` is valid; true from the cache without a bcrypt check. */
  check(user: string, password: string): boolean | Promise<boolean> | null {
    const key = createHmac("sha256", HMAC_KEY).update(user).update("\0").update(password).digest("base64");
    const until = this.verified.get(key);
    const now = Date.now();
    if (until !== undefined) {
      if (until > now) return true;
      this.verified.delete(key);
    }
    if (verifying >= MAX_VERIFYING) return null;
    verifying++;
    const hash = this.hashes.get(user);
    return verify(password, hash ?? this.decoy).then(
      (ok) => {
        verifying--;
        if (!ok || hash === undefined) return false;
        if (this.verified.size >= CACHE_MAX)
          this.verified.delete(this.verified.keys().next().value as string);
        this.verified.set(key, now + CACHE_TTL_MS);
        return true;
      },
      () => {
        verifying--;
        return false;
      },
    );
  }
}

const BUSY: AuthRefusal = {
  status: 503,
  code: AGW_ERRORS.AGW_ERR_AUTH_BUSY,
  message: "too many credential checks at once",
  fields: [],
};

/** A route's basic auth: its users and the challenge it answers with. */
export class BasicAuth implements RouteAuth {
  readonly users: BasicAuthUsers;
  private readonly missing: AuthRefusal;
  private readonly wrong: AuthRefusal;

  constructor(users: BasicAuthUsers, realm: string) {
    this.users = users;
    const challenge = [["www-authenticate", `Basic realm="${realm}", charset="UTF-8"`]] as const;
    this.missing = {
      status: 401,
      code: AGW_ERRORS.AGW_ERR_UNAUTHORIZED,
      message: "basic auth credentials are required",
      fields: challenge,
    };
    this.wrong = {
      status: 401,
      code: AGW_ERRORS.AGW_ERR_UNAUTHORIZED,
      message: "the basic auth credentials are not valid",
      fields: challenge,
    };
  }

  /** null: the credentials are valid; else the refusal (or a promise of either). */
  check(req: RequestView): AuthRefusal | null | Promise<AuthRefusal | null> {
    const value = req.header("authorization");
    // One Authorization field: a second one (joined with ", ") is refused, not guessed at.
    if (value === undefined || value.length > 4096) return this.missing;
    const m = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(value);
    if (m === null) return this.missing;
    const decoded = Buffer.from(m[1] as string, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon <= 0) return this.wrong;
    const r = this.users.check(decoded.slice(0, colon), decoded.slice(colon + 1));
    if (r === null) return BUSY;
    if (r === true) return null;
    if (r === false) return this.wrong;
    return r.then((ok) => (ok ? null : this.wrong));
  }
}
