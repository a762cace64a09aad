import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  GLOBAL_HV_PARAMETERS,
  HV_PARAMETER_NAMES,
  HV_PARAMETERS,
  KVMHypervisor,
  type KvmHvParams,
  KvmHvParamsSchema,
  REQUIRED_HV_PARAMETERS,
} from '../../src/internal.js';

// Ganeti master's table (notes §1.4), typed out by hand so that a registry change shows up here.
// [key, type, default, required, global]
const EXPECTED: [string, string, unknown, boolean, boolean][] = [
  ['kvm_path', 'string', '/usr/bin/kvm', true, false],
  ['kernel_path', 'string', '/boot/vmlinuz-3-kvmU', false, false],
  ['initrd_path', 'string', '', false, false],
  ['kernel_args', 'string', 'ro', false, false],
  ['root_path', 'maybe-string', '/dev/vda1', false, false],
  ['acpi', 'bool', true, false, false],
  ['serial_console', 'bool', true, false, false],
  ['serial_speed', 'int', 38400, false, false],
  ['vnc_bind_address', 'string', '', false, false],
  ['vnc_tls', 'bool', false, false, false],
  ['vnc_x509_path', 'string', '', false, false],
  ['vnc_x509_verify', 'bool', false, false, false],
  ['vnc_password_file', 'string', '', false, false],
  ['scsi_controller_type', 'string', 'lsi', true, false],
  ['kvm_pci_reservations', 'int', 12, false, false],
  ['spice_bind', 'string', '', false, false],
  ['spice_ip_version', 'int', 0, false, false],
  ['spice_password_file', 'string', '', false, false],
  ['spice_image_compression', 'string', '', false, false],
  ['spice_jpeg_wan_compression', 'string', '', false, false],
  ['spice_zlib_glz_wan_compression', 'string', '', false, false],
  ['spice_streaming_video', 'string', '', false, false],
  ['spice_playback_compression', 'bool', true, false, false],
  ['spice_use_tls', 'bool', false, false, false],
  ['spice_tls_ciphers', 'string', 'HIGH:-DES:-3DES:-EXPORT:-DH', false, false],
  ['spice_use_vdagent', 'bool', true, false, false],
  ['floppy_image_path', 'string', '', false, false],
  ['cdrom_image_path', 'string', '', false, false],
  ['cdrom2_image_path', 'string', '', false, false],
  ['boot_order', 'string', 'disk', true, false],
  ['nic_type', 'string', 'paravirtual', true, false],
  ['disk_type', 'string', 'paravirtual', true, false],
  ['cdrom_disk_type', 'string', '', false, false],
  ['disk_aio', 'string', 'threads', false, false],
  ['usb_mouse', 'string', '', false, false],
  ['keymap', 'string', '', false, false],
  ['migration_port', 'int', 8102, true, true],
  ['migration_bandwidth', 'int', 32, true, true],
  ['migration_downtime', 'int', 30, true, false],
  ['migration_mode', 'string', 'live', true, true],
  ['use_guest_agent', 'bool', false, false, false],
  ['use_localtime', 'bool', false, false, false],
  ['disk_cache', 'string', 'default', true, false],
  ['disk_discard', 'string', 'ignore', false, false],
  ['security_model', 'string', 'none', true, false],
  ['security_domain', 'string', '', false, false],
  ['kvm_flag', 'string', '', false, false],
  ['vhost_net', 'bool', true, false, false],
  ['virtio_net_queues', 'int', 1, false, false],
  ['use_chroot', 'bool', false, false, false],
  ['user_shutdown', 'bool', false, false, false],
  ['mem_path', 'string', '', false, false],
  ['reboot_behavior', 'string', 'reboot', true, false],
  ['cpu_mask', 'string', 'all', false, false],
  ['cpu_type', 'string', '', false, false],
  ['cpu_cores', 'int', 0, false, false],
  ['cpu_threads', 'int', 0, false, false],
  ['cpu_sockets', 'int', 0, false, false],
  ['soundhw', 'string', '', false, false],
  ['usb_devices', 'string', '', false, false],
  ['vga', 'string', '', false, false],
  ['kvm_extra', 'string', '', false, false],
  ['machine_version', 'string', '', false, false],
  ['migration_caps', 'string', '', false, false],
  ['vnet_hdr', 'bool', true, false, false],
];

const EXPECTED_JSON_TYPE: Record<string, unknown> = {
  string: 'string',
  bool: 'boolean',
  int: 'integer',
};

