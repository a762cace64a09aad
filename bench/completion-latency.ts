/**
 * Completion-detection benchmark (not run in CI): `npm run bench:completion [-- ROUNDS]`.
 *
 * Each round live-migrates a real QEMU (TCG, 64 MiB, a guest dirtying 16 MiB at 8 MiB/s,
 * 16 MiB/s link) to a second one on loopback and measures, side by side on the same migration, how
 * long after QEMU finished each approach noticed it:
 *  - ground truth: the `MIGRATION {status: completed}` event, received on its own QMP socket;
 *  - ours: `KVMHypervisor.waitForMigration` (event-driven, statistics polled every 500 ms);
 *  - Ganeti's way: every 2 s a new QMP connection (greeting, `qmp_capabilities`,
 *    `query-commands`, `query-migrate`, close), as Ganeti 3.x's `GetMigrationStatus` does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVMHypervisor } from '../src/kvm.js';
import { QmpMonitor } from '../src/monitor/qmp.js';
import { writeGuestImage } from '../src/testing/guest/index.js';
import { freePort, QemuVm } from '../src/testing/qemu-vm.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const GANETI_POLL_MS = 2000;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ganetiPoller(path: string, startedAt: number, stop: { done: boolean }): Promise<number> {
  // Ganeti's polling schedule is not aligned with the migration's start: random phase.
  await sleep(Math.random() * GANETI_POLL_MS);
  for (;;) {
    const mon = await QmpMonitor.connect({ path });
    try {
      await mon.execute('query-commands');
      const r = (await mon.execute('query-migrate')) as { status?: string };
      if (r.status === 'completed' || r.status === 'failed' || stop.done) return now() - startedAt;
    } finally {
      await mon.close();
    }
    await sleep(GANETI_POLL_MS);
  }
}

async function round(dir: string, image: string, n: number) {
  const port = await freePort();
  const src = await QemuVm.start({
    name: `bsrc${n}`,
    dir,
    memoryMiB: 64,
    qmpSockets: 3,
    hmp: false,
    kernel: image,
  });
  const dst = await QemuVm.start({
    name: `bdst${n}`,
    dir,
    memoryMiB: 64,
    qmpSockets: 1,
    hmp: false,
    kernel: image,
    incoming: `tcp:127.0.0.1:${port}`,
  });
  const hv = new KVMHypervisor({ monitor: () => QmpMonitor.connect({ path: src.qmpPath }) });
  const observer = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
  try {
    await sleep(2000); // let the guest dirty its region once
    const instance = { name: 'bench', hvparams: { migration_port: port, migration_bandwidth: 16 } };
    const completed = observer.waitForEvent('MIGRATION', {
      filter: (e) => e.data.status === 'completed',
      timeoutMs: 120_000,
    });
    const t0 = now();
    await hv.migrateInstance(instance, '127.0.0.1', true);
    const stop = { done: false };
    const ganeti = ganetiPoller(src.qmpPaths[2]!, t0, stop);
    let sent = 0;
    const ours = hv.waitForMigration(instance).then((r) => {
      sent = r.transferredBytes ?? 0;
      return now() - t0;
    });
    const truth = completed.promise.then(() => now() - t0);
    const [t, o] = await Promise.all([truth, ours]);
    const g = await ganeti;
    stop.done = true;
    return { truth: t, ours: o - t, ganeti: g - t, sent };
  } finally {
    await observer.close().catch(() => {});
    await hv.close();
    await Promise.all([src.kill(), dst.kill()]);
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-'));
  const image = join(dir, 'guest.img');
  writeGuestImage(image, { dirtyMiB: 16, rateMiBps: 8 });
  const rows: { truth: number; ours: number; ganeti: number; sent: number }[] = [];
  try {
    for (let i = 1; i <= ROUNDS; i++) {
      const r = await round(dir, image, i);
      rows.push(r);
      console.log(
        `round ${i}: migration took ${r.truth.toFixed(0)} ms (${(r.sent / 2 ** 20).toFixed(1)} MiB sent); noticed after +${r.ours.toFixed(1)} ms (ours) vs +${r.ganeti.toFixed(0)} ms (Ganeti poll)`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ours = mean(rows.map((r) => r.ours));
  const ganeti = mean(rows.map((r) => r.ganeti));
  console.log(`\nmean delay after completion: ours ${ours.toFixed(1)} ms, Ganeti ${ganeti.toFixed(0)} ms`);
  console.log(`ratio Ganeti/ours: ${(ganeti / Math.max(ours, 0.001)).toFixed(0)}x`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
