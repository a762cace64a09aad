/**
 * The pure half of hotplug: the refusal rules, slot allocation rebuilt from the runtime,
 * the new device's runtime entry, and the QMP commands, which must describe the device
 * the argv renders from the runtime (what a migration target starts with).
 */
import { describe, expect, it } from 'vitest';
import { UnrecognizedOutputError } from '../../src/errors.js';
import { renderArgv } from '../../src/instance/argv.js';
import { parseDeviceProperties, parsePeripheralIds, parseQueryCommands } from '../../src/instance/hotplug.js';
import {
  allocateBus,
  backendRemoveCommand,
  diskAddCommands,
  findDevice,
  HOTPLUG_COMMANDS,
  HotplugError,
  hotplugDisk,
  hotplugNic,
  hotplugRefusals,
  newDeviceProblems,
  nicAddCommands,
  withDevice,
  withNicReplaced,
  withoutDevice,
} from '../../src/instance/hotplug-model.js';
import {
  type InstanceRuntime,
  parseRuntime,
  resolveRuntime,
  serializeRuntime,
} from '../../src/instance/runtime.js';
import { FIXTURE_PATHS, recordedFeatures } from './fixtures.js';
import { baseSpec } from './specs.js';

const features = recordedFeatures('7.2');
const runtimeOf = (hvparams: Record<string, unknown> = {}, overrides = {}): InstanceRuntime =>
  resolveRuntime(baseSpec({ hvparams: { kernel_path: '', ...hvparams }, ...overrides }), features);

const disk = {
  uuid: 'c1000000-0000-4000-8000-000000000001',
  path: '/srv/hot.qcow2',
  kind: 'file',
  format: 'qcow2',
} as const;
const nic = {
  uuid: 'd1000000-0000-4000-8000-000000000001',
  mac: 'AA:00:00:00:02:01',
  network: { type: 'user' },
} as const;
const allCommands = {
  commands: new Set(Object.values(HOTPLUG_COMMANDS).flatMap((a) => Object.values(a).flat())),
};

/** `key=value` pairs of one QEMU option string (no escaped commas in these tests). */
function keyval(text: string): Record<string, string> {
  return Object.fromEntries(text.split(',').map((kv) => kv.split('=') as [string, string]));
}
/** A QMP argument object flattened the way `-blockdev` spells it (`cache.direct=on`). */
function flat(o: Record<string, unknown>, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v !== null && typeof v === 'object')
      Object.assign(out, flat(v as Record<string, unknown>, `${prefix}${k}.`));
    else out[`${prefix}${k}`] = typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v);
  }
  return out;
}
function argvOption(argv: string[], option: string, id: string): string {
  for (let i = 0; i < argv.length - 1; i++) {
    if (
      argv[i] === option &&
      argv[i + 1]!.split(',').some((kv) => kv === `id=${id}` || kv === `node-name=${id}`)
    ) {
      return argv[i + 1]!;
    }
  }
  throw new Error(`no ${option} with id ${id} in ${argv.join(' ')}`);
}

describe('slot allocation from the runtime', () => {
  it("takes the first free PCI slot after Ganeti's reservations, and a released slot again", () => {
    const rt = runtimeOf();
    // disk 0xc and NIC 0xd at start.
    expect(allocateBus(rt, 'virtio-blk-pci')).toEqual({ type: 'pci', slot: 0xe });
    const d = hotplugDisk(rt, disk, allocateBus(rt, 'virtio-blk-pci')!);
    const rt2 = withDevice(rt, 'disk', d);
    expect(allocateBus(rt2, 'virtio-net-pci')).toEqual({ type: 'pci', slot: 0xf });
    const rt3 = withoutDevice(rt2, 'disk', rt.disks[0]!.id);
    expect(allocateBus(rt3, 'e1000')).toEqual({ type: 'pci', slot: 0xc });
    expect(allocateBus(runtimeOf({ kvm_pci_reservations: 20 }), 'e1000')).toEqual({ type: 'pci', slot: 22 });
  });

  it('is full at slot 31, skips 0x1f on q35, and gives SCSI targets from 0', () => {
    expect(allocateBus(runtimeOf({ kvm_pci_reservations: 30 }), 'e1000')).toBeUndefined();
    const q35 = runtimeOf({ machine_version: 'q35', kvm_pci_reservations: 29 });
    // 29 and 30 are the disk's and the NIC's; 31 (0x1f) is q35's.
    expect(allocateBus(q35, 'e1000')).toBeUndefined();
    const scsi = runtimeOf({ disk_type: 'scsi-hd' });
    expect(scsi.disks[0]!.bus).toEqual({ type: 'scsi', target: 0 });
    expect(allocateBus(scsi, 'scsi-hd')).toEqual({ type: 'scsi', target: 1 });
    expect(allocateBus(scsi, 'virtio-net-pci')).toEqual({ type: 'pci', slot: 0xd });
  });
});

