import { describe, expect, it } from 'vitest';
import { HvParamError, KVMHypervisor, type KvmHvParams } from '../../src/internal.js';
import { problemsOf } from './helpers.js';

const defaults = (): Record<string, unknown> => KVMHypervisor.fillDefaults({});
const withValues = (values: Record<string, unknown>): Record<string, unknown> => ({
  ...defaults(),
  ...values,
});
const syntaxMessage = (param: string, detail: string, value: string) =>
  `Parameter '${param}' fails syntax check: ${detail} (current value: '${value}')`;

/** The messages for `param` when checking the defaults with `values` on top; [] when it passes. */
function messagesFor(param: string, values: Record<string, unknown>): string[] {
  try {
    KVMHypervisor.checkParameterSyntax(withValues(values));
    return [];
  } catch (error) {
    if (!(error instanceof HvParamError)) throw error;
    return error.problems.filter((p) => p.param === param).map((p) => p.message);
  }
}

/** [param, value, expected failure detail or null when valid, other values the case needs] */
type Case = [string, unknown, string | null, Record<string, unknown>?];
const SPICE_ON = { spice_bind: '0.0.0.0' };

const PORT = 'invalid port number';
const NONNEG = 'cannot be negative';
const QUEUES = 'invalid number of queues';
const PATH = 'must be an absolute normalized path';
const PATH_URL = 'must be an absolute normalized path or a URL';
const PCI = 'The number of PCI slots managed by QEMU (max: 32)';
const SPICE_IP = 'The SPICE IP version should be 4 or 6';
const CPU = 'Multiple CPU mask definition is not well-formed';