describe('registry', () => {
  it('has exactly the 65 keys of Ganeti, in order', () => {
    expect(EXPECTED).toHaveLength(65);
    expect(HV_PARAMETER_NAMES).toEqual(EXPECTED.map(([key]) => key));
    expect(Object.keys(KVMHypervisor.PARAMETERS)).toEqual(EXPECTED.map(([key]) => key));
  });

  it.each(EXPECTED)('%s: type %s, default %j, required %s, global %s', (key, type, def, required, global) => {
    const entry = KVMHypervisor.PARAMETERS[key as keyof typeof HV_PARAMETERS];
    expect(entry.type).toBe(type);
    expect(entry.default).toStrictEqual(def);
    expect(entry.required).toBe(required);
    expect(entry.global).toBe(global);
    expect(entry.description).toMatch(/^[A-Z].*\.$/);
    const schema = entry.schema as unknown as Record<string, unknown>;
    expect(schema['default']).toStrictEqual(def);
    expect(schema['description']).toBe(entry.description);
  });

  it('has the 12 required keys', () => {
    expect([...REQUIRED_HV_PARAMETERS].sort()).toEqual(
      [
        'kvm_path',
        'scsi_controller_type',
        'boot_order',
        'nic_type',
        'disk_type',
        'migration_port',
        'migration_bandwidth',
        'migration_downtime',
        'migration_mode',
        'disk_cache',
        'security_model',
        'reboot_behavior',
      ].sort(),
    );
  });

  it('has the 3 global keys', () => {
    expect([...GLOBAL_HV_PARAMETERS].sort()).toEqual([
      'migration_bandwidth',
      'migration_mode',
      'migration_port',
    ]);
  });

  it('counts types like Constants.hs: 41 string, 1 maybe-string, 13 bool, 10 int', () => {
    const counts: Record<string, number> = {};
    for (const name of HV_PARAMETER_NAMES) {
      const type = HV_PARAMETERS[name].type;
      counts[type] = (counts[type] ?? 0) + 1;
    }
    expect(counts).toEqual({ string: 41, 'maybe-string': 1, bool: 13, int: 10 });
  });

  it('states the migration units in the descriptions', () => {
    expect(HV_PARAMETERS.migration_bandwidth.description).toContain('MiB/s');
    expect(HV_PARAMETERS.migration_downtime.description).toContain('ms');
    expect(HV_PARAMETERS.migration_port.description).toContain('TCP port');
    expect(HV_PARAMETERS.migration_caps.description).toContain("':'-separated");
    expect(HV_PARAMETERS.migration_caps.description).toContain('capabilit');
  });

  it('fillDefaults with nothing gives exactly the defaults, as a new object each time', () => {
    const a = KVMHypervisor.fillDefaults({});
    const b = KVMHypervisor.fillDefaults({});
    expect(a).not.toBe(b);
    expect(a).toStrictEqual(Object.fromEntries(EXPECTED.map(([key, , def]) => [key, def])));
  });

  it('fillDefaults keeps given values, unknown keys, and treats undefined as absent', () => {
    const input = { acpi: false, migration_port: 0, bogus: 1, vga: undefined } as Record<string, unknown>;
    const filled = KVMHypervisor.fillDefaults(input);
    expect(filled['acpi']).toBe(false);
    expect(filled['migration_port']).toBe(0);
    expect(filled['bogus']).toBe(1);
    expect(filled['vga']).toBe('');
    expect(input).toEqual({ acpi: false, migration_port: 0, bogus: 1, vga: undefined });
  });

  it('fillDefaults keeps "__proto__" as an ordinary key', () => {
    const input = JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
    const filled = KVMHypervisor.fillDefaults(input);
    expect(Object.hasOwn(filled, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(filled)).toBe(Object.prototype);
  });

  it('gives each key its precise static type', () => {
    expectTypeOf<KvmHvParams['kvm_path']>().toEqualTypeOf<string>();
    expectTypeOf<KvmHvParams['root_path']>().toEqualTypeOf<string | null>();
    expectTypeOf<KvmHvParams['acpi']>().toEqualTypeOf<boolean>();
    expectTypeOf<KvmHvParams['migration_port']>().toEqualTypeOf<number>();
    expectTypeOf<keyof KvmHvParams>().toEqualTypeOf<(typeof HV_PARAMETER_NAMES)[number]>();
  });
});

describe('JSON Schema', () => {
  const schema = KVMHypervisor.jsonSchema() as {
    $schema: string;
    type: string;
    required: string[];
    additionalProperties: boolean;
    properties: Record<string, Record<string, unknown>>;
  };

  it('is plain JSON and a fresh copy', () => {
    expect(JSON.parse(JSON.stringify(schema))).toStrictEqual(schema);
    expect(KVMHypervisor.jsonSchema()).not.toBe(schema);
    expect(schema.$schema).toContain('json-schema.org');
  });

  it('describes an object with every key required and nothing else', () => {
    expect(schema.type).toBe('object');
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(EXPECTED.map(([key]) => key));
  });

  it.each(EXPECTED)('%s has its type, default and description', (key, type, def) => {
    const property = schema.properties[key]!;
    expect(property['default']).toStrictEqual(def);
    expect(property['description']).toBe(HV_PARAMETERS[key as keyof typeof HV_PARAMETERS].description);
    if (type === 'maybe-string') expect(property['anyOf']).toEqual([{ type: 'string' }, { type: 'null' }]);
    else expect(property['type']).toBe(EXPECTED_JSON_TYPE[type]);
  });

  it('mirrors the per-key checks it can express', () => {
    expect(schema.properties['migration_port']).toMatchObject({ minimum: 1, maximum: 65534 });
    expect(schema.properties['kvm_pci_reservations']).toMatchObject({ minimum: 0, maximum: 32 });
    expect(schema.properties['virtio_net_queues']).toMatchObject({ minimum: 1, maximum: 32 });
    expect(schema.properties['spice_ip_version']).toMatchObject({ enum: [0, 4, 6] });
    expect(schema.properties['boot_order']).toMatchObject({ enum: ['cdrom', 'disk', 'floppy', 'network'] });
    expect(schema.properties['usb_mouse']).toMatchObject({ enum: ['', 'mouse', 'tablet'] });
    expect(schema.properties['migration_mode']).toMatchObject({ enum: ['live', 'non-live'] });
  });

  it('is the TypeBox schema itself, serialized', () => {
    expect(schema).toMatchObject(JSON.parse(JSON.stringify(KvmHvParamsSchema)));
  });
});
