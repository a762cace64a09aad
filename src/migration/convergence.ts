/**
 * The convergence policy: what to do when a precopy migration stops making progress.
 * Pure (time comes in as an argument), so every step can be tested without QEMU.
 *
 * The numbers follow Proxmox (double the downtime when `remaining` stops shrinking,
 * capped), Ganeti (switch to post-copy after two passes when `postcopy-ram` is on) and
 * Nova (a completion timeout scaled by guest memory, then abort).
 *
 * With `postcopy-ram` opted in, post-copy is the convergence step: a stall switches to
 * post-copy at once instead of raising the downtime step by step. Post-copy bounds the
 * time (what is left crosses the link once) and keeps the pause within the downtime the
 * operator set, where the downtime ladder takes passes of `stallMs` each and ends with
 * a pause of up to `maxDowntimeMs` (bench:migration, docs/performance.md).
 *
 * Both rules act only while QEMU is sending: a stall with no bytes moved is a network
 * problem, not a convergence problem. A larger downtime cannot help a dead link, and
 * post-copy requested on one starts the moment the link returns, with most of the memory
 * still on the source: a second failure then loses the VM.
 */
import type { ConvergenceAction, MigrationProgress } from './types.js';

/** Tuning knobs of {@link ConvergencePolicy}; every one has a default. */
export interface ConvergencePolicyOptions {
  /**
   * Act when `remaining` has not reached a new low for this long (ms): raise the
   * downtime, or with `postcopy-ram` on switch to post-copy. Default 6000.
   */
  stallMs?: number;
  /** Multiply the downtime by this at each step. Default 2. */
  downtimeFactor?: number;
  /** Never raise the downtime above this (ms). Default 2000; QEMU's own limit is 2,000,000. */
  maxDowntimeMs?: number;
  /**
   * With `postcopy-ram` on: switch to post-copy once QEMU's dirty-sync count reaches this
   * (Ganeti's `dirty-sync-count >= 2`: the first pass is over) and, where QEMU reports page
   * counts, every page has been sent once. Default 2.
   */
  postcopyAfterPasses?: number;
  /** Overall completion timeout per GiB of guest RAM (ms). Default 800 s (Nova). */
  completionTimeoutMsPerGiB?: number;
  /** Lower bound of the scaled completion timeout (ms). Default 120 s. */
  minCompletionTimeoutMs?: number;
}

/** The defaults of {@link ConvergencePolicyOptions}. */
export const DEFAULT_CONVERGENCE: Required<ConvergencePolicyOptions> = {
  stallMs: 6000,
  downtimeFactor: 2,
  maxDowntimeMs: 2000,
  postcopyAfterPasses: 2,
  completionTimeoutMsPerGiB: 800_000,
  minCompletionTimeoutMs: 120_000,
};

/** QEMU's ceiling for `downtime-limit` (ms). */
export const QEMU_MAX_DOWNTIME_MS = 2_000_000;

/** The completion timeout for a guest of `ramBytes` (ms). */
export function completionTimeoutMs(
  ramBytes: number | undefined,
  options: ConvergencePolicyOptions = {},
): number {
  const o = { ...DEFAULT_CONVERGENCE, ...options };
  const gib = (ramBytes ?? 0) / 2 ** 30;
  return Math.max(o.minCompletionTimeoutMs, Math.ceil(gib * o.completionTimeoutMsPerGiB));
}

/**
 * Watches progress snapshots and answers with at most one action per snapshot.
 * It never cancels by itself: the waiter enforces the completion timeout, because only
 * it knows whether the migration is already in post-copy (which cannot be cancelled).
 */
export class ConvergencePolicy {
  private readonly o: Required<ConvergencePolicyOptions>;
  private downtimeMs: number;
  private readonly postcopyAllowed: boolean;
  private postcopyRequested = false;
  private bestRemaining = Number.POSITIVE_INFINITY;
  private lastProgressAt: number | undefined;
  /** `nowMs` of the first active snapshot. */
  private firstSeenAt: number | undefined;
  /** The last transfer speed above zero (bytes/s; QEMU reports 0 now and then). */
  private speed: number | undefined;
  /** `transferredBytes` when the current stall window began. */
  private windowTransferred: number | undefined;
  /** `transferredBytes` of the previous snapshot. */
  private lastTransferred: number | undefined;

  /**
   * @param initialDowntimeMs the downtime the migration started with (`migration_downtime`)
   * @param postcopyAllowed true when `postcopy-ram` is enabled on both sides
   */
  constructor(initialDowntimeMs: number, postcopyAllowed: boolean, options: ConvergencePolicyOptions = {}) {
    this.o = { ...DEFAULT_CONVERGENCE, ...options };
    this.downtimeMs = initialDowntimeMs;
    this.postcopyAllowed = postcopyAllowed;
  }

  /** The downtime the policy last asked for (ms). */
  get currentDowntimeMs(): number {
    return this.downtimeMs;
  }

