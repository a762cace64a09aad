/**
 * Waiting for a migration to end: event-driven where QEMU sends MIGRATION events, polled
 * for statistics, with the convergence policy acting on the way. Every monitor call is
 * bounded by the caller's deadline and AbortSignal, so the wait settles within its
 * deadline plus a short clean-up grace even when QEMU is frozen or gone.
 */

import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { MigrationError, PostcopyStalledError, UnrecognizedOutputError } from '../errors.js';
import { versionAtLeast } from '../qemu/version.js';
import { isDeadline, isMonitorGone, type VmChannel } from './channel.js';
import { settledRunState } from './cleanup-wait.js';
import { ConvergencePolicy, type ConvergencePolicyOptions, completionTimeoutMs } from './convergence.js';
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
const DEADLINE_GRACE_MS = 900;
/** Clean-up time after the convergence policy's own completion timeout (QEMU answering). */
const POLICY_GRACE_MS = 10_000;
/** How often one wait reconnects a lost monitor connection. */
const MAX_RECONNECTS = 3;
/** One status query never waits longer than this, so five failures fit in a minute. */
const QUERY_CAP_MS = 10_000;
/** Default stall window in post-copy (ms): see `WaitForMigrationOptions.postcopyStallMs`. */
const DEFAULT_POSTCOPY_STALL_MS = 5000;
/** How often a post-copy wait says what it is waiting for (ms). */
const POSTCOPY_LOG_EVERY_MS = 10_000;

/** Options the hypervisor object adds to a wait. */
export interface InternalWaitOptions extends WaitForMigrationOptions {
  /**
   * True when `timeoutMs` is the default scaled by guest memory rather than the caller's:
   * it then ends pre-copy only, since post-copy cannot be cancelled and has its own
   * deadline (the stall window).
   */
  timeoutDefaulted?: boolean;
}

/**
 * Waits until the migration ends. Resolves on `completed`; rejects with `MigrationError`
 * (status, QEMU's reason) on `failed`, `cancelled`, a lost or unresponsive monitor, an
 * unreadable status, an abort or a timeout. On abort or timeout it sends `migrate_cancel`
 * (not in post-copy) and resumes a source that the fail-safe rule allows to resume.
 */
