/**
 * Automatic recovery of a broken post-copy stream, as `runMigration` and `kvm-hv migrate`
 * run it: pause both ends, have the destination listen for the source again, resume the
 * source, retried until a deadline. It works on step functions of each end (so the same
 * loop drives two hypervisor objects, or a source alone whose destination listens by
 * itself) and reports what it did; it never stops, cancels or resumes a VM.
 *
 * Why resumes are spaced on QEMU before 9.1: a resume connects in the background, and
 * before the `postcopy-recover-setup` status (QEMU 9.1) nothing shows a connection still
 * being attempted: the source stays `postcopy-paused` whether the connect failed or its
 * SYNs are still being retransmitted over a dead link. A second resume while the first
 * connect is pending would give QEMU two connections for one migration, so a resume is
 * sent again only once the first one must have ended (Linux gives up a connect after
 * about 127 s of SYN retransmits), unless QEMU shows it ended. Meanwhile the source's
 * status is watched: a pending connect that gets through shows as `postcopy-recover` or
 * `postcopy-active`.
 */

import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { MigrationError, QmpError } from '../errors.js';
import { type QemuVersion, versionAtLeast } from '../qemu/version.js';
import { isMonitorGone } from './channel.js';
import type { PostcopyPauseResult, PostcopyRecoveryResult, PostcopyResumeResult } from './postcopy.js';
import type { MigrationProgress } from './types.js';

/** One node's steps, bound to its instance. */
interface PostcopyEndSteps {
  pause(deadline: Deadline): Promise<PostcopyPauseResult>;
  status(deadline: Deadline): Promise<MigrationProgress>;
}

/** The source's steps, and its QEMU version (whether a pending connect shows). */
export interface PostcopySourceSteps extends PostcopyEndSteps {
  resume(uri: string, deadline: Deadline): Promise<PostcopyResumeResult>;
  version: QemuVersion;
  /**
   * How many failed connects the source QEMU has printed so far ("Failed to connect …",
   * from its stderr), where the caller can see it: before 9.1 this is the only sign that a
   * resume's connect ended, so a changed count allows the next resume at once.
   */
  connectFailures?: () => number;
}

/** The destination's steps. */
export interface PostcopyDestinationSteps extends PostcopyEndSteps {
  accept(uri: string, deadline: Deadline): Promise<PostcopyRecoveryResult>;
}

/** What a recovery reports as it goes (`RunMigrationOptions.onPostcopyRecovery`). */
export type PostcopyRecoveryEvent =
  /** The stream stopped: `stalledMs` without a byte moving, or 0 when QEMU reported `postcopy-paused`. */
  | { kind: 'stalled'; episode: number; status: string; stalledMs: number }
  /** One end's pause: `paused`, `already-paused`, or `failed` with QEMU's or the monitor's words. */
  | {
      kind: 'paused';
      episode: number;
      side: 'source' | 'destination';
      action: 'paused' | 'already-paused' | 'failed';
      error?: string;
    }
  /** The destination listens for the source on `uri`. */
  | { kind: 'listening'; episode: number; uri: string }
  /** A resume was sent to `uri`. */
  | { kind: 'resume'; episode: number; attempt: number; uri: string }
  /** The source reconnected (`status`: the first status that shows it). */
  | { kind: 'resumed'; episode: number; attempt: number; uri: string; status: string }
  /** A step failed and is tried again in `inMs`. */
  | { kind: 'retry'; episode: number; attempt: number; error: string; inMs: number };

/** How a recovery episode ended. */
export type PostcopyRecoveryOutcome =
  /** The stream runs again: wait for the migration as usual. */
  | { outcome: 'resumed'; uri: string; attempts: number }
  /** The source reports `completed`: nothing was left to recover. */
  | { outcome: 'completed' }
  /** That end's QEMU is gone: the VM is lost (each end held memory the other lacks). */
  | { outcome: 'lost'; side: 'source' | 'destination'; error: Error }
  /** The deadline passed (or the caller aborted): both ends stay paused, the VM split. */
  | { outcome: 'gave-up'; error: Error; attempts: number }
  /**
   * The source's migration ended by itself (`failed`, `cancelled`): QEMU 11.1 fails a
   * post-copy paused with nothing left to send, and may run the VM again itself.
   */
  | { outcome: 'source-ended'; status: string; reason: string | undefined };

