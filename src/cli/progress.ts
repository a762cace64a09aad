/**
 * Where migration progress goes while `kvm-hv migrate` or `kvm-hv demo` waits: a live bar
 * on a terminal (cli-progress), a plain line every few seconds otherwise, nothing with
 * `--json`. Always on stderr, so stdout carries only the result.
 */
import { MultiBar, type SingleBar } from 'cli-progress';
import type { MigrationProgress } from '../migration/types.js';
import { progressPercent, renderProgressLine } from './render.js';

/** Receives progress snapshots and notes while a migration runs. */
export interface ProgressSink {
  /** A new snapshot. */
  update(progress: MigrationProgress): void;
  /** A line of information (a convergence action, …), shown above the bar. */
  note(text: string): void;
  /** Ends the display; idempotent. */
  stop(): void;
  /** The highest CPU throttle seen, percent (0 when none). */
  readonly maxThrottlePercent: number;
}

/** How progress is shown: `bar` (TTY), `lines` (plain text), `none` (`--json`). */
export type ProgressMode = 'bar' | 'lines' | 'none';

/** The mode for a stream: `none` with `--json`, `bar` on a TTY, else `lines`. */
export function progressModeFor(json: boolean, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (json) return 'none';
  return stream.isTTY ? 'bar' : 'lines';
}

/** Creates a sink; `lines` mode writes at most one line per `intervalMs` (and on status changes). */
export function createProgressSink(
  mode: ProgressMode,
  stream: NodeJS.WriteStream = process.stderr,
  intervalMs = 2000,
): ProgressSink {
  let maxThrottle = 0;
  const track = (p: MigrationProgress) => {
    if (p.throttlePercent !== undefined && p.throttlePercent > maxThrottle) maxThrottle = p.throttlePercent;
  };

  if (mode === 'bar') {
    const barWidth = Math.max(10, Math.min(24, (stream.columns ?? 120) - 100));
    let last: MigrationProgress = { status: 'setup' };
    const multi = new MultiBar({
      stream,
      format: (_opts, _params, payload: { progress?: MigrationProgress }) =>
        renderProgressLine(payload.progress ?? last, barWidth),
      hideCursor: true,
      linewrap: false,
      clearOnComplete: false,
      stopOnComplete: false,
      fps: 10,
      noTTYOutput: false,
    });
    let bar: SingleBar | undefined = multi.create(100, 0, { progress: last });
    return {
      update(p) {
        track(p);
        last = p;
        bar?.update(Math.floor(progressPercent(p) ?? 0), { progress: p });
      },
      note(text) {
        multi.log(`${text}\n`);
      },
      stop() {
        if (!bar) return;
        bar.update(Math.floor(progressPercent(last) ?? 0), { progress: last });
        multi.stop();
        bar = undefined;
      },
      get maxThrottlePercent() {
        return maxThrottle;
      },
    };
  }

  let lastAt = 0;
  let lastStatus = '';
  return {
    update(p) {
      track(p);
      if (mode === 'none') return;
      const now = Date.now();
      if (now - lastAt < intervalMs && p.status === lastStatus) return;
      lastAt = now;
      lastStatus = p.status;
      stream.write(`progress: ${renderProgressLine(p, 20)}\n`);
    },
    note(text) {
      if (mode !== 'none') stream.write(`${text}\n`);
    },
    stop() {},
    get maxThrottlePercent() {
      return maxThrottle;
    },
  };
}
