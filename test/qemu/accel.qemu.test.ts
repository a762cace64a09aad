/**
 * Accelerator choice with a real QEMU: a VM runs with the accelerator it was started with,
 * and the dirtying guest keeps its paced rate under KVM.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readGuestStatus } from '../../src/cli/demo.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { kvmUsable, queryAccelerator } from '../../src/qemu/accel.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { findQemuBinary, QemuVm } from '../../src/testing/qemu-vm.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const hasQemu = findQemuBinary() !== undefined;

describe.skipIf(!hasQemu)('a real QEMU', () => {
  let dir: string;
  const vms: QemuVm[] = [];
  const monitors: QmpMonitor[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvmhv-accel-'));
  });
  afterEach(async () => {
    for (const m of monitors.splice(0)) await m.close().catch(() => undefined);
    await Promise.all(vms.splice(0).map((vm) => vm.kill()));
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (accel: 'kvm' | 'tcg' | 'auto', kernel?: string) => {
    const vm = await QemuVm.start({ name: `accel-${accel}`, dir, hmp: false, memoryMiB: 64, accel, kernel });
    vms.push(vm);
    const mon = await QmpMonitor.connect({ path: vm.qmpPath });
    monitors.push(mon);
    return { vm, mon };
  };

  it('runs with TCG when asked, with KVM under auto where /dev/kvm opens', async () => {
    const tcg = await start('tcg');
    expect(tcg.vm.accel).toBe('tcg');
    expect(tcg.vm.argv.join(' ')).toContain('-accel tcg');
    expect(await queryAccelerator(tcg.mon)).toBe('tcg');
    const auto = await start('auto');
    expect(auto.vm.accel).toBe(kvmUsable() ? 'kvm' : 'tcg');
    expect(await queryAccelerator(auto.mon)).toBe(auto.vm.accel);
  }, 30_000);

  it.skipIf(!kvmUsable())(
    'the dirtying guest keeps its paced rate under KVM',
    async () => {
      const kernel = join(dir, 'guest.img');
      const rateMiBps = 16;
      writeGuestImage(kernel, { dirtyMiB: 8, rateMiBps });
      const { vm, mon } = await start('kvm', kernel);
      expect(vm.accel).toBe('kvm');
      let s = await readGuestStatus(mon);
      // SeaBIOS takes 8-12 s under nested KVM before the kernel runs.
      for (let i = 0; i < 1200 && (!s.running || s.pagesWritten === 0); i++) {
        await sleep(50);
        s = await readGuestStatus(mon);
      }
      expect(s.running).toBe(true);
      const t0 = performance.now();
      await sleep(2000);
      const after = await readGuestStatus(mon);
      const seconds = (performance.now() - t0) / 1000;
      const measured = (((after.pagesWritten - s.pagesWritten) >>> 0) * 4096) / 1048576 / seconds;
      // Paced, not flat out (KVM writes hundreds of MiB/s unpaced); generous below because a
      // busy host takes CPU time from the vCPU and the guest does not make it up.
      expect(measured).toBeLessThan(rateMiBps * 1.5);
      expect(measured).toBeGreaterThan(rateMiBps * 0.25);
    },
    30_000,
  );
});
