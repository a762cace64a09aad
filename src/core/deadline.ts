/**
 * Deadlines that hold even when QEMU is frozen: every monitor call of a migration step is
 * raced against the step's deadline and the caller's AbortSignal, so a command QEMU never
 * answers is abandoned (its late reply, if any, is dropped by the client) instead of
 * holding the step past its limit.
 */
import { HypervisorError } from '../errors.js';

/** Why a {@link Deadline} cut a wait short. */
export type DeadlineCause = 'timeout' | 'aborted';

/** A monitor call was abandoned because the step's deadline passed or the caller aborted. */
export class DeadlineError extends HypervisorError {
  override name = 'DeadlineError';
  /** `timeout` (the deadline passed) or `aborted` (the caller's signal fired). */
  readonly deadlineCause: DeadlineCause;
  /** What was being waited for, e.g. `query-migrate`. */
  readonly what: string;
  constructor(deadlineCause: DeadlineCause, what: string, limitMs: number | undefined) {
    super(
      deadlineCause === 'aborted'
        ? `${what}: aborted by the caller`
        : `${what}: no answer within the ${limitMs === undefined ? '' : `${limitMs} ms `}deadline`,
    );
    this.deadlineCause = deadlineCause;
    this.what = what;
  }
}

/** A point in time (or none) plus an optional AbortSignal; the two bounds of one step. */
export class Deadline {
  /** Epoch ms at which the step must end; `Infinity` for none. */
  readonly at: number;
  /** The caller's signal, if any. */
  readonly signal: AbortSignal | undefined;
  /** The limit as given, for messages. */
  readonly limitMs: number | undefined;

  private constructor(at: number, signal: AbortSignal | undefined, limitMs: number | undefined) {
    this.at = at;
    this.signal = signal;
    this.limitMs = limitMs;
  }

  /** A deadline `ms` from now (none when `ms` is undefined), bound to `signal`. */
  static after(ms: number | undefined, signal?: AbortSignal): Deadline {
    if (ms !== undefined && (!Number.isFinite(ms) || ms < 0)) {
      throw new HypervisorError(`timeoutMs must be a non-negative finite number of milliseconds, got ${ms}`);
    }
    return new Deadline(ms === undefined ? Number.POSITIVE_INFINITY : Date.now() + ms, signal, ms);
  }

  /** A deadline at epoch ms `at`, bound to `signal`. */
  static at(at: number, signal?: AbortSignal, limitMs?: number): Deadline {
    return new Deadline(at, signal, limitMs);
  }

  /** A short grace deadline for clean-up after this one fired, without the (already fired) signal. */
  static grace(ms: number): Deadline {
    return new Deadline(Date.now() + ms, undefined, ms);
  }

  /** Milliseconds left (0 when passed; `Infinity` when unbounded). */
  remaining(): number {
    return Math.max(0, this.at - Date.now());
  }

  /** The reason this deadline is over, or undefined while it runs. */
  over(): DeadlineCause | undefined {
    if (this.signal?.aborted) return 'aborted';
    if (Date.now() >= this.at) return 'timeout';
    return undefined;
  }

  /** Throws {@link DeadlineError} when the deadline has passed or the signal fired. */
  check(what: string): void {
    const cause = this.over();
    if (cause) throw new DeadlineError(cause, what, this.limitMs);
  }

  /**
   * Resolves like `promise`, or rejects with {@link DeadlineError} as soon as the deadline
   * passes or the signal fires, whichever comes first. `capMs` bounds this one call too.
   */
  race<T>(promise: Promise<T>, what: string, capMs = Number.POSITIVE_INFINITY): Promise<T> {
    const cause = this.over();
    if (cause) {
      promise.catch(() => {});
      return Promise.reject(new DeadlineError(cause, what, this.limitMs));
    }
    const ms = Math.min(this.remaining(), capMs);
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => finish(() => reject(new DeadlineError('aborted', what, this.limitMs)));
      const finish = (act: () => void) => {
        if (timer) clearTimeout(timer);
        this.signal?.removeEventListener('abort', onAbort);
        act();
      };
      if (Number.isFinite(ms)) {
        timer = setTimeout(
          () =>
            finish(() =>
              reject(
                new DeadlineError('timeout', what, ms < this.remaining() ? Math.round(ms) : this.limitMs),
              ),
            ),
          ms,
        );
      }
      this.signal?.addEventListener('abort', onAbort, { once: true });
      promise.then(
        (v) => finish(() => resolve(v)),
        (e: unknown) => finish(() => reject(e)),
      );
    });
  }

  /**
   * Sleeps `ms`, or less when the deadline passes or the signal fires first (never
   * rejects). `wakeOn` may register one more reason to wake early and return its
   * canceller; every timer and listener is removed as soon as the sleep ends, so frequent
   * early wake-ups leave nothing behind on the caller's signal.
   */
  sleep(ms: number, wakeOn?: (wake: () => void) => () => void): Promise<void> {
    return new Promise<void>((resolve) => {
      const signal = this.signal;
      let cancelWake: () => void = () => {};
      let ended = false;
      const t = setTimeout(done, Math.max(0, Math.min(ms, this.remaining())));
      function done() {
        if (ended) return;
        ended = true;
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        cancelWake();
        resolve();
      }
      if (signal?.aborted) {
        done();
        return;
      }
      signal?.addEventListener('abort', done, { once: true });
      if (wakeOn) cancelWake = wakeOn(done);
      if (ended) cancelWake();
    });
  }
}
