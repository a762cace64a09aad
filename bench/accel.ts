/**
 * KVM vs TCG: `npm run bench:accel [-- --quick]`. The same busy-guest migration (the
 * dirtying guest, 32 MiB at 16 MiB/s, 32 MiB/s cap) under both accelerators, with plain
 * pre-copy and with our policy, interleaved (tcg, kvm, tcg, kvm …). Skips KVM (and says
 * so) where `/dev/kvm` cannot be opened.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Accelerator, kvmUsable } from '../src/qemu/accel.js';
import { type RunResult, runMigration, STRATEGIES } from './lib/migrate-run.js';
import { failQuickIfNotConverged, RESULT_HEADER, resultRows } from './lib/migration-table.js';
import { arg, printTable, QUICK, runMain, writeResults } from './lib/report.js';

const WORKLOAD = QUICK ? { dirtyMiB: 8, rateMiBps: 8 } : { dirtyMiB: 32, rateMiBps: 16 };
const BANDWIDTH = Number(arg('bandwidth', '32'));
const ROUNDS = Number(arg('rounds', QUICK ? '1' : '2'));

async function main(): Promise<void> {
  const accels: Accelerator[] = kvmUsable() ? ['tcg', 'kvm'] : ['tcg'];
  if (accels.length === 1) console.log('KVM skipped: /dev/kvm cannot be opened read-write here');
  const strategies = STRATEGIES.filter((s) => s.name === 'precopy' || s.name === 'ours');
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-accel-'));
  const results: RunResult[] = [];
  let n = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of strategies) {
        for (const accel of accels) {
          const r = await runMigration({
            dir,
            tag: `a${n++}`,
            workload: WORKLOAD,
            bandwidthMiBps: BANDWIDTH,
            strategy: s,
            accel,
            boundMs: QUICK ? 8000 : 30_000,
            warmMs: 40_000,
          });
          results.push(r);
          console.log(
            `${accel} ${s.name}: ${r.converged ? 'converged' : 'NOT converged'} in ${(r.totalMs / 1000).toFixed(2)} s, guest wrote ${r.guestRateMiBps?.toFixed(1)} MiB/s`,
          );
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('');
  printTable(RESULT_HEADER, resultRows(results));
  const path = writeResults(QUICK ? 'accel-quick' : 'accel', {
    workload: WORKLOAD,
    bandwidthMiBps: BANDWIDTH,
    results,
  });
  console.log(`results: ${path}`);
  failQuickIfNotConverged(QUICK, results);
}

runMain(main);
