/**
 * Exit codes of `kvm-hv` and how an error becomes the text on stderr.
 */
import { HvParamError, HypervisorError, InstanceSpecError, TlsConfigError } from '../errors.js';

/** Exit codes, also listed in docs/cli.md. */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** Operational failure: QEMU refused, the migration failed or timed out, a socket is missing. */
  failure: 1,
  /** Bad input or usage: unknown option, bad `-H`, invalid hvparams, bad number, unusable TLS certificates. */
  usage: 2,
  /** Interrupted by SIGINT (Ctrl-C), SIGTERM or SIGHUP; a running migration was cancelled. */
  interrupted: 130,
} as const;

/** A bad command line or input value: exits with {@link EXIT.usage}. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The command was interrupted by a signal: exits with {@link EXIT.interrupted}. */
export class InterruptedError extends Error {
  override name = 'InterruptedError';
}

/**
 * A failure whose `--json` document the command has already printed (`recover`'s report
 * when it is not settled): {@link runCli} prints the stderr line only, so stdout holds one
 * JSON document.
 */
export class ReportedError extends HypervisorError {
  override name = 'ReportedError';
}

/** The exit code for an error thrown by a command. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof InterruptedError) return EXIT.interrupted;
  if (
    error instanceof UsageError ||
    error instanceof HvParamError ||
    error instanceof TlsConfigError ||
    error instanceof InstanceSpecError
  ) {
    return EXIT.usage;
  }
  return EXIT.failure;
}

/**
 * The text for stderr: one line `kvm-hv: <reason>`, and for an {@link HvParamError} one
 * more line per problem (`  - <param>: <message>`).
 */
export function formatError(error: unknown): string {
  if (error instanceof HvParamError) {
    const n = error.problems.length;
    const lines = [`kvm-hv: invalid hypervisor parameters (${n} problem${n === 1 ? '' : 's'}):`];
    for (const p of error.problems) lines.push(`  - ${p.param ? `${p.param}: ` : ''}${p.message}`);
    return lines.join('\n');
  }
  if (error instanceof InstanceSpecError) {
    const n = error.problems.length;
    const lines = [`kvm-hv: invalid instance spec (${n} problem${n === 1 ? '' : 's'}):`];
    for (const p of error.problems) lines.push(`  - ${p.field ? `${p.field}: ` : ''}${p.message}`);
    return lines.join('\n');
  }
  if (error instanceof UsageError || error instanceof InterruptedError || error instanceof HypervisorError) {
    return `kvm-hv: ${oneLine(error.message)}`;
  }
  if (error instanceof Error) return `kvm-hv: ${oneLine(error.message)} (${error.name})`;
  return `kvm-hv: ${oneLine(String(error))}`;
}

function oneLine(text: string): string {
  return text.replace(/\s*\r?\n\s*/g, ' ').trim();
}