/** Options of {@link recoverPostcopyStream}. */
export interface PostcopyRecoveryPlan {
  source: PostcopySourceSteps;
  /** Absent when only the source is reachable: it resumes to `targetUri(port)` as it stands. */
  destination?: PostcopyDestinationSteps;
  /** The first port to listen on (`migration_port + 1` by default); two more are tried if in use. */
  port: number;
  /** The destination's listen URI on `port` (its own address). */
  listenUri: (port: number) => string;
  /** The URI the source resumes to on `port` (the destination's address as the source sees it). */
  targetUri: (port: number) => string;
  /** The episode's deadline (the recovery deadline, or the caller's if earlier). */
  deadline: Deadline;
  /** Episode number, counted from 1, for the events. */
  episode: number;
  /**
   * On QEMU before 9.1 (a pending connect does not show), the least time between two
   * resumes, ms (default {@link OLD_QEMU_RESUME_SPACING_MS}).
   */
  resumeSpacingMs?: number;
  onEvent?: (event: PostcopyRecoveryEvent) => void;
}

/** About Linux's connect budget (6 SYN retransmits, 127 s) plus a margin. */
const OLD_QEMU_RESUME_SPACING_MS = 130_000;

/**
 * Whether this QEMU survives a second resume after a failed one. Measured: 5.2 aborts
 * ("migrate_fd_connect: Assertion `s->cleanup_bh' failed") as soon as that second resume
 * connects, losing the pages only it holds; 7.2 and later resume again.
 */
function resumeRetrySafe(version: QemuVersion): boolean {
  return versionAtLeast(version, 7, 0);
}

/** Counts the failed connects in a QEMU's stderr (its words, any release). */
export function countConnectFailures(text: string | undefined): number {
  return (
    (text ?? '').match(/Failed to connect|No route to host|Connection refused|Network is unreachable/gi)
      ?.length ?? 0
  );
}

/** Migration statuses in which the source's migration is over by itself. */
const ENDED: ReadonlySet<string> = new Set(['failed', 'cancelled', 'cancelling', 'none']);
/** Each step's own limit within the episode (ms). */
const STEP_MS = 15_000;
/** Ports tried for `migrate-recover` when one is in use. */
const PORT_TRIES = 3;
/** Pause between retries: starts here, doubles, capped (ms). */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 8000;
/** How often a pending resume is checked (ms). */
const WATCH_MS = 500;

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));

/**
 * Brings a broken post-copy stream back, once: pause both ends (out of band where QEMU
 * negotiated it), make the destination listen (`migrate-recover` on a fresh port), resume
 * the source there; retried until `plan.deadline`. Resolves with what happened; throws
 * nothing for what it finds on the ends.
 */
