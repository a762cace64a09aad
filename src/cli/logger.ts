/**
 * The CLI's pino logger: always on stderr (stdout carries the command's output), pretty
 * when stderr is a terminal, one JSON object per line otherwise.
 */
import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

/** Log levels `--log-level` accepts. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Creates the logger. `usePretty` defaults to whether stderr is a TTY. Both destinations are
 * synchronous, so nothing is lost when the command exits right after logging.
 */
export function createCliLogger(level: LogLevel, usePretty: boolean = process.stderr.isTTY === true): Logger {
  const options = { level, base: { name: 'kvm-hv' } };
  if (usePretty) {
    return pino(options, pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname,name' }));
  }
  return pino(options, pino.destination({ dest: 2, sync: true }));
}
