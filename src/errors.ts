/**
 * Error classes shared by every part of kvm-hypervisor.
 *
 * Every error the library throws on purpose is a {@link HypervisorError}, so callers can
 * tell "the library refused or QEMU said no" apart from programming errors with one
 * `instanceof` check.
 */

/** Base class of every error the library throws on purpose (Ganeti's `HypervisorError`). */
export class HypervisorError extends Error {
  override name = 'HypervisorError';
}

/** One problem found in a set of hvparams: the parameter it concerns and a readable message. */
export interface HvParamProblem {
  /** The hvparam key, or `''` for a problem that spans several parameters and has no single owner. */
  param: string;
  /** Full message in Ganeti's wording, naming the parameter and the current value. */
  message: string;
}

/**
 * Invalid hypervisor parameters. `problems` lists every problem found at once, not only
 * the first; `message` joins them with `; ` like Ganeti's `_FormatVerifyResults`.
 */
export class HvParamError extends HypervisorError {
  override name = 'HvParamError';
  readonly problems: HvParamProblem[];
  constructor(problems: HvParamProblem[]) {
    super(problems.map((p) => p.message).join('; ') || 'invalid hypervisor parameters');
    this.problems = problems;
  }
}

/**
 * The migration TLS configuration (`KVMHypervisorOptions.tls`) is unusable: a missing or
 * unreadable file, a certificate that is not signed by the CA or has expired, a bad
 * option value. `problems` lists every one; none of them quotes a key's contents.
 */
