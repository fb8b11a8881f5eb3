/**
 * The config.yaml format. One zod schema is the single source: it validates, it gives the TypeScript
 * types, and `npm run gen` publishes it as docs/config.schema.json. Checks that need the whole document
 * (references, uniqueness) live in semantic.ts.
 */
import { z } from "zod";
import { parseCidr } from "../cidr.ts";
import { SERVER_NAME_RULE } from "../dns-name.ts";
import { PLUGIN_BODY_LIMITS } from "../ir.ts";
import { linearRegexError } from "../regex.ts";
import { parseHttpGrant } from "./http-grant.ts";

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "250ms", "2s", "1.5m", "1h" → milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text);
  if (!m?.[1] || !m[2]) return undefined;
  return Math.round(Number(m[1]) * (UNIT_MS[m[2]] ?? 0));
}

const duration = z
  .string()
  .regex(DURATION, 'expected a duration such as "500ms", "2s", "1m"')
  .describe('Duration: a number followed by ms, s, m or h, e.g. "2s".');

const byteCount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const headerName = z
  .string()
  .regex(TOKEN, "invalid header name")
  .describe("HTTP header name (case-insensitive).");

function regexSource(what: string) {
  return z
    .string()
    .min(1)
    .superRefine((source, ctx) => {
      const error = linearRegexError(source);
      if (error !== undefined) ctx.addIssue({ code: "custom", message: error });
    })
    .describe(
      `ECMAScript regular expression matched against the whole ${what}, run in linear time: ` +
        "no backreferences, lookahead or counted repetitions above 16 (docs/security.md).",
    );
}

const HOST = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
const host = z
  .string()
  .regex(HOST, 'expected a lower-case host name, optionally with a leading "*." wildcard')
  .describe('Exact host ("api.example.com") or leading wildcard ("*.example.com").');

function exactlyOne<T extends Record<string, unknown>>(keys: readonly (keyof T & string)[]) {
  return (value: T, ctx: z.RefinementCtx) => {
    const given = keys.filter((k) => value[k] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({ code: "custom", message: `expected exactly one of ${keys.join(", ")}` });
    }
  };
}

const pathMatch = z
  .strictObject({
    exact: z.string().startsWith("/", "a path starts with /").optional(),
    prefix: z.string().startsWith("/", "a path starts with /").optional(),
    regex: regexSource("path").optional(),
  })
  .superRefine(exactlyOne(["exact", "prefix", "regex"]))
  .describe("Exactly one of exact, prefix or regex.");

const valueMatch = (what: string, name: z.ZodString) =>
  z
    .strictObject({
      name,
      exact: z.string().optional(),
      regex: regexSource(what).optional(),
      present: z.boolean().optional(),
      invert: z.boolean().optional(),
    })
    .superRefine(exactlyOne(["exact", "regex", "present"]));

const headerMatch = valueMatch("header value", headerName);
const queryMatch = valueMatch("query value", z.string().min(1));

const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"] as const;

const headerOps = z
  .strictObject({
    add: z.record(headerName, z.string()).optional().describe("Appended after existing values."),
    set: z.record(headerName, z.string()).optional().describe("Replace existing values."),
    remove: z.array(headerName).optional(),
  })
  .describe("Header operations.");

const weightedCluster = z.strictObject({
  name: z.string().min(1),
  weight: z.number().int().min(0).max(1_000_000),
});

const pluginRef = z.strictObject({
  name: z.string().min(1),
  config: z.record(z.string(), z.unknown()).optional(),
});

const NAME = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
const resourceNameRef = z.string().min(1);
const resourceName = z
  .string()
  .regex(NAME, "names are 1-63 characters of a-z, 0-9, '.', '_' and '-', starting and ending alphanumeric");

const RETRY_ON = [
  "connect-failure",
  "refused-stream",
  "reset",
  "5xx",
  "gateway-error",
  "retriable-status-codes",
] as const;

const statusCode = z.number().int().min(100).max(599);

