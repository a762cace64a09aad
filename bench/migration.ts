/**
 * Busy-guest migrations against their floor: `npm run bench:migration [-- --quick]
 * [--accel=tcg|kvm] [--bandwidth=MiB/s] [--strategies=a,b]`.
 *
 * For each workload (the dirtying guest: region size and dirty rate) and each strategy
 * (src: bench/lib/migrate-run.ts), one live migration between two fresh local QEMUs under
 * a bandwidth cap, bounded in time (then cancelled and reported as not converged).
 * Reports total time, downtime, MiB sent, passes, and the ratio to two floors: RAM ÷
 * bandwidth (the dirtied region sent once) and the pre-copy bound D / (B − r).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Accelerator } from '../src/qemu/accel.js';
import { dirtyFloorMs, type RunResult, runMigration, STRATEGIES, type Workload } from './lib/migrate-run.js';
import { failQuickIfNotConverged, RESULT_HEADER, resultRows } from './lib/migration-table.js';
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
const strategies = ONLY ? STRATEGIES.filter((s) => ONLY.split(',').includes(s.name)) : STRATEGIES;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-mig-'));
  const results: RunResult[] = [];
  try {
    console.log(
      `bandwidth cap ${BANDWIDTH} MiB/s, accelerator ${ACCEL}, ${WORKLOADS.length} workload(s) × ${strategies.length} strategies\n`,
    );
    let n = 0;
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
          `${w.dirtyMiB} MiB @ ${w.rateMiBps || 'max'} MiB/s  ${s.name.padEnd(13)} ${r.accel} guest ${fmt(r.guestRateMiBps)} MiB/s  ${r.converged ? 'converged' : 'NOT converged'} in ${fmt(r.totalMs / 1000, ' s')}${r.error ? ` (${r.error})` : ''}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('');
  printTable(RESULT_HEADER, resultRows(results));
  console.log('\nstrategies:');
  for (const s of strategies) console.log(`  ${s.name.padEnd(13)} ${s.about}`);
  const path = writeResults(QUICK ? 'migration-quick' : 'migration', {
    bandwidthMiBps: BANDWIDTH,
    accel: ACCEL,
    workloads: WORKLOADS,
    strategies,
    results,
  });
  console.log(`results: ${path}`);
  failQuickIfNotConverged(QUICK, results);
}

runMain(main);
