/**
 * The hotplug steps that real QEMU rarely shows, on a stand-in process: a `sleep` holds
 * the pid and start time of the state file and a `MockMonitor` answers for QEMU. Covers
 * the rollback of a refused `device_add`, the refusal during a migration, the lock,
 * unreadable replies, and the vCPU stop around `device_add` on QEMU 5.2 under TCG.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { UnrecognizedOutputError } from '../../src/errors.js';
import { HotplugError } from '../../src/instance/hotplug-model.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { type SpawnedProcess, spawnDetached, terminateProcess } from '../../src/instance/process.js';
import { parseRuntime, resolveRuntime, serializeRuntime } from '../../src/instance/runtime.js';
import { ensureRunLayout, writeInstanceState } from '../../src/instance/state.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { MockMonitor } from '../../src/testing/index.js';
import { recordedFeatures } from './fixtures.js';
import { baseSpec } from './specs.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-hpmock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const procs: SpawnedProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await terminateProcess(p, { termMs: 2000 });
});

const UUID = '0b6f1c2e-7d4a-4c1b-9e3f-000000000043';
const COMMANDS = ['blockdev-add', 'blockdev-del', 'device_add', 'device_del', 'netdev_add', 'netdev_del'];
const disk = { uuid: 'c1000000-0000-4000-8000-000000000001', path: '/srv/hot.img', kind: 'file' } as const;
let seq = 0;

/** A node running `vm` (a `sleep`) answered for by `mock`, which tracks the devices added. */
async function fakeNode(mock: MockMonitor, { accel = 'tcg' as 'tcg' | 'kvm', incoming = false } = {}) {
  const root = join(dir, `n${++seq}`);
  const layout = runLayout(root);
  ensureRunLayout(layout);
  const paths = instancePaths(layout, 'vm');
  const proc = await spawnDetached(['sleep', '60'], paths.log);
  procs.push(proc);
  writeInstanceState(paths, {
    formatVersion: 1,
    name: 'vm',
    uuid: UUID,
    pid: proc.pid,
    startTime: proc.startTime,
    startedAt: Date.now(),
    qmp: paths.qmp,
    hmp: paths.hmp,
    accel,
    qemuVersion: '7.2.22',
    binary: '/usr/bin/qemu-system-x86_64',
    ...(incoming ? { incoming: 'defer' } : {}),
  });
  const runtime = resolveRuntime(baseSpec({ name: 'vm', uuid: UUID }), recordedFeatures('7.2'));
  writeFileSync(paths.runtime, serializeRuntime(runtime));
  const peripheral = new Set([...runtime.disks, ...runtime.nics].map((d) => d.id));
  mock.setReply('query-uuid', { UUID });
  mock.setReply(
    'query-commands',
    [...COMMANDS, 'query-migrate'].map((name) => ({ name })),
  );
  mock.setReply('query-migrate', {});
  mock.setReply('device-list-properties', [
    { name: 'drive', type: 'str' },
    { name: 'write-cache', type: 'OnOffAuto' },
  ]);
  mock.setReply('qom-list', () => [...peripheral].map((name) => ({ name, type: 'child<virtio-blk-pci>' })));
  mock.setReply('blockdev-add', {});
  mock.setReply('blockdev-del', {});
  mock.setReply('device_add', (cmd: { arguments?: Record<string, unknown> }) => {
    peripheral.add(String(cmd.arguments?.id));
    return {};
  });
  const hv = new KVMHypervisor({ instanceDir: root, monitor: () => mock });
  return { hv, paths, proc };
}

const hotplugCommands = (mock: MockMonitor) =>
  mock.sentCommands.filter((c) => !/^query-|^qom-list$|^device-list-properties$/.test(c));

