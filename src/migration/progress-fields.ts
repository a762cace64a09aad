/**
 * Finishing touches shared by the QMP and HMP status parsers: the percentage and the
 * removal of fields QEMU did not report.
 */
import type { MigrationProgress } from './types.js';

/** Sets `percent` (100 once completed) and drops every field left `undefined`. */
export function finishProgress(p: MigrationProgress): MigrationProgress {
  if (p.status === 'completed') p.percent = 100;
  else if (p.remainingBytes !== undefined && p.totalBytes) {
    // Like Nova: the share of guest RAM not left to send. `transferred / total` (Ganeti)
    // climbs past 100 % as soon as pages are sent twice (Ganeti issue #950).
    p.percent = Math.min(100, Math.max(0, (100 * (p.totalBytes - p.remainingBytes)) / p.totalBytes));
  } else if (p.transferredBytes !== undefined && p.totalBytes) {
    p.percent = Math.min(100, (100 * p.transferredBytes) / p.totalBytes);
  }
  for (const k of Object.keys(p) as (keyof MigrationProgress)[]) if (p[k] === undefined) delete p[k];
  return p;
}

/**
 * Whether the first pre-copy pass is over: every page has been sent (`normal`) or found
 * zero (`duplicate`, `zero`) at least once. A page is visited once per pass, so the
 * counts reach the total exactly when the first pass ends. `slack` is the share of
 * `totalBytes` it may be off by (a rounded total). Undefined unless all are known.
 */
export function firstPassDone(
  normalPages: number | undefined,
  zeroPages: number | undefined,
  pageSize: number,
  totalBytes: number | undefined,
  slack = 0,
): boolean | undefined {
  if (normalPages === undefined || zeroPages === undefined || !totalBytes) return undefined;
  return (normalPages + zeroPages) * pageSize >= totalBytes * (1 - slack);
}

/**
 * Transfer speed in bytes/s: `mbps` (decimal megabits) is what went over the wire;
 * pages-per-second also counts zero pages, which cost almost nothing to send, so it is
 * only the fallback.
 */
export function speedBytesPerSec(mbps: number | undefined, pps: number | undefined, pageSize: number) {
  return mbps !== undefined ? (mbps * 1e6) / 8 : pps !== undefined ? pps * pageSize : undefined;
}

/**
 * The fields whose change makes a snapshot new for `onProgress`. `totalTimeMs` (it ticks
 * on every poll) and `raw` are not among them.
 */
const PROGRESS_CHANGE_FIELDS = [
  'status',
  'transferredBytes',
  'remainingBytes',
  'totalBytes',
  'percent',
  'speedBytesPerSec',
  'dirtyRateBytesPerSec',
  'expectedDowntimeMs',
  'downtimeMs',
  'pass',
  'firstPassDone',
  'throttlePercent',
  'errorDesc',
] as const satisfies readonly (keyof MigrationProgress)[];

/** True when `next` differs from `prev` in a field of {@link PROGRESS_CHANGE_FIELDS}. */
export function progressChanged(prev: MigrationProgress | undefined, next: MigrationProgress): boolean {
  return prev === undefined || PROGRESS_CHANGE_FIELDS.some((k) => prev[k] !== next[k]);
}

/**
 * Wraps an `onProgress` callback so it is called only with snapshots that changed
 * ({@link progressChanged}); a `completed` snapshot is always passed on.
 */
export function changesOnly(
  onProgress: ((p: MigrationProgress) => void) | undefined,
): ((p: MigrationProgress) => void) | undefined {
  if (!onProgress) return undefined;
  let prev: MigrationProgress | undefined;
  return (p) => {
    if (p.status !== 'completed' && !progressChanged(prev, p)) return;
    prev = p;
    onProgress(p);
  };
}
