import { describe, expect, it } from 'vitest';
import { HvParamError } from '../../src/errors.js';
import {
  deviceId,
  parseRuntime,
  postStartActions,
  RuntimeFormatError,
  resolveRuntime,
  serializeRuntime,
} from '../../src/instance/runtime.js';
import { recordedFeatures } from './fixtures.js';
import { baseSpec } from './specs.js';

const f72 = recordedFeatures('7.2');

describe('resolveRuntime', () => {
  it("gives Ganeti's ids and slots: disks first from slot 12, then NICs", () => {
    const r = resolveRuntime(baseSpec(), f72);
    expect(r.disks[0]).toMatchObject({
      id: 'disk-932df160-7a22-4067',
      bus: { type: 'pci', slot: 0xc },
      bootIndex: 1,
    });
    expect(r.nics[0]).toMatchObject({ id: 'nic-003fc157-66a8-4e6d', bus: { type: 'pci', slot: 0xd } });
    expect(deviceId('nic', '003FC157-66a8-4e6d-8b7e-ec4f69751396')).toBe('nic-003fc157-66a8-4e6d');
  });

  it('pins the versioned machine type, never the alias', () => {
    expect(resolveRuntime(baseSpec(), f72).machine).toEqual({ type: 'pc-i440fx-7.2', pciBus: 'pci.0' });
    const q35 = resolveRuntime(baseSpec({ hvparams: { kernel_path: '', machine_version: 'q35' } }), f72);
    expect(q35.machine).toEqual({ type: 'pc-q35-7.2', pciBus: 'pcie.0' });
    expect(() =>
      resolveRuntime(baseSpec({ hvparams: { kernel_path: '', machine_version: 'pc-i440fx-99.0' } }), f72),
    ).toThrow(/machine_version|pc-i440fx-99\.0/);
  });

  it('honours kvm_pci_reservations and runs out of slots with an error naming it', () => {
    const r = resolveRuntime(baseSpec({ hvparams: { kernel_path: '', kvm_pci_reservations: 20 } }), f72);
    expect(r.disks[0]!.bus).toEqual({ type: 'pci', slot: 20 });
    expect(() =>
      resolveRuntime(baseSpec({ hvparams: { kernel_path: '', kvm_pci_reservations: 31 } }), f72),
    ).toThrow(/kvm_pci_reservations/);
  });

  it('puts SCSI disks on SCSI targets with the controller', () => {
    const r = resolveRuntime(
      baseSpec({
        hvparams: { kernel_path: '', disk_type: 'scsi-hd', scsi_controller_type: 'virtio-scsi-pci' },
      }),
      f72,
    );
    expect(r.scsiController).toBe('virtio-scsi-pci');
    expect(r.disks[0]!.bus).toEqual({ type: 'scsi', target: 0 });
    expect(r.nics[0]!.bus).toEqual({ type: 'pci', slot: 0xc });
  });

  it('takes cluster hvparams under the instance ones', () => {
    const r = resolveRuntime(baseSpec({ hvparams: { kernel_path: '', disk_cache: 'writethrough' } }), f72, {
      disk_cache: 'none',
      nic_type: 'e1000',
    });
    expect(r.disks[0]!.cache.writeCache).toBe(false);
    expect(r.nics[0]!.driver).toBe('e1000');
    expect(r.hvparams.nic_type).toBe('e1000');
  });

  it('maps disk_cache to the three cache flags', () => {
    const flags = (disk_cache: string) =>
      resolveRuntime(baseSpec({ hvparams: { kernel_path: '', disk_cache } }), f72).disks[0]!.cache;
    expect(flags('none')).toEqual({ writeCache: true, direct: true, noFlush: false });
    expect(flags('writethrough')).toEqual({ writeCache: false, direct: false, noFlush: false });
    expect(flags('default')).toEqual({ writeCache: true, direct: false, noFlush: false });
  });

  it('names every hvparam it cannot honour at once', () => {
    try {
      resolveRuntime(
        baseSpec({
          hvparams: { kernel_path: '', cpu_type: 'NoSuchCpu', disk_type: 'mtd', kvm_pci_reservations: 32 },
        }),
        f72,
      );
      throw new Error('no error');
    } catch (err) {
      expect(err).toBeInstanceOf(HvParamError);
      expect((err as HvParamError).problems.map((p) => p.param).sort()).toEqual([
        'cpu_type',
        'disk_type',
        'kvm_pci_reservations',
        'kvm_pci_reservations',
      ]);
    }
  });

  it('builds the kernel command line from root_path, kernel_args and the serial console', () => {
    const r = resolveRuntime(
      baseSpec({
        hvparams: { kernel_path: '/boot/vmlinuz', initrd_path: '/boot/initrd', serial_speed: 115200 },
      }),
      f72,
    );
    expect(r.kernel).toEqual({
      path: '/boot/vmlinuz',
      initrd: '/boot/initrd',
      append: 'root=/dev/vda1 ro console=ttyS0,115200',
    });
    expect(r.disks[0]!.bootIndex).toBeUndefined();
  });
});

