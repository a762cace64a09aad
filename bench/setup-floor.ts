/**
 * The floor of the migration set-up: the same seven commands `migrateInstance` sends, in
 * the same three pipelined round trips, written by hand on one open QMP socket, side by
 * side with `migrateInstance` in one run. The difference is what the library adds.
 * Usage: npx tsx bench/setup-floor.ts [rounds]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVMHypervisor } from '../src/kvm.js';
import { QmpMonitor } from '../src/monitor/qmp.js';
import { QemuVm } from '../src/testing/qemu-vm.js';

const rounds = Number(process.argv[2] ?? 20);
const sink = createServer((s) => {
  s.on('data', () => {});
  s.on('error', () => {});
});
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
const port = (sink.address() as { port: number }).port;
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-setup-floor-'));
const vm = await QemuVm.start({ name: 'floor', dir, memoryMiB: 64, hmp: false, accel: 'tcg' });
const mon = await QmpMonitor.connect({ path: vm.qmpPath });
const hv = new KVMHypervisor({ monitor: () => mon });
const instance = {
  name: 'floor',
  hvparams: {
    migration_port: port,
    migration_caps: 'auto-converge',
    migration_bandwidth: 1,
    migration_downtime: 30,
  },
};
// Both ways start from QEMU's own parameters, so both send them; 'events' is on for both
// (the library leaves it on after its first migration).
const initial = (await mon.execute('query-migrate-parameters')) as Record<string, number>;
for (const k of Object.keys(initial)) {
  if (!['max-bandwidth', 'downtime-limit', 'max-postcopy-bandwidth'].includes(k)) delete initial[k];
}
await mon.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? Number.NaN;

async function cancelled(): Promise<void> {
  await mon.execute('migrate_cancel');
  for (let i = 0; i < 400; i++) {
    const s = (await mon.execute('query-migrate')) as { status?: string };
    if (s.status === 'cancelled') return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('the migration did not end in 2 s');
}

const byHand: number[] = [];
const ours: number[] = [];
try {
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await Promise.all(
      ['query-status', 'query-migrate', 'query-migrate-capabilities', 'query-migrate-parameters'].map((c) =>
        mon.execute(c),
      ),
    );
    await Promise.all([
      mon.execute('migrate-set-parameters', { 'max-bandwidth': 1048576, 'downtime-limit': 30 }),
      mon.execute('migrate-set-capabilities', {
        capabilities: [{ capability: 'auto-converge', state: true }],
      }),
    ]);
    await mon.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    byHand.push(performance.now() - t0);
    await cancelled();
    await mon.execute('migrate-set-capabilities', {
      capabilities: [{ capability: 'auto-converge', state: false }],
    });
    await mon.execute('migrate-set-parameters', initial);

    const t1 = performance.now();
    await hv.migrateInstance(instance, '127.0.0.1');
    ours.push(performance.now() - t1);
    await hv.cancelMigration(instance);
    await hv.finalizeMigrationSource(instance, false);
    await mon.execute('migrate-set-parameters', initial);
  }
  const floor = median(byHand);
  const lib = median(ours);
  console.log(`rounds: ${rounds}`);
  console.log(`7 commands in 3 pipelined round trips by hand (p50): ${floor.toFixed(2)} ms`);
  console.log(`migrateInstance (p50):                              ${lib.toFixed(2)} ms`);
  console.log(`ours ÷ floor: ${(lib / floor).toFixed(2)}×`);
} finally {
  await mon.close();
  await vm.kill();
  sink.close();
  rmSync(dir, { recursive: true, force: true });
}
