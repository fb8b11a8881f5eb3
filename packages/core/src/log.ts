/**
 * One pino logger per component; JSON lines to stderr, level from AGW_LOG_LEVEL (default info).
 * Every argument of every log call goes through `redact` (keys, plugin configs, URL credentials).
 */
import { type DestinationStream, type Logger, pino } from "pino";
import { redact } from "./redact.ts";

export type { Logger };

export function createLogger(component: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level: process.env.AGW_LOG_LEVEL ?? "info",
      base: { component },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => redact(a)) as Parameters<typeof method>);
        },
      },
    },
    destination ?? pino.destination(2),
  );
}
