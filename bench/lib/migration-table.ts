/** The busy-guest migration table shared by bench:migration and bench:accel. */
import { dirtyFloorMs, floorMs, type RunResult } from './migrate-run.js';
import { fmt, printTable } from './report.js';

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

/**
 * Issue 19, item 7: with `postcopy-ram` opted in, a guest that dirties faster than the
 * link completes within this many times RAM ÷ bandwidth (the floor D/B), with a downtime
 * within the limit it started with.
 */
export const POSTCOPY_TARGET_RATIO = 2.5;

/** The strategy the target is about, and those shown beside it. */
const TARGET_STRATEGY = 'ours+postcopy';
const SIDE_BY_SIDE = ['ours', TARGET_STRATEGY, 'postcopy-on-stall', 'postcopy', 'ganeti'];

/** A workload the link cannot carry: as fast as the vCPU can, or at least the cap. */
function unconvergeable(r: { rateMiBps: number; bandwidthMiBps: number }): boolean {
  return r.rateMiBps === 0 || r.rateMiBps >= r.bandwidthMiBps;
}

/** Whether a run meets the target: completed within 2.5× D/B, downtime within its first limit. */
function meetsTarget(r: RunResult): boolean {
  return (
    r.converged &&
    r.totalMs <= POSTCOPY_TARGET_RATIO * floorMs(r, r.bandwidthMiBps) &&
    r.downtimeMs !== undefined &&
    r.downtimeMs <= r.downtimeLimitMs
  );
}

/** What {@link printUnconvergeable} found for the target strategy. */
export interface TargetVerdict {
  workload: string;
  runs: number;
  met: number;
}

/**
 * Prints, per unconvergeable workload, ours without post-copy, ours with `postcopy-ram`
 * opted in (also post-copy on a stall only), plain post-copy and Ganeti's way side by
 * side: the ratio to the floor D/B,
 * the downtime against the limit, and whether each run meets the 2.5× target. Returns
 * the target strategy's verdicts (none when no such workload or strategy ran).
 */
export function printUnconvergeable(results: RunResult[]): TargetVerdict[] {
  const verdicts: TargetVerdict[] = [];
  const workloads = [
    ...new Set(results.filter(unconvergeable).map((r) => `${r.dirtyMiB}:${r.rateMiBps}:${r.bandwidthMiBps}`)),
  ];
  for (const key of workloads) {
    const runs = results
      .filter((r) => `${r.dirtyMiB}:${r.rateMiBps}:${r.bandwidthMiBps}` === key)
      .filter((r) => SIDE_BY_SIDE.includes(r.strategy))
      .sort((a, b) => SIDE_BY_SIDE.indexOf(a.strategy) - SIDE_BY_SIDE.indexOf(b.strategy));
    if (runs.length === 0) continue;
    const first = runs[0]!;
    const floor = floorMs(first, first.bandwidthMiBps);
    const name = `${first.dirtyMiB} MiB @ ${first.rateMiBps || 'max'} MiB/s`;
    console.log(
      `\n${name}, dirtied faster than the ${first.bandwidthMiBps} MiB/s link: floor D/B = ${fmt(floor / 1000, ' s')}; target for ${TARGET_STRATEGY}: ≤ ${POSTCOPY_TARGET_RATIO}× D/B with the downtime within its limit`,
    );
    printTable(
      [
        'strategy',
        'converged',
        'total',
        '÷ D/B',
        'downtime',
        'limit',
        `≤ ${POSTCOPY_TARGET_RATIO}× and within limit`,
        'policy actions',
      ],
      runs.map((r) => [
        r.strategy,
        r.converged ? 'yes' : 'NO',
        fmt(r.totalMs / 1000, ' s'),
        r.converged ? fmt(r.totalMs / floor, '×') : '-',
        fmt(r.downtimeMs, ' ms'),
        r.finalDowntimeLimitMs === r.downtimeLimitMs
          ? `${r.downtimeLimitMs} ms`
          : `${r.downtimeLimitMs} ms, raised to ${r.finalDowntimeLimitMs} ms`,
        meetsTarget(r) ? 'yes' : 'no',
        r.actions.join(' ') || '-',
      ]),
    );
    const target = runs.filter((r) => r.strategy === TARGET_STRATEGY);
    if (target.length === 0) continue;
    const met = target.filter(meetsTarget).length;
    verdicts.push({ workload: name, runs: target.length, met });
    console.log(
      `target ${met === target.length ? 'MET' : 'MISSED'}: ${TARGET_STRATEGY} within ${POSTCOPY_TARGET_RATIO}× D/B with the downtime within its limit in ${met} of ${target.length} run(s)`,
    );
  }
  return verdicts;
}
