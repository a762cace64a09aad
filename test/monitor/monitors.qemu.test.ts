/**
 * The monitors against every real QEMU release of the suite (TCG, -m 64). What QEMU
 * answers is derived from the version its monitor reports, never from one release.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HmpError, MonitorError, QmpError } from '../../src/errors.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { formatVersion } from '../../src/qemu/version.js';
import { QemuVm } from '../../src/testing/qemu-vm.js';
import { expectedHmp, expectedQmp } from '../support/qemu-expectations.js';
import { describeEachRelease, releaseCases, versionOf, vmOptions } from '../support/real-qemu.js';
import { rejectionOf } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-monitor-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeEachRelease('monitors', releaseCases(), (rel) => {
  const version = versionOf(rel);
  let vm: QemuVm | undefined;
  const monitors: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    vm = await QemuVm.start({
      name: `mon-${rel.release}`,
      dir,
      qmpSockets: 2,
      hmp: true,
      memoryMiB: 64,
      ...vmOptions(rel, rel.accel),
    });
  });
  afterAll(async () => {
    await Promise.allSettled(monitors.map((m) => m.close()));
    await vm?.kill();
  });

  it('QMP: greeting version, query-status, CommandNotFound, 50 concurrent commands', async () => {
    const mon = await QmpMonitor.connect({ path: vm!.qmpPath });
    monitors.push(mon);
    // The wrapper really ran this release: the greeting agrees with `--version`.
    expect(formatVersion(mon.version)).toBe(formatVersion(version));
    const want = expectedQmp(mon.version);
    expect(mon.greeting.capabilities).toContain('oob');
    const v = await mon.execute<{ qemu: { major: number; minor: number; micro: number } }>('query-version');
    expect(v.qemu).toEqual(mon.version);
    expect(await mon.execute('query-status')).toMatchObject({ status: 'running', running: true });

    const err = await rejectionOf(mon.execute('no-such-command'));
    expect(err).toBeInstanceOf(QmpError);
    expect(err.errorClass).toBe('CommandNotFound');
    expect(err.desc).toBe(want.commandNotFound('no-such-command'));

    const names = ['query-status', 'query-version', 'query-migrate', 'query-name', 'query-kvm'];
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => mon.execute(names[i % names.length]!)),
    );
    results.forEach((r, i) => {
      const name = names[i % names.length];
      if (name === 'query-status') expect(r).toHaveProperty('status');
      if (name === 'query-version') expect(r).toHaveProperty('qemu');
      if (name === 'query-migrate') expect(r).toEqual({});
      if (name === 'query-name') expect(r).toEqual({ name: `mon-${rel.release}` });
      if (name === 'query-kvm') expect(r).toHaveProperty('enabled', rel.accel === 'kvm');
    });

    const bad = await rejectionOf(
      mon.execute('migrate-set-capabilities', { capabilities: [{ capability: 'nope', state: true }] }),
    );
    expect(bad).toMatchObject({ errorClass: 'GenericError', desc: want.badEnumValue('capability', 'nope') });
  });

  it('QMP: human-monitor-command errors are detected; STOP/RESUME events arrive', async () => {
    const mon = await QmpMonitor.connect({ path: vm!.qmpPaths[1]! });
    monitors.push(mon);
    const want = expectedHmp(mon.version);
    expect(await mon.humanCommand('info status')).toBe('VM status: running\n');
    if (want.hasLegacySpeedCommands) {
      // QEMU < 6.0 still has the seed's command: it succeeds and prints nothing.
      expect(await mon.humanCommand('migrate_set_speed 10')).toBe('');
    } else {
      const removed = await rejectionOf(mon.humanCommand('migrate_set_speed 10'));
      expect(removed).toBeInstanceOf(HmpError);
      expect(removed.text).toBe(want.unknownCommand('migrate_set_speed'));
    }
    await expect(mon.humanCommand('migrate_set_capability nope on')).rejects.toThrow(
      want.badCapability('nope'),
    );
    await expect(mon.humanCommand('migrate_start_postcopy')).rejects.toThrow(/Enable postcopy/);
    await expect(mon.humanCommand('migrate_set_parameter downtime-limit bogus')).rejects.toThrow(HmpError);

    const stop = mon.waitForEvent('STOP', { timeoutMs: 5000 });
    await mon.execute('stop');
    expect((await stop.promise).event).toBe('STOP');
    const resume = mon.waitForEvent('RESUME', { timeoutMs: 5000 });
    await mon.execute('cont');
    expect((await resume.promise).event).toBe('RESUME');
    await mon.close();
    expect(mon.closed).toBe(true);
  });

  it('HMP socket: banner version, info version, migrate_set_speed as this release has it', async () => {
    const hmp = await HmpMonitor.connect({ path: vm!.hmpPath! });
    monitors.push(hmp);
    expect(formatVersion(hmp.version)).toBe(formatVersion(version));
    const want = expectedHmp(hmp.version);
    const text = await hmp.command('info version');
    expect(text.startsWith(formatVersion(hmp.version))).toBe(true);
    expect(text).not.toMatch(/\x1b|\r|\(qemu\)/);
    expect(await hmp.command('info status')).toMatch(/^VM status: (running|paused)\n$/);
    if (want.hasLegacySpeedCommands) {
      expect(await hmp.command('migrate_set_speed 20m')).toBe('');
      expect(await hmp.command('migrate_set_downtime 0.125')).toBe('');
      expect(await hmp.command('info migrate_parameters')).toContain(want.maxBandwidthLine(20 * 1048576));
      expect(await hmp.command('info migrate_parameters')).toContain(want.downtimeLimitLine(125));
    } else {
      const err = await rejectionOf(hmp.command('migrate_set_speed 10'));
      expect(err).toBeInstanceOf(HmpError);
      expect(err.text).toBe(want.unknownCommand('migrate_set_speed'));
    }
    await hmp.command('migrate_set_parameter max-bandwidth 10');
    expect(await hmp.command('info migrate_parameters')).toContain(want.maxBandwidthLine(10 * 1048576));
    const caps = await hmp.command('info migrate_capabilities');
    expect(caps).toContain('events: off\n');
    const many = await Promise.all(Array.from({ length: 10 }, () => hmp.command('info status')));
    expect(new Set(many).size).toBe(1);
  });
});

describe('monitor connection errors', () => {
  it('names a missing socket path in the connection error', async () => {
    const path = join(dir, 'nope.qmp');
    const e1 = await rejectionOf(QmpMonitor.connect({ path }));
    expect(e1).toBeInstanceOf(MonitorError);
    expect(e1.message).toContain(path);
    const e2 = await rejectionOf(HmpMonitor.connect({ path: join(dir, 'nope.monitor') }));
    expect(e2).toBeInstanceOf(MonitorError);
    expect(e2.message).toContain('nope.monitor');
  });
});
