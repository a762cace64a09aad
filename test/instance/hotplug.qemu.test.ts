/**
 * Device hotplug against real QEMU, on every release of the suite and every accelerator
 * this machine offers: disks (raw and qcow2 images made here by qemu-img) and user-mode
 * NICs are hot-added to a running instance and appear in QEMU's `query-pci` and
 * `query-block` at the slot the runtime gives them; hot-removed, they disappear and the
 * slot is handed out again; a migration after a hotplug carries them (the destination's
 * QEMU, started from the runtime, has them at the same slots, and can remove them).
 *
 * PCI unplug on i440FX is ACPI's: QEMU removes the device only when the guest writes the
 * slot to PIIX4's eject register. The guest here does what a guest OS's `_EJ0` does: it
 * selects bus 0 (port 0xae10), polls the "down" register (0xae04) and writes what it
 * reads to the eject register (0xae08). Every QEMU is killed by pid in afterEach.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { QmpError } from '../../src/errors.js';
import { HotplugError } from '../../src/instance/hotplug-model.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { processAlive } from '../../src/instance/process.js';
import { parseRuntime } from '../../src/instance/runtime.js';
import type { InstanceSpec } from '../../src/instance/spec.js';
import { readInstanceState } from '../../src/instance/state.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort } from '../../src/testing/qemu-vm.js';
import { accelerators, describeEachRelease, type ReleaseCase, releaseCases } from '../support/real-qemu.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-hotplug-'));

/**
 * The eject-acknowledging guest: Multiboot header (a.out kludge, loaded at 1 MiB), then
 * the mark {@link READY} at 0x100100 (it runs: SeaBIOS is done), `out 0xae10, 0` (bus select:
 * the root bus), then a loop: a short delay, `in eax, 0xae04`
 * (slots the host wants unplugged), if any `out 0xae08, eax` (eject them).
 */
const ejectGuest = join(dir, 'eject.img');
/** What the eject guest writes at 0x100100 once it runs ('EJCT'). */
const READY = 0x54434a45;
{
  const img = Buffer.alloc(128);
  const [magic, flags] = [0x1badb002, 0x00010000];
  const header = [magic, flags, -(magic + flags) >>> 0, 0x100000, 0x100000, 0, 0, 0x100020];
  for (const [i, v] of header.entries()) img.writeUInt32LE(v >>> 0, i * 4);
  const code = Buffer.from([
    ...[0xc7, 0x05, 0x00, 0x01, 0x10, 0x00, 0x45, 0x4a, 0x43, 0x54], // mov dword [0x100100], 'EJCT'
    ...[0x66, 0xba, 0x10, 0xae], // mov dx, 0xae10
    ...[0x31, 0xc0], // xor eax, eax
    0xef, // out dx, eax
    ...[0xb9, 0x00, 0x00, 0x10, 0x00], // L: mov ecx, 0x100000
    ...[0xe2, 0xfe], // loop $
    ...[0x66, 0xba, 0x04, 0xae], // mov dx, 0xae04
    0xed, // in eax, dx
    ...[0x85, 0xc0], // test eax, eax
    ...[0x74, 0xf0], // jz L
    ...[0x66, 0xba, 0x08, 0xae], // mov dx, 0xae08
    0xef, // out dx, eax
    ...[0xeb, 0xe9], // jmp L
  ]);
  if (code.length > img.length - 32) throw new Error('the eject guest does not fit its image');
  code.copy(img, 32);
  writeFileSync(ejectGuest, img);
}
/** A guest that never acknowledges an unplug (it only dirties memory). */
const deafGuest = join(dir, 'deaf.img');
writeGuestImage(deafGuest, { dirtyMiB: 1, rateMiBps: 1 });

