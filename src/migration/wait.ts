/**
 * Waiting for a migration to end: event-driven where QEMU sends MIGRATION events, polled
 * for statistics, with the convergence policy acting on the way. Every monitor call is
 * bounded by the caller's deadline and AbortSignal, so the wait settles within its
 * deadline plus a short clean-up grace even when QEMU is frozen or gone.
 */
import { MigrationError, UnrecognizedOutputError } from '../errors.js';
import { versionAtLeast } from '../qemu/version.js';
import { errorText, isDeadline, isMonitorGone, type VmChannel } from './channel.js';
import { ConvergencePolicy, type ConvergencePolicyOptions, completionTimeoutMs } from './convergence.js';
import { Deadline } from './deadline.js';
import { downtimeCommand, simpleCommand } from './dialect.js';
import { changesOnly } from './progress-fields.js';
import { isPostcopy, isPostcopyPaused, sourceVerdict } from './safety.js';
import type { MigrationSession } from './session.js';
import { cancelAndSettle } from './source.js';
import { ACTIVE_STATUSES, TERMINAL_STATUSES } from './status.js';
import type { MigrationProgress, MigrationResult, WaitForMigrationOptions } from './types.js';

const formatSeconds = (ms: number): string =>
  ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;

/** Clean-up time after a caller's deadline or abort: `migrate_cancel` and one status read. */
export const DEADLINE_GRACE_MS = 900;
/** Clean-up time after the convergence policy's own completion timeout (QEMU answering). */
const POLICY_GRACE_MS = 10_000;
/** How often one wait reconnects a lost monitor connection. */
const MAX_RECONNECTS = 3;
/** One status query never waits longer than this, so five failures fit in a minute. */
const QUERY_CAP_MS = 10_000;

/**
 * Waits until the migration ends. Resolves on `completed`; rejects with `MigrationError`
 * (status, QEMU's reason) on `failed`, `cancelled`, a lost or unresponsive monitor, an
 * unreadable status, an abort or a timeout. On abort or timeout it sends `migrate_cancel`
 * (not in post-copy) and resumes a source that the fail-safe rule allows to resume.
 */
