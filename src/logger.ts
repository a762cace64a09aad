/**
 * The logger the library accepts: pino, or any object with pino's level methods. The
 * library never needs pino's types, so a consumer's declarations do not either.
 */

/** One level method: `log.info({ instance }, 'message')`, as pino calls it. */
export type LogMethod = (obj: object, msg?: string) => void;

/**
 * What the `logger` options accept: a pino `Logger`, or any object with pino's six level
 * methods (`trace`, `debug`, `info`, `warn`, `error`, `fatal`, each `(obj, msg?)`).
 * `child(bindings)` is used when present; without it, the bindings are merged into every
 * object logged.
 */
export interface LoggerLike {
  trace: LogMethod;
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
  fatal: LogMethod;
  /** Optional, as pino has it: a logger that adds `bindings` to every line. */
  child?: (bindings: Record<string, unknown>) => LoggerLike;
}

const noop: LogMethod = () => {};

/** A logger that drops everything: the default when no `logger` is given. */
export const silentLogger: LoggerLike = Object.freeze({
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  fatal: noop,
});

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

/**
 * `log` with `bindings` added to every line: its own `child` when it has one, else a
 * wrapper that merges the bindings into each object (the object's own keys win).
 */
export function childLogger(log: LoggerLike, bindings: Record<string, unknown>): LoggerLike {
  if (typeof log.child === 'function') return log.child(bindings);
  if (log === silentLogger) return log;
  const wrapped = {} as Record<(typeof LEVELS)[number], LogMethod>;
  for (const level of LEVELS) {
    wrapped[level] = (obj, msg) => log[level]({ ...bindings, ...obj }, msg);
  }
  return {
    ...wrapped,
    child: (more) => childLogger(log, { ...bindings, ...more }),
  };
}

/**
 * What the monitor clients' `logger` option needs: `debug` (every command) and `warn`. A
 * pino `Logger` or any {@link LoggerLike} fits.
 */
export type MonitorLogger = Pick<LoggerLike, 'debug' | 'warn'>;