  /**
   * Feeds one snapshot taken at `nowMs`; returns the action to take, if any. Bytes moved
   * are read from `transferredBytes`: a snapshot without it counts as nothing moved, so
   * the policy then never acts.
   */
  observe(progress: MigrationProgress, nowMs: number): ConvergenceAction | undefined {
    if (progress.status !== 'active') return undefined;
    const transferred = progress.transferredBytes;
    const movedSinceLast =
      transferred !== undefined && this.lastTransferred !== undefined && transferred > this.lastTransferred;
    if (transferred !== undefined) this.lastTransferred = transferred;
    this.firstSeenAt ??= nowMs;
    if (progress.speedBytesPerSec) this.speed = progress.speedBytesPerSec;
    if (this.lastProgressAt === undefined) this.startWindow(nowMs, transferred);
    const remaining = progress.remainingBytes;
    if (remaining !== undefined && remaining > 0 && remaining < this.bestRemaining) {
      this.bestRemaining = remaining;
      this.startWindow(nowMs, transferred);
    }
    // QEMU 11 with postcopy-ram syncs the dirty bitmap at every iteration, so its count
    // reaches 2 within the first pass: the pages sent say whether that pass is over.
    // Post-copy only while bytes flow: requested on a dead link it would start, with
    // nothing more sent, the moment the link returns.
    if (
      this.postcopyAllowed &&
      !this.postcopyRequested &&
      (progress.pass ?? 0) >= this.o.postcopyAfterPasses &&
      progress.firstPassDone !== false &&
      movedSinceLast
    ) {
      return this.requestPostcopy(
        nowMs,
        transferred,
        progress.firstPassDone
          ? `the first precopy pass is over (dirty sync count ${progress.pass})`
          : `precopy pass ${progress.pass} reached`,
      );
    }
    if (nowMs - (this.lastProgressAt ?? nowMs) < this.o.stallMs) return undefined;
    const movedInWindow =
      transferred !== undefined &&
      this.windowTransferred !== undefined &&
      transferred > this.windowTransferred;
    const stalledFor = `remaining memory has not shrunk for ${this.o.stallMs} ms`;
    // With post-copy allowed it is the step to take, not a larger downtime: once the first
    // pass is over, what is left crosses the link once, with a pause within the limit.
    if (this.postcopyAllowed && !this.postcopyRequested && movedInWindow) {
      if (progress.firstPassDone !== false) {
        // The same guard as the pass rule: bytes moved since the previous snapshot. If
        // not, the window stays open and the first snapshot that moves bytes acts.
        return movedSinceLast ? this.requestPostcopy(nowMs, transferred, stalledFor) : undefined;
      }
      // The first pass still runs (QEMU 11 recomputes `remaining` at every dirty sync, so
      // it can stall within the first pass): the switch is due when the pass ends, which
      // takes at most about RAM ÷ speed while bytes move. Beyond twice that the page
      // counts are not telling (e.g. compressed pages are not counted as sent): fall
      // back to the downtime.
      if (!this.firstPassOverdue(progress, nowMs)) {
        this.restartAfterStall(nowMs, transferred, remaining);
        return undefined;
      }
    }
    // Stalled: start a new observation window whatever we do next.
    this.restartAfterStall(nowMs, transferred, remaining);
    // Nothing sent during the whole window: the link is down or QEMU is stuck, which
    // neither a larger downtime nor post-copy can fix.
    if (!movedInWindow) return undefined;
    if (this.downtimeMs < this.o.maxDowntimeMs) {
      const next = Math.min(
        this.o.maxDowntimeMs,
        Math.max(1, Math.ceil(this.downtimeMs * this.o.downtimeFactor)),
      );
      this.downtimeMs = next;
      return { kind: 'downtime', downtimeMs: next, reason: stalledFor };
    }
    return undefined;
  }

  /**
   * Requests post-copy once, and starts a new stall window: should QEMU not switch (it
   * refused the command, or waits for data that post-copy cannot carry), the downtime
   * rule takes over a full window later.
   */
  private requestPostcopy(nowMs: number, transferred: number | undefined, reason: string): ConvergenceAction {
    this.postcopyRequested = true;
    this.startWindow(nowMs, transferred);
    return { kind: 'postcopy', reason };
  }

  /**
   * Whether the first pass has run for over twice RAM ÷ the last speed since the first
   * snapshot; true when either is unknown (nothing to wait for then).
   */
  private firstPassOverdue(progress: MigrationProgress, nowMs: number): boolean {
    if (!progress.totalBytes || !this.speed) return true;
    return nowMs - (this.firstSeenAt ?? nowMs) > (2 * 1000 * progress.totalBytes) / this.speed;
  }

  private restartAfterStall(
    nowMs: number,
    transferred: number | undefined,
    remaining: number | undefined,
  ): void {
    this.startWindow(nowMs, transferred);
    this.bestRemaining = remaining && remaining > 0 ? remaining : Number.POSITIVE_INFINITY;
  }

  private startWindow(nowMs: number, transferred: number | undefined): void {
    this.lastProgressAt = nowMs;
    this.windowTransferred = transferred;
  }
}
