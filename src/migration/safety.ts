/**
 * The fail-safe rule for resuming a migration source, in one place.
 *
 * A source is never resumed automatically when
 * - its run state is `postmigrate` (QEMU completed the switchover: the destination may run the VM),
 * - its migration status is `completed` (the destination runs the VM) or in post-copy (the
 *   VM is split between the hosts; QEMU refuses `cont` there, so not even the override helps),
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
  /**
   * Never resume without the operator's override; `why` says what proves or suggests a
   * switchover. `postcopy`: the post-copy status, where no override helps (QEMU refuses `cont`).
   */
  | { kind: 'refuse'; why: string; postcopy?: string };

const known = <T extends object>(o: T | { error: unknown }): o is T => !('error' in o);

/**
 * True for the post-copy statuses (`postcopy-active`, `-paused`, `-recover`, …): the
 * destination already runs the VM with part of its memory still on the source, so the
 * migration cannot be cancelled, the source must not be resumed, and neither QEMU may
 * be stopped.
 */
export const isPostcopy = (status: MigrationStatus): boolean => status.startsWith('postcopy');

/**
 * True for the post-copy statuses of a broken stream: `postcopy-paused`, and the
 * reconnection (`postcopy-recover`, `postcopy-recover-setup`). The destination's guest is
 * frozen on the pages still on the source until the recovery steps (`postcopy.ts`) finish.
 */
export const isPostcopyPaused = (status: MigrationStatus): boolean =>
  status === 'postcopy-paused' || status.startsWith('postcopy-recover');

/**
 * Why a source in post-copy is not resumed, even by the operator override: the VM is split
 * between the two hosts (or lost, if the destination QEMU is gone), and QEMU refuses
 * `cont` on it ("Migration is not finalized yet") until the migration is finalized.
 */
function postcopyRefusal(status: string): string {
  const paused = isPostcopyPaused(status);
  return (
    `the migration is in post-copy ('${status}'): the VM is split between the two hosts (the destination runs it, part of its memory is only on the source)` +
    `${paused ? ' and the stream between them is broken' : ''}; ` +
    "QEMU refuses 'cont' on the source until the migration is finalized, so it cannot be resumed, not even with forceResume. " +
    'Stop neither QEMU. ' +
    (paused
      ? 'If the destination QEMU still runs, recover the stream: pausePostcopy, then acceptPostcopyRecovery on the destination and resumePostcopy on the source (KVMHypervisor, or kvm-hv postcopy pause|accept-recovery|resume); if it is gone, the VM is lost: quit the source QEMU and restart the VM from its disks'
      : 'Wait for the migration to complete (waitForMigration on the source); if the stream breaks, recover it with pausePostcopy, acceptPostcopyRecovery and resumePostcopy (KVMHypervisor, or kvm-hv postcopy pause|accept-recovery|resume)')
  );
}

/** Applies the fail-safe rule to one observation of the source. */
export function sourceVerdict(obs: SourceObservation): SourceVerdict {
  // First: a post-copy source is `finish-migrate` too, and no override helps there.
  if (known(obs.migration) && isPostcopy(obs.migration.status)) {
    const status = obs.migration.status;
    return { kind: 'refuse', why: postcopyRefusal(status), postcopy: status };
  }
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
