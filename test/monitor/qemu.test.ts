/** Integration tests against a real QEMU 7.2 (TCG, -m 64). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HmpError, MonitorError, QmpError } from '../../src/errors.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { findQemuBinary, QemuVm } from '../../src/qemu/process.js';
import { rejectionOf } from './helpers.js';

const hasQemu = findQemuBinary() !== undefined;
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-monitor-'));
let vm: QemuVm | undefined;
const monitors: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  if (hasQemu) vm = await QemuVm.start({ name: 'mon', dir, qmpSockets: 2, hmp: true, memoryMiB: 64 });
});
afterAll(async () => {
  await Promise.allSettled(monitors.map((m) => m.close()));
  await vm?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!hasQemu)('monitors against a real QEMU', () => {
  it('QMP: greeting version, query-status, CommandNotFound, 50 concurrent commands', async () => {
    const mon = await QmpMonitor.connect({ path: vm!.qmpPath });
    monitors.push(mon);
    expect(mon.version.major).toBeGreaterThanOrEqual(7);
    expect(mon.greeting.capabilities).toContain('oob');
    const v = await mon.execute<{ qemu: { major: number; minor: number; micro: number } }>('query-version');
    expect(v.qemu).toEqual(mon.version);
    expect(await mon.execute('query-status')).toMatchObject({ status: 'running', running: true });

    const err = await rejectionOf(mon.execute('no-such-command'));
    expect(err).toBeInstanceOf(QmpError);
    expect(err.errorClass).toBe('CommandNotFound');
    expect(err.desc).toBe('The command no-such-command has not been found');

    const names = ['query-status', 'query-version', 'query-migrate', 'query-name', 'query-kvm'];
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => mon.execute(names[i % names.length]!)),
    );
    results.forEach((r, i) => {
      const name = names[i % names.length];
      if (name === 'query-status') expect(r).toHaveProperty('status');
      if (name === 'query-version') expect(r).toHaveProperty('qemu');
      if (name === 'query-migrate') expect(r).toEqual({});
      if (name === 'query-name') expect(r).toEqual({ name: 'mon' });
      if (name === 'query-kvm') expect(r).toHaveProperty('enabled', false);
    });

    const bad = await rejectionOf(
      mon.execute('migrate-set-capabilities', { capabilities: [{ capability: 'nope', state: true }] }),
    );
    expect(bad).toMatchObject({
      errorClass: 'GenericError',
      desc: "Parameter 'capability' does not accept value 'nope'",
    });
  });

  it('QMP: human-monitor-command errors are detected; STOP/RESUME events arrive', async () => {
    const mon = await QmpMonitor.connect({ path: vm!.qmpPaths[1]! });
    monitors.push(mon);
    expect(await mon.humanCommand('info status')).toBe('VM status: running\n');
    const removed = await rejectionOf(mon.humanCommand('migrate_set_speed 10'));
    expect(removed).toBeInstanceOf(HmpError);
    expect(removed.text).toBe("unknown command: 'migrate_set_speed'");
    await expect(mon.humanCommand('migrate_set_capability nope on')).rejects.toThrow(
      'invalid parameter value: nope',
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

  it('HMP socket: banner version, info version, removed migrate_set_speed', async () => {
    const hmp = await HmpMonitor.connect({ path: vm!.hmpPath! });
    monitors.push(hmp);
    expect(hmp.version.major).toBeGreaterThanOrEqual(7);
    const text = await hmp.command('info version');
    expect(text.startsWith(`${hmp.version.major}.${hmp.version.minor}.${hmp.version.micro}`)).toBe(true);
    expect(text).not.toMatch(/\x1b|\r|\(qemu\)/);
    expect(await hmp.command('info status')).toMatch(/^VM status: (running|paused)\n$/);
    const err = await rejectionOf(hmp.command('migrate_set_speed 10'));
    expect(err).toBeInstanceOf(HmpError);
    expect(err.text).toBe("unknown command: 'migrate_set_speed'");
    await hmp.command('migrate_set_parameter max-bandwidth 10');
    expect(await hmp.command('info migrate_parameters')).toContain('max-bandwidth: 10485760 bytes/second');
    const caps = await hmp.command('info migrate_capabilities');
    expect(caps).toContain('events: off\n');
    const many = await Promise.all(Array.from({ length: 10 }, () => hmp.command('info status')));
    expect(new Set(many).size).toBe(1);
  });

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
