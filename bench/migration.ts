/**
 * Busy-guest migrations against their floor: `npm run bench:migration [-- --quick]
 * [--accel=tcg|kvm] [--bandwidth=MiB/s] [--workloads=16:4,32:16,32:0] [--strategies=a,b]
 * [--rounds=N]`.
 *
 * For each workload (the dirtying guest: region size and dirty rate) and each strategy
 * (src: bench/lib/migrate-run.ts), one live migration between two fresh local QEMUs under
 * a bandwidth cap, bounded in time (then cancelled and reported as not converged);
 * `--rounds` repeats the lot, interleaved. Reports total time, downtime, MiB sent, passes,
 * and the ratio to two floors: RAM ÷ bandwidth (the dirtied region sent once) and the
 * pre-copy bound D / (B − r). For a guest that dirties faster than the link it then
 * prints ours, ours with post-copy opted in (also on a stall only), plain post-copy and
 * Ganeti's way side by side against the 2.5× D/B target (issue 19, item 7). QEMU is
 * `$QEMU` or the one on the PATH.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Accelerator } from '../src/qemu/accel.js';
import { dirtyFloorMs, type RunResult, runMigration, STRATEGIES, type Workload } from './lib/migrate-run.js';
import {
  failQuickIfNotConverged,
  POSTCOPY_TARGET_RATIO,
  printUnconvergeable,
  RESULT_HEADER,
  resultRows,
} from './lib/migration-table.js';
import { arg, fmt, printTable, QUICK, runMain, writeResults } from './lib/report.js';

const BANDWIDTH = Number(arg('bandwidth', QUICK ? '64' : '32'));
const ACCEL = arg('accel', QUICK ? 'tcg' : 'auto') as Accelerator;
/** `--workloads=16:4,32:16,32:0`: region MiB : dirty rate MiB/s (0 = as fast as the vCPU can). */
const WORKLOADS: Workload[] = arg('workloads', QUICK ? '8:8' : '16:4,32:16,32:0')
  .split(',')
  .map((w) => {
    const [dirtyMiB, rateMiBps] = w.split(':').map(Number);
    return { dirtyMiB: dirtyMiB!, rateMiBps: rateMiBps! };
  });
const ONLY = arg('strategies', '');
const ROUNDS = Number(arg('rounds', '1'));
const strategies = ONLY ? STRATEGIES.filter((s) => ONLY.split(',').includes(s.name)) : STRATEGIES;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-mig-'));
  const results: RunResult[] = [];
  try {
    console.log(
      `bandwidth cap ${BANDWIDTH} MiB/s, accelerator ${ACCEL}, ${WORKLOADS.length} workload(s) × ${strategies.length} strategies × ${ROUNDS} round(s)\n`,
    );
    let n = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const w of WORKLOADS) {
        const df = dirtyFloorMs(w, BANDWIDTH);
        // Generous for what can converge, bounded for what cannot.
        const boundMs = QUICK ? 8000 : Math.max(20_000, Number.isFinite(df) ? 6 * df : 0);
        for (const s of strategies) {
          const r = await runMigration({
            dir,
            tag: `m${n++}`,
            workload: w,
            bandwidthMiBps: BANDWIDTH,
            strategy: s,
            accel: ACCEL,
            boundMs,
            // Until the guest swept its region once (KVM boots SeaBIOS slowly when nested).
            warmMs: 40_000,
          });
          results.push(r);
          console.log(
            `${w.dirtyMiB} MiB @ ${w.rateMiBps || 'max'} MiB/s  ${s.name.padEnd(17)} ${r.accel} guest ${fmt(r.guestRateMiBps)} MiB/s  ${r.converged ? 'converged' : 'NOT converged'} in ${fmt(r.totalMs / 1000, ' s')}${r.error ? ` (${r.error})` : ''}`,
          );
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('');
  printTable(RESULT_HEADER, resultRows(results));
  const target = printUnconvergeable(results);
  console.log('\nstrategies:');
  for (const s of strategies) console.log(`  ${s.name.padEnd(17)} ${s.about}`);
  const path = writeResults(QUICK ? 'migration-quick' : 'migration', {
    bandwidthMiBps: BANDWIDTH,
    accel: ACCEL,
    workloads: WORKLOADS,
    rounds: ROUNDS,
    strategies,
    results,
    postcopyTarget: { ratio: POSTCOPY_TARGET_RATIO, verdicts: target },
  });
  console.log(`results: ${path}`);
  failQuickIfNotConverged(QUICK, results);
}

runMain(main);
