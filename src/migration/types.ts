/**
 * Shapes of the migration API of `KVMHypervisor`: what goes in (an instance) and what
 * comes out (progress snapshots and the final result).
 */
import type { KvmHvParamsInput } from '../hvparams/index.js';
import type { MigrationStatus } from '../monitor/event-types.js';

/** A KVM instance as the hypervisor sees it: its name and its (partial) hvparams. */
export interface Instance {
  /** Instance name; also the key for its monitor. */
  name: string;
  /** hvparams; missing keys take their defaults, values are coerced like `-H` input. */
  hvparams?: KvmHvParamsInput;
  /** Guest memory in MiB, used to scale the completion timeout (default: QEMU's `ram.total`). */
  memoryMiB?: number;
}

/** One snapshot of a migration, from `query-migrate` or `info migrate`. */
export interface MigrationProgress {
  /**
   * QEMU's status (`none` before any migration); unknown future values are passed through
   * unchanged. `isPostcopy(status)` says whether the destination already runs the VM.
   */
  status: MigrationStatus;
  /** Bytes of RAM sent so far. */
  transferredBytes?: number;
  /** Bytes of RAM still to send in this pass. */
  remainingBytes?: number;
  /** Guest RAM size in bytes. */
  totalBytes?: number;
  /** `transferred / total` in percent (capped at 100), when both are known. */
  percent?: number;
  /** Current transfer speed in bytes/s (from `mbps`; else `pages-per-second × page-size`). */
  speedBytesPerSec?: number;
  /** How fast the guest dirties memory, bytes/s (`dirty-pages-rate × page-size`). */
  dirtyRateBytesPerSec?: number;
  /** QEMU's estimate of the downtime in ms (while active). */
  expectedDowntimeMs?: number;
  /** The real downtime in ms (once completed). */
  downtimeMs?: number;
  /** Milliseconds since the migration started (`total-time`). */
  totalTimeMs?: number;
  /**
   * QEMU's dirty-bitmap sync count (`dirty-sync-count`). Up to QEMU 10.x that is the
   * pre-copy pass number; QEMU 11 with `postcopy-ram` on syncs at every iteration (ten or
   * more a second), so there it runs far ahead of the passes: see {@link firstPassDone}.
   */
  pass?: number;
  /**
   * True once every page of guest RAM has been sent, or found zero, at least once: the
   * first pre-copy pass is over (`(normal + zero pages) × page size ≥ total`). Undefined
   * where QEMU reports no page counts.
   */
  firstPassDone?: boolean;
  /** vCPU throttle applied by auto-converge, in percent. */
  throttlePercent?: number;
  /** QEMU's reason when the migration failed (`error-desc`). */
  errorDesc?: string;
  /** The raw reply, for fields not mapped here. */
  raw?: Record<string, unknown>;
}

/** What a convergence policy did; reported through `onAction` and the logs. */
export type ConvergenceAction =
  | { kind: 'downtime'; downtimeMs: number; reason: string }
  | { kind: 'postcopy'; reason: string };

/**
 * Bounds of one migration step. The step settles within `timeoutMs` (plus about a second
 * of clean-up) even when QEMU is frozen or gone; aborting `signal` ends it early. Monitor
 * commands still in flight are abandoned.
 */
export interface MigrationStepOptions {
  /** Limit in ms (default 30 000 for finalize, cancel and accept). */
  timeoutMs?: number;
  /** Ends the step early. */
  signal?: AbortSignal;
}

/** Options of `finalizeMigrationSource`. */
export interface FinalizeMigrationSourceOptions extends MigrationStepOptions {
  /**
   * Operator override: resume the source even where the fail-safe rule forbids it (run
   * state `postmigrate`, migration `completed` or in post-copy, or state unreadable).
   * Only for an operator who has checked that the VM does not run on the destination.
   */
  forceResume?: boolean;
}

/** Options of `finalizeMigrationDst`. */
export interface FinalizeMigrationDstOptions extends MigrationStepOptions {
  /**
   * How long to wait for the VM to finish loading (ms, default 30 000, within `timeoutMs`):
   * on success before it is resumed; on failure, how long an incoming migration still
   * active is waited for before the destination is left alone (never quit while active).
   */
  incomingGraceMs?: number;
}