const CASES: Case[] = [
  ['migration_port', 1, null],
  ['migration_port', 8102, null],
  ['migration_port', 65534, null],
  ['migration_port', 65535, PORT],
  ['migration_port', 0, PORT],
  ['migration_port', -1, PORT],
  ['migration_bandwidth', 0, null],
  ['migration_bandwidth', 1000, null],
  ['migration_bandwidth', -1, NONNEG],
  ['migration_downtime', 0, null],
  ['migration_downtime', -1, NONNEG],
  ['cpu_cores', 0, null],
  ['cpu_cores', -3, NONNEG],
  ['cpu_threads', -1, NONNEG],
  ['cpu_sockets', 4, null],
  ['cpu_sockets', -1, NONNEG],
  ['virtio_net_queues', 0, QUEUES],
  ['virtio_net_queues', 1, null],
  ['virtio_net_queues', 32, null],
  ['virtio_net_queues', 33, QUEUES],
  ['kvm_pci_reservations', 0, null],
  ['kvm_pci_reservations', 32, null],
  ['kvm_pci_reservations', 33, PCI],
  ['kvm_pci_reservations', -1, PCI],
  ['spice_ip_version', 0, null],
  ['spice_ip_version', 5, SPICE_IP],
  ['spice_ip_version', 1, SPICE_IP],
  ['kvm_path', '/usr/bin/qemu-system-x86_64', null],
  ['kvm_path', 'kvm', PATH],
  ['kvm_path', '/usr/bin/../bin/kvm', PATH],
  ['kvm_path', '/usr//bin/kvm', PATH],
  ['kvm_path', '/usr/bin/', PATH],
  ['kvm_path', '/usr/./bin/kvm', PATH],
  ['kernel_path', '', null],
  ['kernel_path', 'vmlinuz', PATH],
  ['initrd_path', '/boot/initrd.img', null],
  ['initrd_path', 'initrd.img', PATH],
  ['vnc_password_file', 'relative', PATH],
  ['spice_password_file', 'relative/pw', PATH],
  ['floppy_image_path', '/a/b/../c', PATH],
  ['vnc_x509_path', 'certs', PATH],
  ['vnc_x509_path', '/etc/ssl/', PATH],
  ['mem_path', '/dev/hugepages', null],
  ['mem_path', 'hugepages', PATH],
  ['cdrom_image_path', '/srv/iso/debian.iso', null],
  ['cdrom_image_path', 'http://example.org/debian.iso', null],
  ['cdrom_image_path', 'https://example.org/debian.iso', null],
  ['cdrom_image_path', 'ftp://example.org/debian.iso', null],
  ['cdrom_image_path', 'ftps://example.org/debian.iso', null],
  ['cdrom_image_path', 'file:///srv/debian.iso', PATH_URL],
  ['cdrom_image_path', 'debian.iso', PATH_URL],
  ['cdrom2_image_path', 'HTTP://example.org/x.iso', PATH_URL],
  ['boot_order', 'network', null],
  ['boot_order', 'usb', 'The value must be one of: cdrom, disk, floppy, network'],
  ['nic_type', 'e1000', null],
  [
    'nic_type',
    'virtio',
    'The value must be one of: e1000, i82551, i82559er, i82557b, ne2k_isa, ne2k_pci, paravirtual, pcnet, rtl8139',
  ],
  ['disk_type', 'scsi-hd', null],
  [
    'disk_type',
    'nvme',
    'The value must be one of: ide, mtd, paravirtual, pflash, scsi, sd, scsi-generic, scsi-block, scsi-hd, scsi-cd',
  ],
  ['cdrom_disk_type', '', null],
  ['cdrom_disk_type', 'ide', null],
  [
    'cdrom_disk_type',
    'sata',
    'The value must be one of: ide, mtd, paravirtual, pflash, scsi, sd, scsi-generic, scsi-block, scsi-hd, scsi-cd',
  ],
  ['scsi_controller_type', 'virtio-scsi-pci', null],
  ['scsi_controller_type', 'ahci', 'The value must be one of: lsi, virtio-scsi-pci, megasas, dc390'],
  ['disk_aio', '', null],
  ['disk_aio', 'io_uring', null],
  ['disk_aio', 'posix', 'The value must be one of: threads, native, io_uring'],
  ['disk_cache', 'writeback', null],
  ['disk_cache', 'unsafe', 'The value must be one of: default, none, writeback, writethrough'],
  ['disk_discard', '', null],
  ['disk_discard', 'unmap', null],
  ['disk_discard', 'default', 'The value must be one of: ignore, unmap'],
  ['usb_mouse', '', null],
  ['usb_mouse', 'tablet', null],
  ['usb_mouse', 'trackball', 'The value must be one of: mouse, tablet'],
  ['kvm_flag', '', null],
  ['kvm_flag', 'enabled', null],
  ['kvm_flag', 'on', 'The value must be one of: enabled, disabled'],
  ['reboot_behavior', 'exit', null],
  ['reboot_behavior', 'halt', 'The value must be one of: reboot, exit'],
  ['security_model', 'pool', null],
  ['security_model', 'selinux', 'The value must be one of: none, pool, user'],
  ['spice_image_compression', 'auto_glz', null, SPICE_ON],
  ['spice_image_compression', 'jpeg', 'The value must be one of: auto_glz, auto_lz, glz, lz, off, quic'],
  ['spice_jpeg_wan_compression', 'never', null, SPICE_ON],
  ['spice_jpeg_wan_compression', 'sometimes', 'The value must be one of: always, auto, never'],
  ['spice_zlib_glz_wan_compression', 'off', 'The value must be one of: always, auto, never'],
  ['spice_streaming_video', 'filter', null, SPICE_ON],
  ['spice_streaming_video', 'on', 'The value must be one of: all, filter, off'],
  ['migration_mode', 'non-live', null],
  ['migration_mode', 'postcopy', 'invalid migration mode'],
  ['cpu_mask', 'all', null],
  ['cpu_mask', '0-2,5', null],
  ['cpu_mask', '1:3', null],
  ['cpu_mask', 'all:1,3-5:0', null],
  ['cpu_mask', '', null],
  ['cpu_mask', '2-1', CPU],
  ['cpu_mask', '1-2-3', CPU],
  ['cpu_mask', 'x', CPU],
  ['cpu_mask', '1,', CPU],
  ['cpu_mask', '0,all', CPU],
  ['cpu_mask', '1::2', CPU],
  ['migration_caps', '', null],
  ['migration_caps', 'xbzrle:auto-converge', null],
  ['migration_caps', 'x-postcopy-ram', null],
  // Parameters without a per-key check take any string.
  ['kernel_args', 'console=ttyS0 ro', null],
  ['kvm_extra', '-device foo', null],
  ['serial_speed', 1, null, { serial_console: false }],
];

