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
import { UnrecognizedOutputError } from '../errors.js';
import { versionAtLeast } from '../qemu/version.js';
import { errorText, type VmChannel } from './channel.js';
import type { Deadline } from './deadline.js';

/** How often the clean-up is polled (ms). It takes a few milliseconds once the status is final. */
const POLL_MS = 10;

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
 * later set-up resets them). Without `query-yank` (HMP, QEMU before 6.0) it waits until
 * the run state has left `finish-migrate`, which QEMU changes in the same step that
 * schedules the clean-up. When QEMU cannot be asked, it logs and resolves true.
 */
export async function readyForRestore(ch: VmChannel, deadline: Deadline): Promise<boolean> {
  const yank = ch.monitor.protocol === 'qmp' && versionAtLeast(ch.monitor.version, 6, 0);
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
    if (deadline.remaining() <= POLL_MS) {
      ch.log.error({}, "QEMU's migration clean-up is still running; migration settings left as they are");
      return false;
    }
    ch.log.debug({}, "waiting for QEMU's migration clean-up");
    await deadline.sleep(POLL_MS);
  }
}