/** Options of `waitForMigration`. */
export interface WaitForMigrationOptions {
  /**
   * Overall limit in ms, counted from `migrateInstance`; default: scaled by guest memory
   * (see docs/migration.md). At the limit `migrate_cancel` is sent and the wait settles
   * within about a second, even when QEMU is frozen.
   */
  timeoutMs?: number;
  /**
   * Called with each progress snapshot that changed: one that differs from the last one
   * reported in a field other than `totalTimeMs` (it grows on every poll) and `raw`. A
   * polled migration that does not move is reported once; the final `completed`
   * snapshot is always reported.
   */
  onProgress?: (progress: MigrationProgress) => void;
  /** Called when the convergence policy acts. */
  onAction?: (action: ConvergenceAction) => void;
  /** Cancels the migration (`migrate_cancel`) when aborted; settles within about a second. */
  signal?: AbortSignal;
  /** Statistics poll interval in ms (default 500). Completion itself is event-driven. */
  pollIntervalMs?: number;
  /**
   * In post-copy, the stall window in ms (default 5000): when no byte moved and the status
   * did not change for this long, or QEMU reports `postcopy-paused`, the wait rejects with
   * a `PostcopyStalledError` (the VM is split; nothing is cancelled, stopped or resumed).
   * A post-copy that moves always completes, since the remaining memory is finite; so
   * every post-copy wait has a deadline even without `timeoutMs`.
   */
  postcopyStallMs?: number;
}

/** Options of `waitForIncomingMigration` (destination side). */
export interface WaitForIncomingOptions {
  /**
   * Overall limit in ms (default: none; the wait still ends when the destination QEMU
   * exits or stops answering: 5 status queries in a row failed or took over 10 s each).
   * At the limit the wait rejects and leaves the destination as it is.
   */
  timeoutMs?: number;
  /** Stops waiting (rejects); the destination is left as it is. */
  signal?: AbortSignal;
  /** Called with each changed snapshot of the incoming migration, as in `waitForMigration`. */
  onProgress?: (progress: MigrationProgress) => void;
  /** Status poll interval in ms (default 250); a `MIGRATION` event wakes the wait early. */
  pollIntervalMs?: number;
  /**
   * How long the incoming migration may stay in a broken post-copy (`postcopy-paused`,
   * `postcopy-recover*`) before the wait rejects, saying the VM is split, ms (default
   * 360 000: the source's recovery, 300 s, and a margin). Logged every 10 s meanwhile.
   * Nothing is stopped either way.
   */
  postcopyPausedMs?: number;
}

/** The outcome of `waitForIncomingMigration`: the VM has arrived and been loaded. */
export interface IncomingMigrationResult {
  status: 'completed';
  /** The destination VM's run state once loaded: `running`, or `paused` after a non-live migration. */
  runState: string;
  /** Whether the destination VM runs. */
  running: boolean;
  /** The last snapshot of the incoming migration. */
  final: MigrationProgress;
}

/** The outcome of a completed migration. */
export interface MigrationResult {
  status: 'completed';
  /** Total migration time in ms, as QEMU measured it. */
  totalTimeMs?: number;
  /** Real downtime in ms. */
  downtimeMs?: number;
  /** Bytes sent. */
  transferredBytes?: number;
  /** Guest RAM in bytes. */
  totalBytes?: number;
  /** Average speed in bytes/s (`transferred / total-time`). */
  averageSpeedBytesPerSec?: number;
  /** The last progress snapshot. */
  final: MigrationProgress;
}

/** Options of `acceptInstance`. */
export interface AcceptInstanceOptions extends MigrationStepOptions {
  /**
   * For a destination started with `-incoming defer`: the address to listen on (a host
   * name, IPv4 or IPv6 address, e.g. `0.0.0.0` or `::`); the port is `migration_port`.
   * `acceptInstance` then sets the capabilities and the TLS credentials first and starts
   * listening (`migrate-incoming`) last. Required when the hypervisor has `tls`: a
   * destination started with `-incoming tcp:…` listens in clear before anything is set.
   */
  listen?: string;
}