describe('per-key syntax checks', () => {
  it('accepts the defaults', () => {
    expect(() => KVMHypervisor.checkParameterSyntax(defaults())).not.toThrow();
  });

  it.each(CASES)('%s = %j → %s', (param, value, detail, extra = {}) => {
    const expected = detail === null ? [] : [syntaxMessage(param, detail, String(value))];
    expect(messagesFor(param, { ...extra, [param]: value })).toEqual(expected);
  });

  it('reports the exact Ganeti text for port 65535', () => {
    expect(
      problemsOf(() => KVMHypervisor.checkParameterSyntax(withValues({ migration_port: 65535 }))),
    ).toEqual([
      {
        param: 'migration_port',
        message:
          "Parameter 'migration_port' fails syntax check: invalid port number (current value: '65535')",
      },
    ]);
  });
});

describe('the "unspecified" rule', () => {
  const required = [
    'kvm_path',
    'scsi_controller_type',
    'boot_order',
    'nic_type',
    'disk_type',
    'migration_mode',
    'disk_cache',
    'security_model',
    'reboot_behavior',
  ];

  it.each(required)(
    'required string %s: "" and null are "required but is currently not defined"',
    (param) => {
      const message = `Parameter '${param}' is required but is currently not defined`;
      expect(messagesFor(param, { [param]: '' })).toEqual([message]);
      expect(messagesFor(param, { [param]: null })).toEqual([message]);
    },
  );

  it.each(['migration_port', 'migration_bandwidth', 'migration_downtime'])(
    'required int %s: null is "required but is currently not defined"',
    (param) => {
      expect(messagesFor(param, { [param]: null })).toEqual([
        `Parameter '${param}' is required but is currently not defined`,
      ]);
    },
  );

  it('counts 0 as specified: checked, and accepted where the check allows it', () => {
    expect(messagesFor('migration_downtime', { migration_downtime: 0 })).toEqual([]);
    expect(messagesFor('migration_port', { migration_port: 0 })).toEqual([
      syntaxMessage('migration_port', PORT, '0'),
    ]);
    expect(messagesFor('virtio_net_queues', { virtio_net_queues: 0 })).toEqual([
      syntaxMessage('virtio_net_queues', QUEUES, '0'),
    ]);
  });

  it('counts false as specified', () => {
    expect(messagesFor('acpi', { acpi: false })).toEqual([]);
  });

  it('skips checks on "" for optional parameters (ParamInSet with "")', () => {
    for (const param of [
      'usb_mouse',
      'kvm_flag',
      'spice_streaming_video',
      'disk_discard',
      'cpu_mask',
      'kernel_path',
    ]) {
      expect(messagesFor(param, { [param]: '' })).toEqual([]);
    }
  });

  it('accepts null only for the maybe-string root_path', () => {
    expect(messagesFor('root_path', { root_path: null, kernel_path: '' })).toEqual([]);
    expect(messagesFor('kernel_args', { kernel_args: null })).toEqual([
      syntaxMessage('kernel_args', 'must be a string', 'null'),
    ]);
    expect(messagesFor('acpi', { acpi: null })).toEqual([syntaxMessage('acpi', 'must be a boolean', 'null')]);
  });
});

