/**
 * htpasswd files for basic auth (docs/access-control.md): `user:hash` lines, bcrypt hashes only
 * (`htpasswd -B`: $2y$, $2b$, $2a$). The other formats htpasswd writes are refused with a reason:
 * `{SHA}` is one unsalted SHA-1, `$apr1$` (MD5) and crypt(3) are fast to brute-force, and a plaintext
 * password is no hash. The one parser for the config loader, the Kubernetes provider and the data plane.
 */

const BCRYPT = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;
/** User names as htpasswd and RFC 7617 allow them: no colon, no control characters. */
const USER = /^[^:\p{Cc}]{1,255}$/u;

export interface HtpasswdUser {
  readonly user: string;
  readonly hash: string;
}

/** Why a hash is refused, "" when it is a bcrypt hash. */
export function hashProblem(hash: string): string {
  if (BCRYPT.test(hash)) return "";
  if (hash.startsWith("{SHA}")) return "{SHA} (unsalted SHA-1) hashes are refused: use bcrypt (htpasswd -B)";
  if (hash.startsWith("$apr1$") || hash.startsWith("$1$"))
    return "MD5 hashes are refused: use bcrypt (htpasswd -B)";
  if (hash.startsWith("$2")) return "a malformed bcrypt hash (cost 04-31, 53 characters of salt and hash)";
  return "not a bcrypt hash (crypt and plaintext passwords are refused): use htpasswd -B";
}

/** The users of an htpasswd text; throws an Error naming the line (never its hash) of the first fault. */
export function parseHtpasswd(text: string): HtpasswdUser[] {
  const users: HtpasswdUser[] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, "");
    if (line.trim() === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    const user = colon < 0 ? "" : line.slice(0, colon);
    if (!USER.test(user)) throw new Error(`htpasswd line ${i + 1}: expected user:hash`);
    const problem = hashProblem(line.slice(colon + 1));
    if (problem !== "") throw new Error(`htpasswd line ${i + 1} (${user}): ${problem}`);
    if (seen.has(user)) throw new Error(`htpasswd line ${i + 1}: user ${user} is listed twice`);
    seen.add(user);
    users.push({ user, hash: line.slice(colon + 1) });
  }
  if (users.length === 0) throw new Error("htpasswd: no users");
  return users;
}
