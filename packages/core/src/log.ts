/** One pino logger per component; JSON lines to stderr, level from AGW_LOG_LEVEL (default info). */
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

export function createLogger(component: string, destination?: DestinationStream): Logger {
  return pino(
    { level: process.env.AGW_LOG_LEVEL ?? "info", base: { component } },
    destination ?? pino.destination(2),
  );
}
