import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HvParamError,
  KVMHypervisor,
  NODE_PARAMETER_RULES,
  type ValidationContext,
} from '../../src/internal.js';

let dir: string;
let file: string;
let passwd: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hvparams-'));
  file = join(dir, 'kvm');
  await writeFile(file, '#!/bin/sh\n');
  passwd = join(dir, 'passwd');
  await writeFile(passwd, 'root:x:0:0:root:/root:/bin/bash\nsecure_user:x:1000:1000::/home/s:/bin/sh\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Defaults with kvm_path and kernel_path pointing at a real file, plus `values`. */
function params(values: Record<string, unknown>): Record<string, unknown> {
  return { ...KVMHypervisor.fillDefaults({}), kvm_path: file, kernel_path: file, ...values };
}

async function problems(values: Record<string, unknown>, context: ValidationContext = {}) {
  try {
    await KVMHypervisor.validateParameters(params(values), { passwdFile: passwd, ...context });
    return [];
  } catch (error) {
    if (!(error instanceof HvParamError)) throw error;
    return error.problems;
  }
}

const validation = (param: string, detail: string, value: string) =>
  `Parameter '${param}' fails validation: ${detail} (current value: '${value}')`;

describe('per-key node checks', () => {
  it('accepts existing files and directories', async () => {
    expect(
      await problems({
        initrd_path: file,
        vnc_x509_path: dir,
        mem_path: dir,
        floppy_image_path: file,
        cdrom_image_path: file,
      }),
    ).toEqual([]);
  });

  it.each([
    'kvm_path',
    'kernel_path',
    'initrd_path',
    'vnc_password_file',
    'spice_password_file',
    'floppy_image_path',
  ])('%s must be an existing file', async (param) => {
    const missing = join(dir, 'missing');
    expect(await problems({ [param]: missing })).toEqual([
      { param, message: validation(param, 'not found or not a file', missing) },
    ]);
    expect(await problems({ [param]: dir })).toEqual([
      { param, message: validation(param, 'not found or not a file', dir) },
    ]);
  });

  it.each(['vnc_x509_path', 'mem_path'])('%s must be an existing directory', async (param) => {
    expect(await problems({ [param]: file })).toEqual([
      { param, message: validation(param, 'not found or not a directory', file) },
    ]);
  });

  it.each(['cdrom_image_path', 'cdrom2_image_path'])('%s must be a file or a URL', async (param) => {
    expect(await problems({ [param]: 'https://example.org/x.iso' })).toEqual([]);
    expect(await problems({ [param]: join(dir, 'x.iso') })).toEqual([
      { param, message: validation(param, 'not found or not a file or URL', join(dir, 'x.iso')) },
    ]);
  });

  it('skips unspecified optional paths', async () => {
    expect(await problems({ kernel_path: '', initrd_path: '', mem_path: '' })).toEqual([]);
  });

  it('reports every failing path at once', async () => {
    const found = await problems({ kvm_path: '/nonexistent/kvm', mem_path: '/nonexistent/huge' });
    expect(found.map((p) => p.param)).toEqual(['kvm_path', 'mem_path']);
  });
});

describe('node rules', () => {
  it('are the five rules of Ganeti, in order', () => {
    expect(NODE_PARAMETER_RULES.map((r) => r.name)).toEqual([
      'validate_security_model',
      'validate_vnc_parameters',
      'validate_spice_parameters',
      'validate_machine_version',
      'validate_disk_parameters',
    ]);
  });

  describe('security model', () => {
    it.each([
      ['none', ''],
      ['pool', ''],
      ['user', 'root'],
      ['user', 'secure_user'],
    ])('accepts %s / %j', async (model, domain) => {
      expect(await problems({ security_model: model, security_domain: domain })).toEqual([]);
    });
    it('rejects a user that does not exist', async () => {
      const found = await problems({ security_model: 'user', security_domain: 'really-non-existing-user' });
      expect(found).toEqual([
        {
          param: 'security_domain',
          message: validation('security_domain', `no such user in ${passwd}`, 'really-non-existing-user'),
        },
      ]);
    });
    it('does not take a prefix of a user name for the user', async () => {
      expect(
        (await problems({ security_model: 'user', security_domain: 'secure' })).map((p) => p.param),
      ).toEqual(['security_domain']);
    });
    it('reads the real /etc/passwd by default, where root exists', async () => {
      await expect(
        KVMHypervisor.validateParameters(params({ security_model: 'user', security_domain: 'root' })),
      ).resolves.toBeUndefined();
    });
    it('reports an unreadable passwd file as a problem', async () => {
      const found = await problems(
        { security_model: 'user', security_domain: 'root' },
        { passwdFile: join(dir, 'no-passwd') },
      );
      expect(found[0]!.message).toContain('cannot read');
    });
  });

  describe('VNC bind address', () => {
    it.each(['127.0.0.1', '::1', '0.0.0.0', 'lo', '/var/run/ganeti/vnc.sock'])('accepts %s', async (bind) => {
      expect(await problems({ vnc_bind_address: bind })).toEqual([]);
    });
    it.each(['192.0.2.5.5', 'doesnotexist0', 'relative/path', '/a/../b'])('rejects %s', async (bind) => {
      expect(await problems({ vnc_bind_address: bind })).toEqual([
        {
          param: 'vnc_bind_address',
          message: validation(
            'vnc_bind_address',
            'must be an IPv4 or IPv6 address, an existing network interface or an absolute normalized path',
            bind,
          ),
        },
      ]);
    });
    it('uses the interface list from the context when given', async () => {
      expect(await problems({ vnc_bind_address: 'br0' }, { interfaces: ['br0'] })).toEqual([]);
      expect((await problems({ vnc_bind_address: 'lo' }, { interfaces: ['br0'] })).length).toBe(1);
    });
  });

  describe('SPICE', () => {
    const help112 =
      'QEMU emulator version 1.1.2 (qemu-kvm-1.1.2+dfsg-2~bpo60+1, Debian)\n' +
      '-vnc display    start a VNC server on display\n' +
      '-spice [port=port][,tls-port=secured-port][,x509-dir=<dir>]\n' +
      '       enable spice\n';
    const help091 =
      'QEMU PC emulator version 0.9.1 (kvm-72)\n-vnc display    start a VNC server on display\n';

    it.each(['0.0.0.0', '::', 'lo'])('accepts %s with the 1.1.2 help output', async (bind) => {
      expect(await problems({ spice_bind: bind }, { kvmHelp: help112 })).toEqual([]);
    });
    it('rejects SPICE together with VNC', async () => {
      const found = await problems({ spice_bind: '0.0.0.0', vnc_bind_address: '127.0.0.1' });
      expect(found.map((p) => p.param)).toEqual(['spice_bind']);
      expect(found[0]!.message).toContain('SPICE and VNC cannot both be enabled');
    });
    it('rejects SPICE with a QEMU whose help lacks -spice (0.9.1)', async () => {
      const found = await problems({ spice_bind: '0.0.0.0' }, { kvmHelp: help091 });
      expect(found.map((p) => p.param)).toEqual(['spice_bind']);
      expect(found[0]!.message).toContain('does not support SPICE');
    });
    it('skips the -spice check without kvmHelp', async () => {
      expect(await problems({ spice_bind: '0.0.0.0' })).toEqual([]);
    });
    it('rejects an interface that does not exist', async () => {
      expect(await problems({ spice_bind: 'invalid-interface0' })).toEqual([
        {
          param: 'spice_bind',
          message: validation(
            'spice_bind',
            'must be an IP address or an existing network interface',
            'invalid-interface0',
          ),
        },
      ]);
    });
    it('does not accept a path for SPICE', async () => {
      expect((await problems({ spice_bind: '/run/spice.sock' })).map((p) => p.param)).toEqual(['spice_bind']);
    });
  });

  describe('machine version', () => {
    const machines = [
      'Supported machines are:',
      'microvm              microvm (i386)',
      'pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-6.0)',
      'pc-i440fx-6.0        Standard PC (i440FX + PIIX, 1996) (default)',
      'pc-i440fx-5.2        Standard PC (i440FX + PIIX, 1996)',
      'q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-6.0)',
      'pc-q35-6.0           Standard PC (Q35 + ICH9, 2009)',
      'isapc                ISA-only PC',
      'none                 empty machine',
    ].join('\n');

    it.each(['pc-i440fx-6.0', 'pc', 'q35', 'pc-q35-6.0', 'isapc'])('accepts %s', async (machine) => {
      expect(await problems({ machine_version: machine }, { machineList: machines })).toEqual([]);
    });
    it.each(['some-invalid-machine-type', 'none', 'microvm', 'pc-i440fx-6', 'pc.i440fx-6.0'])(
      'rejects %s',
      async (machine) => {
        expect(await problems({ machine_version: machine }, { machineList: machines })).toEqual([
          {
            param: 'machine_version',
            message: validation('machine_version', 'not a machine type this QEMU supports', machine),
          },
        ]);
      },
    );
    it('skips the check without a machine list', async () => {
      expect(await problems({ machine_version: 'some-invalid-machine-type' })).toEqual([]);
    });
  });

  describe('disk aio', () => {
    it('rejects io_uring on QEMU 4.2', async () => {
      const found = await problems(
        { disk_aio: 'io_uring' },
        { qemuVersion: { major: 4, minor: 2, micro: 1 } },
      );
      expect(found).toEqual([
        {
          param: 'disk_aio',
          message: validation('disk_aio', 'io_uring needs QEMU 5.0 or later, this is 4.2.1', 'io_uring'),
        },
      ]);
    });
    it('accepts io_uring on QEMU 5.0 and without a version', async () => {
      expect(
        await problems({ disk_aio: 'io_uring' }, { qemuVersion: { major: 5, minor: 0, micro: 0 } }),
      ).toEqual([]);
      expect(await problems({ disk_aio: 'io_uring' })).toEqual([]);
    });
  });

  it('reports every node problem at once', async () => {
    const found = await problems(
      { kvm_path: '/nonexistent', vnc_bind_address: 'nope0', disk_aio: 'io_uring' },
      { qemuVersion: { major: 2, minor: 0, micro: 0 } },
    );
    expect(found.map((p) => p.param)).toEqual(['kvm_path', 'vnc_bind_address', 'disk_aio']);
  });

  it('reports missing keys and skips values of the wrong type', async () => {
    await expect(KVMHypervisor.validateParameters({ acpi: true })).rejects.toThrow(
      "Parameter 'kvm_path' is missing",
    );
    expect(await problems({ kvm_path: 5, vnc_bind_address: 7 })).toEqual([]);
  });
});