describe('runtime JSON', () => {
  it('round-trips', () => {
    const r = resolveRuntime(baseSpec({ memory: { maxMiB: 256, startupMiB: 128 } }), f72);
    const text = serializeRuntime(r);
    expect(parseRuntime(text)).toEqual(r);
    expect(JSON.parse(text).formatVersion).toBe(1);
  });

  it('refuses an unknown formatVersion, quoting it', () => {
    const r = JSON.parse(serializeRuntime(resolveRuntime(baseSpec(), f72)));
    expect(() => parseRuntime(JSON.stringify({ ...r, formatVersion: 2 }))).toThrow(/formatVersion 2/);
    expect(() => parseRuntime(JSON.stringify({ ...r, formatVersion: '1' }))).toThrow(/formatVersion "1"/);
  });

  it('refuses two devices on one PCI slot', () => {
    const r = JSON.parse(serializeRuntime(resolveRuntime(baseSpec(), f72)));
    r.nics[0].bus.slot = r.disks[0].bus.slot;
    expect(() => parseRuntime(JSON.stringify(r))).toThrow(/PCI slot 0xc/);
  });

  it('refuses text that is not JSON and values the schema refuses', () => {
    expect(() => parseRuntime('not json')).toThrow(RuntimeFormatError);
    const r = JSON.parse(serializeRuntime(resolveRuntime(baseSpec(), f72)));
    r.disks[0].bus = { type: 'pci', slot: 40 };
    delete r.machine;
    expect(() => parseRuntime(JSON.stringify(r))).toThrow(/machine|slot|maximum/);
  });
});

describe('postStartActions', () => {
  it('balloons to startupMiB and pins per vCPU', () => {
    const r = resolveRuntime(
      baseSpec({ memory: { maxMiB: 256, startupMiB: 128 }, hvparams: { kernel_path: '', cpu_mask: '0:1' } }),
      f72,
    );
    expect(postStartActions(r)).toEqual({ balloonMiB: 128, cpuMask: [[0], [1]] });
  });

  it('does nothing for the defaults', () => {
    expect(postStartActions(resolveRuntime(baseSpec(), f72))).toEqual({});
  });

  it("pins nothing for an empty cpu_mask (Ganeti's ParseMultiCpuMask('') is [])", () => {
    const r = resolveRuntime(baseSpec({ hvparams: { kernel_path: '', cpu_mask: '' } }), f72);
    expect(postStartActions(r)).toEqual({});
  });

  it('refuses a per-vCPU mask for a different number of vCPUs', () => {
    const r = resolveRuntime(baseSpec({ hvparams: { kernel_path: '', cpu_mask: '0:1:2' } }), f72);
    expect(() => postStartActions(r)).toThrow(/cpu_mask/);
  });
});