const started: { hv: KVMHypervisor; root: string }[] = [];
afterEach(async () => {
  for (const { hv, root } of started.splice(0)) {
    for (const name of hv.listInstances()) {
      const st = readInstanceState(instancePaths(runLayout(root), name));
      if (st && processAlive(st)) process.kill(st.pid, 'SIGKILL');
    }
    await hv.close();
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const absolute = (binary: string): string =>
  binary.startsWith('/')
    ? binary
    : execFileSync('sh', ['-c', 'command -v "$1"', 'sh', binary], { encoding: 'utf8' }).trim();

let seq = 0;
function node(label: string, accel: ReleaseCase['accel']): { hv: KVMHypervisor; root: string } {
  const root = join(dir, `${label}-${++seq}`);
  const n = { hv: new KVMHypervisor({ instanceDir: root, accel }), root };
  started.push(n);
  return n;
}

function qemuImg(format: 'raw' | 'qcow2', name: string): string {
  const path = join(dir, `${name}.${format}`);
  execFileSync('qemu-img', ['create', '-q', '-f', format, path, '8M']);
  return path;
}

const id12 = (n: number) => String(n).padStart(12, '0');

interface PciDevice {
  slot: number;
  qdev_id: string;
}
/** `query-pci`'s devices on bus 0. */
async function pciDevices(hv: KVMHypervisor, name: string): Promise<PciDevice[]> {
  const reply = (await (await hv.monitorFor(name)).execute('query-pci')) as Array<{ devices: PciDevice[] }>;
  return reply[0]!.devices;
}
/** `query-block`: the block backends with the device (qdev path) they are attached to and their file. */
async function blockDevices(hv: KVMHypervisor, name: string): Promise<{ qdev: string; file: string }[]> {
  const reply = (await (await hv.monitorFor(name)).execute('query-block')) as Array<{
    qdev?: string;
    inserted?: { file: string };
  }>;
  return reply.filter((b) => b.inserted).map((b) => ({ qdev: b.qdev ?? '', file: b.inserted!.file }));
}
/** Waits until the eject guest runs (under nested KVM SeaBIOS alone takes seconds). */
async function guestReady(hv: KVMHypervisor, name: string): Promise<void> {
  const m = await hv.monitorFor(name);
  for (let i = 0; ; i++) {
    const text = await m.humanCommand('xp /1wx 0x100100');
    const word = /:\s*0x([0-9a-f]+)/i.exec(text);
    if (!word) throw new Error(`unrecognised xp output ${JSON.stringify(text)}`);
    if (Number.parseInt(word[1]!, 16) === READY) return;
    if (i > 1200) throw new Error(`guest of ${name} did not start within 120 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const slotOf = (devs: PciDevice[], id: string) => devs.find((d) => d.qdev_id === id)?.slot;
const hasBlock = (blocks: { qdev: string; file: string }[], id: string, file: string) =>
  blocks.some((b) => b.qdev.split('/').includes(id) && b.file.endsWith(file));

describeEachRelease('device hotplug', releaseCases(accelerators()), (rel: ReleaseCase) => {
  const spec = (name: string, n: number, hvparams: Record<string, unknown> = {}): InstanceSpec => ({
    name,
    uuid: `0c6f1c2e-7d4a-4c1b-9e3f-${id12(n)}`,
    memory: { maxMiB: 64 },
    vcpus: 1,
    disks: [
      {
        uuid: `a1000000-0000-4000-8000-${id12(n)}`,
        path: qemuImg('raw', `${name}-0`),
        kind: 'file',
        format: 'raw',
      },
    ],
    nics: [
      {
        uuid: `b1000000-0000-4000-8000-${id12(n)}`,
        mac: `aa:00:00:00:01:${String(n % 100).padStart(2, '0')}`,
        network: { type: 'user' },
      },
    ],
    hvparams: { kvm_path: absolute(rel.binary), kernel_path: ejectGuest, serial_console: false, ...hvparams },
  });
  const newDisk = (name: string, n: number, format: 'raw' | 'qcow2' = 'qcow2') => ({
    uuid: `c1000000-0000-4000-8000-${id12(n)}`,
    path: qemuImg(format, `${name}-hot${n}`),
    kind: 'file' as const,
    format,
  });
  const newNic = (n: number) => ({
    uuid: `d1000000-0000-4000-8000-${id12(n)}`,
    mac: `aa:00:00:00:02:${String(n % 100).padStart(2, '0')}`,
    network: { type: 'user' as const },
  });

  it('hot-adds a disk and a NIC (query-pci, query-block show them at the runtime slots), removes them, and reuses the slot', async () => {
    const { hv, root } = node('hp', rel.accel);
    await hv.startInstance(spec('hp1', 1));
    await guestReady(hv, 'hp1');
    const paths = instancePaths(runLayout(root), 'hp1');
    const disk = newDisk('hp1', 1);
    const d = await hv.hotAddDevice('hp1', 'disk', disk);
    expect(d.id).toBe('disk-c1000000-0000-4000');
    // Disk 0xc and NIC 0xd were taken at start: the first free slot is 0xe.
    expect(d.bus).toEqual({ type: 'pci', slot: 0xe });
    expect(slotOf(await pciDevices(hv, 'hp1'), d.id)).toBe(0xe);
    expect(hasBlock(await blockDevices(hv, 'hp1'), d.id, disk.path)).toBe(true);
    const n = await hv.hotAddDevice('hp1', 'nic', newNic(1));
    expect(n.bus).toEqual({ type: 'pci', slot: 0xf });
    expect(slotOf(await pciDevices(hv, 'hp1'), n.id)).toBe(0xf);
    let runtime = parseRuntime(readFileSync(paths.runtime, 'utf8'));
    expect(runtime.disks.map((x) => x.id)).toEqual(['disk-a1000000-0000-4000', d.id]);
    expect(runtime.nics.map((x) => [x.id, x.mac, x.bus])).toEqual([
      ['nic-b1000000-0000-4000', 'aa:00:00:00:01:01', { type: 'pci', slot: 0xd }],
      [n.id, 'aa:00:00:00:02:01', { type: 'pci', slot: 0xf }],
    ]);

    // The same disk twice, or its path under another UUID: refused before QEMU is asked.
    await expect(hv.hotAddDevice('hp1', 'disk', disk)).rejects.toThrow(/already used by|also the path/);

    // Removal by path: the guest ejects it, QEMU deletes it, the runtime lets the slot go.
    await hv.hotDelDevice('hp1', 'disk', disk.path);
    expect(slotOf(await pciDevices(hv, 'hp1'), d.id)).toBeUndefined();
    expect(hasBlock(await blockDevices(hv, 'hp1'), d.id, disk.path)).toBe(false);
    runtime = parseRuntime(readFileSync(paths.runtime, 'utf8'));
    expect(runtime.disks.map((x) => x.id)).toEqual(['disk-a1000000-0000-4000']);
    const again = await hv.hotAddDevice('hp1', 'disk', newDisk('hp1', 2, 'raw'));
    expect(again.bus).toEqual({ type: 'pci', slot: 0xe });
    expect(slotOf(await pciDevices(hv, 'hp1'), again.id)).toBe(0xe);

    // A guest that cannot answer (its vCPUs stopped): the removal times out and changes
    // nothing in the runtime; once the guest ejected it, a second call finishes.
    const m0 = await hv.monitorFor('hp1');
    await m0.execute('stop');
    const late = await hv
      .hotDelDevice('hp1', 'disk', again.id, { unplugTimeoutMs: 200 })
      .catch((e: unknown) => e);
    expect(late).toBeInstanceOf(HotplugError);
    expect((late as HotplugError).message).toMatch(/did not release the device within 0.2 s/);
    expect(parseRuntime(readFileSync(paths.runtime, 'utf8')).disks.map((x) => x.id)).toContain(again.id);
    await m0.execute('cont');
    for (let i = 0; slotOf(await pciDevices(hv, 'hp1'), again.id) !== undefined; i++) {
      if (i > 600) throw new Error('the guest did not eject the disk within 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    // QEMU let the device go; its back end is still there until the second call.
    const nodes = async () =>
      ((await m0.execute('query-named-block-nodes')) as Array<{ 'node-name': string }>).map(
        (b) => b['node-name'],
      );
    expect(await nodes()).toContain(again.id);
    await hv.hotDelDevice('hp1', 'disk', again.id);
    expect(await nodes()).not.toContain(again.id);
    expect(parseRuntime(readFileSync(paths.runtime, 'utf8')).disks.map((x) => x.id)).not.toContain(again.id);

    // Modify: the NIC is re-plugged at its slot with the new MAC.
    const m = await hv.hotModDevice('hp1', 'nic', n.uuid, { mac: 'aa:00:00:00:03:01' });
    expect(m.bus).toEqual({ type: 'pci', slot: 0xf });
    const mac = await (await hv.monitorFor('hp1')).execute('qom-get', {
      path: `/machine/peripheral/${n.id}`,
      property: 'mac',
    });
    expect(mac).toBe('aa:00:00:00:03:01');
    expect(slotOf(await pciDevices(hv, 'hp1'), n.id)).toBe(0xf);
    await hv.hotDelDevice('hp1', 'nic', n.id);
    expect(slotOf(await pciDevices(hv, 'hp1'), n.id)).toBeUndefined();
    expect(parseRuntime(readFileSync(paths.runtime, 'utf8')).nics).toHaveLength(1);
    await hv.stopInstance('hp1', { force: true });
  });

  it.runIf(process.getuid?.() === 0 && existsSync('/dev/net/tun'))(
    'a tap NIC: hot-added on a tap QEMU opens by name, modified to the user network and back, removed',
    async () => {
      // Unique per test process: other workers may create taps too. Down, on no bridge.
      const tap = `kvh${process.pid % 100000}${rel.release.replace('.', '')}${rel.accel[0]}`.slice(0, 15);
      execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr']);
      try {
        const { hv } = node('tap', rel.accel);
        await hv.startInstance(spec('hpt', 8, { vhost_net: false }));
        await guestReady(hv, 'hpt');
        const net = async () => (await hv.monitorFor('hpt')).humanCommand('info network');
        const n = await hv.hotAddDevice('hpt', 'nic', {
          ...newNic(8),
          network: { type: 'tap', ifname: tap },
        });
        expect(n).toMatchObject({ driver: 'virtio-net-pci', bus: { type: 'pci', slot: 0xe }, vnetHdr: true });
        expect(slotOf(await pciDevices(hv, 'hpt'), n.id)).toBe(0xe);
        expect(await net()).toMatch(new RegExp(`${n.id}: .*type=tap,ifname=${tap}`));
        await hv.hotModDevice('hpt', 'nic', n.id, { network: { type: 'user' } });
        expect(await net()).not.toMatch(new RegExp(`ifname=${tap}`));
        expect(await net()).toMatch(new RegExp(`${n.id}: .*type=user`));
        expect(slotOf(await pciDevices(hv, 'hpt'), n.id)).toBe(0xe);
        await hv.hotModDevice('hpt', 'nic', n.uuid, { network: { type: 'tap', ifname: tap } });
        expect(await net()).toMatch(new RegExp(`${n.id}: .*ifname=${tap}`));
        await hv.hotDelDevice('hpt', 'nic', n.uuid);
        expect(await net()).not.toMatch(new RegExp(n.id));
        await hv.stopInstance('hpt', { force: true });
      } finally {
        execFileSync('ip', ['tuntap', 'del', 'dev', tap, 'mode', 'tap']);
      }
    },
  );

  it('a migration after a hotplug carries the new devices; the destination can remove them', async () => {
    const src = node('src', rel.accel);
    const dst = node('dst', rel.accel);
    const port = await freePort();
    const s = spec('hpm', 2, { migration_port: port });
    await src.hv.startInstance(s);
    await guestReady(src.hv, 'hpm');
    const d = await src.hv.hotAddDevice('hpm', 'disk', newDisk('hpm', 3));
    const n = await src.hv.hotAddDevice('hpm', 'nic', newNic(3));
    const inst = { name: 'hpm', hvparams: s.hvparams };
    const info = src.hv.getMigrationInfo('hpm');
    expect(parseRuntime(info).disks.map((x) => x.id)).toContain(d.id);
    await dst.hv.acceptInstance(inst, info, '127.0.0.1');
    // Devices may not change while the migration holds the VM.
    await expect(dst.hv.hotDelDevice('hpm', 'disk', d.id)).rejects.toThrow(HotplugError);
    await src.hv.migrateInstance(inst, '127.0.0.1');
    await expect(src.hv.hotAddDevice('hpm', 'nic', newNic(4))).rejects.toThrow(/migrat/);
    await src.hv.waitForMigration(inst, { timeoutMs: 120_000 });
    await dst.hv.finalizeMigrationDst(inst, true);
    await src.hv.finalizeMigrationSource(inst, true);

    const pci = await pciDevices(dst.hv, 'hpm');
    expect(slotOf(pci, d.id)).toBe(0xe);
    expect(slotOf(pci, n.id)).toBe(0xf);
    expect(hasBlock(await blockDevices(dst.hv, 'hpm'), d.id, `hpm-hot3.qcow2`)).toBe(true);
    expect((await dst.hv.getInstanceInfo('hpm')).state).toBe('running');
    // The destination's runtime is the source's, hot-added devices included: it removes them.
    await dst.hv.hotDelDevice('hpm', 'disk', d.uuid);
    await dst.hv.hotDelDevice('hpm', 'nic', n.uuid);
    const after = await pciDevices(dst.hv, 'hpm');
    expect(slotOf(after, d.id)).toBeUndefined();
    expect(slotOf(after, n.id)).toBeUndefined();
    await dst.hv.stopInstance('hpm', { force: true });
  });

  it('SCSI disks go to the next SCSI target and leave at once; a guest that never ejects keeps a PCI NIC', async () => {
    const { hv, root } = node('scsi', rel.accel);
    await hv.startInstance(spec('hps', 5, { disk_type: 'scsi-hd', kernel_path: deafGuest }));
    const disk = newDisk('hps', 5);
    const d = await hv.hotAddDevice('hps', 'disk', disk);
    expect(d.bus).toEqual({ type: 'scsi', target: 1 });
    expect(d.driver).toBe('scsi-hd');
    expect(hasBlock(await blockDevices(hv, 'hps'), d.id, disk.path)).toBe(true);
    await hv.hotDelDevice('hps', 'disk', d.id);
    expect(hasBlock(await blockDevices(hv, 'hps'), d.id, disk.path)).toBe(false);

    // The NIC took 0xc at start (the SCSI disk holds no PCI slot): the hot-added one gets 0xd.
    const n = await hv.hotAddDevice('hps', 'nic', newNic(5));
    expect(n.bus).toEqual({ type: 'pci', slot: 0xd });
    const err = await hv.hotDelDevice('hps', 'nic', n.id, { unplugTimeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HotplugError);
    expect((err as HotplugError).message).toMatch(/did not release the device/);
    expect(slotOf(await pciDevices(hv, 'hps'), n.id)).toBe(0xd);
    const paths = instancePaths(runLayout(root), 'hps');
    expect(parseRuntime(readFileSync(paths.runtime, 'utf8')).nics.map((x) => x.id)).toContain(n.id);
    expect(existsSync(`${paths.state.slice(0, -'.state'.length)}.hotplug.lock`)).toBe(false);
    await hv.stopInstance('hps', { force: true });
  });

  it("refuses what QEMU's device model cannot: PCI hotplug on Q35 and with acpi off (QEMU itself refuses too); SCSI on Q35 works", async () => {
    const { hv } = node('no', rel.accel);
    // Paused: QEMU 5.2 under TCG answers no device_add while a guest runs (see pausedIfNeeded).
    await hv.startInstance(spec('hpq', 6, { machine_version: 'q35' }), { paused: true });
    await expect(hv.verifyHotplugSupport('hpq', 'add', 'disk')).rejects.toThrow(
      /pcie\.0 is not hot-pluggable/,
    );
    await expect(hv.hotAddDevice('hpq', 'nic', newNic(6))).rejects.toThrow(HotplugError);
    // QEMU agrees: a device_add on pcie.0 is refused.
    const m = await hv.monitorFor('hpq');
    await m.execute('netdev_add', { type: 'user', id: 'probe0' });
    const q = await m
      .execute('device_add', { driver: 'e1000', id: 'probe0', bus: 'pcie.0', addr: '0x10', netdev: 'probe0' })
      .catch((e: unknown) => e);
    expect(q).toBeInstanceOf(QmpError);
    expect((q as QmpError).desc).toMatch(/hotplug/i);
    await hv.hotplugSupported('hpq');
    await hv.stopInstance('hpq', { force: true });

    // On Q35, SCSI disks sit on the controller's bus, which is hot-pluggable.
    await hv.startInstance(spec('hqs', 9, { machine_version: 'q35', disk_type: 'scsi-hd' }), {
      paused: true,
    });
    const sd = newDisk('hqs', 9);
    const added = await hv.hotAddDevice('hqs', 'disk', sd);
    expect(added.bus).toEqual({ type: 'scsi', target: 1 });
    expect(hasBlock(await blockDevices(hv, 'hqs'), added.id, sd.path)).toBe(true);
    await hv.hotDelDevice('hqs', 'disk', added.id);
    expect(hasBlock(await blockDevices(hv, 'hqs'), added.id, sd.path)).toBe(false);
    await hv.stopInstance('hqs', { force: true });

    await hv.startInstance(spec('hpa', 7, { acpi: false }), { paused: true });
    await expect(hv.hotAddDevice('hpa', 'disk', newDisk('hpa', 7))).rejects.toThrow(/acpi is off/);
    const m2 = await hv.monitorFor('hpa');
    await m2.execute('netdev_add', { type: 'user', id: 'probe1' });
    const a = await m2
      .execute('device_add', { driver: 'e1000', id: 'probe1', bus: 'pci.0', addr: '0x10', netdev: 'probe1' })
      .catch((e: unknown) => e);
    expect(a).toBeInstanceOf(QmpError);
    expect((a as QmpError).desc).toMatch(/hotplug/i);
    await hv.stopInstance('hpa', { force: true });
  });
});
