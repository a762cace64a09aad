/**
 * Small helpers shared by the `kvm-hv` commands: output, option parsers, the logger.
 */
import { type Command, InvalidArgumentError } from 'commander';
import type { Logger } from 'pino';
import { createCliLogger, type LogLevel } from './logger.js';

/** Options every command sees (the program's own). */
interface GlobalOptions {
  logLevel: LogLevel;
}

/** Printed on stderr before an operator override resumes a source. */
export const FORCE_RESUME_WARNING =
  'kvm-hv: WARNING: --force-resume resumes the source even if the migration may have completed. ' +
  'If the VM also runs on the destination, it now runs twice and its disks will be corrupted. ' +
  'Use it only after checking that the destination QEMU does not run the VM.';

/** Writes one JSON document to stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Writes text and a newline to stdout. */
export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** `-H` collector: every occurrence is kept, in order. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** A commander argument parser for a number > 0 (or >= 0 with `allowZero`). */
export function numberArg(what: string, { allowZero = false, integer = false } = {}) {
  return (value: string): number => {
    const n = Number(value);
    const ok = value.trim() !== '' && Number.isFinite(n) && (allowZero ? n >= 0 : n > 0);
    if (!ok || (integer && !Number.isInteger(n))) {
      const kind = integer ? 'an integer' : 'a number';
      throw new InvalidArgumentError(`${what} must be ${kind} ${allowZero ? '>= 0' : '> 0'}, got '${value}'`);
    }
    return n;
  };
}

/** The logger for a command, from the global `--log-level`. */
export function loggerFor(cmd: Command): Logger {
  return createCliLogger((cmd.optsWithGlobals() as GlobalOptions).logLevel);
}
