/**
 * Node evacuation: `npm run bench:evacuation [-- --quick] [--counts=1,2,4,8]`.
 *
 * N VMs migrated at once from one "node" to another: N separate QEMU pairs (TCG,
 * -m 64, each guest dirtying 16 MiB at 4 MiB/s, 16 MiB/s cap each), started by the library's `QemuVm`, and
 * one `KVMHypervisor` driving all 2N monitors (in Ganeti each node runs its own; here
 * one process plays both). For each N: whether all complete, the wall time against
 * N × the time of one, the library's own CPU time (process.cpuUsage) and RSS growth per
 * migration, and the monitor commands per migration (both ends, all steps).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVMHypervisor } from '../src/kvm.js';
import { writeGuestImage } from '../src/testing/guest/index.js';
import { freePort, QemuVm } from '../src/testing/qemu-vm.js';
import { warmUp } from './lib/migrate-run.js';
import { type CommandCounter, countingQmp } from './lib/qemu-pair.js';
import { arg, fmt, nowMs, printTable, QUICK, runMain, writeResults } from './lib/report.js';

const COUNTS = arg('counts', QUICK ? '1,2' : '1,2,4,8')
  .split(',')
  .map(Number);
// Each migration takes about a second at its cap (16 MiB at 16 MiB/s), long enough that
// concurrency, not start-up noise, decides the wall time.
const BANDWIDTH = 16;
const DIRTY = QUICK ? { dirtyMiB: 8, rateMiBps: 4 } : { dirtyMiB: 16, rateMiBps: 4 };

interface BatchResult {
  n: number;
  completed: number;
  wallMs: number;
  /** Median of the per-VM migration times (QEMU's total-time). */
  medianTotalMs: number;
  cpuMsPerMigration: number;
  rssGrowthMiBPerMigration: number;
  peakRssMiB: number;
  commandsPerMigration: number;
  errors: string[];
}

async function batch(dir: string, image: string, n: number): Promise<BatchResult> {
  const pairs = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const port = await freePort();
      const base = { dir, memoryMiB: 64, qmpSockets: 1, hmp: false, kernel: image, accel: 'tcg' } as const;
      // A second QMP socket on the source: the warm-up reads the guest's page counter there.
      const [src, dst] = await Promise.all([
        QemuVm.start({ ...base, name: `e${n}-${i}-src`, qmpSockets: 2, startTimeoutMs: 60_000 }),
        QemuVm.start({
          ...base,
          name: `e${n}-${i}-dst`,
          incoming: `tcp:127.0.0.1:${port}`,
          startTimeoutMs: 60_000,
        }),
      ]);
      return { i, port, src, dst };
    }),
  );
  const counter: CommandCounter = { count: 0 };
  const paths = new Map(
    pairs.flatMap((p) => [[p.src.name, p.src.qmpPath] as const, [p.dst.name, p.dst.qmpPath] as const]),
  );
  const hv = new KVMHypervisor({ monitor: (name) => countingQmp(paths.get(name)!, counter) });
  const errors: string[] = [];
  const totals: number[] = [];
  try {
    // Every guest has written its whole region once (not zero pages any more).
    await Promise.all(pairs.map((p) => warmUp(p.src.qmpPaths[1]!, 20_000)));
    // Open the monitors first: connecting is part of set-up, not of the migration.
    await Promise.all(pairs.flatMap((p) => [hv.monitorFor(p.src.name), hv.monitorFor(p.dst.name)]));
    counter.count = 0;
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    const cpu0 = process.cpuUsage();
    const t0 = nowMs();
    const outcomes = await Promise.allSettled(
      pairs.map(async (p) => {
        const hvparams = {
          migration_port: p.port,
          migration_bandwidth: BANDWIDTH,
          migration_caps: 'auto-converge',
        };
        const source = { name: p.src.name, hvparams };
        const dest = { name: p.dst.name, hvparams };
        await hv.acceptInstance(dest);
        await hv.migrateInstance(source, '127.0.0.1', true);
        let ok = false;
        try {
          const r = await hv.waitForMigration(source, { timeoutMs: 120_000 });
          totals.push(r.totalTimeMs ?? 0);
          ok = true;
        } finally {
          await hv.finalizeMigrationSource(source, ok);
          await hv.finalizeMigrationDst(dest, ok);
        }
      }),
    );
    const wallMs = nowMs() - t0;
    const cpu = process.cpuUsage(cpu0);
    clearInterval(sampler);
    peak = Math.max(peak, process.memoryUsage().rss);
    for (const o of outcomes)
      if (o.status === 'rejected')
        errors.push(String((o.reason as Error)?.message ?? o.reason).slice(0, 200));
    totals.sort((a, b) => a - b);
    return {
      n,
      completed: outcomes.filter((o) => o.status === 'fulfilled').length,
      wallMs,
      medianTotalMs: totals[Math.floor(totals.length / 2)] ?? Number.NaN,
      cpuMsPerMigration: (cpu.user + cpu.system) / 1000 / n,
      rssGrowthMiBPerMigration: (peak - rss0) / 2 ** 20 / n,
      peakRssMiB: peak / 2 ** 20,
      commandsPerMigration: counter.count / n,
      errors,
    };
  } finally {
    await hv.close();
    await Promise.all(pairs.flatMap((p) => [p.src.kill(), p.dst.kill()]));
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-evac-'));
  const image = join(dir, 'guest.img');
  writeGuestImage(image, DIRTY);
  const results: BatchResult[] = [];
  try {
    console.log(
      `evacuations of ${COUNTS.join(', ')} VMs (TCG, -m 64, ${DIRTY.dirtyMiB} MiB dirtied at ${DIRTY.rateMiBps} MiB/s, ${BANDWIDTH} MiB/s each)\n`,
    );
    for (const n of COUNTS) {
      const r = await batch(dir, image, n);
      results.push(r);
      console.log(
        `N=${n}: ${r.completed}/${n} completed in ${fmt(r.wallMs / 1000, ' s')}${r.errors.length ? `; errors: ${r.errors.join(' | ')}` : ''}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const one = results.find((r) => r.n === 1)?.wallMs ?? results[0]!.wallMs / results[0]!.n;
  console.log('');
  printTable(
    [
      'VMs',
      'completed',
      'wall',
      'N × one',
      'wall ÷ (N × one)',
      'median QEMU total',
      'CPU ms / migration',
      'RSS growth MiB / migration',
      'peak RSS MiB',
      'commands / migration',
    ],
    results.map((r) => [
      String(r.n),
      `${r.completed}/${r.n}`,
      fmt(r.wallMs / 1000, ' s'),
      fmt((r.n * one) / 1000, ' s'),
      fmt(r.wallMs / (r.n * one), '×'),
      fmt(r.medianTotalMs / 1000, ' s'),
      fmt(r.cpuMsPerMigration),
      fmt(r.rssGrowthMiBPerMigration),
      fmt(r.peakRssMiB),
      fmt(r.commandsPerMigration),
    ]),
  );
  const path = writeResults(QUICK ? 'evacuation-quick' : 'evacuation', {
    bandwidthMiBps: BANDWIDTH,
    workload: DIRTY,
    results,
  });
  console.log(`results: ${path}`);
  if (results.some((r) => r.completed !== r.n)) {
    console.error('not every migration completed');
    process.exitCode = 1;
  }
}

runMain(main);
