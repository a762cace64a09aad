/**
 * The source side of a migration after set-up: cancel, restoring the settings, and
 * `finalizeSource` under the fail-safe rule of `safety.ts`. The set-up is in `setup.ts`.
 */

import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import type { FinalizeOutcome } from '../errors.js';
import { isDeadline, isMonitorGone, type VmChannel, type VmRunState } from './channel.js';
import { readyForRestore, settledRunState } from './cleanup-wait.js';
import { simpleCommand } from './dialect.js';
import { isPostcopy, type SourceObservation, sourceVerdict } from './safety.js';
import type { MigrationSession } from './session.js';
import { clearCapabilities, restoreSettings } from './settings.js';
import { TERMINAL_STATUSES } from './status.js';
import { removeTls } from './tls.js';
import type { MigrationProgress } from './types.js';

/**
 * `migrate_cancel` (best effort), then polls until QEMU reports a final status or the
 * deadline passes. Returns the last status read (`completed` when the cancel came too late:
 * the caller must then treat the migration as done), or the error that stopped the reading.
 */
export async function cancelAndSettle(
  ch: VmChannel,
  why: string,
  deadline: Deadline,
  onProgress?: (p: MigrationProgress) => void,
): Promise<MigrationProgress | { error: unknown }> {
  ch.log.warn({ reason: why }, 'cancelling migration');
  try {
    await ch.send(simpleCommand(ch.monitor.protocol, 'migrate_cancel'), deadline);
  } catch (e) {
    ch.log.error({ err: errorText(e) }, 'migrate_cancel failed');
    if (isDeadline(e) || isMonitorGone(e, ch.monitor)) return { error: e };
  }
  let last: MigrationProgress | { error: unknown } = { status: 'cancelling' };
  while (!deadline.over()) {
    try {
      last = await ch.migrationStatus(deadline);
    } catch (e) {
      return { error: e };
    }
    onProgress?.(last);
    if (TERMINAL_STATUSES.has(last.status) || last.status === 'none') break;
    await deadline.sleep(50);
  }
  if ('status' in last && last.status === 'completed') {
    ch.log.warn({}, 'the migration completed before the cancel took effect');
  }
  return last;
}

/** Cancels a running migration (`migrate_cancel`); refused during post-copy. */
export async function cancelMigration(ch: VmChannel, deadline: Deadline): Promise<void> {
  const p = await ch.mustMigrationStatus(deadline);
  if (isPostcopy(p.status)) {
    throw ch.error(
      `cannot cancel a migration in post-copy (status '${p.status}'): the destination already runs the VM, with part of its memory still on the source`,
      undefined,
      { status: p.status },
    );
  }
  await ch.must(simpleCommand(ch.monitor.protocol, 'migrate_cancel'), 'cancelling the migration', deadline);
}

/**
 * What finalizing a source needs to know of the migration's start: a live
 * {@link MigrationSession}, or the same read back from the migration journal by a later
 * process.
 */
export type StartedMigration = Pick<MigrationSession, 'snapshot' | 'tls' | 'wasRunning' | 'stoppedByUs'>;

/** Options of {@link finalizeSource}. */
export interface FinalizeSourceOptions {
  /** What `migration_caps` asked for (cleared when no session snapshot exists). */
  capabilities: readonly string[];
  /** The migration's start, from this object's session or the journal, when known. */
  session?: StartedMigration | undefined;
  /** Operator override: resume even when the rule says the VM may run on the destination. */
  forceResume?: boolean;
  deadline: Deadline;
}

async function observe(ch: VmChannel, deadline: Deadline): Promise<SourceObservation> {
  const migration: MigrationProgress | { error: unknown } = await ch
    .migrationStatus(deadline)
    .catch((error: unknown) => ({ error }));
  const runState: VmRunState | { error: unknown } = await ch
    .vmStatus(deadline)
    .catch((error: unknown) => ({ error }));
  return { runState, migration };
}

/** {@link observe}, then, for a migration that has ended, the run state once QEMU has restored it. */
async function observeSettled(ch: VmChannel, deadline: Deadline): Promise<SourceObservation> {
  const obs = await observe(ch, deadline);
  const status = 'error' in obs.migration ? undefined : obs.migration.status;
  return { ...obs, runState: await settledRunState(ch, deadline, status, obs.runState) };
}

const failure = (o: SourceObservation): unknown =>
  'error' in o.runState ? o.runState.error : 'error' in o.migration ? o.migration.error : undefined;

/**
 * Source side, after the migration. Success: QEMU must report `completed`; a source that
 * runs is stopped. Failure: cancels a migration still running, then resumes the VM only
 * when `safety.ts` allows it (or the operator forces it). Settings are restored either way.
 */
