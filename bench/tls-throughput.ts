/**
 * TLS cost benchmark (not run in CI): `npx tsx bench/tls-throughput.ts [ROUNDS] [MiB]`.
 *
 * Each round live-migrates a real QEMU (TCG, a guest that has filled `MiB` of its memory
 * with non-zero pages and idles writing 1 MiB/s, no bandwidth limit) to a second one on
 * loopback, once in clear and once over TLS (certificates from generateTestPki), and
 * reports QEMU's own `total-time` and the average throughput (`transferred / total-time`).
 * Both QEMUs run on this machine, so the TLS figure includes encryption and decryption.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVMHypervisor } from '../src/kvm.js';
import { runMigration } from '../src/migration/run.js';
import { QmpMonitor } from '../src/monitor/qmp.js';
import { writeGuestImage } from '../src/testing/guest/index.js';
import { freePort, QemuVm } from '../src/testing/qemu-vm.js';
import { generateTestPki } from '../src/testing/test-pki.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const DIRTY_MIB = Number(process.argv[3] ?? 96);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function oneMigration(dir: string, kernel: string, tlsDirs?: { src: string; dst: string }) {
  const port = await freePort();
  const memoryMiB = DIRTY_MIB + 32;
  const dst = await QemuVm.start({ name: 'b-dst', dir, memoryMiB, accel: 'tcg', incoming: 'defer' });
  const src = await QemuVm.start({ name: 'b-src', dir, memoryMiB, accel: 'tcg', kernel, qmpSockets: 2 });
  const srcHv = new KVMHypervisor({
    monitor: () => QmpMonitor.connect({ path: src.qmpPath }),
    ...(tlsDirs ? { tls: { dir: tlsDirs.src } } : {}),
  });
  const dstHv = new KVMHypervisor({
    monitor: () => QmpMonitor.connect({ path: dst.qmpPath }),
    ...(tlsDirs ? { tls: { dir: tlsDirs.dst } } : {}),
  });
  try {
    // Let the guest fill its region once (non-zero pages: they are sent in full).
    const obs = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
    await sleep(Math.max(2000, (DIRTY_MIB / 64) * 1000 + 1000));
    await obs.close();
    const instance = { name: 'b', hvparams: { migration_port: port, migration_bandwidth: 0 } };
    const r = await runMigration({
      source: { hypervisor: srcHv, instance },
      destination: { hypervisor: dstHv, instance },
      target: '127.0.0.1',
      listen: '127.0.0.1',
      timeoutMs: 300_000,
    });
    return { ms: r.totalTimeMs ?? 0, bytes: r.transferredBytes ?? 0 };
  } finally {
    await srcHv.close();
    await dstHv.close();
    await Promise.all([src.kill(), dst.kill()]);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-tls-'));
try {
  const kernel = join(dir, 'guest.img');
  // Fills DIRTY_MIB at 64 MiB/s, then keeps rewriting it slowly (a mostly idle guest).
  writeGuestImage(kernel, { dirtyMiB: DIRTY_MIB, rateMiBps: 64 });
  const pki = await generateTestPki({ dir: join(dir, 'pki'), nodes: ['src', 'dst'] });
  const tls = { src: pki.nodes.src!.dir, dst: pki.nodes.dst!.dir };
  const rows: { mode: string; ms: number; mibps: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const mode of ['plain', 'tls'] as const) {
      const r = await oneMigration(dir, kernel, mode === 'tls' ? tls : undefined);
      const mibps = r.bytes / 2 ** 20 / (r.ms / 1000);
      rows.push({ mode, ms: r.ms, mibps });
      console.log(
        `${mode.padEnd(5)} ${String(r.ms).padStart(6)} ms  ${(r.bytes / 2 ** 20).toFixed(1)} MiB  ${mibps.toFixed(1)} MiB/s`,
      );
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const mode of ['plain', 'tls']) {
    const mine = rows.filter((r) => r.mode === mode);
    console.log(
      `median ${mode}: ${median(mine.map((r) => r.ms))} ms, ${median(mine.map((r) => r.mibps)).toFixed(1)} MiB/s`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
