/**
 * TAP feature checks: the pure rules on flags, and on this node (root, /dev/net/tun) real
 * taps made with `ip tuntap`: QEMU itself fails on a tap without the flag it is asked for,
 * startInstance refuses it first with an HvParamError naming the parameter, and a tap
 * with the flags starts. Every tap and QEMU made here is removed afterwards.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HvParamError, UnrecognizedOutputError } from '../../src/errors.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { processAlive } from '../../src/instance/process.js';
import type { RuntimeNic } from '../../src/instance/runtime-schema.js';
import { readInstanceState } from '../../src/instance/state.js';
import {
  IFF_MULTI_QUEUE,
  IFF_TAP,
  IFF_VNET_HDR,
  parseTunFlags,
  readTapFlags,
  tapProblems,
  tunDeviceUsable,
} from '../../src/instance/tap.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { findQemuBinary } from '../../src/testing/qemu-vm.js';

const nic = (over: Partial<RuntimeNic> = {}): RuntimeNic =>
  ({
    uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
    id: 'nic-003fc157-66a8-4e6d',
    mac: 'aa:00:00:12:34:56',
    driver: 'virtio-net-pci',
    bus: { type: 'pci', slot: 13 },
    network: { type: 'tap', ifname: 'tap0' },
    vhost: false,
    queues: 1,
    vnetHdr: true,
    ...over,
  }) as RuntimeNic;
const tapFlags = (flags: number) => () => ({ kind: 'tap' as const, flags });

describe('tap feature rules', () => {
  it('parseTunFlags reads sysfs hex and quotes anything else', () => {
    expect(parseTunFlags('0x5902\n')).toBe(0x5902);
    expect(() => parseTunFlags('5902')).toThrow(UnrecognizedOutputError);
  });
  it('queues > 1 need IFF_MULTI_QUEUE; a multi-queue tap needs queues > 1; vnet_hdr is granted per open', () => {
    const plain = IFF_TAP | 0x1000;
    expect(tapProblems([nic()], tapFlags(plain), true)).toEqual([]);
    expect(tapProblems([nic({ vnetHdr: false })], tapFlags(plain), true)).toEqual([]);
    expect(tapProblems([nic({ queues: 4 })], tapFlags(plain | IFF_VNET_HDR), true)[0]).toMatchObject({
      param: 'virtio_net_queues',
      message: expect.stringContaining(
        "virtio_net_queues is 4 but tap 'tap0' was created without IFF_MULTI_QUEUE",
      ),
    });
    expect(tapProblems([nic({ queues: 4 })], tapFlags(plain | IFF_VNET_HDR | IFF_MULTI_QUEUE), true)).toEqual(
      [],
    );
    expect(tapProblems([nic()], tapFlags(plain | IFF_VNET_HDR | IFF_MULTI_QUEUE), true)[0]?.param).toBe(
      'virtio_net_queues',
    );
  });
  it('a missing tap needs /dev/net/tun; a non-TAP interface is refused; user NICs are not checked', () => {
    expect(tapProblems([nic()], () => ({ kind: 'missing' }), true)).toEqual([]);
    expect(tapProblems([nic()], () => ({ kind: 'missing' }), false)[0]?.message).toMatch(/\/dev\/net\/tun/);
    expect(tapProblems([nic()], () => ({ kind: 'not-tun' }), true)[0]?.message).toMatch(/not a TAP device/);
    expect(tapProblems([nic({ network: { type: 'user' } })], () => ({ kind: 'not-tun' }), false)).toEqual([]);
  });
  it('readTapFlags: lo is not a TUN device, a random name is missing', () => {
    expect(readTapFlags('lo')).toEqual({ kind: 'not-tun' });
    expect(readTapFlags('kvmhv-none0')).toEqual({ kind: 'missing' });
  });
});

const qemu = findQemuBinary();
const binary =
  qemu &&
  (qemu.startsWith('/')
    ? qemu
    : execFileSync('sh', ['-c', `command -v ${qemu}`], { encoding: 'utf8' }).trim());
const canTap =
  process.getuid?.() === 0 && tunDeviceUsable() && spawnSync('ip', ['tuntap', 'help']).error === undefined;
const taps: string[] = [];
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-tun-'));
const root = join(dir, 'run');
afterAll(() => {
  for (const name of ['tun1', 'tun2']) {
    const st = readInstanceState(instancePaths(runLayout(root), name));
    if (st && processAlive(st)) process.kill(st.pid, 'SIGKILL');
  }
  for (const t of taps) spawnSync('ip', ['link', 'del', t]);
  rmSync(dir, { recursive: true, force: true });
});

function makeTap(name: string, ...flags: string[]): void {
  spawnSync('ip', ['link', 'del', name]);
  execFileSync('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap', ...flags]);
  taps.push(name);
}

describe.skipIf(!canTap || !binary)('taps on this node (root, ip tuntap)', () => {
  const guest = join(dir, 'guest.img');
  writeGuestImage(guest, { dirtyMiB: 4, rateMiBps: 1 });
  const spec = (name: string, n: number, ifname: string, hvparams: Record<string, unknown>) => ({
    name,
    uuid: `7a9e0000-7d4a-4c1b-9e3f-${String(n).padStart(12, '0')}`,
    memory: { maxMiB: 64 },
    vcpus: 1,
    disks: [],
    nics: [
      {
        uuid: `7a9e0001-66a8-4e6d-8b7e-${String(n).padStart(12, '0')}`,
        mac: `aa:00:00:00:00:0${n}`,
        network: { type: 'tap' as const, ifname },
      },
    ],
    hvparams: { kvm_path: binary, kernel_path: guest, vhost_net: false, kvm_flag: 'disabled', ...hvparams },
  });

  it('QEMU itself fails across single- and multi-queue taps, and opens a plain tap with vnet_hdr=on', () => {
    makeTap('kvmhvt0');
    makeTap('kvmhvt2', 'multi_queue');
    const qemuOn = (netdev: string) =>
      spawnSync(
        binary!,
        ['-machine', 'none', '-display', 'none', '-monitor', 'none', '-serial', 'none', '-netdev', netdev],
        {
          encoding: 'utf8',
          timeout: 3000,
        },
      );
    for (const netdev of [
      'tap,id=n0,ifname=kvmhvt0,script=no,downscript=no,vnet_hdr=on,queues=2',
      'tap,id=n0,ifname=kvmhvt2,script=no,downscript=no,vnet_hdr=on',
    ]) {
      const r = qemuOn(netdev);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/could not configure \/dev\/net\/tun \(kvmhvt[02]\): Invalid argument/);
    }
    // A plain tap with vnet_hdr=on: QEMU runs until the timeout's SIGTERM, then exits 0.
    const ok = qemuOn('tap,id=n0,ifname=kvmhvt0,script=no,downscript=no,vnet_hdr=on');
    expect((ok.error as NodeJS.ErrnoException | undefined)?.code).toBe('ETIMEDOUT');
    expect(ok.stderr).not.toMatch(/could not configure/);
  });

  it('startInstance refuses queues=2 on a single-queue tap first, naming virtio_net_queues and the tap; nothing starts', async () => {
    const hv = new KVMHypervisor({ instanceDir: root, accel: 'tcg' });
    try {
      const err = await hv
        .startInstance(spec('tun1', 1, 'kvmhvt0', { virtio_net_queues: 2 }))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HvParamError);
      expect((err as HvParamError).problems).toEqual([
        expect.objectContaining({
          param: 'virtio_net_queues',
          message: expect.stringContaining("tap 'kvmhvt0'"),
        }),
      ]);
      expect(existsSync(instancePaths(runLayout(root), 'tun1').state)).toBe(false);
      expect(hv.listInstances()).toEqual([]);
      // vnet_hdr (default true) on that plain tap starts.
      expect((await hv.startInstance(spec('tun1', 1, 'kvmhvt0', {}))).state).toBe('running');
      expect((await hv.stopInstance('tun1', { force: true })).how).toBe('quit');
    } finally {
      await hv.close();
    }
  });

  it('a tap made with vnet_hdr multi_queue: virtio_net_queues=1 refused, 2 starts', async () => {
    makeTap('kvmhvt1', 'vnet_hdr', 'multi_queue');
    const hv = new KVMHypervisor({ instanceDir: root, accel: 'tcg' });
    try {
      const err = await hv.startInstance(spec('tun2', 2, 'kvmhvt1', {})).catch((e: unknown) => e);
      expect((err as HvParamError).problems?.[0]?.param).toBe('virtio_net_queues');
      const info = await hv.startInstance(spec('tun2', 2, 'kvmhvt1', { virtio_net_queues: 2 }));
      expect(info.state).toBe('running');
      expect((await hv.stopInstance('tun2', { force: true })).how).toBe('quit');
    } finally {
      await hv.close();
    }
  });
});
