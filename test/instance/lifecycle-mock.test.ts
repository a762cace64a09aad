/**
 * The life-cycle rules that need a live process but not QEMU: a `sleep` stands in for the
 * QEMU process (its pid and start time go into the state file) and a `MockMonitor`
 * answers for it. Covers identity (`query-uuid`), unreadable replies, an unresponsive
 * monitor, the stop refusals around migrations (running, an unfinalized destination that
 * holds the VM, a postmigrate source) and a stop of a name this node does not know.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { HypervisorError, UnrecognizedOutputError } from '../../src/errors.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import {
  processAlive,
  type SpawnedProcess,
  spawnDetached,
  terminateProcess,
} from '../../src/instance/process.js';
import { ensureRunLayout, writeInstanceState } from '../../src/instance/state.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { MockMonitor } from '../../src/testing/index.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-lcmock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const procs: SpawnedProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await terminateProcess(p, { termMs: 2000 });
});

const UUID = '0b6f1c2e-7d4a-4c1b-9e3f-000000000042';
let seq = 0;

/**
 * A node whose instance `vm` is a `sleep` process answered for by `mock`; `incoming` marks
 * it as a migration destination not yet finalized.
 */
async function fakeNode(mock: MockMonitor, { incoming = false } = {}) {
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
    startedAt: Date.now() - 5000,
    qmp: paths.qmp,
    hmp: paths.hmp,
    accel: 'tcg',
    qemuVersion: '7.2.22',
    binary: '/usr/bin/qemu-system-x86_64',
    ...(incoming ? { incoming: 'defer' } : {}),
  });
  mock.setReply('query-uuid', { UUID: UUID.toUpperCase() });
  mock.setReply('query-balloon', { actual: 48 * 1024 * 1024 });
  mock.setReply('query-cpus-fast', [
    { 'cpu-index': 0, 'thread-id': 11 },
    { 'cpu-index': 1, 'thread-id': 12 },
  ]);
  const hv = new KVMHypervisor({ instanceDir: root, monitor: () => mock });
  return { hv, proc, paths };
}