describe("refusals (Ganeti's rules and the device model's)", () => {
  it('accepts paravirtual disks and NICs on i440FX with acpi', () => {
    const rt = runtimeOf();
    expect(hotplugRefusals(rt, 'add', 'disk', { facts: allCommands })).toEqual([]);
    expect(hotplugRefusals(rt, 'add', 'nic', { facts: allCommands })).toEqual([]);
    expect(hotplugRefusals(rt, 'remove', 'nic', { device: rt.nics[0]!, facts: allCommands })).toEqual([]);
    expect(hotplugRefusals(rt, 'modify', 'nic', { device: rt.nics[0]!, facts: allCommands })).toEqual([]);
  });

  it('refuses IDE disks, ne2k_isa NICs, disk modify, q35, acpi off, chroot, missing commands, SCSI without a controller', () => {
    expect(hotplugRefusals(runtimeOf({ disk_type: 'ide' }), 'add', 'disk')).toEqual([
      "disk_type 'ide' cannot be hot-plugged (hot-pluggable: paravirtual, scsi-block, scsi-generic, scsi-hd, scsi-cd)",
    ]);
    expect(hotplugRefusals(runtimeOf(), 'add', 'nic', { model: 'ne2k_isa' })[0]).toMatch(
      /nic_type 'ne2k_isa' cannot be hot-plugged/,
    );
    expect(hotplugRefusals(runtimeOf(), 'modify', 'disk')).toEqual([
      'disks cannot be modified while the instance runs (Ganeti hot-modifies NICs only): remove and add it',
    ]);
    const q35 = runtimeOf({ machine_version: 'q35' });
    expect(hotplugRefusals(q35, 'add', 'nic').join()).toMatch(
      /'pc-q35-7\.2' is a Q35 PC: its root bus pcie\.0/,
    );
    expect(hotplugRefusals(q35, 'remove', 'disk', { device: q35.disks[0]! }).join()).toMatch(/pcie\.0/);
    expect(hotplugRefusals(runtimeOf({ acpi: false }), 'add', 'disk').join()).toMatch(/acpi is off/);
    expect(hotplugRefusals(runtimeOf({ use_chroot: true }), 'add', 'disk').join()).toMatch(/chrooted/);
    expect(
      hotplugRefusals(runtimeOf({ use_chroot: true }), 'remove', 'disk', { device: runtimeOf().disks[0]! }),
    ).toEqual([]);
    expect(
      hotplugRefusals(runtimeOf(), 'add', 'nic', {
        facts: { commands: new Set(['device_add', 'device_del']) },
      }),
    ).toEqual(['this QEMU lacks the QMP command(s) netdev_add, netdev_del']);
    const noScsi = runtimeOf({ disk_type: 'scsi-hd' }, { disks: [] });
    expect(noScsi.scsiController).toBeUndefined();
    expect(hotplugRefusals(noScsi, 'add', 'disk').join()).toMatch(/no SCSI controller/);
    // SCSI disks on q35 sit on the controller's bus, which is hot-pluggable.
    expect(
      hotplugRefusals(runtimeOf({ disk_type: 'scsi-hd', machine_version: 'q35' }), 'add', 'disk'),
    ).toEqual([]);
  });

  it('HotplugError names the instance, the action, the device and every reason', () => {
    const e = new HotplugError({ instance: 'web1', action: 'remove', target: 'nic', device: 'nic-1' }, [
      'a',
      'b',
    ]);
    expect(e.message).toBe("instance 'web1': cannot hot-remove nic nic-1: a; b");
    expect(e.reasons).toEqual(['a', 'b']);
  });
});

