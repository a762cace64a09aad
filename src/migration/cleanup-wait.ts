/**
 * Waiting for QEMU to finish cleaning up after a migration before its settings are put
 * back. QEMU reports `completed` (or `failed`, `cancelled`) before its migration thread
 * has shut the multifd channels down; turning `multifd` or the TLS parameters off in that
 * window makes the clean-up take the wrong branch. Seen on QEMU 11.1.3: the source then
 * aborts on `yank_unregister_instance: Assertion 'QLIST_EMPTY(&entry->yankfns)' failed`,
 * after `completed`, and the destination's load fails on the unfinished TLS session, so
 * the VM ran nowhere. The end of the clean-up is visible where QEMU has `query-yank`
 * (6.0+, QMP): the `migration` yank instance goes when the clean-up is done.
 */

import type { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { UnrecognizedOutputError } from '../errors.js';
import { versionAtLeast } from '../qemu/version.js';
import type { VmChannel, VmRunState } from './channel.js';
import { ACTIVE_STATUSES, TERMINAL_STATUSES } from './status.js';

/**
 * How often the clean-up is polled (ms): first after {@link POLL_FIRST_MS} (it takes a few
 * milliseconds once the status is final), then twice as long each time, up to
 * {@link POLL_MAX_MS}, so a clean-up that lasts cannot make it send hundreds of commands.
 */
const POLL_FIRST_MS = 10;
/** The longest interval between two clean-up polls (ms). */
const POLL_MAX_MS = 200;

/** True when `reply` (a `query-yank` return) lists the migration's yank instance. */
export function migrationYankRegistered(reply: unknown): boolean {
  if (!Array.isArray(reply)) throw new UnrecognizedOutputError('query-yank', JSON.stringify(reply), 'reply');
  return reply.some((i) => {
    if (!i || typeof i !== 'object' || typeof (i as { type?: unknown }).type !== 'string') {
      throw new UnrecognizedOutputError('query-yank', JSON.stringify(reply), 'instance');
    }
    return (i as { type: string }).type === 'migration';
  });
}

/**
 * Resolves true once QEMU's migration clean-up is over (settings may be put back), false
 * when it is still running at `deadline` (the caller then leaves the settings alone: a
 * later set-up resets them). The migration status is read first: while QEMU still
 * reports the migration running (post-copy included, on either end) nothing is polled
 * and it resolves false at once, since the clean-up cannot start before the migration
 * ends. Then, with `query-yank` (QMP, QEMU 6.0+), until the `migration` yank instance is
 * gone; without it (HMP, QEMU before 6.0), until the run state has left `finish-migrate`,
 * which QEMU changes in the same step that schedules the clean-up. Polled every 10 ms at
 * first, backing off to 200 ms. When QEMU cannot be asked, it logs and resolves true.
 * `known`: the migration status the caller has just read (undefined: it could not be
 * read), so that it is not asked again.
 */
export async function readyForRestore(
  ch: VmChannel,
  deadline: Deadline,
  known?: { status: string | undefined },
): Promise<boolean> {
  const yank = ch.monitor.protocol === 'qmp' && versionAtLeast(ch.monitor.version, 6, 0);
  const status = known
    ? known.status
    : await ch.migrationStatus(deadline).then(
        (p) => p.status,
        () => undefined,
      );
  if (status !== undefined && ACTIVE_STATUSES.has(status)) {
    ch.log.error(
      { status },
      'the migration has not ended; its clean-up cannot have run: migration settings left as they are',
    );
    return false;
  }
  let interval = POLL_FIRST_MS;
  for (;;) {
    let busy: boolean;
    try {
      busy = yank
        ? migrationYankRegistered(await ch.send({ kind: 'qmp', execute: 'query-yank' }, deadline))
        : (await ch.vmStatus(deadline)).status === 'finish-migrate';
    } catch (e) {
      if (deadline.over()) return false;
      ch.log.error(
        { err: errorText(e) },
        'cannot tell whether QEMU cleaned up the migration; restoring anyway',
      );
      return true;
    }
    if (!busy) return true;
    if (deadline.remaining() <= interval) {
      ch.log.error({}, "QEMU's migration clean-up is still running; migration settings left as they are");
      return false;
    }
    ch.log.debug({}, "waiting for QEMU's migration clean-up");
    await deadline.sleep(interval);
    interval = Math.min(POLL_MAX_MS, interval * 2);
  }
}

/**
 * The run state of a source whose migration has ended, once QEMU has left `finish-migrate`.
 * QEMU sets the final status (`failed`, `cancelled`, `completed`) from its migration thread
 * and only then, when it next holds the main lock, restores the run state (`running` again
 * after a failure, `postmigrate` after success). A monitor command can land in between,
 * longer on a loaded host: seen on QEMU 10.0 under TCG, a TLS handshake the destination
 * refused read as `failed` + `finish-migrate`. Deciding on that read would refuse to resume a
 * source that QEMU is about to resume itself, and report it paused. Polled like the clean-up
 * (10 ms, backing off to 200 ms) for at most `settleMs`; the last read (or its error) is
 * returned as it is when the time runs out, so the fail-safe rule still sees
 * `finish-migrate` and refuses.
 */
export async function settledRunState(
  ch: VmChannel,
  deadline: Deadline,
  migrationStatus: string | undefined,
  runState: VmRunState | { error: unknown },
  settleMs = SETTLE_MS,
): Promise<VmRunState | { error: unknown }> {
  if (migrationStatus === undefined || !TERMINAL_STATUSES.has(migrationStatus)) return runState;
  const until = Date.now() + Math.min(settleMs, Math.max(0, deadline.remaining()));
  let state = runState;
  let interval = POLL_FIRST_MS;
  while (!('error' in state) && state.status === 'finish-migrate') {
    if (Date.now() + interval > until) {
      ch.log.warn(
        { migrationStatus },
        "QEMU still reports run state 'finish-migrate' after the migration ended",
      );
      return state;
    }
    await deadline.sleep(interval);
    interval = Math.min(POLL_MAX_MS, interval * 2);
    state = await ch.vmStatus(deadline).catch((error: unknown) => ({ error }));
  }
  return state;
}

/** How long {@link settledRunState} waits for QEMU to leave `finish-migrate` (ms). */
const SETTLE_MS = 10_000;