describe('life cycle on a stand-in process', () => {
  it('info: state, memory, vCPUs, uptime from the monitor; list by pid + start time', async () => {
    const mock = new MockMonitor({ runState: 'running' });
    const { hv, proc } = await fakeNode(mock);
    expect(hv.listInstances()).toEqual(['vm']);
    const info = await hv.getInstanceInfo('vm');
    expect(info).toMatchObject({ name: 'vm', state: 'running', pid: proc.pid, memoryMiB: 48, vcpus: 2 });
    expect(info.uptimeSeconds).toBeGreaterThanOrEqual(5);
    // Run state shutdown and no shutdown record (no watcher here): the guest powered off.
    mock.runState = 'shutdown';
    expect((await hv.getInstanceInfo('vm')).state).toBe('user-down');
    mock.runState = 'postmigrate';
    expect((await hv.getInstanceInfo('vm')).state).toBe('migrated');
    await terminateProcess(proc);
    expect(hv.listInstances()).toEqual([]);
    // Gone without a SHUTDOWN event on record: crashed.
    expect((await hv.getInstanceInfo('vm')).state).toBe('crashed');
    await hv.cleanupInstance('vm');
    await expect(hv.getInstanceInfo('vm')).rejects.toThrow(/not known here/);
  });

  it('another UUID on the socket, or a reply it cannot read, is an error, not a state', async () => {
    const mock = new MockMonitor();
    const { hv } = await fakeNode(mock);
    mock.setReply('query-balloon', { actual: 'lots' });
    await expect(hv.getInstanceInfo('vm')).rejects.toThrow(UnrecognizedOutputError);
    mock.setReply('query-uuid', { UUID: '11111111-2222-4333-8444-555555555555' });
    await expect(hv.getInstanceInfo('vm')).rejects.toThrow(/another VM answers/);
    await expect(hv.rebootInstance('vm')).rejects.toThrow(/another VM answers/);
  });

  it('a monitor that fails is reported as unresponsive with the reason', async () => {
    const mock = new MockMonitor();
    const { hv } = await fakeNode(mock);
    mock.failCommand('query-status', { class: 'GenericError', desc: 'frozen for the test' });
    const info = await hv.getInstanceInfo('vm');
    expect(info.state).toBe('unresponsive');
    expect(info.error).toMatch(/frozen for the test/);
  });

  it('stop is refused while a migration runs, and without force when the status cannot be read', async () => {
    const mock = new MockMonitor();
    const { hv, proc } = await fakeNode(mock);
    mock.setReply('query-migrate', { status: 'postcopy-active' });
    await expect(hv.stopInstance('vm', { force: true })).rejects.toThrow(/migration is in progress/);
    expect(processAlive(proc)).toBe(true);
    mock.failCommand('query-migrate', 'disconnect');
    await expect(hv.stopInstance('vm')).rejects.toThrow(/cannot read its migration status/);
    expect(processAlive(proc)).toBe(true);
  });

  it("a refused stop keeps this object's migration of the instance", async () => {
    const mock = new MockMonitor({ runState: 'running' });
    const { hv, proc } = await fakeNode(mock);
    const inst = { name: 'vm', hvparams: { migration_port: 4444 } };
    await hv.migrateInstance(inst, '127.0.0.1');
    await expect(hv.stopInstance('vm', { force: true })).rejects.toThrow(/migration is in progress/);
    expect(mock.closed).toBe(false);
    mock.completeMigration();
    expect((await hv.waitForMigration(inst, { timeoutMs: 10_000 })).final.status).toBe('completed');
    expect(processAlive(proc)).toBe(true);
  });

  it('an unfinalized destination holding the VM is stopped only with force', async () => {
    const mock = new MockMonitor({ runState: 'running' });
    const { hv, proc, paths } = await fakeNode(mock, { incoming: true });
    // `quit` ends the stand-in process as it would end QEMU.
    mock.setReply('quit', () => {
      process.kill(proc.pid, 'SIGTERM');
      return {};
    });
    mock.setReply('query-migrate', { status: 'completed' });
    const err = await hv.stopInstance('vm').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toMatch(/destination that was not finalized .*only copy of the VM/);
    expect((err as Error).message).toMatch(/'completed', run state 'running'/);
    expect((err as Error).message).toMatch(/finalizeMigrationDst\(instance, true\)/);
    expect((err as Error).message).toMatch(/kvm-hv recover vm/);
    expect(processAlive(proc)).toBe(true);
    expect(existsSync(paths.state)).toBe(true);
    // Old QEMUs report no incoming status: a run state that left `inmigrate` says the same.
    mock.setReply('query-migrate', {});
    mock.runState = 'paused';
    await expect(hv.stopInstance('vm')).rejects.toThrow(/not finalized/);
    expect(processAlive(proc)).toBe(true);
    expect(await hv.stopInstance('vm', { force: true })).toEqual({ name: 'vm', how: 'quit' });
    expect(processAlive(proc)).toBe(false);
    expect(existsSync(paths.state)).toBe(false);
  });

  it('an unfinalized destination still waiting (inmigrate, nothing completed) is stopped', async () => {
    const mock = new MockMonitor({ runState: 'inmigrate' });
    const { hv, proc } = await fakeNode(mock, { incoming: true });
    mock.setReply('quit', () => {
      process.kill(proc.pid, 'SIGTERM');
      return {};
    });
    mock.setReply('query-migrate', { status: 'failed' });
    expect((await hv.stopInstance('vm')).how).toBe('quit');
    expect(processAlive(proc)).toBe(false);
  });

  it('a postmigrate source is stopped only with force', async () => {
    const mock = new MockMonitor({ runState: 'postmigrate' });
    const { hv, proc } = await fakeNode(mock);
    mock.setReply('quit', () => {
      process.kill(proc.pid, 'SIGTERM');
      return {};
    });
    mock.setReply('query-migrate', { status: 'completed' });
    await expect(hv.stopInstance('vm')).rejects.toThrow(
      /run state 'postmigrate': .*only fallback copy .*with force once the destination runs the VM/,
    );
    expect(processAlive(proc)).toBe(true);
    expect((await hv.stopInstance('vm', { force: true })).how).toBe('quit');
    expect(processAlive(proc)).toBe(false);
  });

  it("a name without a state file is 'not-found' (no error, nothing touched); a dead process is 'already-gone'", async () => {
    const mock = new MockMonitor();
    const { hv, proc, paths } = await fakeNode(mock);
    expect(await hv.stopInstance('other')).toEqual({ name: 'other', how: 'not-found' });
    expect(mock.sent).toEqual([]);
    await terminateProcess(proc);
    expect(await hv.stopInstance('vm')).toEqual({ name: 'vm', how: 'already-gone' });
    expect(existsSync(paths.state)).toBe(false);
    expect((await hv.stopInstance('vm')).how).toBe('not-found');
  });

  it('reboot sends system_reset, and cont for a VM that powered off', async () => {
    const mock = new MockMonitor({ runState: 'shutdown' });
    const { hv } = await fakeNode(mock);
    mock.setReply('system_reset', {});
    await hv.rebootInstance('vm');
    const sent = mock.sent.map((c) => (typeof c === 'string' ? c : c.execute));
    expect(sent.slice(sent.indexOf('system_reset'))).toEqual(['system_reset', 'cont']);
  });
});
