/**
 * The migration half of a fake QEMU's state: the counters `query-migrate` / `info migrate`
 * report, as plain mutable fields a test may read or set.
 */
import { ACTIVE_STATUSES } from '../../migration/status.js';
import type { MigrationStatus } from '../../monitor/event-types.js';

/** Progress to apply with {@link FakeMigration.advance}. */
export interface FakeMigrationProgress {
  /** Bytes transferred so far. */
  transferred?: number;
  /** Bytes remaining. */
  remaining?: number;
  /** Any status, known or not (`active`, `postcopy-active`, `device`, `postcopy-device`, …). */
  status?: string;
  /** Dirty pages per second. */
  dirtyPagesRate?: number;
  /** Throughput in Mbit/s. */
  mbps?: number;
  /** Start a new pass (emits `MIGRATION_PASS` when the `events` capability is on). */
  pass?: boolean;
}

/**
 * The outgoing migration of a fake QEMU (`FakeQemu.migration`, `MockMonitor.migration`).
 * Fields are the state itself: setting `status` changes what the next `query-migrate`
 * reports, without events.
 */
export class FakeMigration {
  /** Current status; `undefined` before the first `migrate`. */
  status: MigrationStatus | undefined;
  /** The URI given to `migrate`. */
  uri: string | undefined;
  /** Bytes transferred. */
  transferred = 0;
  /** Bytes remaining in the current pass. */
  remaining = 0;
  /** Total guest RAM in bytes. */
  total: number;
  /** Dirty pages per second. */
  dirtyPagesRate = 0;
  /** Throughput in Mbit/s. */
  mbps = 0;
  /** Dirty-bitmap sync count (the pass number). */
  passes = 0;
  /**
   * Zero pages found so far (`duplicate`, `zero`): the fake sends only the guest's data, so
   * once the first pass is over the pages it did not send were zero.
   */
  get zeroPages(): number {
    if (this.passes < 2) return 0;
    return Math.max(0, Math.ceil(this.total / 4096) - Math.floor(this.transferred / 4096));
  }
  /**
   * `query-yank` answers after a final status during which the migration's yank instance
   * still shows: QEMU's clean-up still running (default 0: the fake cleans up at once).
   */
  cleanupPolls = 0;
  /** Milliseconds of simulated run time. */
  totalTime = 0;
  /** Downtime in ms, set on completion. */
  downtime: number | undefined;
  /** QEMU's `error-desc`, set on failure. */
  errorDesc: string | undefined;
  /** `query-migrate` / `info migrate` calls answered while the migration was running. */
  polls = 0;
  private readonly onAdvance: (progress: FakeMigrationProgress) => void;

  /** Made by the fake QEMU; `onAdvance` applies {@link advance} to it. */
  constructor(total: number, onAdvance: (progress: FakeMigrationProgress) => void) {
    this.total = total;
    this.onAdvance = onAdvance;
  }

  /** True while the status is not terminal (`completed`, `failed`, `cancelled`) nor unset. */
  get running(): boolean {
    return this.status !== undefined && ACTIVE_STATUSES.has(this.status);
  }

  /**
   * Moves the migration on: sets counters and, with `status`, any status (emitting a
   * `MIGRATION` event when the `events` capability is on). Terminal statuses are better
   * reached with `completeMigration` / `failMigration`.
   */
  advance(progress: FakeMigrationProgress = {}): void {
    this.onAdvance(progress);
  }

  /** Resets the counters for a new migration to `uri`. */
  reset(uri: string): void {
    this.uri = uri;
    this.transferred = 0;
    this.remaining = this.total;
    this.passes = 0;
    this.polls = 0;
    this.totalTime = 0;
    this.downtime = undefined;
    this.errorDesc = undefined;
    this.mbps = 0;
    this.dirtyPagesRate = 0;
  }
}

/** The incoming side of a destination QEMU started with `-incoming` (`FakeQemu.incoming`). */
export interface FakeIncoming {
  /** The URI QEMU listens on (`tcp:0.0.0.0:8102`). */
  uri: string;
  /**
   * What `query-migrate` reports on this end: `setup` while listening, then `active`,
   * `completed`, `failed`; in post-copy `postcopy-active`, `postcopy-paused` (stream
   * broken) and `postcopy-recover` (the source reconnected).
   */
  status:
    | 'setup'
    | 'active'
    | 'completed'
    | 'failed'
    | 'postcopy-active'
    | 'postcopy-paused'
    | 'postcopy-recover';
  /** The URI of the last accepted `migrate-recover`, while post-copy is paused. */
  recoverUri?: string;
}
