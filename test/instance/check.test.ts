import { describe, expect, it } from 'vitest';
import { HvParamError, InstanceSpecError } from '../../src/errors.js';
import { checkInstanceSpec, isUnicastMac } from '../../src/instance/check.js';
import { baseSpec } from './specs.js';

function problemsOf(spec: unknown): { field: string; message: string }[] {
  try {
    checkInstanceSpec(spec);
  } catch (err) {
    if (err instanceof InstanceSpecError) return err.problems;
    throw err;
  }
  throw new Error('no error');
}

describe('checkInstanceSpec', () => {
  it('returns the spec with hvparams coerced and filled', () => {
    const out = checkInstanceSpec(baseSpec({ hvparams: { kernel_path: '', acpi: 'false' } }));
    expect(out.hvparams.acpi).toBe(false);
    expect(out.hvparams.disk_type).toBe('paravirtual');
    expect(out.name).toBe('web1');
  });

  it('takes cluster defaults under the instance hvparams', () => {
    const out = checkInstanceSpec(baseSpec({ hvparams: { kernel_path: '' } }), {
      disk_cache: 'none',
      kernel_path: '/k',
    });
    expect(out.hvparams.disk_cache).toBe('none');
    expect(out.hvparams.kernel_path).toBe('');
  });

  it('reports schema problems with field paths', () => {
    const problems = problemsOf({ ...baseSpec(), vcpus: 'two', extra: 1 });
    expect(problems).toContainEqual({ field: 'vcpus', message: 'must be integer' });
    expect(problems.some((p) => p.message.includes("'extra'"))).toBe(true);
  });

  it('reports every semantic problem at once', () => {
    const spec = baseSpec({
      name: 'bad,name',
      memory: { maxMiB: 8, startupMiB: 16 },
      disks: [
        { uuid: '932df160-7a22-4067-8d2a-5c1f0b2f1e11', path: '/srv/a.img', kind: 'file' },
        { uuid: '932df160-7a22-4067-8d2a-5c1f0b2f1e11', path: '/srv/a.img', kind: 'file' },
        { uuid: 'not-a-uuid', path: 'relative.img', kind: 'file' },
      ],
      nics: [
        { uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396', mac: '01:00:5e:00:00:01', network: { type: 'user' } },
        { uuid: '103fc157-66a8-4e6d-8b7e-ec4f69751396', mac: 'aa:00:00:00:00:01', network: { type: 'user' } },
        {
          uuid: '203fc157-66a8-4e6d-8b7e-ec4f69751396',
          mac: 'AA:00:00:00:00:01',
          model: 'virtio',
          network: { type: 'tap', ifname: 'tap 0' },
        },
        { uuid: '303fc157-66a8-4e6d-8b7e-ec4f69751396', mac: 'zz', network: { type: 'user' } },
      ],
      hvparams: { kernel_path: '', boot_order: 'floppy', disk_type: 'bogus' },
    });
    const fields = problemsOf(spec).map((p) => p.field);
    expect(fields).toEqual(
      expect.arrayContaining([
        'name',
        'memory.maxMiB',
        'memory.startupMiB',
        'disks[1].uuid',
        'disks[1].path',
        'disks[2].uuid',
        'disks[2].path',
        'nics[0].mac',
        'nics[2].mac',
        'nics[2].model',
        'nics[2].network.ifname',
        'nics[3].mac',
        'hvparams.disk_type',
      ]),
    );
  });

  it('refuses a read-only disk on IDE and too many IDE units', () => {
    const disks = [0, 1, 2, 3, 4].map((i) => ({
      uuid: `932df160-7a22-4067-8d2a-5c1f0b2f1e1${i}`,
      path: `/srv/d${i}.img`,
      kind: 'file' as const,
      ...(i === 0 ? { access: 'ro' as const } : {}),
    }));
    const fields = problemsOf(baseSpec({ disks, hvparams: { kernel_path: '', disk_type: 'ide' } })).map(
      (p) => p.field,
    );
    expect(fields).toEqual(expect.arrayContaining(['disks[0].access', 'disks']));
  });

  it('throws HvParamError when only hvparams are wrong', () => {
    expect(() => checkInstanceSpec(baseSpec({ hvparams: { kernel_path: '', nosuch: 1 } }))).toThrow(
      HvParamError,
    );
    expect(() => checkInstanceSpec(baseSpec({ hvparams: { kernel_path: '', acpi: 'maybe' } }))).toThrow(
      HvParamError,
    );
  });

  it('refuses boot from the network without a NIC', () => {
    const problems = problemsOf(baseSpec({ nics: [], hvparams: { kernel_path: '', boot_order: 'network' } }));
    expect(problems.map((p) => p.field)).toEqual(['hvparams.boot_order']);
  });

  it('knows unicast MACs', () => {
    expect(isUnicastMac('aa:00:00:12:34:56')).toBe(true);
    expect(isUnicastMac('ff:ff:ff:ff:ff:ff')).toBe(false);
    expect(isUnicastMac('00:00:00:00:00:00')).toBe(false);
    expect(isUnicastMac('aa:00:00:12:34')).toBe(false);
  });
});