describe('the new device', () => {
  it('is checked against the instance: UUID, path and MAC unique, values well-formed', () => {
    const rt = runtimeOf();
    expect(newDeviceProblems(rt, 'disk', disk)).toEqual([]);
    expect(
      newDeviceProblems(rt, 'disk', { ...disk, path: (rt.disks[0] as { path: string }).path }).join(),
    ).toMatch(/'\/srv\/web1\.img' is also the path of disks\[0\]/);
    expect(newDeviceProblems(rt, 'disk', { ...disk, uuid: rt.disks[0]!.uuid }).join()).toMatch(
      /already used by/,
    );
    expect(newDeviceProblems(rt, 'disk', { ...disk, path: 'relative.img' })).toEqual([
      "disk.path: 'relative.img' is not a normalized absolute path",
    ]);
    expect(newDeviceProblems(rt, 'nic', { ...nic, mac: rt.nics[0]!.mac }).join()).toMatch(
      /is also the MAC of nics\[0\]/,
    );
    expect(newDeviceProblems(rt, 'nic', { ...nic, mac: '01:00:00:00:00:01' })).toEqual([
      "nic.mac: '01:00:00:00:00:01' is not a unicast MAC address (multicast bit set, or all zeros)",
    ]);
    expect(newDeviceProblems(rt, 'nic', { ...nic, model: 'virtio' }).join()).toMatch(
      /unknown NIC model 'virtio'/,
    );
  });

  it("takes the runtime's hvparams (driver, cache, aio, discard; vhost and queues for tap NICs)", () => {
    const rt = runtimeOf({
      disk_cache: 'none',
      disk_aio: 'native',
      disk_discard: 'unmap',
      vhost_net: true,
      virtio_net_queues: 2,
    });
    const d = hotplugDisk(rt, disk, { type: 'pci', slot: 0xe });
    expect(d).toMatchObject({
      id: 'disk-c1000000-0000-4000',
      driver: 'virtio-blk-pci',
      format: 'qcow2',
      readOnly: false,
      cache: { writeCache: true, direct: true, noFlush: false },
      aio: 'native',
      discard: 'unmap',
    });
    expect(d.bootIndex).toBeUndefined();
    const tap = hotplugNic(
      rt,
      { ...nic, network: { type: 'tap', ifname: 'tap7' } },
      { type: 'pci', slot: 0xf },
    );
    expect(tap).toMatchObject({
      id: 'nic-d1000000-0000-4000',
      mac: 'aa:00:00:00:02:01',
      vhost: true,
      queues: 2,
    });
    expect(hotplugNic(rt, nic, { type: 'pci', slot: 0xf })).toMatchObject({ vhost: false, queues: 1 });
    expect(hotplugNic(rt, { ...nic, model: 'e1000' }, { type: 'pci', slot: 0xf }).driver).toBe('e1000');
  });

  it('is found by UUID, id or path; replaced in place; the runtime with it still parses', () => {
    const rt = runtimeOf();
    const d = hotplugDisk(rt, disk, allocateBus(rt, 'virtio-blk-pci')!);
    const rt2 = withDevice(rt, 'disk', d);
    expect(parseRuntime(serializeRuntime(rt2)).disks).toHaveLength(2);
    for (const ref of [disk.uuid, d.id, disk.path, disk.uuid.toUpperCase()])
      expect(findDevice(rt2, 'disk', ref)).toBe(d);
    expect(findDevice(rt2, 'nic', disk.uuid)).toBeUndefined();
    const n2 = { ...rt.nics[0]!, mac: 'aa:00:00:00:09:09' };
    expect(withNicReplaced(rt2, rt.nics[0]!.id, n2).nics).toEqual([n2]);
  });
});

