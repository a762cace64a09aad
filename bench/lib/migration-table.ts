/** The busy-guest migration table shared by bench:migration and bench:accel. */
import { dirtyFloorMs, floorMs, type RunResult } from './migrate-run.js';
import { fmt } from './report.js';

/** Rows of the results table for `results`. */
export function resultRows(results: RunResult[]): string[][] {
  return results.map((r) => {
    // The floors use the rate the guest achieved (a busy host slows a paced guest down).
    const w = { dirtyMiB: r.dirtyMiB, rateMiBps: r.guestRateMiBps ?? r.rateMiBps };
    const f = floorMs(w, r.bandwidthMiBps);
    const df = dirtyFloorMs(w, r.bandwidthMiBps);
    return [
      `${r.dirtyMiB} MiB @ ${r.rateMiBps || 'max'} MiB/s`,
      r.strategy,
      r.accel,
      r.converged ? 'yes' : 'NO',
      fmt(r.totalMs / 1000, ' s'),
      fmt(r.downtimeMs, ' ms'),
      fmt(r.sentMiB),
      r.passes === undefined ? '-' : String(r.passes),
      fmt(r.guestRateMiBps),
      fmt(f / 1000, ' s'),
      Number.isFinite(df) ? fmt(df / 1000, ' s') : '∞',
      r.converged ? fmt(r.totalMs / f, '×') : '-',
      r.converged && Number.isFinite(df) ? fmt(r.totalMs / df, '×') : '-',
      r.actions.join(' ') || '-',
    ];
  });
}

/** The header of {@link resultRows}. */
export const RESULT_HEADER = [
  'workload',
  'strategy',
  'accel',
  'converged',
  'total',
  'downtime',
  'MiB sent',
  'passes',
  'guest wrote MiB/s',
  'floor D/B',
  'floor D/(B−r)',
  '÷ D/B',
  '÷ D/(B−r)',
  'policy actions',
];

/**
 * Quick mode's only assertion (CI): its small migrations converge under every strategy, so
 * one that did not is a bug, not noise. Sets a failing exit code.
 */
export function failQuickIfNotConverged(quick: boolean, results: RunResult[]): void {
  if (quick && results.some((r) => !r.converged)) {
    console.error('quick mode: a migration did not complete');
    process.exitCode = 1;
  }
}
