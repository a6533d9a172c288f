import { pino, type Logger } from "pino";

/** JSON logs on stdout; LOG_LEVEL sets the level (default info, "silent" in tests). */
export function createLogger(level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({ level, base: { service: "assignment-server" } });
}

export type { Logger };