describe('QMP commands describe the device the argv renders from the runtime', () => {
  for (const [label, hv] of [
    ['virtio, cache none', { disk_cache: 'none' }],
    [
      'scsi-hd, writethrough, unmap',
      { disk_type: 'scsi-hd', disk_cache: 'writethrough', disk_discard: 'unmap' },
    ],
  ] as const) {
    it(`disk: blockdev-add = -blockdev, device_add = -device (${label})`, () => {
      const rt = runtimeOf(hv);
      const d = hotplugDisk(rt, { ...disk, access: 'ro' }, allocateBus(rt, rt.disks[0]!.driver)!);
      const rt2 = withDevice(rt, 'disk', d);
      const argv = renderArgv(rt2, features, { paths: FIXTURE_PATHS('web1'), accel: 'tcg' });
      const [blockdev, device] = diskAddCommands(rt2, d, true);
      expect(blockdev.execute).toBe('blockdev-add');
      expect(flat(blockdev.arguments)).toEqual(keyval(argvOption(argv, '-blockdev', d.id)));
      const rendered = keyval(`driver=${argvOption(argv, '-device', d.id)}`);
      expect(flat(device.arguments)).toEqual(rendered);
    });
  }

  it('userspace disk (rbd with monitors, gluster): blockdev-add = -blockdev', () => {
    const rt = runtimeOf();
    for (const [uuid, uri] of [
      [
        'c2000000-0000-4000-8000-000000000001',
        'rbd:ganeti/web1.disk1:id=ganeti:mon_host=10.0.0.1\\:3300;10.0.0.2',
      ],
      ['c3000000-0000-4000-8000-000000000001', 'gluster+unix:///gv0/web1.disk2?socket=/run/glusterd.sock'],
    ] as const) {
      const d = hotplugDisk(rt, { uuid, kind: 'userspace', uri }, allocateBus(rt, rt.disks[0]!.driver)!);
      const rt2 = withDevice(rt, 'disk', d);
      const argv = renderArgv(rt2, features, { paths: FIXTURE_PATHS('web1'), accel: 'tcg' });
      const [blockdev] = diskAddCommands(rt2, d, true);
      expect(flat(blockdev.arguments)).toEqual(keyval(argvOption(argv, '-blockdev', d.id)));
      expect(JSON.stringify(blockdev.arguments)).not.toContain('aio');
    }
  });

  it('nic: netdev_add = -netdev, device_add = -device (user and tap with queues)', () => {
    const rt = runtimeOf({ virtio_net_queues: 4, vhost_net: true });
    for (const network of [{ type: 'user' }, { type: 'tap', ifname: 'tap9' }] as const) {
      const n = hotplugNic(rt, { ...nic, network }, allocateBus(rt, 'virtio-net-pci')!);
      const rt2 = withDevice(rt, 'nic', n);
      const argv = renderArgv(rt2, features, { paths: FIXTURE_PATHS('web1'), accel: 'tcg' });
      const [netdev, device] = nicAddCommands(rt2, n);
      expect(flat(netdev.arguments)).toEqual(keyval(`type=${argvOption(argv, '-netdev', n.id)}`));
      expect(flat(device.arguments)).toEqual(keyval(`driver=${argvOption(argv, '-device', n.id)}`));
    }
  });

  it('removal: blockdev-del by node name, netdev_del by id', () => {
    expect(backendRemoveCommand('disk', 'disk-1')).toEqual({
      execute: 'blockdev-del',
      arguments: { 'node-name': 'disk-1' },
    });
    expect(backendRemoveCommand('nic', 'nic-1')).toEqual({
      execute: 'netdev_del',
      arguments: { id: 'nic-1' },
    });
  });
});

describe('reply parsers', () => {
  it('read query-commands, qom-list and device-list-properties; anything else quotes the reply', () => {
    expect(parseQueryCommands([{ name: 'device_add' }, { name: 'netdev_add' }])).toEqual(
      new Set(['device_add', 'netdev_add']),
    );
    expect(
      parsePeripheralIds([
        { name: 'type', type: 'string' },
        { name: 'disk-1', type: 'child<virtio-blk-pci>' },
      ]),
    ).toEqual(new Set(['disk-1']));
    expect(
      parseDeviceProperties([
        { name: 'drive', type: 'str' },
        { name: 'write-cache', type: 'OnOffAuto' },
      ]),
    ).toEqual(['drive', 'write-cache']);
    expect(() => parseQueryCommands({ return: [] })).toThrow(UnrecognizedOutputError);
    expect(() => parseQueryCommands([{ nom: 'x' }])).toThrow(
      /unrecognised reply of 'query-commands': "\[\{\\"nom\\":\\"x\\"\}\]"/,
    );
    expect(() => parsePeripheralIds([{ name: 'x' }])).toThrow(UnrecognizedOutputError);
    expect(() => parseDeviceProperties('nope')).toThrow(/device-list-properties/);
  });
});