export async function waitForMigration(
  session: MigrationSession,
  policyOptions: ConvergencePolicyOptions,
  options: WaitForMigrationOptions = {},
  reopen?: (deadline: Deadline) => Promise<VmChannel>,
): Promise<MigrationResult> {
  let ch = session.channel;
  let reconnects = 0;
  const pollMs = options.pollIntervalMs ?? 500;
  const caller = Deadline.at(
    options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : session.startedAt + options.timeoutMs,
    options.signal,
    options.timeoutMs,
  );
  let policyAt = Number.POSITIVE_INFINITY;
  let policy: ConvergencePolicy | undefined;
  let failures = 0;
  let lastStatus = '';
  let last: MigrationProgress | undefined;
  let lastError: unknown;
  // onProgress sees a snapshot only when it changed (docs: WaitForMigrationOptions).
  const onProgress = changesOnly(options.onProgress);
  const reporting: WaitForMigrationOptions = onProgress ? { ...options, onProgress } : options;
  const unknownLogged = new Set<string>();
  for (;;) {
    // Deadlines first: a failing query must not loop past them.
    const over = caller.over() ?? (Date.now() >= policyAt ? 'timeout' : undefined);
    if (over) {
      const why =
        over === 'aborted'
          ? 'cancelled by the caller'
          : caller.over() === 'timeout'
            ? `did not complete within ${formatSeconds(options.timeoutMs ?? 0)}`
            : `did not complete within ${Math.round((policyAt - session.startedAt) / 1000)} s`;
      return giveUp(
        session,
        why,
        last,
        lastError,
        caller.over() ? DEADLINE_GRACE_MS : POLICY_GRACE_MS,
        reporting,
      );
    }
    const seen = session.eventCount;
    const step = Deadline.at(Math.min(caller.at, policyAt), options.signal, options.timeoutMs);
    let p: MigrationProgress;
    try {
      p = await step.race(ch.migrationStatus(), 'query-migrate', QUERY_CAP_MS);
      failures = 0;
      lastError = undefined;
    } catch (e) {
      lastError = e;
      if (isDeadline(e) && step.over()) continue;
      if (isMonitorGone(e, ch.monitor) && reopen && reconnects < MAX_RECONNECTS) {
        // Only our connection may be gone (QEMU keeps migrating without it): reconnect
        // and carry on; if QEMU itself is gone, opening fails and that is reported.
        reconnects++;
        try {
          ch = await reopen(step);
          session.rebind(ch);
          ch.log.warn({ err: errorText(e) }, 'monitor connection lost during the migration; reconnected');
          continue;
        } catch (again) {
          throw ch.error(
            `lost the monitor during the migration (${errorText(e)}) and cannot reconnect (${errorText(again)}); QEMU may have exited or may still be migrating, so the source must not be resumed blindly`,
            again,
            lastStatus ? { status: lastStatus } : {},
          );
        }
      }
      if (isMonitorGone(e, ch.monitor)) {
        throw ch.error(
          `lost the monitor during the migration (${errorText(e)}); QEMU may still be migrating, so the source must not be resumed blindly`,
          e,
          lastStatus ? { status: lastStatus } : {},
        );
      }
      if (e instanceof UnrecognizedOutputError) {
        throw ch.error(
          `the migration status cannot be read: ${errorText(e)}`,
          e,
          lastStatus ? { status: lastStatus } : {},
        );
      }
      if (++failures >= 5) {
        throw ch.error(
          `5 status queries in a row failed: ${errorText(e)}`,
          e,
          lastStatus ? { status: lastStatus } : {},
        );
      }
      ch.log.warn({ err: errorText(e) }, 'migration status query failed; retrying');
      await step.sleep(pollMs);
      continue;
    }
    last = p;
    if (p.status !== lastStatus) {
      ch.log.info({ status: p.status }, 'migration status');
      lastStatus = p.status;
    }
    if (!TERMINAL_STATUSES.has(p.status) && !ACTIVE_STATUSES.has(p.status) && !unknownLogged.has(p.status)) {
      unknownLogged.add(p.status);
      if (p.status !== 'none') ch.log.warn({ status: p.status }, 'unknown migration status; still waiting');
    }
    onProgress?.(p);
    if (p.status === 'completed') {
      return result(
        await askAgain(ch, p, caller, { forMs: 1000, everyMs: 10 }, (q) => !!q.totalTimeMs),
        session,
      );
    }
    // `error-desc` exists from QEMU 2.7; older ones never say why.
    if (p.status === 'failed' && p.errorDesc === undefined && versionAtLeast(ch.monitor.version, 2, 7)) {
      p = await askAgain(ch, p, step, { forMs: 300, everyMs: 50 }, (q) => q.errorDesc !== undefined);
    }
    if (p.status === 'failed' || p.status === 'cancelled') {
      throw ch.error(`migration ${p.status}${p.errorDesc ? `: ${p.errorDesc}` : ''}`, undefined, {
        status: p.status,
        ...(p.errorDesc === undefined ? {} : { reason: p.errorDesc }),
      });
    }
    if (
      options.timeoutMs === undefined &&
      policyAt === Number.POSITIVE_INFINITY &&
      p.totalBytes !== undefined
    ) {
      policyAt = session.startedAt + completionTimeoutMs(p.totalBytes, policyOptions);
    }
    if (isPostcopy(p.status)) policyAt = Number.POSITIVE_INFINITY; // post-copy cannot be undone
    if (p.status === 'active') {
      policy ??= new ConvergencePolicy(session.downtimeMs, session.postcopy, policyOptions);
      const action = policy.observe(p, Date.now());
      if (action) {
        ch.log.info(action, 'convergence policy acts');
        options.onAction?.(action);
        const cmd =
          action.kind === 'downtime'
            ? downtimeCommand(session.dialect, action.downtimeMs)
            : action.kind === 'postcopy'
              ? simpleCommand(ch.monitor.protocol, 'migrate-start-postcopy', 'migrate_start_postcopy')
              : undefined;
        if (cmd) {
          await ch
            .send(cmd, step)
            .catch((e: unknown) =>
              ch.log.error({ err: errorText(e), action: action.kind }, 'convergence command failed'),
            );
        }
      }
    }
    await pause(pollMs, step, session.eventsEnabled ? session : undefined, seen);
  }
}

/** Waits `ms`, or less: until the deadline or abort, or the session's next event after `seen`. */
function pause(
  ms: number,
  deadline: Deadline,
  session: MigrationSession | undefined,
  seen: number,
): Promise<void> {
  return deadline.sleep(ms, session ? (wake) => session.onEventAfter(seen, wake) : undefined);
}

/**
 * The caller's deadline or abort, or the policy's completion timeout: cancel (not in
 * post-copy), read the outcome within a short grace, resume the source only where the
 * fail-safe rule allows it, and say what is known.
 */
