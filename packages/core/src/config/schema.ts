/**
 * The config.yaml format. One zod schema is the single source: it validates, it gives the TypeScript
 * types, and `npm run gen` publishes it as docs/config.schema.json. Checks that need the whole document
 * (references, uniqueness) live in semantic.ts.
 */
import { z } from "zod";

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
      try {
        new RegExp(source);
      } catch (e) {
        ctx.addIssue({ code: "custom", message: `invalid regex: ${(e as Error).message}` });
      }
    })
    .describe(`ECMAScript regular expression matched against the whole ${what}.`);
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
const resourceName = z
  .string()
  .regex(NAME, "names are 1-63 characters of a-z, 0-9, '.', '_' and '-', starting and ending alphanumeric");

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
  })
  .describe("A route. Exactly one of cluster or clusters.");

export const listenerSchema = z.strictObject({
  name: resourceName,
  address: z.string().min(1).optional().describe('Address to bind; default "0.0.0.0".'),
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(["http"]).optional().describe("Only http for now; https arrives with the TLS manager."),
  routes: z.array(routeSchema).optional(),
});

const endpoint = z.union([
  z.string().describe('"host:port" or "[ipv6]:port"'),
  z.strictObject({
    address: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    weight: z.number().int().min(1).max(1_000_000).optional(),
  }),
]);

export const clusterSchema = z.strictObject({
  name: resourceName,
  lb: z.enum(["round_robin"]).optional().describe("Load-balancing policy; default round_robin."),
  connectTimeout: duration.optional().describe("Default 5s."),
  idleTimeout: duration
    .optional()
    .describe("Idle upstream keep-alive connections close after this; default 60s."),
  maxIdlePerEndpoint: z.number().int().min(0).max(100_000).optional().describe("Default 64."),
  maxRequestsPerConnection: z.number().int().min(0).optional().describe("Default 0 (unlimited)."),
  endpoints: z.array(endpoint),
});

export const configSchema = z
  .strictObject({
    $schema: z.string().optional(),
    listeners: z.array(listenerSchema).optional(),
    clusters: z.array(clusterSchema).optional(),
  })
  .describe("AGW gateway configuration (config.yaml).");

export type GatewayConfig = z.infer<typeof configSchema>;
export type ListenerConfig = z.infer<typeof listenerSchema>;
export type RouteConfigEntry = z.infer<typeof routeSchema>;
export type ClusterConfig = z.infer<typeof clusterSchema>;

export function configJsonSchema(): object {
  return z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
}