const retrySchema = z
  .strictObject({
    retries: z
      .number()
      .int()
      .min(0)
      .max(10)
      .optional()
      .describe("Retries after the first attempt; default 1."),
    retryOn: z
      .array(z.enum(RETRY_ON))
      .min(1)
      .optional()
      .describe("Failures that are retried; default [connect-failure, reset, gateway-error]."),
    retriableStatusCodes: z.array(statusCode).optional().describe("With retryOn retriable-status-codes."),
    perTryTimeout: duration.optional().describe("Each attempt's time to the response head; default none."),
    backoffBase: duration.optional().describe("Default 25ms."),
    backoffMax: duration.optional().describe("Default 10 × backoffBase."),
    retryNonIdempotent: z
      .boolean()
      .optional()
      .describe("Retry POST, PATCH and other non-idempotent methods too; default false."),
  })
  .describe("Retry policy (docs/traffic/retries.md).");

const rewriteSchema = z
  .strictObject({
    pathPrefix: z
      .string()
      .startsWith("/", "a path starts with /")
      .optional()
      .describe("Replaces the matched path prefix (the route must match by prefix)."),
    pathRegex: z
      .strictObject({
        pattern: regexSource("path"),
        substitution: z.string().describe("Replacement; $1, $<name> refer to capture groups."),
      })
      .optional()
      .describe("Replaces every match of pattern in the path."),
    host: z.string().min(1).optional().describe("Host header sent upstream."),
    autoHost: z
      .boolean()
      .optional()
      .describe("Send the chosen endpoint's host:port as the Host header; default false."),
  })
  .superRefine((value, ctx) => {
    if (value.pathPrefix !== undefined && value.pathRegex !== undefined)
      ctx.addIssue({ code: "custom", message: "pathPrefix and pathRegex are exclusive" });
    if (value.host !== undefined && value.autoHost === true)
      ctx.addIssue({ code: "custom", message: "host and autoHost are exclusive" });
  })
  .describe("Rewrites of the request sent upstream (docs/traffic/rewrite.md).");

const redirectSchema = z
  .strictObject({
    scheme: z.enum(["http", "https"]).optional().describe("Default: the request's."),
    host: z.string().min(1).optional().describe("Default: the request's."),
    port: z.number().int().min(1).max(65535).optional().describe("Default: the request's (or none)."),
    path: z.string().startsWith("/", "a path starts with /").optional().describe("Replaces the whole path."),
    pathPrefix: z
      .string()
      .startsWith("/", "a path starts with /")
      .optional()
      .describe("Replaces the matched prefix (the route must match by prefix)."),
    stripQuery: z.boolean().optional().describe("Drop the query string; default false."),
    status: z
      .number()
      .int()
      .refine((n) => [301, 302, 303, 307, 308].includes(n), "expected 301, 302, 303, 307 or 308")
      .optional()
      .describe("Default 301."),
  })
  .superRefine((value, ctx) => {
    if (value.path !== undefined && value.pathPrefix !== undefined)
      ctx.addIssue({ code: "custom", message: "path and pathPrefix are exclusive" });
  })
  .describe("Answer with a redirect instead of proxying (docs/traffic/redirects.md).");

const directResponseSchema = z
  .strictObject({
    status: statusCode.describe("Status code."),
    body: z.string().optional().describe("Body; default empty."),
    contentType: z.string().min(1).optional().describe("Default text/plain; charset=utf-8 with a body."),
  })
  .describe("Answer with a fixed response instead of proxying (docs/traffic/direct-response.md).");

const corsSchema = z
  .strictObject({
    allowOrigins: z
      .array(z.string().min(1))
      .min(1)
      .describe('Exact origins ("https://app.example.com"), or "*" for any.'),
    allowMethods: z
      .array(z.string().regex(TOKEN, "invalid method"))
      .optional()
      .describe("Default GET, HEAD, POST."),
    allowHeaders: z.array(headerName).optional().describe("Default: the headers the preflight asks for."),
    exposeHeaders: z.array(headerName).optional(),
    allowCredentials: z.boolean().optional().describe("Default false."),
    maxAge: duration.optional().describe("How long browsers cache a preflight; default none."),
  })
  .describe("CORS: preflights answered by the gateway (docs/traffic/cors.md).");

const mirrorSchema = z
  .strictObject({
    cluster: z.string().min(1),
    percent: z.number().min(0).max(100).optional().describe("Share of requests mirrored; default 100."),
    maxBodyBytes: z
      .number()
      .int()
      .min(0)
      .max(16 * 1024 * 1024)
      .optional()
      .describe(
        "Requests whose whole body arrived with the head within this size are mirrored; default 65536.",
      ),
  })
  .describe("Fire-and-forget copies of requests to a shadow cluster (docs/traffic/mirroring.md).");