export async function waitForMigration(
  session: MigrationSession,
  policyOptions: ConvergencePolicyOptions,
  options: InternalWaitOptions = {},
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
  const stallMs = options.postcopyStallMs ?? DEFAULT_POSTCOPY_STALL_MS;
  const postcopy = new PostcopyWatch(stallMs);
  // In post-copy a defaulted timeout no longer applies (it exists to cancel, which post-copy
  // cannot); the caller's own timeout and abort still do.
  const callerOver = () =>
    postcopy.since !== undefined && options.timeoutDefaulted
      ? options.signal?.aborted
        ? 'aborted'
        : undefined
      : caller.over();
  for (;;) {
    // Deadlines first: a failing query must not loop past them.
    const over = callerOver() ?? (Date.now() >= policyAt ? 'timeout' : undefined);
    if (!over && postcopy.stalled()) throw postcopy.error(ch, last);
    if (over) {
      const why =
        over === 'aborted'
          ? 'cancelled by the caller'
          : callerOver() === 'timeout'
            ? `did not complete within ${formatSeconds(options.timeoutMs ?? 0)}`
            : `did not complete within ${Math.round((policyAt - session.startedAt) / 1000)} s`;
      return giveUp(
        session,
        why,
        last,
        lastError,
        callerOver() ? DEADLINE_GRACE_MS : POLICY_GRACE_MS,
        reporting,
      );
    }
    const seen = session.eventCount;
    const callerAt =
      postcopy.since !== undefined && options.timeoutDefaulted ? Number.POSITIVE_INFINITY : caller.at;
    const step = Deadline.at(
      Math.min(callerAt, policyAt, postcopy.stallAt()),
      options.signal,
      options.timeoutMs,
    );
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
      const hint = session.tls && p.status === 'failed' ? tlsFailureHint(p.errorDesc) : '';
      throw ch.error(`migration ${p.status}${p.errorDesc ? `: ${p.errorDesc}` : ''}${hint}`, undefined, {
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
    if (isPostcopy(p.status)) {
      policyAt = Number.POSITIVE_INFINITY; // post-copy cannot be undone
      postcopy.observe(p, ch);
      if (p.status === 'postcopy-paused') throw postcopy.error(ch, p);
    }
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

/**
 * Watches a migration in post-copy: when it got there, when bytes last moved, and says
 * every {@link POSTCOPY_LOG_EVERY_MS} what the wait is waiting for. A stream that stops
 * (no byte and no status change for the stall window) or breaks (`postcopy-paused`) ends
 * the wait with a {@link PostcopyStalledError}: the caller recovers it.
 */
class PostcopyWatch {
  since: number | undefined;
  private movedAt = 0;
  private bytes: number | undefined;
  private status = '';
  private loggedAt = 0;
  constructor(private readonly stallMs: number) {}

  observe(p: MigrationProgress, ch: VmChannel): void {
    const now = Date.now();
    if (this.since === undefined) {
      this.since = now;
      this.movedAt = now;
      this.loggedAt = now;
      ch.log.info(
        { status: p.status, remainingBytes: p.remainingBytes, stallMs: this.stallMs },
        'in post-copy: the destination runs the VM and fetches the remaining pages from the source; waiting for them to arrive',
      );
    } else if (p.transferredBytes !== this.bytes || p.status !== this.status) {
      this.movedAt = now;
    }
    this.bytes = p.transferredBytes;
    this.status = p.status;
    if (now - this.loggedAt >= POSTCOPY_LOG_EVERY_MS) {
      this.loggedAt = now;
      ch.log.info(
        {
          status: p.status,
          remainingBytes: p.remainingBytes,
          transferredBytes: p.transferredBytes,
          inPostcopyMs: now - this.since,
          idleMs: now - this.movedAt,
        },
        'waiting for the post-copy migration to complete',
      );
    }
  }

  stallAt(): number {
    return this.since === undefined ? Number.POSITIVE_INFINITY : this.movedAt + this.stallMs;
  }

  stalled(): boolean {
    return Date.now() >= this.stallAt();
  }

  error(ch: VmChannel, p: MigrationProgress | undefined): PostcopyStalledError {
    const status = p?.status ?? this.status;
    const paused = status === 'postcopy-paused';
    const stalledMs = paused ? 0 : Date.now() - this.movedAt;
    const what = paused
      ? `the post-copy stream broke ('postcopy-paused'${p?.errorDesc ? `: ${p.errorDesc}` : ''})`
      : `the post-copy migration stalled: no byte moved for ${formatSeconds(stalledMs)} ('${status}')`;
    const left =
      p?.remainingBytes === undefined
        ? ''
        : `, ${(p.remainingBytes / 2 ** 20).toFixed(1)} MiB still on the source`;
    ch.log.warn({ status, stalledMs, remainingBytes: p?.remainingBytes }, 'post-copy stream stopped');
    return new PostcopyStalledError(
      `instance '${ch.instance}': ${what}${left}: the VM is split between the two hosts (the destination runs it, part of its memory is only on the source) and its guest waits for those pages; stop neither QEMU. Recover the stream: pausePostcopy on both ends, acceptPostcopyRecovery on the destination, resumePostcopy on the source (kvm-hv postcopy pause|accept-recovery|resume), then wait again; runMigration and kvm-hv migrate do this by themselves`,
      {
        instance: ch.instance,
        status,
        ...(p?.errorDesc === undefined ? {} : { reason: p.errorDesc }),
        changedVm: true,
        stalledMs,
        transferredBytes: p?.transferredBytes ?? this.bytes,
        summary: `${what}${left}`,
      },
    );
  }
}

/**
 * What a source can say about a failed TLS migration whose reason only the destination
 * knows: QEMU reports a refused handshake on the source as a channel error ("Cannot write
 * to TLS channel: Input/output error" on 5.2/7.2, "Cannot uncork TLS output" on 11.1),
 * while the destination prints why ("TLS x509 authz check for … is denied").
 */
function tlsFailureHint(errorDesc: string | undefined): string {
  if (errorDesc !== undefined && !/TLS|handshake|certificate|x509/i.test(errorDesc)) return '';
  return ' (over TLS: a refused handshake shows here only as a channel error; the destination says why: its incoming status or stderr, e.g. "TLS x509 authz check for … is denied" when its allowedPeers lacks this node\'s client DN, which `kvm-hv tls dn client-cert.pem` prints; runMigration reports it as destinationReason)';
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
      const read = await ch.vmStatus(grace).catch((error: unknown) => ({ error }));
      const runState = await settledRunState(ch, grace, settled.status, read);
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
    ? `${split}The stream between them is broken: if the destination QEMU still runs, recover it with pausePostcopy, acceptPostcopyRecovery on the destination and resumePostcopy on the source (KVMHypervisor, or kvm-hv postcopy pause|accept-recovery|resume), then wait again; if the destination QEMU is gone, the VM is lost: quit the source QEMU and restart the VM from its disks`
    : `${split}Wait again (waitForMigration) until it completes; if the stream breaks, recover it with pausePostcopy, acceptPostcopyRecovery and resumePostcopy (KVMHypervisor, or kvm-hv postcopy pause|accept-recovery|resume)`;
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