export async function recoverPostcopyStream(plan: PostcopyRecoveryPlan): Promise<PostcopyRecoveryOutcome> {
  const { source, destination, deadline, episode } = plan;
  const emit = (e: PostcopyRecoveryEvent) => plan.onEvent?.(e);
  let attempts = 0;
  let lastError: Error = new Error('no recovery step ran');
  let wait = RETRY_FIRST_MS;
  let listening: string | undefined;
  let port = plan.port;
  const retry = async (error: unknown): Promise<boolean> => {
    lastError = asError(error);
    const inMs = Math.min(wait, Math.max(0, deadline.remaining()));
    if (deadline.over() || inMs <= 0) return false;
    emit({ kind: 'retry', episode, attempt: attempts, error: errorText(error), inMs });
    await deadline.sleep(inMs).catch(() => undefined);
    wait = Math.min(wait * 2, RETRY_MAX_MS);
    return !deadline.over();
  };
  const gaveUp = (): PostcopyRecoveryOutcome => ({ outcome: 'gave-up', error: lastError, attempts });

  for (;;) {
    if (deadline.over()) return gaveUp();
    // 1. Both ends paused: the stream is cut on purpose, so both can reconnect.
    const ends: Array<['source' | 'destination', PostcopyEndSteps]> = [['source', source]];
    if (destination) ends.push(['destination', destination]);
    const paused = await Promise.all(
      ends.map(async ([side, end]) => {
        try {
          const r = await end.pause(step(deadline));
          emit({ kind: 'paused', episode, side, action: r.action });
          return undefined;
        } catch (e) {
          emit({ kind: 'paused', episode, side, action: 'failed', error: errorText(e) });
          return { side, error: e };
        }
      }),
    );
    for (const failed of paused) {
      if (failed && isMonitorGone(failed.error)) {
        return { outcome: 'lost', side: failed.side, error: asError(failed.error) };
      }
    }
    let src: MigrationProgress;
    try {
      src = await source.status(step(deadline));
    } catch (e) {
      if (isMonitorGone(e)) return { outcome: 'lost', side: 'source', error: asError(e) };
      if (await retry(e)) continue;
      return gaveUp();
    }
    if (src.status === 'completed') return { outcome: 'completed' };
    if (ENDED.has(src.status)) return { outcome: 'source-ended', status: src.status, reason: src.errorDesc };
    if (src.status !== 'postcopy-paused') {
      // Not paused (yet): the pause did not take, or a reconnection is under way.
      const why = paused.find((p) => p?.side === 'source')?.error;
      if (await retry(why ?? new Error(`the source is '${src.status}', not 'postcopy-paused'`))) continue;
      return gaveUp();
    }
    // 2. The destination listens again (a fresh port: the old listener may still hold its own).
    if (destination && listening === undefined) {
      try {
        listening = await listen(destination, plan, port, deadline, (p) => {
          port = p;
        });
        emit({ kind: 'listening', episode, uri: listening });
      } catch (e) {
        if (isMonitorGone(e)) return { outcome: 'lost', side: 'destination', error: asError(e) };
        if (await retry(e)) continue;
        return gaveUp();
      }
    }
    // 3. The source resumes there, until it gets through or the deadline passes.
    const uri = plan.targetUri(port);
    const visible = versionAtLeast(source.version, 9, 1);
    const retrySafe = resumeRetrySafe(source.version);
    for (;;) {
      attempts++;
      emit({ kind: 'resume', episode, attempt: attempts, uri });
      const sentAt = Date.now();
      const failuresBefore = source.connectFailures?.();
      try {
        const r = await source.resume(uri, step(deadline));
        emit({ kind: 'resumed', episode, attempt: attempts, uri, status: r.status });
        return { outcome: 'resumed', uri, attempts };
      } catch (e) {
        lastError = asError(e);
        if (isMonitorGone(e)) return { outcome: 'lost', side: 'source', error: lastError };
        if (destination) {
          const gone = await destinationGone(destination, deadline);
          if (gone) return { outcome: 'lost', side: 'destination', error: gone };
        }
        const status = e instanceof MigrationError ? e.status : undefined;
        if (status === 'completed') return { outcome: 'completed' };
        if (status !== undefined && ENDED.has(status)) {
          return { outcome: 'source-ended', status, reason: (e as MigrationError).reason };
        }
        if (status !== undefined && status !== 'postcopy-paused' && status !== 'postcopy-recover-setup')
          break;
      }
      // Before 9.1 a failed connect shows only on QEMU's stderr.
      const failedConnect = failuresBefore !== undefined && source.connectFailures?.() !== failuresBefore;
      // The connect may still be pending: watch for it to get through, and send again only
      // once QEMU shows it ended (9.1+, or its stderr), or it must have (before 9.1).
      const spacing = visible || failedConnect ? 0 : (plan.resumeSpacingMs ?? OLD_QEMU_RESUME_SPACING_MS);
      const again = Math.max(sentAt + spacing, Date.now() + Math.min(wait, RETRY_MAX_MS));
      wait = Math.min(wait * 2, RETRY_MAX_MS);
      if (!retrySafe && failedConnect) {
        return { outcome: 'gave-up', error: oneResumeOnly(source.version, lastError), attempts };
      }
      emit({
        kind: 'retry',
        episode,
        attempt: attempts,
        error: errorText(lastError),
        inMs: Math.max(0, Math.min(again, deadline.at) - Date.now()),
      });
      const through = await watchResume(source, deadline, again);
      if (through === 'completed') return { outcome: 'completed' };
      if (through) {
        emit({ kind: 'resumed', episode, attempt: attempts, uri, status: through });
        return { outcome: 'resumed', uri, attempts };
      }
      if (deadline.over()) return gaveUp();
      if (!retrySafe)
        return { outcome: 'gave-up', error: oneResumeOnly(source.version, lastError), attempts };
    }
  }
}