describe('types, unknown and missing keys', () => {
  it.each([
    ['acpi', 'yes', 'must be a boolean'],
    ['acpi', 1, 'must be a boolean'],
    ['migration_port', '8102', 'must be an integer'],
    ['migration_port', 1.5, 'must be an integer'],
    ['serial_speed', '', 'must be an integer'],
    ['kvm_path', 5, 'must be a string'],
    ['root_path', 7, 'must be a string or null'],
    ['vga', ['std'], 'must be a string'],
  ])('%s = %j → %s', (param, value, detail) => {
    const shown = typeof value === 'string' ? value : JSON.stringify(value);
    expect(messagesFor(param, { [param]: value })).toEqual([syntaxMessage(param, detail, shown)]);
  });

  it('reports unknown keys', () => {
    expect(problemsOf(() => KVMHypervisor.checkParameterSyntax(withValues({ x: 1 })))).toEqual([
      { param: 'x', message: "Parameter 'x' is not supported" },
    ]);
  });

  it('does not take inherited names such as toString for parameters', () => {
    expect(problemsOf(() => KVMHypervisor.checkParameterSyntax(withValues({ toString: 'x' })))).toEqual([
      { param: 'toString', message: "Parameter 'toString' is not supported" },
    ]);
  });

  it('reports every missing key of an unfilled dict', () => {
    const problems = problemsOf(() => KVMHypervisor.checkParameterSyntax({ acpi: true }));
    expect(problems).toHaveLength(64);
    expect(problems[0]).toEqual({ param: 'kvm_path', message: "Parameter 'kvm_path' is missing" });
  });

  it('refuses a non-object', () => {
    expect(problemsOf(() => KVMHypervisor.checkParameterSyntax([] as never))).toEqual([
      { param: '', message: 'Expected dictionary, got array' },
    ]);
  });
});

describe('all problems at once', () => {
  it('reports two bad parameters as two problems, message joined with "; "', () => {
    let caught: unknown;
    try {
      KVMHypervisor.checkParameterSyntax(withValues({ migration_port: 65535, virtio_net_queues: 33 }));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(HvParamError);
    const error = caught as HvParamError;
    expect(error.problems.map((p) => p.param)).toEqual(['migration_port', 'virtio_net_queues']);
    expect(error.message).toBe(error.problems.map((p) => p.message).join('; '));
  });

  it('reports unknown, missing, per-key and cross-parameter problems together, per-key first', () => {
    const params = withValues({
      bogus: true,
      migration_mode: 'x',
      disk_aio: 'native',
      disk_cache: 'writeback',
    });
    delete params['vga'];
    const problems = problemsOf(() => KVMHypervisor.checkParameterSyntax(params));
    expect(problems.map((p) => p.param)).toEqual(['bogus', 'migration_mode', 'vga', 'disk_aio']);
  });

  it('skips a cross-parameter rule when a parameter it reads failed its own check', () => {
    // serial_speed has the wrong type: only the type problem, not also the speed rule.
    const problems = problemsOf(() =>
      KVMHypervisor.checkParameterSyntax(withValues({ serial_speed: 'fast' })),
    );
    expect(problems.map((p) => p.param)).toEqual(['serial_speed']);
    expect(problems[0]!.message).toContain('must be an integer');
  });
});

describe('checkParamsNotGlobal', () => {
  const prefix =
    'The following hypervisor parameters are global and cannot be customized at instance level, please modify them at cluster level: ';

  it('accepts instance-level parameters that are not global', () => {
    expect(() =>
      KVMHypervisor.checkParamsNotGlobal({ migration_downtime: 100, migration_caps: 'xbzrle' }),
    ).not.toThrow();
  });

  it('names one global key', () => {
    expect(problemsOf(() => KVMHypervisor.checkParamsNotGlobal({ migration_port: 1 }))).toEqual([
      { param: 'migration_port', message: `${prefix}migration_port` },
    ]);
  });

  it('lists every global key', () => {
    const params: Partial<KvmHvParams> = {
      migration_mode: 'live',
      acpi: true,
      migration_bandwidth: 100,
      migration_port: 9,
    };
    expect(problemsOf(() => KVMHypervisor.checkParamsNotGlobal(params))).toEqual([
      { param: '', message: `${prefix}migration_port, migration_bandwidth, migration_mode` },
    ]);
  });
});
