/**
 * The destination's wait for an incoming migration: polls the incoming status (woken
 * early by QEMU's `MIGRATION` events where they exist) until the VM has been loaded, and
 * fails with QEMU's reason, or says that the destination QEMU exited. It changes nothing
 * on the VM: finalizing is the caller's next step (`finalizeMigrationDst`).
 */

import { Deadline, DeadlineError } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { UnrecognizedOutputError } from '../errors.js';
import { isMonitorEvent } from '../monitor/event-types.js';
import type { MonitorEvent } from '../monitor/types.js';
import { isDeadline, isMonitorGone, type VmChannel, type VmRunState } from './channel.js';
import { changesOnly } from './progress-fields.js';
import { isPostcopyPaused } from './safety.js';
import type { IncomingMigrationResult, MigrationProgress, WaitForIncomingOptions } from './types.js';

/** Longest one status query may take before it counts as a failed one (ms). */
const QUERY_CAP_MS = 10_000;
/** Failed status queries in a row that end the wait (a frozen QEMU ends it too). */
const MAX_FAILURES = 5;
/** After `completed`, how long the VM may stay `inmigrate` while its state loads (ms). */
const LOAD_GRACE_MS = 30_000;

/** Waits for the incoming migration on `ch`; see `KVMHypervisor.waitForIncomingMigration`. */
/** Default of `WaitForIncomingOptions.postcopyPausedMs`: the source's recovery (300 s) and a margin. */
const DEFAULT_POSTCOPY_PAUSED_MS = 360_000;

export async function waitForIncoming(
  ch: VmChannel,
  options: WaitForIncomingOptions = {},
): Promise<IncomingMigrationResult> {
  const deadline = Deadline.after(options.timeoutMs, options.signal);
  const pollMs = options.pollIntervalMs ?? 250;
  const onProgress = changesOnly(options.onProgress);
  let wake: (() => void) | undefined;
  const onEvent = (ev: MonitorEvent) => {
    if (isMonitorEvent(ev, 'MIGRATION')) wake?.();
  };
  ch.monitor.on('event', onEvent);
  let last: MigrationProgress | undefined;
  let failures = 0;
  const pausedLimitMs = options.postcopyPausedMs ?? DEFAULT_POSTCOPY_PAUSED_MS;
  let pausedSince: number | undefined;
  let loggedAt = 0;
  const lastStatus = () => (last ? { status: last.status } : {});
  try {
    for (;;) {
      const over = deadline.over();
      if (over) {
        const why =
          over === 'aborted'
            ? 'stopped waiting for the incoming migration'
            : `no incoming migration completed within ${Math.round((options.timeoutMs ?? 0) / 1000)} s`;
        throw ch.error(
          `${why}; the destination was left as it is`,
          new DeadlineError(over, 'waiting for the incoming migration', options.timeoutMs),
          lastStatus(),
        );
      }
      let p: MigrationProgress;
      try {
        p = await deadline.race(ch.migrationStatus(), 'query-migrate', QUERY_CAP_MS);
        failures = 0;
      } catch (e) {
        if (isDeadline(e) && deadline.over()) continue;
        if (isMonitorGone(e, ch.monitor)) {
          throw ch.error(
            `the destination QEMU closed its monitor: it exits when an incoming migration fails (${errorText(e)}${last ? `; last status '${last.status}'` : ''})`,
            e,
            lastStatus(),
          );
        }
        if (e instanceof UnrecognizedOutputError) {
          throw ch.error(`the incoming migration status cannot be read: ${errorText(e)}`, e, lastStatus());
        }
        if (++failures >= MAX_FAILURES) {
          throw ch.error(`${MAX_FAILURES} status queries in a row failed: ${errorText(e)}`, e, lastStatus());
        }
        ch.log.warn({ err: errorText(e) }, 'incoming migration status query failed; retrying');
        await deadline.sleep(pollMs);
        continue;
      }
      if (p.status !== last?.status) ch.log.info({ status: p.status }, 'incoming migration status');
      last = p;
      onProgress?.(p);
      // A broken post-copy stream: the source recovers it; this end only waits, bounded.
      if (isPostcopyPaused(p.status)) {
        const now = Date.now();
        pausedSince ??= now;
        if (now - loggedAt >= 10_000) {
          loggedAt = now;
          ch.log.warn(
            { status: p.status, pausedMs: now - pausedSince, limitMs: pausedLimitMs },
            'post-copy stream broken: the guest waits for pages still on the source; waiting for the source to recover the stream',
          );
        }
        if (now - pausedSince >= pausedLimitMs) {
          throw ch.error(
            `the incoming post-copy migration has been '${p.status}' for ${Math.round((now - pausedSince) / 1000)} s: the VM is split between the two hosts (this end runs it, part of its memory is only on the source) and its guest waits for those pages; stop neither QEMU. Recover the stream once the network works: kvm-hv postcopy pause on both nodes, kvm-hv postcopy accept-recovery here, kvm-hv postcopy resume on the source`,
            undefined,
            { status: p.status, ...(p.errorDesc === undefined ? {} : { reason: p.errorDesc }) },
          );
        }
      } else {
        pausedSince = undefined;
      }
      if (p.status === 'completed') {
        const vm = await loaded(ch, deadline, options.signal);
        ch.log.info({ runState: vm.status }, 'the incoming migration arrived');
        return { status: 'completed', runState: vm.status, running: vm.running, final: p };
      }
      if (p.status === 'failed' || p.status === 'cancelled') {
        throw ch.error(`incoming migration ${p.status}${p.errorDesc ? `: ${p.errorDesc}` : ''}`, undefined, {
          status: p.status,
          ...(p.errorDesc === undefined ? {} : { reason: p.errorDesc }),
        });
      }
      await deadline.sleep(pollMs, (done) => {
        wake = done;
        return () => {
          wake = undefined;
        };
      });
    }
  } finally {
    ch.monitor.off('event', onEvent);
  }
}

/** The run state once it has left `inmigrate` (the device state is loaded), within bounds. */
async function loaded(ch: VmChannel, deadline: Deadline, signal?: AbortSignal): Promise<VmRunState> {
  const until = Math.min(deadline.at, Date.now() + LOAD_GRACE_MS);
  // Bounded even without a caller's limit: a frozen QEMU must not hold the wait.
  const bound = Deadline.at(until, signal, LOAD_GRACE_MS);
  for (;;) {
    const vm = await ch.vmStatus(bound);
    if (vm.status !== 'inmigrate') return vm;
    if (Date.now() >= until) {
      throw ch.error(
        `the incoming migration completed but the VM is still loading after ${LOAD_GRACE_MS} ms`,
        undefined,
        { status: vm.status },
      );
    }
    await bound.sleep(50);
  }
}