describe('hotplug on a stand-in process', () => {
  it('a device_add QEMU refuses: the block node is removed again, the runtime is unchanged, QEMU is quoted', async () => {
    const mock = new MockMonitor({ runState: 'running' });
    const { hv, paths } = await fakeNode(mock);
    const before = readFileSync(paths.runtime, 'utf8');
    mock.failCommand('device_add', { class: 'GenericError', desc: 'PCI: slot 14 function 0 not available' });
    const err = await hv.hotAddDevice('vm', 'disk', disk).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HotplugError);
    expect((err as HotplugError).message).toBe(
      "instance 'vm': cannot hot-add disk disk-c1000000-0000-4000: QEMU refused device_add: PCI: slot 14 function 0 not available",
    );
    expect(hotplugCommands(mock)).toEqual(['blockdev-add', 'device_add', 'blockdev-del']);
    expect(readFileSync(paths.runtime, 'utf8')).toBe(before);
  });

  it('adds with the arguments of the runtime slot and saves the runtime; no stop on 7.2', async () => {
    const mock = new MockMonitor({ runState: 'running' });
    const { hv, paths } = await fakeNode(mock);
    const d = await hv.hotAddDevice('vm', 'disk', disk);
    expect(hotplugCommands(mock)).toEqual(['blockdev-add', 'device_add']);
    const sent = mock.sent.find((s) => typeof s !== 'string' && s.execute === 'device_add');
    expect(sent).toEqual({
      execute: 'device_add',
      arguments: {
        driver: 'virtio-blk-pci',
        id: 'disk-c1000000-0000-4000',
        bus: 'pci.0',
        addr: '0xe',
        drive: 'disk-c1000000-0000-4000',
        'write-cache': 'on',
      },
    });
    expect(parseRuntime(readFileSync(paths.runtime, 'utf8')).disks.at(-1)).toEqual(d);
  });

  it('QEMU 5.2 under TCG: the vCPUs are stopped around device_add and resumed; a paused VM stays paused', async () => {
    const mock = new MockMonitor({ runState: 'running', version: '5.2.0' });
    mock.setReply('stop', () => {
      mock.runState = 'paused';
      return {};
    });
    mock.setReply('cont', () => {
      mock.runState = 'running';
      return {};
    });
    const { hv } = await fakeNode(mock);
    await hv.hotAddDevice('vm', 'disk', disk);
    expect(hotplugCommands(mock)).toEqual(['blockdev-add', 'stop', 'device_add', 'cont']);
    expect(mock.runState).toBe('running');

    const paused = new MockMonitor({ runState: 'paused', version: '5.2.0' });
    const n2 = await fakeNode(paused);
    await n2.hv.hotAddDevice('vm', 'disk', disk);
    expect(hotplugCommands(paused)).toEqual(['blockdev-add', 'device_add']);

    const kvm = new MockMonitor({ runState: 'running', version: '5.2.0' });
    const n3 = await fakeNode(kvm, { accel: 'kvm' });
    await n3.hv.hotAddDevice('vm', 'disk', disk);
    expect(hotplugCommands(kvm)).toEqual(['blockdev-add', 'device_add']);
  });

  it('refused while a migration runs, on an unfinalized destination, and while another hotplug holds the lock', async () => {
    const mock = new MockMonitor({ runState: 'running' });
    const { hv, paths, proc } = await fakeNode(mock);
    mock.setReply('query-migrate', { status: 'active' });
    await expect(hv.hotAddDevice('vm', 'disk', disk)).rejects.toThrow(
      "instance 'vm': cannot hot-add disk: a migration is in progress (status 'active')",
    );
    mock.setReply('query-migrate', { status: 'completed' });
    mock.runState = 'postmigrate';
    await expect(hv.hotDelDevice('vm', 'nic', 'nic-003fc157-66a8-4e6d')).rejects.toThrow(
      /QEMU is in run state 'postmigrate'/,
    );
    mock.runState = 'running';
    // The lock of another live process (the stand-in's pid).
    const lock = `${paths.state.slice(0, -'.state'.length)}.hotplug.lock`;
    writeFileSync(lock, String(proc.pid));
    await expect(hv.hotAddDevice('vm', 'disk', disk)).rejects.toThrow(
      new RegExp(`another hotplug of this instance is in progress \\(process ${proc.pid}`),
    );
    // A lock left by a process that is gone is taken over.
    writeFileSync(lock, '999999999');
    await hv.hotAddDevice('vm', 'disk', disk);
    expect(hotplugCommands(mock)).toEqual(['blockdev-add', 'device_add']);

    const incoming = new MockMonitor({ runState: 'inmigrate' });
    const n2 = await fakeNode(incoming, { incoming: true });
    await expect(
      n2.hv.hotAddDevice('vm', 'nic', {
        ...disk,
        mac: 'aa:00:00:00:00:09',
        network: { type: 'user' },
      } as never),
    ).rejects.toThrow(/migration destination not yet finalized/);
    expect(hotplugCommands(incoming)).toEqual([]);
  });

  it('an unreadable reply is an error quoting it; a device QEMU accepted stays in the runtime, one it lacks does not', async () => {
    const mock = new MockMonitor({ runState: 'running' });
    const { hv, paths } = await fakeNode(mock);
    const ids = () => parseRuntime(readFileSync(paths.runtime, 'utf8')).disks.map((d) => d.id);
    mock.setReply('qom-list', { oops: 1 });
    const err = await hv.hotAddDevice('vm', 'disk', disk).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecognizedOutputError);
    expect((err as Error).message).toBe(`unrecognised reply of 'qom-list': "{\\"oops\\":1}"`);
    expect(ids()).toContain('disk-c1000000-0000-4000');
    // QEMU answers device_add but then has no such device: the runtime is put back.
    const other = new MockMonitor({ runState: 'running' });
    const n2 = await fakeNode(other);
    other.setReply('qom-list', []);
    await expect(n2.hv.hotAddDevice('vm', 'disk', disk)).rejects.toThrow(
      /QEMU accepted device_add but has no device 'disk-c1000000-0000-4000' under \/machine\/peripheral/,
    );
    expect(parseRuntime(readFileSync(n2.paths.runtime, 'utf8')).disks.map((d) => d.id)).toEqual([
      'disk-932df160-7a22-4067',
    ]);
    mock.setReply('query-commands', 'nope');
    await expect(hv.verifyHotplugSupport('vm', 'add', 'disk')).rejects.toThrow(
      /'query-commands': "\\"nope\\""/,
    );
  });
});
