/**
 * Migrations across QEMU releases, as in a cluster being upgraded: 5.2 → 7.2, 7.2 → 10.0
 * and 10.0 → 11.x, with the older release's versioned machine type on both ends, over QMP
 * and HMP, with the dirtying guest. And the refusal: a source on a newer machine type than
 * the destination has, reported with QEMU's reason while the source keeps running.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import type { Instance } from '../../src/migration/types.js';
import type { MonitorProtocol } from '../../src/monitor/types.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { QemuVm } from '../../src/testing/qemu-vm.js';
import { qemuRelease } from '../support/qemu-releases.js';
import { accelerators, migrationProtocols, vmOptions } from '../support/real-qemu.js';
import { type Cleanup, cleanUp, guestStatus, guestSwept, runState, startPair } from './real-pair.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-xrel-'));
const cleanup: Cleanup = { vms: [], closers: [] };
afterEach(() => cleanUp(cleanup));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** 8 MiB dirtied at 8 MiB/s: real work that still converges at 64 MiB/s. */
const guest = join(dir, 'guest.img');
writeGuestImage(guest, { dirtyMiB: 8, rateMiBps: 8 });
const protocols: MonitorProtocol[] = ['qmp', 'hmp'];
let seq = 0;

/** The machine type QEMU runs, from QOM (`pc-i440fx-5.2-machine` → `pc-i440fx-5.2`). */
async function machineType(m: { execute<T>(c: string, a?: Record<string, unknown>): Promise<T> }) {
  return (await m.execute<string>('qom-get', { path: '/machine', property: 'type' })).replace(
    /-machine$/,
    '',
  );
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const upgrades = [
  ['5.2', '7.2'],
  ['7.2', '10.0'],
  ['10.0', '11'],
] as const;

for (const [from, to] of upgrades) {
  const older = qemuRelease(from);
  const newer = qemuRelease(to);
  const missing = [older ? undefined : from, newer ? undefined : to].filter(Boolean).join(' and ');
  const title = older && newer ? `${older.version} → ${newer.version}` : `${from} → ${to}`;
  describe.skipIf(!older || !newer)(
    `upgrade migration ${title}${missing ? ` (skipped: QEMU ${missing} not available)` : ''}`,
    () => {
      const machine = `pc-i440fx-${older?.release}`;
      describe.each(
        accelerators().flatMap((accel) => migrationProtocols(accel).map((p) => [accel, p] as const)),
      )('under %s over %s', (accel, protocol) => {
        it(`completes with ${machine} on both ends; the guest carries on at the destination`, async () => {
          const p = await startPair(
            {
              dir,
              name: `x${++seq}`,
              src: { release: older!, accel, machine, kernel: guest },
              dst: { release: newer!, accel, machine, kernel: guest },
              protocol,
            },
            cleanup,
          );
          expect(await machineType(p.srcObs)).toBe(machine);
          expect(await machineType(p.dstObs)).toBe(machine);
          const inst: Instance = {
            name: `x${seq}`,
            hvparams: { migration_port: p.port, migration_bandwidth: 64, machine_version: machine },
          };
          await p.dstHv.acceptInstance(inst);
          const before = await guestSwept(p.srcObs);
          await p.srcHv.migrateInstance(inst, '127.0.0.1', true);
          const result = await p.srcHv.waitForMigration(inst, { pollIntervalMs: 100, timeoutMs: 60_000 });
          expect(result.status).toBe('completed');
          expect(result.transferredBytes).toBeGreaterThan(8 * 1024 * 1024);
          await p.srcHv.finalizeMigrationSource(inst, true, true);
          await p.dstHv.finalizeMigrationDst(inst, true);
          expect(await runState(p.srcObs)).toBe('postmigrate');
          await until('the destination to run', async () => (await runState(p.dstObs)) === 'running');
          // The guest's own counter came along and keeps counting on the newer QEMU.
          const arrived = await guestStatus(p.dstObs);
          expect(arrived.running).toBe(true);
          expect((arrived.pagesWritten - before.pagesWritten) >>> 0).toBeLessThan(2 ** 31);
          await until(
            'the guest to write on the destination',
            async () => ((await guestStatus(p.dstObs)).pagesWritten - arrived.pagesWritten) >>> 0 > 0,
          );
        });
      });
    },
  );
}

const v72 = qemuRelease('7.2');
const v52 = qemuRelease('5.2');
describe.skipIf(!v72 || !v52)(
  `downgrade refusal 7.2 → 5.2${v72 && v52 ? '' : ' (skipped: QEMU 5.2 or 7.2 not available)'}`,
  () => {
    it.each(protocols)(
      'a pc-i440fx-7.2 source cannot land on 5.2: QEMU’s reason in the error, the source still running (%s)',
      async (protocol) => {
        // 5.2 does not know pc-i440fx-7.2 at all; the closest a 5.2 host can offer is its own.
        const err = await QemuVm.start({
          name: `nodst-${protocol}`,
          dir,
          ...vmOptions(v52!),
          machine: 'pc-i440fx-7.2',
        }).catch((e) => e);
        expect(String(err?.message)).toContain('-machine pc-i440fx-7.2: unsupported machine type');

        const p = await startPair(
          {
            dir,
            name: `down-${protocol}`,
            src: { release: v72!, machine: 'pc-i440fx-7.2', kernel: guest },
            dst: { release: v52!, machine: 'pc-i440fx-5.2' },
            protocol,
          },
          cleanup,
        );
        const inst: Instance = {
          name: `down-${protocol}`,
          hvparams: { migration_port: p.port, migration_bandwidth: 4 },
        };
        await p.dstHv.acceptInstance(inst);
        await guestSwept(p.srcObs);
        await p.srcHv.migrateInstance(inst, '127.0.0.1', true);
        const e = await p.srcHv
          .waitForMigration(inst, { pollIntervalMs: 100, timeoutMs: 30_000 })
          .catch((x) => x);
        expect(e).toBeInstanceOf(MigrationError);
        expect(e.status).toBe('failed');
        // The source only sees the connection drop; the destination says why it dropped it.
        expect(e.reason).toMatch(/^Unable to write to socket: (Connection reset by peer|Broken pipe)$/);
        expect(e.message).toContain(e.reason);
        await p.dst.exited;
        expect(p.dst.stderr).toContain(
          "Machine type received is 'pc-i440fx-7.2' and local is 'pc-i440fx-5.2'",
        );
        await p.srcHv.finalizeMigrationSource(inst, false);
        expect(await runState(p.srcObs)).toBe('running');
      },
    );
  },
);

describe('machine_version', () => {
  it('assessParameters warns while it is unpinned, not once it names a versioned type', () => {
    const unpinned = KVMHypervisor.assessParameters(KVMHypervisor.fillDefaults({}));
    expect(unpinned.some((w) => w.includes('machine_version'))).toBe(true);
    const pinned = KVMHypervisor.assessParameters(
      KVMHypervisor.fillDefaults({ machine_version: 'pc-i440fx-5.2' }),
    );
    expect(pinned.some((w) => w.includes('machine_version'))).toBe(false);
  });
});
