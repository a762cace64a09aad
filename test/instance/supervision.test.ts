/**
 * The pure and local parts of the life cycle: `/proc/<pid>/stat` parsing, liveness by pid
 * plus start time, the stop escalation on a process that ignores SIGTERM, the state file,
 * the QMP reply parsers and the `cpu_mask` plan.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HvParamError, UnrecognizedOutputError } from '../../src/errors.js';
import { nodeHvParamsOf } from '../../src/instance/accept.js';
import { acceleratorFor } from '../../src/instance/launch.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { pinningPlan, tasksetArgs } from '../../src/instance/pinning.js';
import {
  parseProcStat,
  processAlive,
  readProcStat,
  spawnDetached,
  tailOf,
  terminateProcess,
} from '../../src/instance/process.js';
import {
  parseQueryBalloon,
  parseQueryCpusFast,
  parseQueryStatus,
  parseQueryUuid,
} from '../../src/instance/qmp-actions.js';
import {
  acquireStartLock,
  ensureRunLayout,
  type InstanceState,
  parseInstanceState,
  readInstanceState,
  removeInstanceFiles,
  writeInstanceState,
} from '../../src/instance/state.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-sup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseProcStat', () => {
  it('reads state and start time after a command name with spaces and parentheses', () => {
    const text =
      '4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 123 0 0 0 5 6 0 0 20 0 3 0 987654321 123456 789 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n';
    expect(parseProcStat(text)).toEqual({ state: 'S', startTime: '987654321' });
  });
  it('refuses text without the fields, quoting it', () => {
    expect(() => parseProcStat('4242 (qemu) S 1 2')).toThrow(UnrecognizedOutputError);
    expect(() => parseProcStat('garbage')).toThrow(/garbage/);
  });
  it('reads this process', () => {
    const st = readProcStat(process.pid);
    expect(st?.state).toMatch(/^[RS]$/);
    expect(processAlive({ pid: process.pid, startTime: st!.startTime })).toBe(true);
    // Same pid, another start time: a reused pid is not the process.
    expect(processAlive({ pid: process.pid, startTime: `${st!.startTime}1` })).toBe(false);
  });
});

async function untilLogged(file: string, text: string): Promise<void> {
  for (let i = 0; i < 500 && !readFileSync(file, 'utf8').includes(text); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('spawnDetached and terminateProcess', () => {
  it('escalates to SIGKILL for a process that ignores SIGTERM, within the limits', async () => {
    const log = join(dir, 'stubborn.log');
    const p = await spawnDetached(
      ['sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done'],
      log,
    );
    expect(processAlive(p)).toBe(true);
    await untilLogged(log, 'ready'); // the trap is set
    expect(await terminateProcess(p, { termMs: 300, killMs: 5000 })).toBe('sigkill');
    expect(processAlive(p)).toBe(false);
    expect(readFileSync(log, 'utf8')).toContain('ready');
  });
  it('ends an ordinary process with SIGTERM, and says when it was already gone', async () => {
    const p = await spawnDetached(['sleep', '30'], join(dir, 'sleep.log'));
    expect(await terminateProcess(p, { termMs: 5000 })).toBe('sigterm');
    expect(await terminateProcess(p)).toBe('already-gone');
  });
  it('a process stopped with SIGSTOP (frozen) that handles SIGTERM, as QEMU does, is ended by SIGKILL', async () => {
    const p = await spawnDetached(
      ['sh', '-c', 'trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done'],
      join(dir, 'frozen.log'),
    );
    await untilLogged(join(dir, 'frozen.log'), 'ready');
    process.kill(p.pid, 'SIGSTOP');
    // The handler cannot run in a stopped process: SIGTERM stays pending; SIGKILL ends it.
    expect(await terminateProcess(p, { termMs: 200, killMs: 5000 })).toBe('sigkill');
  });
  it('refuses a binary that does not exist', async () => {
    await expect(spawnDetached(['/nonexistent/qemu'], join(dir, 'x.log'))).rejects.toThrow(/cannot start/);
  });
  it('tailOf returns what was written after an offset', () => {
    const f = join(dir, 'tail.log');
    writeFileSync(f, 'old line\n');
    const off = statSync(f).size;
    writeFileSync(f, 'old line\nnew error\n');
    expect(tailOf(f, off)).toBe('new error\n');
    expect(tailOf(join(dir, 'missing.log'))).toBe('');
  });
  it('a child not watched any more is still found dead (zombies count as gone)', async () => {
    const child = spawn('true');
    await new Promise((r) => child.once('exit', r));
    expect(processAlive({ pid: child.pid!, startTime: '0' })).toBe(false);
  });
});

describe('state file', () => {
  const layout = runLayout(join(dir, 'run'));
  const paths = instancePaths(layout, 'vm1');
  const state: InstanceState = {
    formatVersion: 1,
    name: 'vm1',
    uuid: '0b6f1c2e-7d4a-4c1b-9e3f-000000000001',
    pid: 4242,
    startTime: '123',
    startedAt: 1_700_000_000_000,
    qmp: paths.qmp,
    hmp: paths.hmp,
    accel: 'tcg',
    qemuVersion: '7.2.0',
    binary: '/usr/bin/qemu-system-x86_64',
  };

  it('creates the run directory with mode 0775 whatever the umask', () => {
    const old = process.umask(0o077);
    try {
      ensureRunLayout(layout);
    } finally {
      process.umask(old);
    }
    for (const d of [layout.root, layout.conf, layout.ctrl, layout.pid, layout.log]) {
      expect(statSync(d).mode & 0o777).toBe(0o775);
    }
  });
  it('round-trips, with mode 0640', () => {
    ensureRunLayout(layout);
    writeInstanceState(paths, state);
    expect(readInstanceState(paths)).toEqual(state);
    expect(statSync(paths.state).mode & 0o777).toBe(0o640);
    removeInstanceFiles(paths);
    expect(readInstanceState(paths)).toBeUndefined();
  });
  it('the start lock: one holder at a time; a lock of a process that is gone is taken over', async () => {
    ensureRunLayout(layout);
    const release = acquireStartLock(paths);
    expect(() => acquireStartLock(paths)).toThrow(/already in progress here/);
    release();
    // A live other process holds it.
    const lockFile = join(layout.conf, 'vm1.lock');
    const other = await spawnDetached(['sleep', '30'], join(dir, 'lock.log'));
    writeFileSync(lockFile, String(other.pid));
    expect(() => acquireStartLock(paths)).toThrow(new RegExp(`process ${other.pid}`));
    await terminateProcess(other);
    // Its process is gone: the lock is stale and taken over.
    acquireStartLock(paths)();
    expect(existsSync(lockFile)).toBe(false);
  });

  it('refuses another format, quoting the text', () => {
    const text = JSON.stringify({ ...state, formatVersion: 2 });
    expect(() => parseInstanceState(text)).toThrow(UnrecognizedOutputError);
    expect(() => parseInstanceState('{"pid": 1')).toThrow(/pid/);
  });
});

describe('QMP reply parsers', () => {
  it('query-uuid, query-status, query-balloon, query-cpus-fast', () => {
    expect(parseQueryUuid({ UUID: '0B6F1C2E-7D4A-4C1B-9E3F-000000000001' })).toBe(
      '0b6f1c2e-7d4a-4c1b-9e3f-000000000001',
    );
    expect(parseQueryStatus({ running: false, status: 'shutdown', singlestep: false })).toEqual({
      running: false,
      status: 'shutdown',
    });
    expect(parseQueryBalloon({ actual: 67108864 })).toBe(64);
    expect(
      parseQueryCpusFast([
        { 'cpu-index': 1, 'thread-id': 11, 'qom-path': '/machine/unattached/device[1]', target: 'x86_64' },
        { 'cpu-index': 0, 'thread-id': 10, 'qom-path': '/machine/unattached/device[0]', target: 'x86_64' },
      ]),
    ).toEqual([
      { index: 0, threadId: 10 },
      { index: 1, threadId: 11 },
    ]);
  });
  it('quote what they cannot read', () => {
    expect(() => parseQueryUuid({})).toThrow(UnrecognizedOutputError);
    expect(() => parseQueryStatus({ status: 'running' })).toThrow(/query-status/);
    expect(() => parseQueryBalloon({ actual: 'lots' })).toThrow(/lots/);
    expect(() => parseQueryCpusFast([{ 'cpu-index': 0 }])).toThrow(/query-cpus-fast/);
    expect(() => parseQueryCpusFast({})).toThrow(UnrecognizedOutputError);
  });
});

describe('cpu_mask plan', () => {
  const vcpus = [
    { index: 0, threadId: 100 },
    { index: 1, threadId: 101 },
  ];
  it('one mask pins every thread of the process; all pins nothing', () => {
    expect(pinningPlan('0-1,3', 42, vcpus)).toEqual([{ id: 42, cpus: [0, 1, 3], allThreads: true }]);
    expect(tasksetArgs(pinningPlan('0-1,3', 42, vcpus)[0]!)).toEqual(['-a', '-p', '-c', '0,1,3', '42']);
    expect(pinningPlan('all', 42, vcpus)).toEqual([]);
  });
  it('an empty cpu_mask pins nothing (no mask, not a per-vCPU count of 0)', () => {
    expect(pinningPlan('', 42, vcpus)).toEqual([]);
    expect(pinningPlan([], 42, vcpus)).toEqual([]);
  });
  it('per-vCPU masks pin each vCPU thread', () => {
    expect(pinningPlan('1:all', 42, vcpus)).toEqual([{ id: 100, cpus: [1], allThreads: false }]);
    expect(tasksetArgs({ id: 100, cpus: [1], allThreads: false })).toEqual(['-p', '-c', '1', '100']);
  });
  it('a per-vCPU count that differs from the vCPUs is an HvParamError naming cpu_mask', () => {
    const err = (() => {
      try {
        pinningPlan('0:1:2', 42, vcpus);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(HvParamError);
    expect((err as HvParamError).problems[0]?.param).toBe('cpu_mask');
  });
});

describe('acceleratorFor', () => {
  it('kvm_flag enabled without a usable /dev/kvm is an HvParamError; disabled is TCG', () => {
    expect(() => acceleratorFor({ kvm_flag: 'enabled' }, undefined, join(dir, 'no-kvm'))).toThrow(
      HvParamError,
    );
    expect(acceleratorFor({ kvm_flag: 'disabled' }, 'kvm')).toBe('tcg');
    expect(acceleratorFor({ kvm_flag: '' }, 'tcg')).toBe('tcg');
    expect(acceleratorFor({ kvm_flag: '' }, 'auto', join(dir, 'no-kvm'))).toBe('tcg');
  });
});

describe('nodeHvParamsOf', () => {
  it("keeps only the node's keys the instance's hvparams set, with their filled values", () => {
    const filled = {
      keymap: 'de',
      security_model: 'none',
      security_domain: '',
      use_chroot: true,
      acpi: false,
    };
    expect(nodeHvParamsOf(filled, { keymap: 'de', use_chroot: 'yes', acpi: false })).toEqual({
      keymap: 'de',
      use_chroot: true,
    });
    expect(nodeHvParamsOf(filled, {})).toEqual({});
  });

  it("takes this node's kvm_path when the instance's hvparams name one (the runtime's is the source's)", () => {
    const filled = { kvm_path: '/usr/libexec/qemu-kvm', keymap: '' };
    expect(nodeHvParamsOf(filled, { kvm_path: '/usr/libexec/qemu-kvm' })).toEqual({
      kvm_path: '/usr/libexec/qemu-kvm',
    });
    // Not given: the default is not this node's choice, the runtime's path stays.
    expect(nodeHvParamsOf({ kvm_path: '/usr/bin/kvm' }, {})).toEqual({});
  });
});
