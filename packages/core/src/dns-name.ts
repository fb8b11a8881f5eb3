/**
 * DNS names as TLS server names (SNI) carry them: lower-case letters, digits, hyphens and underscores
 * in dot-separated labels of 1–63, at most 253 in all, no trailing dot (RFC 6066 §3). The one
 * definition for config.yaml's SNI routes, the data plane's check of pushed routes and its
 * ClientHello reader.
 */
const LABEL = "[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?";

/** A lower-case DNS name. */
export const DNS_NAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);

/** A lower-case DNS name, or "*." and one: a wildcard matching exactly one label. */
export const SERVER_NAME_RULE = new RegExp(`^(?:\\*\\.)?(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);
