/**
 * `FakeClock`: the time a fake migration runs on, moved only by the test (or by the
 * pair's queries, see `FakeMigrationPairOptions.advancePerQueryMs`), never by the wall
 * clock: the same test sees the same migration every run.
 */

/** A manual clock: {@link advance} moves it and runs the listeners with the elapsed ms. */
export class FakeClock {
  private nowMs = 0;
  private readonly listeners = new Set<(elapsedMs: number) => void>();

  /** Milliseconds of fake time since the clock was made. */
  get now(): number {
    return this.nowMs;
  }

  /** Lets `ms` of fake time pass (the migration moves on by that much). */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`FakeClock.advance: bad duration ${ms}`);
    if (ms === 0) return;
    this.nowMs += ms;
    for (const l of [...this.listeners]) l(ms);
  }

  /** Calls `listener` on every {@link advance}; returns the unsubscribe function. */
  onAdvance(listener: (elapsedMs: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
