/**
 * Structured logs with pino: one JSON object per line on stderr — time (ISO), level (by
 * name), msg, fields — so an operator can grep them and a collector can parse them.
 * `rateLimited` wraps a logger for events that can repeat at packet rate: the first of a
 * kind per interval is logged, the rest are counted into the next one.
 */

import { pino } from 'pino';

export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

const base = pino(
  {
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    level: process.env.TUNVS_LOG_LEVEL ?? 'info',
  },
  pino.destination({ dest: 2, sync: true }),
);

export const stderrLogger: Logger = {
  log(level, msg, fields) {
    if (fields) base[level](fields, msg);
    else base[level](msg);
  },
};

/** A logger that lets one event per `key` through every `intervalMs`, with how many it held back. */
export function rateLimited(
  logger: Logger,
  intervalMs: number,
): Logger & { logKeyed(key: string, level: Level, msg: string, fields?: Record<string, unknown>): void } {
  const last = new Map<string, { at: number; held: number }>();
  return {
    log: (level, msg, fields) => logger.log(level, msg, fields),
    logKeyed(key, level, msg, fields) {
      const now = Date.now();
      const e = last.get(key);
      if (e && now - e.at < intervalMs) {
        e.held++;
        return;
      }
      last.set(key, { at: now, held: 0 });
      logger.log(level, msg, { ...(fields ?? {}), ...(e && e.held > 0 ? { suppressed: e.held } : {}) });
    },
  };
}