/** Why a QEMU before 7.0 is resumed once only. */
function oneResumeOnly(version: QemuVersion, last: Error): Error {
  return new Error(
    `the resume did not get through (${errorText(last)}), and QEMU ${version.major}.${version.minor} aborts on a second resume after a failed one (measured on 5.2: "Assertion \`s->cleanup_bh' failed", losing the pages only the source holds), so it is not resumed again`,
  );
}

/** A step's deadline within the episode's. */
function step(deadline: Deadline): Deadline {
  return Deadline.at(Math.min(deadline.at, Date.now() + STEP_MS), deadline.signal);
}

/** `migrate-recover` on `port`, or the next ones while QEMU says the address is in use. */
async function listen(
  destination: PostcopyDestinationSteps,
  plan: PostcopyRecoveryPlan,
  first: number,
  deadline: Deadline,
  chosen: (port: number) => void,
): Promise<string> {
  let error: unknown;
  for (let i = 0; i < PORT_TRIES && first + i <= 65535; i++) {
    const uri = plan.listenUri(first + i);
    try {
      const r = await destination.accept(uri, step(deadline));
      // 5.2 keeps the URI of an earlier migrate-recover: the port asked for first.
      chosen(r.action === 'already-listening' ? first : first + i);
      return r.action === 'already-listening' ? plan.listenUri(first) : uri;
    } catch (e) {
      error = e;
      if (!inUse(e)) throw e;
    }
  }
  throw error;
}

/** QEMU's refusal because the port is taken (its words differ by release). */
function inUse(e: unknown): boolean {
  for (let c: unknown = e; c instanceof Error; c = c.cause) {
    const text = c instanceof QmpError ? c.desc : c.message;
    if (/address already in use|EADDRINUSE/i.test(text)) return true;
  }
  return false;
}

/** The destination's QEMU gone (its monitor closed or refused): the error; else undefined. */
async function destinationGone(
  destination: PostcopyDestinationSteps,
  deadline: Deadline,
): Promise<Error | undefined> {
  try {
    await destination.status(step(deadline));
    return undefined;
  } catch (e) {
    return isMonitorGone(e) ? asError(e) : undefined;
  }
}

/**
 * Watches the source until `until` (within the deadline): the status once it shows a
 * reconnection got through (`postcopy-recover`, `postcopy-active`, `completed`), else
 * undefined.
 */
async function watchResume(
  source: PostcopySourceSteps,
  deadline: Deadline,
  until: number,
): Promise<string | undefined> {
  const limit = Deadline.at(Math.min(deadline.at, until), deadline.signal);
  for (;;) {
    const p = await source.status(step(limit)).catch(() => undefined);
    if (
      p &&
      (p.status === 'postcopy-active' || p.status === 'postcopy-recover' || p.status === 'completed')
    ) {
      return p.status;
    }
    if (limit.over()) return undefined;
    await limit.sleep(Math.min(WATCH_MS, Math.max(1, limit.remaining()))).catch(() => undefined);
  }
}