const rateLimitKey = z
  .union(
    [
      z.enum(["clientAddress", "route"]),
      z.strictObject({
        header: headerName.describe("A request header's value; requests without it share one bucket."),
      }),
    ],
    { error: 'expected "clientAddress", "route" or {header: NAME}' },
  )
  .describe('"clientAddress", "route", or {header: NAME}.');

const rateLimitSchema = z
  .strictObject({
    limits: z
      .array(
        z
          .strictObject({
            name: z
              .string()
              .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "1-63 characters of a-z, 0-9, '.', '_', '-'")
              .optional()
              .describe('Names the limit in RateLimit-Policy; default "limit-N".'),
            key: z
              .array(rateLimitKey)
              .max(8)
              .optional()
              .describe("What a bucket is per (a combination when several); default [route]."),
            requests: z.number().int().min(1).max(1_000_000_000).describe("Tokens refilled per `per`."),
            per: duration
              .refine((d) => (parseDuration(d) ?? 0) >= 1, "at least 1ms")
              .describe("Refill period."),
            burst: z
              .number()
              .int()
              .min(1)
              .max(1_000_000_000)
              .optional()
              .describe("Most tokens a bucket holds (requests at once after idling); default requests."),
            ipv6Prefix: z
              .number()
              .int()
              .min(1)
              .max(128)
              .optional()
              .describe("IPv6 client addresses are keyed by this many leading bits; default 64."),
          })
          .describe("A token bucket per key."),
      )
      .min(1)
      .max(16)
      .superRefine((limits, ctx) => {
        const seen = new Set<string>();
        limits.forEach((l, i) => {
          const name = l.name ?? `limit-${i}`;
          if (seen.has(name))
            ctx.addIssue({ code: "custom", path: [i, "name"], message: `"${name}" is used twice` });
          seen.add(name);
        });
      }),
    headers: z
      .boolean()
      .optional()
      .describe("Send RateLimit-Policy and RateLimit response fields (IETF draft); default true."),
  })
  .describe(
    "Local rate limits: token buckets shared by the data plane's workers (docs/traffic/rate-limits.md).",
  );

