import { describe, expect, it } from 'vitest';
import { HmpError, MonitorClosedError, MonitorError, QmpError } from '../../src/errors.js';
import type { Monitor, MonitorEvent } from '../../src/monitor/types.js';
import { capabilitiesForVersion } from '../../src/qemu/capabilities.js';
import { MockMonitor } from '../../src/testing/index.js';
import { rejectionOf } from './helpers.js';

const caps = (list: [string, boolean][]) => ({
  capabilities: list.map(([capability, state]) => ({ capability, state })),
});

describe('MockMonitor, QMP dialect', () => {
  it('QEMU 7.2: version, status, capabilities, parameters and the removed legacy commands', async () => {
    const m = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const mon: Monitor = m;
    expect(mon.version).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(await m.execute('query-version')).toEqual({
      qemu: { major: 7, minor: 2, micro: 22 },
      package: '',
    });
    expect(await m.execute('query-status')).toEqual({ status: 'running', running: true, singlestep: false });
    const qc = await m.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');
    expect(qc.map((c) => c.capability)).toEqual(capabilitiesForVersion(m.version));
    expect(qc).toHaveLength(21);
    expect(qc.every((c) => c.state === false)).toBe(true);
    const params = await m.execute<Record<string, unknown>>('query-migrate-parameters');
    expect(params).toMatchObject({
      'max-bandwidth': 134217728,
      'downtime-limit': 300,
      'max-postcopy-bandwidth': 0,
    });
    await expect(m.execute('migrate_set_speed', { value: 1 })).rejects.toMatchObject({
      errorClass: 'CommandNotFound',
      desc: 'The command migrate_set_speed has not been found',
    });
    await expect(m.execute('migrate_set_downtime', { value: 1 })).rejects.toBeInstanceOf(QmpError);
    await expect(m.execute('frobnicate')).rejects.toThrow('The command frobnicate has not been found');
    expect(await m.execute('query-migrate')).toEqual({});
    expect(m.sent).toEqual([
      { execute: 'query-version' },
      { execute: 'query-status' },
      { execute: 'query-migrate-capabilities' },
      { execute: 'query-migrate-parameters' },
      { execute: 'migrate_set_speed', arguments: { value: 1 } },
      { execute: 'migrate_set_downtime', arguments: { value: 1 } },
      { execute: 'frobnicate' },
      { execute: 'query-migrate' },
    ]);
  });

  it('QEMU 2.8: legacy commands and parameters side by side, 32 MiB/s default', async () => {
    const m = new MockMonitor({ version: '2.8.0' });
    expect((await m.execute<Record<string, unknown>>('query-migrate-parameters'))['max-bandwidth']).toBe(
      33554432,
    );
    await m.execute('migrate_set_speed', { value: 1048576 });
    await m.execute('migrate_set_downtime', { value: 0.5 });
    expect(await m.execute('query-migrate-parameters')).toMatchObject({
      'max-bandwidth': 1048576,
      'downtime-limit': 500,
    });
    await m.execute('migrate-set-parameters', { 'max-bandwidth': 2097152, 'downtime-limit': 100 });
    expect(m.parameters).toMatchObject({ 'max-bandwidth': 2097152, 'downtime-limit': 100 });
    await expect(m.execute('migrate-set-parameters', { 'max-postcopy-bandwidth': 1 })).rejects.toThrow(
      "Parameter 'max-postcopy-bandwidth' is unexpected",
    );
    await expect(m.execute('migrate-set-parameters', { 'downtime-limit': 3_000_000 })).rejects.toThrow(
      'expects an integer in the range of 0 to (2000 * 1000) ms',
    );
    const names = (await m.execute<{ capability: string }[]>('query-migrate-capabilities')).map(
      (c) => c.capability,
    );
    expect(names).toContain('postcopy-ram');
    expect(names).toContain('x-colo');
    expect(names).not.toContain('return-path');
  });

  it('QEMU 1.7: no parameters commands, x-rdma-pin-all, old error text', async () => {
    const m = new MockMonitor({ version: { major: 1, minor: 7, micro: 0 } });
    await expect(m.execute('query-migrate-parameters')).rejects.toMatchObject({
      errorClass: 'CommandNotFound',
    });
    await expect(m.execute('migrate-start-postcopy')).rejects.toMatchObject({
      errorClass: 'CommandNotFound',
    });
    const names = (await m.execute<{ capability: string }[]>('query-migrate-capabilities')).map(
      (c) => c.capability,
    );
    expect(names).toEqual(['xbzrle', 'x-rdma-pin-all', 'auto-converge', 'zero-blocks']);
    await expect(m.execute('migrate-set-capabilities', caps([['events', true]]))).rejects.toThrow(
      "Invalid parameter 'events'",
    );
    await m.execute('migrate_set_speed', { value: 1000 });
    await m.execute('migrate_set_downtime', { value: 0.03 });
  });

  it('migrate-set-capabilities is all-or-nothing and checks combinations', async () => {
    const m = new MockMonitor({ version: '7.2.0' });
    await expect(
      m.execute(
        'migrate-set-capabilities',
        caps([
          ['xbzrle', true],
          ['nope', true],
        ]),
      ),
    ).rejects.toThrow("Parameter 'capability' does not accept value 'nope'");
    expect(m.capabilities.xbzrle).toBe(false);
    await expect(m.execute('migrate-set-capabilities', caps([['postcopy-preempt', true]]))).rejects.toThrow(
      'Postcopy preempt requires postcopy-ram',
    );
    await m.execute(
      'migrate-set-capabilities',
      caps([
        ['postcopy-preempt', true],
        ['postcopy-ram', true],
      ]),
    );
    expect(m.capabilities).toMatchObject({ 'postcopy-preempt': true, 'postcopy-ram': true });
  });

  it('runs a migration with events: setup before the reply, STOP at switchover, completed', async () => {
    const m = new MockMonitor({ version: '7.2.0' });
    const events: MonitorEvent[] = [];
    m.on('event', (e) => events.push(e));
    await m.execute('migrate-set-capabilities', caps([['events', true]]));
    const done = m.waitForEvent('MIGRATION', {
      filter: (e) => e.data.status === 'completed',
      timeoutMs: 1000,
    });
    await m.execute('migrate', { uri: 'tcp:10.0.0.2:8102' });
    expect(events.map((e) => `${e.event}:${e.data.status ?? ''}`)).toEqual(['MIGRATION:setup']);
    await new Promise((r) => setImmediate(r));
    expect(m.migration.status).toBe('active');
    await expect(m.execute('migrate', { uri: 'tcp:10.0.0.2:8102' })).rejects.toThrow(
      "There's a migration process in progress",
    );
    await expect(m.execute('migrate-set-capabilities', caps([['xbzrle', true]]))).rejects.toThrow(
      "There's a migration process in progress",
    );
    await m.execute('migrate-set-parameters', { 'downtime-limit': 500 });
    m.migration.advance({ transferred: 1000, remaining: 5000, pass: true });
    const q = await m.execute<{ status: string; ram: Record<string, number> }>('query-migrate');
    expect(q.status).toBe('active');
    expect(q.ram).toMatchObject({ transferred: 1000, remaining: 5000, 'page-size': 4096 });
    m.completeMigration();
    await done.promise;
    expect(events.map((e) => `${e.event}:${e.data.status ?? e.data.pass ?? ''}`)).toEqual([
      'MIGRATION:setup',
      'MIGRATION_PASS:1',
      'MIGRATION:active',
      'MIGRATION_PASS:2',
      'STOP:',
      'MIGRATION_PASS:3',
      'MIGRATION:completed',
    ]);
    expect(await m.execute('query-status')).toMatchObject({ status: 'postmigrate', running: false });
    expect(await m.execute('query-migrate')).toMatchObject({ status: 'completed', downtime: 10 });
    await m.execute('cont');
    expect(m.runState).toBe('running');
  });

  it('sends no MIGRATION events while the events capability is off', async () => {
    const m = new MockMonitor();
    const events: string[] = [];
    m.on('event', (e) => events.push(e.event));
    await m.execute('migrate', { uri: 'unix:/tmp/x.sock' });
    m.completeMigration();
    expect(events).toEqual(['STOP']);
  });

  it('autoCompleteAfterPolls: query-migrate reports completed at the N-th poll', async () => {
    const m = new MockMonitor({ version: '2.8.0', autoCompleteAfterPolls: 3 });
    await m.execute('migrate', { uri: 'exec:cat > /dev/null' });
    const statuses: string[] = [];
    const remaining: number[] = [];
    for (let i = 0; i < 3; i++) {
      const q = await m.execute<{ status: string; ram?: { remaining: number } }>('query-migrate');
      statuses.push(q.status);
      remaining.push(q.ram?.remaining ?? -1);
    }
    expect(statuses).toEqual(['active', 'active', 'completed']);
    expect(remaining[0]).toBeGreaterThan(remaining[1]!);
    expect(remaining[2]).toBe(0);
  });

  it('migrate_cancel goes through cancelling to cancelled; failMigration reports error-desc', async () => {
    const m = new MockMonitor();
    await m.execute('migrate-set-capabilities', caps([['events', true]]));
    await m.execute('migrate', { uri: 'tcp:127.0.0.1:4444' });
    const cancelled = m.waitForEvent('MIGRATION', {
      filter: (e) => e.data.status === 'cancelled',
      timeoutMs: 1000,
    });
    await m.execute('migrate_cancel');
    expect(await m.execute('query-migrate')).toEqual({ status: 'cancelling' });
    await cancelled.promise;
    expect(await m.execute('query-migrate')).toEqual({ status: 'cancelled' });
    await m.execute('migrate', { uri: 'tcp:127.0.0.1:1' });
    m.failMigration("Failed to connect to '127.0.0.1:1': Connection refused");
    expect(await m.execute('query-migrate')).toEqual({
      status: 'failed',
      'error-desc': "Failed to connect to '127.0.0.1:1': Connection refused",
    });
    await expect(m.execute('migrate', { uri: 'bogus:x' })).rejects.toThrow(
      "Parameter 'uri' expects a valid migration protocol",
    );
  });

  it('migrate-start-postcopy needs postcopy-ram; unknown statuses can be injected', async () => {
    const m = new MockMonitor({ version: '11.0.0' });
    await m.execute('migrate', { uri: 'tcp:h:1' });
    await expect(m.execute('migrate-start-postcopy')).rejects.toThrow(
      'Enable postcopy with migrate_set_capability before the start of migration',
    );
    m.migration.advance({ status: 'postcopy-device' });
    expect(await m.execute('query-migrate')).toMatchObject({ status: 'postcopy-device' });
    expect(m.migration.running).toBe(true);
    m.migration.advance({ status: 'some-future-status' });
    expect(await m.execute('query-migrate')).toMatchObject({ status: 'some-future-status' });
  });

  it('stop/cont emit STOP/RESUME; inmigrate stays until migration ends', async () => {
    const m = new MockMonitor({ runState: 'inmigrate' });
    expect(await m.execute('query-status')).toMatchObject({ status: 'inmigrate', running: false });
    await m.execute('cont');
    expect(m.runState).toBe('inmigrate');
    m.runState = 'running';
    const stop = m.waitForEvent('STOP', { timeoutMs: 100 });
    await m.execute('stop');
    await stop.promise;
    const resume = m.waitForEvent('RESUME', { timeoutMs: 100 });
    await m.execute('cont');
    await resume.promise;
    expect(m.emitted.map((e) => e.event)).toEqual(['STOP', 'RESUME']);
  });

  it('failCommand / setReply script errors, replies and disconnects', async () => {
    const m = new MockMonitor();
    m.failCommand('query-migrate', { class: 'GenericError', desc: 'boom' }, { times: 1 });
    await expect(m.execute('query-migrate')).rejects.toMatchObject({
      errorClass: 'GenericError',
      desc: 'boom',
    });
    expect(await m.execute('query-migrate')).toEqual({});
    m.setReply('query-status', { status: 'paused', running: false });
    expect(await m.execute('query-status')).toEqual({ status: 'paused', running: false });
    m.failCommand((c) => c.name === 'migrate' && String(c.arguments?.uri).includes('bad'), 'refused');
    await expect(m.execute('migrate', { uri: 'tcp:bad:1' })).rejects.toThrow('refused');
    const closes: unknown[] = [];
    m.on('close', (e) => closes.push(e));
    m.failCommand('cont', 'disconnect');
    await expect(m.execute('cont')).rejects.toBeInstanceOf(MonitorClosedError);
    expect(m.closed).toBe(true);
    await expect(m.execute('query-status')).rejects.toBeInstanceOf(MonitorClosedError);
    expect(closes).toHaveLength(1);
  });

  it('humanCommand goes through human-monitor-command and detects HMP errors', async () => {
    const m = new MockMonitor({ version: '7.2.22' });
    expect(await m.humanCommand('info status')).toBe('VM status: running\n');
    const err = await rejectionOf(m.humanCommand('migrate_set_speed 10'));
    expect(err).toBeInstanceOf(HmpError);
    expect(err.text).toBe("unknown command: 'migrate_set_speed'");
    expect(await m.execute('human-monitor-command', { 'command-line': 'info status' })).toBe(
      'VM status: running\r\n',
    );
    expect(m.sent[0]).toEqual({
      execute: 'human-monitor-command',
      arguments: { 'command-line': 'info status' },
    });
  });
});

