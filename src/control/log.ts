/**
 * Structured logs: one JSON object per line on stderr (time, level, msg, fields), so an
 * operator can grep them and a collector can parse them.
 */

export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

export const stderrLogger: Logger = {
  log(level, msg, fields) {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...(fields ?? {}) })}\n`);
  },
};