export class TlsConfigError extends HypervisorError {
  override name = 'TlsConfigError';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`migration TLS configuration: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

/** One problem found in an instance spec: the field it concerns (`disks[1].path`) and a readable message. */
export interface InstanceSpecProblem {
  /** Path of the field in the spec (`name`, `nics[0].mac`, `hvparams.boot_order`), or `''` for the whole spec. */
  field: string;
  /** What is wrong, naming the value. */
  message: string;
}

/**
 * An instance spec that cannot be started: `problems` lists every problem found at once
 * (hvparam problems too, as `hvparams.<key>`); `message` joins them with `; `.
 */
export class InstanceSpecError extends HypervisorError {
  override name = 'InstanceSpecError';
  readonly problems: InstanceSpecProblem[];
  constructor(problems: InstanceSpecProblem[]) {
    super(
      `invalid instance spec: ${problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join('; ')}`,
    );
    this.problems = problems;
  }
}

/** Connection-level monitor failure: cannot connect, bad greeting, socket closed. */
export class MonitorError extends HypervisorError {
  override name = 'MonitorError';
}

/** The monitor connection closed while a command was waiting for its reply. */
export class MonitorClosedError extends MonitorError {
  override name = 'MonitorClosedError';
}

/** A command, the greeting or an awaited event did not arrive in time. */
export class MonitorTimeoutError extends MonitorError {
  override name = 'MonitorTimeoutError';
}

/**
 * Why a {@link MonitorProtocolError} was raised. `line-too-long`: a QMP line or an HMP reply
 * passed the reader's limit (`maxLineBytes` / `maxReplyBytes`, 64 MiB by default).
 */
export type MonitorProtocolErrorReason = 'line-too-long' | 'bad-greeting' | 'unanswered';

/**
 * The monitor broke the wire protocol: a QMP line or HMP reply longer than the client
 * accepts, a greeting that is not QEMU's, or an error reply without `id` that cannot be matched.
 */
export class MonitorProtocolError extends MonitorError {
  override name = 'MonitorProtocolError';
  /** What went wrong, for programs. */
  readonly reason: MonitorProtocolErrorReason;
  constructor(reason: MonitorProtocolErrorReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/**
 * A command was to be sent out of band (`exec-oob`) on a monitor that cannot: QMP's `oob`
 * capability was not negotiated (QEMU before 3.1, a greeting that does not offer it,
 * `outOfBand: false`), or the monitor is HMP or has no out-of-band method. Raised before
 * anything is sent.
 */
export class OutOfBandUnavailableError extends MonitorError {
  override name = 'OutOfBandUnavailableError';
  /** The QMP command that was not sent. */
  readonly command: string;
  constructor(command: string, message: string) {
    super(message);
    this.command = command;
  }
}

/** QEMU answered a QMP command with an `error` object. */
export class QmpError extends HypervisorError {
  override name = 'QmpError';
  /** QMP error class, e.g. `GenericError` or `CommandNotFound`. */
  readonly errorClass: string;
  /** QEMU's human-readable description. */
  readonly desc: string;
  /** The command that was sent, without its id. */
  readonly command: { execute: string; arguments?: Record<string, unknown> };
  constructor(
    errorClass: string,
    desc: string,
    command: { execute: string; arguments?: Record<string, unknown> },
  ) {
    super(`QMP command '${command.execute}' failed: ${desc} (${errorClass})`);
    this.errorClass = errorClass;
    this.desc = desc;
    this.command = command;
  }
}

/**
 * A QMP command that cannot be sent: its arguments have no JSON form (a `BigInt`, a cycle,
 * a `toJSON` that throws). Raised before anything is written or waits for a reply.
 */
export class QmpArgumentsError extends HypervisorError {
  override name = 'QmpArgumentsError';
  /** The QMP command (`execute`) whose arguments were refused. */
  readonly command: string;
  constructor(command: string, message: string, options?: { cause: unknown }) {
    super(message, options);
    this.command = command;
  }
}

/** QEMU answered an HMP command with error text (`unknown command: …`, `Error: …`, …). */
export class HmpError extends HypervisorError {
  override name = 'HmpError';
  /** The HMP command line that was sent. */
  readonly command: string;
  /** The text QEMU printed, trimmed. */
  readonly text: string;
  constructor(command: string, text: string) {
    super(`HMP command '${command}' failed: ${text}`);
    this.command = command;
    this.text = text;
  }
}

/** Details carried by a {@link MigrationError}. */
export interface MigrationErrorDetails {
  /** Instance name. */
  instance?: string;
  /** Last migration status QEMU reported (`failed`, `cancelled`, …), if any. */
  status?: string;
  /** QEMU's own reason (`error-desc`), when it gave one. */
  reason?: string;
  /** The error that caused this one (a monitor error, usually). */
  cause?: unknown;
  /** True when a monitor did not answer before the deadline (QEMU frozen or overloaded). */
  unresponsive?: boolean;
  /** The destination QEMU's own reason, when it gave one. */
  destinationReason?: string;
  /** What the recovery did on each end (set by `runMigration`). */
  recovery?: MigrationRecovery;
  /**
   * False when the migration was refused before anything was sent that changes the VM
   * (bad request, unsupported capability, VM in the wrong state); true once set-up began.
   */
  changedVm?: boolean;
}

/** What happened to one end while finalizing a migration. */
export interface FinalizeOutcome {
  /** Which end. */
  side: 'source' | 'destination';
  /**
   * What was done. Source: `stopped-after-completion`, `paused` (completed, left paused),
   * `resumed`, `already-running`, `left-paused`, `force-resumed`; `untouched` (from
   * `runMigration`, when the source was never changed). Destination: `running` (finalized,
   * runs the VM), `resumed`, `quit`, `already-gone`, `kept-running` (it already ran the VM,
   * so it was not stopped after a failure report), `resumed-after-completion` (its incoming
   * migration completed, so it holds the VM and is resumed), `kept-paused` (paused and its
   * incoming state unknown: left for the operator), `postcopy-paused` (its incoming
   * post-copy migration is paused or reconnecting: the VM is split between the two hosts
   * and its guest is frozen on the pages still on the source; nothing was done).
   * `split` (also from `finalizeMigrationDst(…, false)` when the destination still
   * reports post-copy and runs the VM: the VM is split between the two hosts: nothing was
   * done, neither QEMU may be stopped); from `runMigration`'s recovery, either end; source only: `lost` (the destination QEMU is gone while part of the
   * VM's memory was only there: the VM must be restarted from its disks).
   */
  action: string;
  /** The VM run state seen last, when it could be read. */
  status?: string;
  /**
   * The migration status that decided the outcome (the source's, or the destination's
   * incoming one), where it matters: set with `postcopy-paused`, `split` and `lost`.
   */
  migrationStatus?: string;
}

/** The outcome of both ends after a failed `runMigration`: an outcome, or the error that step raised. */
export interface MigrationRecovery {
  source: FinalizeOutcome | { error: Error };
  destination: FinalizeOutcome | { error: Error };
}

/** A migration could not be set up, failed, was cancelled or timed out. */
export class MigrationError extends HypervisorError {
  override name = 'MigrationError';
  readonly instance: string | undefined;
  readonly status: string | undefined;
  readonly reason: string | undefined;
  /** True when a monitor did not answer in time: the state it reports may be stale. */
  readonly unresponsive: boolean;
  /** The destination QEMU's own reason, when it gave one. */
  readonly destinationReason: string | undefined;
  /** What the recovery did on each end (from `runMigration`). */
  readonly recovery: MigrationRecovery | undefined;
  /** Whether anything that changes the VM had been sent (undefined when not known). */
  readonly changedVm: boolean | undefined;
  constructor(message: string, details: MigrationErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.instance = details.instance;
    this.status = details.status;
    this.reason = details.reason;
    this.unresponsive = details.unresponsive === true;
    this.destinationReason = details.destinationReason;
    this.recovery = details.recovery;
    this.changedVm = details.changedVm;
  }
}

/**
 * A post-copy migration whose stream stopped moving: `postcopy-paused` (QEMU saw the
 * stream break), or no transfer progress for the stall window while in post-copy (a link
 * that drops packets silently keeps both ends `postcopy-active` for minutes while the
 * destination's guest waits for pages). The VM is split between the two hosts: neither
 * QEMU may be stopped, and the recovery steps (pause, accept a recovery, resume) bring the
 * stream back. `runMigration` and `kvm-hv migrate` run them by themselves.
 */
export class PostcopyStalledError extends MigrationError {
  override name = 'PostcopyStalledError';
  /** How long no byte moved before the wait gave up, ms (0 when QEMU reported `postcopy-paused`). */
  readonly stalledMs: number;
  /** Bytes QEMU had sent when the stream stopped, where it reported them. */
  readonly transferredBytes: number | undefined;
  /** What happened, without the advice of the message (for a caller that gives its own). */
  readonly summary: string;
  constructor(
    message: string,
    details: MigrationErrorDetails & {
      stalledMs: number;
      transferredBytes?: number | undefined;
      summary?: string;
    },
  ) {
    super(message, details);
    this.stalledMs = details.stalledMs;
    this.transferredBytes = details.transferredBytes;
    this.summary = details.summary ?? message;
  }
}

/**
 * QEMU printed or returned something a parser does not recognise (a new `info migrate`
 * layout, a status line it cannot read). Never turned into a default value: the caller
 * sees the command and the raw text.
 */
export class UnrecognizedOutputError extends HypervisorError {
  override name = 'UnrecognizedOutputError';
  /** The command whose output this is (`info migrate`, `query-migrate`, …). */
  readonly command: string;
  /** The raw text (or JSON) that could not be read, as received. */
  readonly text: string;
  constructor(command: string, text: string, what = 'output') {
    const shown = text.length > 2000 ? `${text.slice(0, 2000)}… (${text.length} characters)` : text;
    super(`unrecognised ${what} of '${command}': ${JSON.stringify(shown)}`);
    this.command = command;
    this.text = text;
  }
}
