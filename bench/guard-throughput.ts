/**
 * Migration guard cost benchmark (not run in CI):
 * `npx tsx bench/guard-throughput.ts [ROUNDS] [MiB]`.
 *
 * Each round live-migrates a real QEMU (TCG, a guest that has filled `MiB` of its memory
 * with non-zero pages and then rewrites it slowly, no bandwidth limit) to a second one on
 * loopback in four modes, interleaved so that a loaded machine hurts all of them alike:
 * in clear without and with the guard (`migrationGuard: false` / `true`), and over TLS
 * with QEMU's own TLS (`migrationGuard: false`) and through the guard (the default with
 * `tls`). Reported: QEMU's `total-time`, the throughput `transferred / total-time`, and
 * the CPU time (user + system, from /proc) of both QEMUs and every guard process of the
 * round per GiB transferred. The guards' CPU is read just before finalize ends them.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVMHypervisor } from '../src/kvm.js';
import { QmpMonitor } from '../src/monitor/qmp.js';
import { writeGuestImage } from '../src/testing/guest/index.js';
import { freePort, QemuVm } from '../src/testing/qemu-vm.js';
import { generateTestPki } from '../src/testing/test-pki.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const DIRTY_MIB = Number(process.argv[3] ?? 96);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TICK = 100; // USER_HZ on Linux

type Mode = 'plain' | 'plain+guard' | 'tls-qemu' | 'tls+guard';
const MODES: Mode[] = ['plain', 'plain+guard', 'tls-qemu', 'tls+guard'];

/** utime + stime of a process, in seconds (0 when gone). */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch {
    return 0;
  }
}

/** The guard processes whose environment names `marker`. */
function guardPids(marker: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const env = readFileSync(`/proc/${e}/environ`, 'utf8');
        return env.includes('KVMHV_GUARD=') && env.includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function oneMigration(dir: string, kernel: string, mode: Mode, tls: { src: string; dst: string }) {
  const port = await freePort();
  const memoryMiB = DIRTY_MIB + 32;
  const dst = await QemuVm.start({ name: 'b-dst', dir, memoryMiB, accel: 'tcg', incoming: 'defer' });
  const src = await QemuVm.start({ name: 'b-src', dir, memoryMiB, accel: 'tcg', kernel, qmpSockets: 2 });
  const withTls = mode.startsWith('tls');
  const guard = mode.endsWith('guard');
  const stateDir = join(dir, `state-${port}`);
  const common = { migrationGuard: guard, stateDir };
  const srcHv = new KVMHypervisor({
    monitor: () => QmpMonitor.connect({ path: src.qmpPath }),
    ...common,
    ...(withTls ? { tls: { dir: tls.src } } : {}),
  });
  const dstHv = new KVMHypervisor({
    monitor: () => QmpMonitor.connect({ path: dst.qmpPath }),
    ...common,
    ...(withTls ? { tls: { dir: tls.dst } } : {}),
  });
  try {
    // Let the guest fill its region once (non-zero pages: they are sent in full).
    await sleep(Math.max(2000, (DIRTY_MIB / 64) * 1000 + 1000));
    const instance = { name: 'b', hvparams: { migration_port: port, migration_bandwidth: 0 } };
    await dstHv.acceptInstance(instance, { listen: '127.0.0.1' });
    const qemuBefore = cpuSeconds(src.pid) + cpuSeconds(dst.pid);
    await srcHv.migrateInstance(instance, '127.0.0.1');
    const r = await srcHv.waitForMigration(instance, { timeoutMs: 300_000 });
    const guards = guardPids(stateDir);
    // Both QEMUs' CPU during the migration, plus the guards' whole life (they only relay it).
    const cpu =
      cpuSeconds(src.pid) + cpuSeconds(dst.pid) - qemuBefore + guards.reduce((s, p) => s + cpuSeconds(p), 0);
    await dstHv.finalizeMigrationDst(instance, true);
    await srcHv.finalizeMigrationSource(instance, true);
    if (guard && guards.length === 0) throw new Error(`${mode}: no guard process seen`);
    return { ms: r.totalTimeMs ?? 0, bytes: r.transferredBytes ?? 0, cpu, guards: guards.length };
  } finally {
    await srcHv.close();
    await dstHv.close();
    await Promise.all([src.kill(), dst.kill()]);
    for (const p of guardPids(stateDir)) process.kill(p, 'SIGKILL');
  }
}

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-guard-'));
try {
  const kernel = join(dir, 'guest.img');
  writeGuestImage(kernel, { dirtyMiB: DIRTY_MIB, rateMiBps: 64 });
  const pki = await generateTestPki({ dir: join(dir, 'pki'), nodes: ['src', 'dst'] });
  const tls = { src: pki.nodes.src!.dir, dst: pki.nodes.dst!.dir };
  const rows: { mode: Mode; ms: number; mibps: number; cpuPerGiB: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const mode of MODES) {
      const r = await oneMigration(dir, kernel, mode, tls);
      const gib = r.bytes / 2 ** 30;
      const mibps = r.bytes / 2 ** 20 / (r.ms / 1000);
      rows.push({ mode, ms: r.ms, mibps, cpuPerGiB: r.cpu / gib });
      console.log(
        `${mode.padEnd(11)} ${String(r.ms).padStart(6)} ms  ${(r.bytes / 2 ** 20).toFixed(1)} MiB  ${mibps.toFixed(1).padStart(6)} MiB/s  CPU ${(r.cpu / gib).toFixed(2)} s/GiB  guards ${r.guards}`,
      );
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log('\nmode         median ms  median MiB/s  median CPU s/GiB');
  for (const mode of MODES) {
    const mine = rows.filter((r) => r.mode === mode);
    console.log(
      `${mode.padEnd(11)} ${String(median(mine.map((r) => r.ms))).padStart(10)}  ${median(
        mine.map((r) => r.mibps),
      )
        .toFixed(1)
        .padStart(12)}  ${median(mine.map((r) => r.cpuPerGiB))
        .toFixed(2)
        .padStart(16)}`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