const MEDIA_TYPE = /^[a-z0-9!#$&^_.+-]+\/([a-z0-9!#$&^_.+-]+|\*)$/;

const compressionSchema = z
  .strictObject({
    codings: z
      .array(z.enum(["br", "zstd", "gzip"]))
      .min(1)
      .refine((c) => new Set(c).size === c.length, "a coding is listed twice")
      .optional()
      .describe(
        "Codings in preference order (ties of Accept-Encoding q-values go to the first); default [br, zstd, gzip].",
      ),
    minBytes: byteCount
      .optional()
      .describe("Responses with a smaller Content-Length go as they are; default 1024."),
    contentTypes: z
      .array(
        z
          .string()
          .regex(MEDIA_TYPE, 'expected a lower-case media type such as "application/json" or "text/*"'),
      )
      .min(1)
      .optional()
      .describe(
        "Media types compressed; default Envoy's (text/html, text/plain, text/css, text/xml, application/json, application/javascript, application/xhtml+xml, image/svg+xml).",
      ),
    eventStream: z
      .boolean()
      .optional()
      .describe("Compress text/event-stream too, flushed after each upstream chunk; default false."),
    levels: z
      .strictObject({
        gzip: z.number().int().min(1).max(9).optional().describe("Default 6."),
        br: z.number().int().min(1).max(11).optional().describe("Default 4."),
        zstd: z.number().int().min(1).max(22).optional().describe("Default 3."),
      })
      .optional(),
  })
  .describe("Response compression negotiated from Accept-Encoding (docs/traffic/compression.md).");

const cidr = z
  .string()
  .superRefine((text, ctx) => {
    const c = parseCidr(text);
    if (typeof c === "string") ctx.addIssue({ code: "custom", message: c });
  })
  .describe('CIDR prefix ("10.0.0.0/8", "2001:db8::/32") or a bare address; host bits must be zero.');

export const ipRulesSchema = z
  .strictObject({
    allow: z
      .array(cidr)
      .optional()
      .describe("When given, only client addresses in these prefixes get through."),
    deny: z
      .array(cidr)
      .optional()
      .describe("Client addresses in these prefixes are refused, even if allowed."),
  })
  .describe(
    "IP rules on the request's client address (docs/access-control.md): 403 client_address_denied. IPv4 prefixes match IPv4-mapped IPv6 clients too.",
  );

export const basicAuthSchema = z
  .strictObject({
    users: resourceNameRef.describe("The secret whose htpasswd lists the users."),
    realm: z
      .string()
      .regex(/^[\x20-\x7e]{1,128}$/, "printable ASCII without quotes")
      .refine((r) => !r.includes('"') && !r.includes("\\"), "printable ASCII without quotes")
      .optional()
      .describe('The realm of the 401 challenge; default "agw".'),
  })
  .describe(
    "HTTP basic auth (RFC 7617, docs/access-control.md): 401 without valid credentials; the Authorization header is not sent upstream.",
  );

export const routeSchema = z
  .strictObject({
    name: resourceName,
    match: z
      .strictObject({
        hosts: z.array(host).optional(),
        path: pathMatch.optional().describe("Defaults to prefix /."),
        methods: z.array(z.enum(METHODS)).optional(),
        headers: z.array(headerMatch).optional(),
        query: z.array(queryMatch).optional(),
      })
      .optional(),
    cluster: z.string().min(1).optional(),
    clusters: z.array(weightedCluster).min(1).optional().describe("Weighted clusters (traffic splitting)."),
    timeout: duration.optional().describe("Whole-request timeout; default 15s; 0s disables it."),
    requestHeaders: headerOps.optional(),
    responseHeaders: headerOps.optional(),
    plugins: z.array(pluginRef).optional(),
    retry: retrySchema.optional(),
    rewrite: rewriteSchema.optional(),
    redirect: redirectSchema.optional(),
    directResponse: directResponseSchema.optional(),
    cors: corsSchema.optional(),
    mirror: mirrorSchema.optional(),
    rateLimit: rateLimitSchema.optional(),
    compression: compressionSchema.optional(),
    accessLog: z
      .boolean()
      .optional()
      .describe("false leaves this route's requests out of the access log; default true."),
    maxRequestBodyBytes: byteCount
      .optional()
      .describe("Overrides the listener's limits.maxRequestBodyBytes for this route; 0 is unlimited."),
    connect: z
      .boolean()
      .optional()
      .describe(
        "true: CONNECT requests matched by this route (by host) open a TCP tunnel to the cluster's endpoint; otherwise CONNECT gets 405.",
      ),
    ipRules: ipRulesSchema.optional(),
    basicAuth: basicAuthSchema.optional(),
  })
  .describe("A route. Exactly one of cluster, clusters, redirect or directResponse.");

const pemSource = z
  .strictObject({
    file: z.string().min(1).optional().describe("PEM file, relative to config.yaml's directory."),
    pem: z.string().min(1).optional().describe("Inline PEM."),
  })
  .superRefine(exactlyOne(["file", "pem"]))
  .describe("Exactly one of file or pem. Read by the control plane; data planes hold it in memory only.");

export const secretSchema = z
  .strictObject({
    name: resourceName,
    certificate: pemSource.optional().describe("Certificate chain, leaf first (with key)."),
    key: pemSource.optional().describe("Private key of the certificate (RSA or ECDSA)."),
    ca: pemSource.optional().describe("CA bundle used to verify peers."),
    htpasswd: z
      .strictObject({
        file: z.string().min(1).optional().describe("htpasswd file, relative to config.yaml's directory."),
        text: z.string().min(1).optional().describe("Inline htpasswd lines."),
      })
      .superRefine(exactlyOne(["file", "text"]))
      .optional()
      .describe(
        "Basic auth users as htpasswd lines, bcrypt hashes only (htpasswd -B); sent only to authenticated data planes whose routes name it.",
      ),
  })
  .describe("Either certificate and key, ca, or htpasswd.");

const alpnList = z
  .array(z.enum(["h2", "http/1.1"]))
  .min(1)
  .optional()
  .describe("ALPN protocols in preference order; default [http/1.1].");

const dnsOrSanName = z.string().min(1);

export const listenerTlsSchema = z.strictObject({
  certificates: z
    .array(z.string().min(1))
    .min(1)
    .describe(
      'Certificate secrets; each serves the names in its certificate (SNI), the first is the default. "namespace/name" names a Kubernetes TLS Secret (needs the Kubernetes source).',
    ),
  minVersion: z.enum(["TLSv1.2", "TLSv1.3"]).optional().describe("Default TLSv1.2."),
  ciphers: z
    .string()
    .min(1)
    .optional()
    .describe(
      "OpenSSL cipher list for TLS 1.2, e.g. ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256.",
    ),
  alpn: alpnList,
  clientCertificate: z
    .strictObject({
      ca: z.string().min(1).describe("Secret with the CA bundle that signs client certificates."),
      required: z
        .boolean()
        .optional()
        .describe("Default true; false asks for a certificate but accepts none."),
      subjectAltNames: z
        .array(dnsOrSanName)
        .optional()
        .describe('Accepted SANs (DNS, URI, email, IP; "*." matches one DNS label); default any.'),
      commonNames: z.array(z.string().min(1)).optional().describe("Accepted subject CNs; default any."),
    })
    .optional()
    .describe("Downstream mTLS."),
});

export const listenerLimitsSchema = z
  .strictObject({
    maxRequestHeaderBytes: z
      .number()
      .int()
      .min(1024)
      .max(1024 * 1024)
      .optional()
      .describe("Request line plus header fields; larger heads get 431. Default 65536."),
    maxRequestHeaders: z
      .number()
      .int()
      .min(8)
      .max(10_000)
      .optional()
      .describe("Header fields in one request; more get 431. Default 100."),
    maxRequestBodyBytes: byteCount
      .optional()
      .describe("Request body bytes (per HTTP/2 stream too); larger bodies get 413. Default 0 (unlimited)."),
    headerTimeout: duration
      .optional()
      .describe("Time to receive a whole request head; then 408. Default 30s; 0s disables it."),
    bodyTimeout: duration
      .optional()
      .describe("Longest wait for the next bytes of a request body; then 408. Default 60s; 0s disables it."),
    idleTimeout: duration
      .optional()
      .describe(
        "Idle keep-alive connections and HTTP/2 sessions close after this. Default 60s; 0s disables it.",
      ),
    maxRequestsPerConnection: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe(
        "Requests (HTTP/2 streams) per downstream connection; the last response carries Connection: close (GOAWAY on HTTP/2). Default 0 (unlimited).",
      ),
    http2: z
      .strictObject({
        maxConcurrentStreams: z
          .number()
          .int()
          .min(1)
          .max(2 ** 31 - 1)
          .optional()
          .describe("SETTINGS_MAX_CONCURRENT_STREAMS. Default 128."),
        initialWindowSize: z
          .number()
          .int()
          .min(65535)
          .max(2 ** 31 - 1)
          .optional()
          .describe("SETTINGS_INITIAL_WINDOW_SIZE (per-stream receive window). Default 65535."),
        maxHeaderListBytes: z
          .number()
          .int()
          .min(1024)
          .max(1024 * 1024)
          .optional()
          .describe("SETTINGS_MAX_HEADER_LIST_SIZE. Default maxRequestHeaderBytes."),
      })
      .optional(),
  })
  .describe(
    "Downstream limits and timeouts (docs/proxy.md); a push applies them to new connections and requests.",
  );

export const listenerPathsSchema = z
  .strictObject({
    normalize: z
      .boolean()
      .optional()
      .describe(
        "RFC 3986: percent-encoded unreserved characters decoded, other percent-encodings upper-cased, dot segments removed. Default true.",
      ),
    mergeSlashes: z.boolean().optional().describe('Runs of "/" become one. Default true.'),
    escapedSlashes: z
      .enum(["reject", "keep", "decode"])
      .optional()
      .describe(
        '%2F, %5C and a raw backslash: reject (400), keep (passed as received, matched literally) or decode (each is a "/"). Default reject.',
      ),
  })
  .describe(
    "How request paths are normalised before routing (docs/routing.md); the upstream gets the result.",
  );

export const sniRouteSchema = z
  .strictObject({
    serverNames: z
      .array(
        z.string().regex(SERVER_NAME_RULE, 'expected a lower-case DNS name, or "*." and one (one label)'),
      )
      .min(1),
    cluster: z.string().min(1),
  })
  .describe(
    "Connections whose ClientHello names one of serverNames go to cluster; exact names before wildcards.",
  );

export const l4Schema = z
  .strictObject({
    idleTimeout: duration
      .optional()
      .describe("Both directions silent this long closes the connection. Default 1h; 0s disables it."),
    maxConnections: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe(
        "Connections open at once on this listener; more are closed when accepted. Default 0 (unlimited).",
      ),
    clientHelloTimeout: duration
      .optional()
      .describe("tls-passthrough: time for the whole ClientHello to arrive, from the accept. Default 10s."),
    maxClientHelloBytes: z
      .number()
      .int()
      .min(512)
      .max(65536)
      .optional()
      .describe("tls-passthrough: largest ClientHello accepted, record headers included. Default 16384."),
    maxConnectAttempts: z
      .number()
      .int()
      .min(1)
      .max(10)
      .optional()
      .describe(
        "Endpoints tried when connecting fails, a different one each time when there are several. Default 1.",
      ),
  })
  .describe("Timeouts and limits of a tcp or tls-passthrough listener (docs/l4.md).");

export const clientAddressSchema = z
  .strictObject({
    xffNumTrustedHops: z
      .number()
      .int()
      .min(1)
      .max(64)
      .optional()
      .describe(
        "Proxies in front of the listener, each appending to X-Forwarded-For: the client is the Nth address from the right of X-Forwarded-For plus the peer (Envoy's xff_num_trusted_hops).",
      ),
    trustedProxies: z
      .array(cidr)
      .min(1)
      .optional()
      .describe(
        "When the peer is in these prefixes, the client is the rightmost X-Forwarded-For entry that is not (Envoy's xff_trusted_cidrs).",
      ),
  })
  .superRefine(exactlyOne(["xffNumTrustedHops", "trustedProxies"]))
  .describe(
    "Which proxies in front are trusted to name the client in X-Forwarded-For (docs/access-control.md); without it the connection's peer is the client.",
  );

export const proxyProtocolSchema = z
  .strictObject({
    timeout: duration
      .optional()
      .describe("Time for the whole header to arrive, from the accept. Default 10s."),
  })
  .describe(
    "Every connection must start with a PROXY protocol v1 or v2 header, whose source becomes the peer address (docs/access-control.md).",
  );

export const listenerSchema = z.strictObject({
  name: resourceName,
  address: z.string().min(1).optional().describe('Address to bind; default "0.0.0.0".'),
  port: z.number().int().min(1).max(65535),
  protocol: z
    .enum(["http", "https", "tcp", "tls-passthrough"])
    .optional()
    .describe(
      "Default http; https needs tls; tcp forwards to cluster; tls-passthrough routes by the ClientHello's server name (sni) without terminating TLS (docs/l4.md).",
    ),
  tls: listenerTlsSchema.optional(),
  limits: listenerLimitsSchema.optional(),
  paths: listenerPathsSchema.optional(),
  routes: z.array(routeSchema).optional(),
  cluster: z
    .string()
    .min(1)
    .optional()
    .describe(
      "tcp: where connections go. tls-passthrough: where names no sni route matches go (default: refused).",
    ),
  sni: z
    .array(sniRouteSchema)
    .optional()
    .describe("tls-passthrough: routes by server name, first match wins."),
  l4: l4Schema.optional(),
  proxyProtocol: proxyProtocolSchema.optional(),
  clientAddress: clientAddressSchema.optional(),
  ipRules: ipRulesSchema.optional(),
});

export const upstreamTlsSchema = z
  .strictObject({
    sni: z.string().min(1).optional().describe("Server name sent and verified; default the endpoint host."),
    ca: z.string().min(1).optional().describe("Secret with the CA bundle; default the system store."),
    certificate: z.string().min(1).optional().describe("Secret with a client certificate to present."),
    alpn: alpnList,
  })
  .describe("Connect to the endpoints over TLS; the certificate is always verified.");

const endpoint = z.union([
  z.string().describe('"host:port" or "[ipv6]:port"'),
  z.strictObject({
    address: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    weight: z.number().int().min(1).max(1_000_000).optional(),
  }),
]);

const hashSource = z
  .strictObject({
    header: headerName.optional(),
    cookie: z.string().min(1).optional(),
    queryParameter: z.string().min(1).optional(),
    sourceIp: z.literal(true).optional(),
  })
  .superRefine(exactlyOne(["header", "cookie", "queryParameter", "sourceIp"]))
  .describe("Exactly one of header, cookie, queryParameter or sourceIp: true.");

const percent = z.number().int().min(0).max(100);

const healthCheckSchema = z
  .strictObject({
    type: z.enum(["http", "tcp"]).optional().describe("Default http."),
    path: z.string().startsWith("/", "a path starts with /").optional().describe("HTTP; default /."),
    host: z.string().min(1).optional().describe("HTTP Host header; default the endpoint address."),
    expectedStatuses: z.array(statusCode).min(1).optional().describe("HTTP; default [200]."),
    interval: duration.optional().describe("Default 5s."),
    jitter: duration.optional().describe("Random extra wait per interval; default 0s."),
    timeout: duration.optional().describe("Default 1s."),
    healthyThreshold: z.number().int().min(1).optional().describe("Default 2."),
    unhealthyThreshold: z.number().int().min(1).optional().describe("Default 3."),
  })
  .describe("Active health checking (docs/traffic/health.md).");

const outlierSchema = z
  .strictObject({
    consecutive5xx: z.number().int().min(0).optional().describe("Default 5; 0 disables."),
    consecutiveGatewayErrors: z.number().int().min(0).optional().describe("Default 0 (off)."),
    baseEjectionTime: duration.optional().describe("Default 30s; multiplied by the times ejected."),
    maxEjectionTime: duration.optional().describe("Default 300s."),
    maxEjectionPercent: percent.optional().describe("Default 10; one endpoint may always be ejected."),
  })
  .describe("Passive outlier detection (docs/traffic/health.md).");

export const clusterSchema = z.strictObject({
  name: resourceName,
  protocol: z
    .enum(["http1", "http2"])
    .optional()
    .describe(
      "Protocol spoken to the endpoints; default http1. http2 is h2c (prior knowledge) on plain connections and h2 by ALPN with tls; gRPC needs it (docs/grpc.md).",
    ),
  lb: z
    .enum(["round_robin", "least_request", "ring_hash", "random"])
    .optional()
    .describe("Load-balancing policy; default round_robin (docs/traffic/load-balancing.md)."),
  hashOn: z.array(hashSource).min(1).optional().describe("ring_hash: hash key sources, first present wins."),
  ringPointsPerWeight: z
    .number()
    .int()
    .min(1)
    .max(4096)
    .optional()
    .describe("ring_hash: ring points per unit of endpoint weight; default 128."),
  panicThreshold: percent
    .optional()
    .describe("Below this percentage of available endpoints, use all; default 50, 0 disables."),
  sessionAffinity: z
    .strictObject({
      cookie: z.string().regex(TOKEN, "invalid cookie name"),
      ttl: duration.optional().describe("Cookie Max-Age; default none (session cookie)."),
      path: z.string().startsWith("/").optional().describe("Default /."),
    })
    .optional()
    .describe("Cookie-based session affinity."),
  healthCheck: healthCheckSchema.optional(),
  outlierDetection: outlierSchema.optional(),
  circuitBreakers: z
    .strictObject({
      maxConnections: z.number().int().min(0).optional(),
      maxRequests: z.number().int().min(0).optional(),
      maxRetries: z.number().int().min(0).optional().describe("Default 3."),
    })
    .optional()
    .describe(
      "Per-cluster limits; 0 is unlimited; overflow → 503 overflow (docs/traffic/circuit-breaking.md).",
    ),
  retryBudget: z
    .strictObject({
      percent: percent.optional().describe("Default 20."),
      minConcurrency: z.number().int().min(0).optional().describe("Default 3."),
    })
    .optional()
    .describe("Active retries at most this share of active requests."),
  connectTimeout: duration.optional().describe("Default 5s."),
  idleTimeout: duration
    .optional()
    .describe("Idle upstream keep-alive connections close after this; default 60s."),
  maxIdlePerEndpoint: z.number().int().min(0).max(100_000).optional().describe("Default 64."),
  maxRequestsPerConnection: z.number().int().min(0).optional().describe("Default 0 (unlimited)."),
  endpoints: z.array(endpoint),
  tls: upstreamTlsSchema.optional(),
});

export const pluginSchema = z
  .strictObject({
    name: resourceName,
    source: z
      .string()
      .min(1)
      .refine(
        (s) => !s.startsWith("configmap:") || /^configmap:[^/]+\/[^/]+\/[^/]+$/.test(s),
        'expected "configmap:NAMESPACE/NAME/KEY"',
      )
      .describe(
        'The component, read by the control plane: a path (relative to the directory of config.yaml), a file:// URL, or "configmap:NAMESPACE/NAME/KEY" (a Kubernetes ConfigMap\'s binaryData; needs the Kubernetes source). Data planes get the bytes over xDS.',
      ),
    digest: z
      .string()
      .regex(/^sha256:[0-9a-f]{64}$/, 'expected "sha256:" and 64 lower-case hex digits')
      .optional()
      .describe(
        "sha256 of the component; computed from its bytes when omitted. Data planes refuse a mismatch.",
      ),
    config: z
      .record(z.string(), z.unknown())
      .optional()
      .describe("Passed to the plugin; a route's config is merged over it."),
    redis: z
      .string()
      .regex(/^rediss?:\/\//, "expected a redis:// URL")
      .optional()
      .describe("Grants the redis interface."),
    redisTimeout: duration.optional().describe("Per Redis command; default 250ms."),
    httpAllowHosts: z
      .array(
        z
          .string()
          .min(1)
          .superRefine((entry, ctx) => {
            try {
              parseHttpGrant(entry);
            } catch (e) {
              ctx.addIssue({ code: "custom", message: (e as Error).message });
            }
          }),
      )
      .optional()
      .describe(
        "Grants http-request: host (the scheme's default port only), host:port, an address (may be private), or an address range names may resolve into (docs/plugins.md).",
      ),
    httpTimeout: duration.optional().describe("Default 2s."),
    fuel: z
      .number()
      .int()
      .min(1000)
      .optional()
      .describe("Loop iterations one call may run; default 50000000."),
    memoryLimit: z
      .number()
      .int()
      .min(65536)
      .optional()
      .describe("Bytes of linear memory per instance; default 64 MiB."),
    maxInstances: z
      .number()
      .int()
      .min(1)
      .max(4096)
      .optional()
      .describe("Concurrent calls per data plane; default 32."),
    failOpen: z.boolean().optional().describe("Let requests through when a call fails; default false."),
    failureStatus: z
      .number()
      .int()
      .min(400)
      .max(599)
      .optional()
      .describe("Status when failing closed; default 500."),
    onResponse: z
      .boolean()
      .optional()
      .describe("Call on-response too (the response_filter phase, reverse route order); default false."),
    requestBody: z
      .boolean()
      .optional()
      .describe("Hand on-request the whole request body (up to bodyLimit); default false."),
    responseBody: z
      .boolean()
      .optional()
      .describe(
        "Hand on-response the whole response body (up to bodyLimit; needs onResponse); default false.",
      ),
    bodyLimit: z
      .number()
      .int()
      .min(1)
      .max(PLUGIN_BODY_LIMITS.max)
      .optional()
      .describe("Largest body (bytes) handed to the plugin; default 65536, at most 16 MiB."),
    overLimit: z
      .enum(["reject", "skip"])
      .optional()
      .describe(
        "A body larger than bodyLimit: reject (413 request side, 502 response side) or skip the plugin for that request; default reject.",
      ),
    crypto: z.boolean().optional().describe("Grants the crypto interface (signature verification)."),
  })
  .superRefine((p, ctx) => {
    if (p.responseBody === true && p.onResponse !== true)
      ctx.addIssue({
        code: "custom",
        path: ["responseBody"],
        message: "responseBody needs onResponse: true",
      });
    // The body is copied into the guest's memory (and, in a JS guest, once more into its heap).
    const memory = p.memoryLimit ?? 64 << 20;
    if (p.bodyLimit !== undefined && p.bodyLimit <= PLUGIN_BODY_LIMITS.max && p.bodyLimit * 2 > memory)
      ctx.addIssue({
        code: "custom",
        path: ["bodyLimit"],
        message: `bodyLimit ${p.bodyLimit} needs memoryLimit of at least twice that (memoryLimit is ${memory})`,
      });
  })
  .describe("A WebAssembly component plugin (docs/plugins.md).");

export const configSchema = z
  .strictObject({
    $schema: z.string().optional(),
    listeners: z.array(listenerSchema).optional(),
    clusters: z.array(clusterSchema).optional(),
    plugins: z.array(pluginSchema).optional(),
    secrets: z
      .array(secretSchema)
      .optional()
      .describe("Certificates and CA bundles, named by listeners and clusters."),
  })
  .describe("AGW gateway configuration (config.yaml).");

export type GatewayConfig = z.infer<typeof configSchema>;
export type ListenerConfig = z.infer<typeof listenerSchema>;
export type RouteConfigEntry = z.infer<typeof routeSchema>;
export type ClusterConfig = z.infer<typeof clusterSchema>;
export type PluginConfig = z.infer<typeof pluginSchema>;
export type SecretConfig = z.infer<typeof secretSchema>;
export type PemSource = z.infer<typeof pemSource>;

export function configJsonSchema(): object {
  return z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
}