describe('MockMonitor, HMP dialect', () => {
  it('QEMU 7.2: records lines, answers info commands, refuses QMP and events', async () => {
    const m = new MockMonitor({ protocol: 'hmp', version: '7.2.22', package: 'Debian 1:7.2+dfsg-7' });
    expect(await m.humanCommand('info version')).toBe('7.2.22Debian 1:7.2+dfsg-7\n');
    expect(await m.humanCommand('info status')).toBe('VM status: running\n');
    await expect(m.humanCommand('migrate_set_speed 32m')).rejects.toThrow(
      "unknown command: 'migrate_set_speed'",
    );
    await m.humanCommand('migrate_set_parameter max-bandwidth 10');
    expect(m.parameters['max-bandwidth']).toBe(10485760);
    await m.humanCommand('migrate_set_parameter downtime-limit 30');
    expect(m.parameters['downtime-limit']).toBe(30);
    await expect(m.humanCommand('migrate_set_parameter downtime-limit 5000000')).rejects.toThrow(
      "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms",
    );
    await expect(m.humanCommand('migrate_set_capability nope on')).rejects.toThrow(
      'invalid parameter value: nope',
    );
    await expect(m.humanCommand('migrate_set_capability xbzrle maybe')).rejects.toThrow(
      "Expected 'on' or 'off'",
    );
    await m.humanCommand('migrate_set_capability xbzrle on');
    expect(await m.humanCommand('info migrate_capabilities')).toMatch(/^xbzrle: on\nrdma-pin-all: off\n/);
    expect(await rejectionOf(m.execute('query-status'))).toBeInstanceOf(MonitorError);
    await expect(m.waitForEvent('STOP').promise).rejects.toThrow(/no events/);
    await expect(m.humanCommand('info status\nquit')).rejects.toBeInstanceOf(HmpError);
    expect(m.sent).toEqual([
      'info version',
      'info status',
      'migrate_set_speed 32m',
      'migrate_set_parameter max-bandwidth 10',
      'migrate_set_parameter downtime-limit 30',
      'migrate_set_parameter downtime-limit 5000000',
      'migrate_set_capability nope on',
      'migrate_set_capability xbzrle maybe',
      'migrate_set_capability xbzrle on',
      'info migrate_capabilities',
    ]);
  });

  it('QEMU 7.2: info migrate before, during and after a migration', async () => {
    const m = new MockMonitor({ protocol: 'hmp', version: '7.2.22' });
    const before = await m.humanCommand('info migrate');
    expect(before).toMatch(/^globals:\n/);
    expect(before).not.toContain('Migration status');
    expect(await m.humanCommand('migrate -d tcp:10.0.0.2:8102')).toBe('');
    await expect(m.humanCommand('migrate -d tcp:10.0.0.2:8102')).rejects.toThrow(
      "There's a migration process in progress",
    );
    m.migration.advance({ transferred: 2048 * 1024, remaining: 1024 * 1024 });
    const during = await m.humanCommand('info migrate');
    expect(during).toContain('Migration status: active\n');
    expect(during).toContain('transferred ram: 2048 kbytes\n');
    expect(during).toContain('remaining ram: 1024 kbytes\n');
    await expect(m.humanCommand('migrate_start_postcopy')).rejects.toThrow(/Enable postcopy/);
    m.completeMigration();
    expect(await m.humanCommand('info status')).toBe('VM status: paused (postmigrate)\n');
    expect(await m.humanCommand('info migrate')).toContain('Migration status: completed\n');
    await expect(m.humanCommand('migrate -d tcp:10.0.0.2:8102')).rejects.toThrow(
      /paused due to previous migration/,
    );
  });

  it('QEMU 2.8 and 1.7: legacy speed/downtime, parameter availability', async () => {
    const m28 = new MockMonitor({ protocol: 'hmp', version: '2.8.0' });
    await m28.humanCommand('migrate_set_speed 32m');
    expect(m28.parameters['max-bandwidth']).toBe(32 * 1024 * 1024);
    await m28.humanCommand('migrate_set_speed 10');
    expect(m28.parameters['max-bandwidth']).toBe(10 * 1024 * 1024);
    await m28.humanCommand('migrate_set_downtime 0.03');
    expect(m28.parameters['downtime-limit']).toBe(30);
    await m28.humanCommand('migrate_set_downtime 500ms');
    expect(m28.parameters['downtime-limit']).toBe(500);
    await m28.humanCommand('migrate_set_parameter max-bandwidth 64');
    expect(m28.parameters['max-bandwidth']).toBe(64 * 1024 * 1024);
    expect(await m28.humanCommand('info migrate')).toBe('');

    const m17 = new MockMonitor({ protocol: 'hmp', version: '1.7.0' });
    await expect(m17.humanCommand('migrate_set_parameter max-bandwidth 10')).rejects.toThrow(
      "unknown command: 'migrate_set_parameter'",
    );
    await expect(m17.humanCommand('migrate_start_postcopy')).rejects.toThrow('unknown command');
    await m17.humanCommand('migrate_set_speed 100m');
    await m17.humanCommand('migrate_set_downtime 1');
    expect(await m17.humanCommand('info migrate_capabilities')).toBe(
      'xbzrle: off\nx-rdma-pin-all: off\nauto-converge: off\nzero-blocks: off\n',
    );
    await expect(m17.humanCommand('info bogus')).rejects.toThrow("unknown command: 'info bogus'");
  });

  it('failCommand with HMP text and setReply with a function', async () => {
    const m = new MockMonitor({ protocol: 'hmp' });
    m.failCommand('migrate', 'Error: Failed to connect socket: Connection refused');
    await expect(m.humanCommand('migrate -d tcp:h:1')).rejects.toMatchObject({
      command: 'migrate -d tcp:h:1',
      text: 'Error: Failed to connect socket: Connection refused',
    });
    m.setReply('info status', (c: { line?: string }) => `VM status: paused (${c.line?.length})\n`);
    expect(await m.humanCommand('info status')).toBe('VM status: paused (11)\n');
  });
});