export async function finalizeSource(
  ch: VmChannel,
  success: boolean,
  options: FinalizeSourceOptions,
): Promise<FinalizeOutcome> {
  const { deadline, session } = options;
  const protocol = ch.monitor.protocol;
  if (success) {
    const obs = await observe(ch, deadline);
    if ('error' in obs.runState) {
      throw ch.error(
        `finalizing a successful migration: ${errorText(obs.runState.error)}`,
        obs.runState.error,
      );
    }
    const migStatus = 'error' in obs.migration ? undefined : obs.migration.status;
    // A completed switchover shows in the run state even where the status text is unreadable.
    if (migStatus !== 'completed' && obs.runState.status !== 'postmigrate') {
      throw ch.error(
        migStatus === undefined
          ? `finalizing a successful migration, but the migration status cannot be read: ${errorText((obs.migration as { error: unknown }).error)}`
          : `finalizing a successful migration, but QEMU reports status '${migStatus}'`,
        failure(obs),
        migStatus === undefined ? {} : { status: migStatus },
      );
    }
    let action = 'paused';
    if (obs.runState.running) {
      // Someone resumed the source after switchover: two copies would run.
      ch.log.error({}, 'source runs after a completed migration; stopping it');
      await ch.must(simpleCommand(protocol, 'stop'), 'stopping the migrated source', deadline);
      action = 'stopped-after-completion';
    }
    await restore(ch, options, obs);
    ch.log.info({ status: obs.runState.status }, 'source finalized after a successful migration');
    return { side: 'source', action, status: obs.runState.running ? 'paused' : obs.runState.status };
  }

  let obs = await observeSettled(ch, deadline);
  if ('error' in obs.runState && isMonitorGone(obs.runState.error, ch.monitor)) {
    throw ch.error(
      `the source QEMU is gone (${errorText(obs.runState.error)}): the VM does not run on the source`,
      obs.runState.error,
    );
  }
  let verdict = sourceVerdict(obs);
  if (verdict.kind === 'cancel-first') {
    const settled = await cancelAndSettle(ch, 'finalizing a failed migration', deadline);
    if ('error' in settled) obs = { ...obs, migration: settled };
    else obs = await observeSettled(ch, deadline);
    verdict = sourceVerdict(obs);
    if (verdict.kind === 'cancel-first') {
      verdict = { kind: 'refuse', why: `the migration is still '${verdict.status}' after migrate_cancel` };
    }
  }
  const status = 'error' in obs.runState ? undefined : obs.runState.status;
  if (verdict.kind === 'refuse' && verdict.postcopy !== undefined) {
    // No override: QEMU refuses `cont` in post-copy, and the VM's memory is split anyway.
    throw ch.error(`not resuming the source: ${verdict.why}`, undefined, { status: verdict.postcopy });
  }
  if (verdict.kind === 'refuse') {
    if (!options.forceResume) {
      const cause = failure(obs);
      throw ch.error(
        `not resuming the source: ${verdict.why}${cause ? ` (${errorText(cause)})` : ''}; the VM may run on the destination. ` +
          'If you have checked that it does not, resume it with finalizeMigrationSource(instance, false, { forceResume: true }) ' +
          '(kvm-hv resume --force-resume)',
        cause,
        'error' in obs.migration ? {} : { status: obs.migration.status },
      );
    }
    ch.log.warn({ why: verdict.why }, 'operator override: resuming the source although the rule forbids it');
    await ch.must(simpleCommand(protocol, 'cont'), 'resuming the source VM (operator override)', deadline);
    await restore(ch, options, obs);
    return { side: 'source', action: 'force-resumed', status: 'running' };
  }
  if (verdict.kind === 'already-running') {
    await restore(ch, options, obs);
    ch.log.info({}, 'source finalized after a failed migration; the VM runs');
    return { side: 'source', action: 'already-running', ...(status ? { status } : {}) };
  }
  // Paused after a migration that ended without switchover.
  if (session && !session.wasRunning && !session.stoppedByUs) {
    await restore(ch, options, obs);
    ch.log.info({ status }, 'source finalized; it was paused before the migration and stays paused');
    return { side: 'source', action: 'left-paused', ...(status ? { status } : {}) };
  }
  ch.log.info({ status }, 'resuming the source VM');
  await ch.must(simpleCommand(protocol, 'cont'), 'resuming the source VM', deadline);
  await restore(ch, options, obs);
  ch.log.info({}, 'source finalized after a failed migration; the VM runs');
  return { side: 'source', action: 'resumed', status: 'running' };
}

async function restore(ch: VmChannel, options: FinalizeSourceOptions, obs: SourceObservation): Promise<void> {
  const grace = options.deadline.over() ? Deadline.grace(1000) : options.deadline;
  // Settings changed while QEMU still shuts the migration down can crash it (cleanup-wait.ts).
  const status = 'error' in obs.migration ? undefined : obs.migration.status;
  if (!(await readyForRestore(ch, grace, { status }))) return;
  if (options.session) {
    await restoreSettings(ch, options.session.snapshot, grace);
    if (options.session.tls) await removeTls(ch, grace);
    return;
  }
  await clearCapabilities(ch, options.capabilities, grace).catch((e: unknown) =>
    ch.log.error({ err: errorText(e) }, 'clearing migration capabilities failed'),
  );
}