async function giveUp(
  session: MigrationSession,
  why: string,
  last: MigrationProgress | undefined,
  lastError: unknown,
  graceMs: number,
  options: WaitForMigrationOptions,
): Promise<MigrationResult> {
  const ch = session.channel;
  const grace = Deadline.grace(graceMs);
  const lastStatus = last?.status;
  if (lastStatus !== undefined && isPostcopy(lastStatus)) {
    throw ch.error(`${why}, but ${postcopyGiveUp(lastStatus)}`, undefined, { status: lastStatus });
  }
  const settled = await cancelAndSettle(ch, why, grace, options.onProgress);
  if (!('error' in settled)) {
    if (settled.status === 'completed') return result(settled, session);
    if (TERMINAL_STATUSES.has(settled.status) && (session.wasRunning || session.stoppedByUs)) {
      const runState = await ch.vmStatus(grace).catch((error: unknown) => ({ error }));
      const verdict = sourceVerdict({ runState, migration: settled });
      if (verdict.kind === 'resume') {
        await ch
          .send(simpleCommand(ch.monitor.protocol, 'cont'), grace)
          .then(() => ch.log.info({}, 'resumed the source VM after cancelling'))
          .catch((e: unknown) =>
            ch.log.error({ err: errorText(e) }, 'resuming the source after cancelling failed'),
          );
      }
    }
    throw ch.error(`migration cancelled: ${why}`, undefined, {
      status: settled.status,
      reason: settled.errorDesc ?? why,
    });
  }
  const unresponsive = isDeadline(settled.error) || isDeadline(lastError);
  const known = lastStatus ? `last status read: '${lastStatus}'` : 'no status was read';
  throw new MigrationError(
    `instance '${ch.instance}': ${why}; ${unresponsive ? 'the monitor is unresponsive' : `the monitor failed (${errorText(settled.error)})`}: migrate_cancel was sent but its outcome is unknown (${known}); the source was not resumed`,
    {
      instance: ch.instance,
      ...(lastStatus ? { status: lastStatus } : {}),
      reason: why,
      cause: settled.error,
      unresponsive,
      changedVm: true,
    },
  );
}

/**
 * What a wait that gives up in post-copy says: the VM is split, nothing may be stopped,
 * and what to do next. Never that the VM is on the destination: in `postcopy-paused` the
 * destination's guest is frozen, and if the destination QEMU is gone the VM is lost.
 */
function postcopyGiveUp(status: string): string {
  const split = `the migration is in post-copy ('${status}'): it cannot be cancelled and the VM is split between the two hosts (the destination runs it, part of its memory is only on the source); stop neither QEMU. `;
  return isPostcopyPaused(status)
    ? `${split}The stream between them is broken: if the destination QEMU still runs, recover it with pausePostcopy, acceptPostcopyRecovery on the destination and resumePostcopy on the source (src/migration/postcopy.ts), then wait again; if the destination QEMU is gone, the VM is lost: quit the source QEMU and restart the VM from its disks`
    : `${split}Wait again (waitForMigration) until it completes; if the stream breaks, recover it with pausePostcopy, acceptPostcopyRecovery and resumePostcopy (src/migration/postcopy.ts)`;
}

/**
 * QEMU fills some fields a moment after it reports a final status: `total-time` and
 * `downtime` after `completed` (7.2), `error-desc` after `failed`. Asks again, every
 * `everyMs` for up to `forMs`, while the status stays the same and `settled` is false.
 */
async function askAgain(
  ch: VmChannel,
  p: MigrationProgress,
  deadline: Deadline,
  timing: { forMs: number; everyMs: number },
  settled: (p: MigrationProgress) => boolean,
): Promise<MigrationProgress> {
  const until = Deadline.at(Math.min(deadline.at, Date.now() + timing.forMs), deadline.signal);
  while (!settled(p) && !until.over()) {
    await until.sleep(timing.everyMs);
    const again = await ch.migrationStatus(until).catch(() => undefined);
    if (again?.status !== p.status) break;
    p = again;
  }
  return p;
}

function result(p: MigrationProgress, session: MigrationSession): MigrationResult {
  const r: MigrationResult = { status: 'completed', final: p };
  if (p.totalTimeMs !== undefined) r.totalTimeMs = p.totalTimeMs;
  if (p.downtimeMs !== undefined) r.downtimeMs = p.downtimeMs;
  if (p.transferredBytes !== undefined) r.transferredBytes = p.transferredBytes;
  if (p.totalBytes !== undefined) r.totalBytes = p.totalBytes;
  const secs = (p.totalTimeMs ?? Date.now() - session.startedAt) / 1000;
  if (p.transferredBytes !== undefined && secs > 0) r.averageSpeedBytesPerSec = p.transferredBytes / secs;
  session.channel.log.info(
    { totalTimeMs: r.totalTimeMs, downtimeMs: r.downtimeMs, bytes: r.transferredBytes },
    'migration completed',
  );
  return r;
}
