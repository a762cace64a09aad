/**
 * The fail-safe rule for resuming a migration source, in one place.
 *
 * A source is never resumed automatically when
 * - its run state is `postmigrate` (QEMU completed the switchover: the destination may run the VM),
 * - its migration status is `completed` or in post-copy (the destination runs the VM),
 * - its run state or migration status cannot be read (unknown means "maybe migrated").
 * Only an explicit operator override (`forceResume`) resumes such a source.
 */
import type { MigrationStatus } from '../monitor/event-types.js';
import type { VmRunState } from './channel.js';
import { ACTIVE_STATUSES, TERMINAL_STATUSES } from './status.js';
import type { MigrationProgress } from './types.js';

/** What was learned about the source; `error` where a query failed. */
export interface SourceObservation {
  runState: VmRunState | { error: unknown };
  migration: MigrationProgress | { error: unknown };
}

/** The decision for a source after a failed migration. */
export type SourceVerdict =
  /** Safe to send `cont` (it is paused and the migration ended without switchover). */
  | { kind: 'resume' }
  /** It runs already and the migration ended: nothing to do. */
  | { kind: 'already-running' }
  /** The migration still runs: cancel it first, then decide again. */
  | { kind: 'cancel-first'; status: string }
  /** Never resume without the operator's override; `why` says what proves or suggests a switchover. */
  | { kind: 'refuse'; why: string };

const known = <T extends object>(o: T | { error: unknown }): o is T => !('error' in o);

/**
 * True for the post-copy statuses (`postcopy-active`, `-paused`, `-recover`, …): the
 * destination already runs the VM, so the migration cannot be cancelled and the source
 * must not be resumed.
 */
export const isPostcopy = (status: MigrationStatus): boolean => status.startsWith('postcopy');

/** Applies the fail-safe rule to one observation of the source. */
export function sourceVerdict(obs: SourceObservation): SourceVerdict {
  if (!known(obs.runState)) return { kind: 'refuse', why: 'its run state cannot be read' };
  if (obs.runState.status === 'postmigrate') {
    return { kind: 'refuse', why: "its run state is 'postmigrate': QEMU finished the switchover" };
  }
  if (obs.runState.status === 'finish-migrate') {
    // QEMU 11.1 still reports this for a moment after `completed`.
    return { kind: 'refuse', why: "its run state is 'finish-migrate': QEMU is in the switchover" };
  }
  if (!known(obs.migration)) return { kind: 'refuse', why: 'its migration status cannot be read' };
  const status = obs.migration.status;
  if (status === 'completed') return { kind: 'refuse', why: "QEMU reports the migration 'completed'" };
  if (isPostcopy(status))
    return {
      kind: 'refuse',
      why: `the migration is in post-copy ('${status}'): the destination runs the VM`,
    };
  if (!TERMINAL_STATUSES.has(status) && status !== 'none') {
    if (ACTIVE_STATUSES.has(status)) return { kind: 'cancel-first', status };
    return {
      kind: 'refuse',
      why: `QEMU reports a migration status this library does not know ('${status}')`,
    };
  }
  if (obs.runState.running) return { kind: 'already-running' };
  return { kind: 'resume' };
}
