/**
 * The exact commands, in order, that each dialect sends, against MockMonitor imitating
 * QEMU 1.7, 2.4, 2.8, 3.0, 7.2 and a future 11.0, over QMP and HMP.
 */
import { describe, expect, it } from 'vitest';
import { HvParamError, MigrationError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import type { Instance } from '../../src/migration/types.js';
import { MockMonitor } from '../../src/testing/index.js';

function hvWith(mock: MockMonitor) {
  return new KVMHypervisor({ monitor: () => mock });
}

const inst = (hvparams: Instance['hvparams'] = {}): Instance => ({
  name: 'vm',
  hvparams: { migration_port: 8102, migration_bandwidth: 32, migration_downtime: 30, ...hvparams },
});

/** Starts a migration and returns only what migrateInstance sent after its read-only checks. */
async function migrateCommands(mock: MockMonitor, instance: Instance, live = true) {
  await hvWith(mock).migrateInstance(instance, '10.0.0.2', live);
  return mock.sent;
}

describe('HMP dialects', () => {
  it('QEMU 1.7 over HMP: exactly Ganeti’s commands, x-rdma-pin-all by its 1.7 name', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '1.7.0' });
    const sent = await migrateCommands(mock, inst({ migration_caps: 'xbzrle:rdma-pin-all' }), false);
    expect(sent).toEqual([
      'info status',
      'info migrate',
      'info migrate_capabilities',
      'stop',
      'migrate_set_speed 32m',
      'migrate_set_downtime 30ms',
      'migrate_set_capability xbzrle on',
      'migrate_set_capability x-rdma-pin-all on',
      'migrate -d tcp:10.0.0.2:8102',
    ]);
    expect(mock.capabilities).toMatchObject({ xbzrle: true, 'x-rdma-pin-all': true });
  });

  it('QEMU 2.8 over HMP: migrate_set_parameter with an explicit MiB suffix', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '2.8.0' });
    const sent = await migrateCommands(
      mock,
      inst({ migration_caps: 'postcopy-ram', migration_bandwidth: 64 }),
    );
    // The fourth read-only command snapshots the parameters, to restore them afterwards.
    expect(sent[3]).toBe('info migrate_parameters');
    expect(sent.slice(4)).toEqual([
      'migrate_set_parameter max-bandwidth 64M',
      'migrate_set_parameter downtime-limit 30',
      'migrate_set_capability postcopy-ram on',
      'migrate -d tcp:10.0.0.2:8102',
    ]);
    expect(mock.parameters).toMatchObject({ 'max-bandwidth': 64 * 1024 * 1024, 'downtime-limit': 30 });
  });

  it('QEMU 2.8 over HMP: a value QEMU already has is not sent again', async () => {
    // 2.8 starts at 32 MiB/s, the hvparam's value here.
    const mock = new MockMonitor({ protocol: 'hmp', version: '2.8.0' });
    const sent = await migrateCommands(mock, inst());
    expect(sent.slice(4)).toEqual([
      'migrate_set_parameter downtime-limit 30',
      'migrate -d tcp:10.0.0.2:8102',
    ]);
    expect(mock.parameters).toMatchObject({ 'max-bandwidth': 32 * 1024 * 1024, 'downtime-limit': 30 });
  });

  it('QEMU 7.2 over HMP: never sends the removed migrate_set_speed', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '7.2.22' });
    const sent = await migrateCommands(mock, inst({ migration_caps: 'x-postcopy-ram' }));
    expect(sent).not.toContain('migrate_set_speed 32m');
    expect(sent[3]).toBe('info migrate_parameters');
    expect(sent.slice(4)).toEqual([
      'migrate_set_parameter max-bandwidth 32M',
      'migrate_set_parameter downtime-limit 30',
      'migrate_set_parameter max-postcopy-bandwidth 32M',
      'migrate_set_capability postcopy-ram on',
      'migrate -d tcp:10.0.0.2:8102',
    ]);
  });
});

describe('QMP dialects', () => {
  it('QEMU 1.7 over QMP: migrate_set_speed in bytes/s, migrate_set_downtime in seconds, no events', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '1.7.0' });
    const sent = await migrateCommands(mock, inst({ migration_caps: 'x-rdma-pin-all:auto-converge' }));
    expect(sent).toEqual([
      { execute: 'query-status' },
      { execute: 'query-migrate' },
      { execute: 'query-migrate-capabilities' },
      { execute: 'migrate_set_speed', arguments: { value: 33554432 } },
      { execute: 'migrate_set_downtime', arguments: { value: 0.03 } },
      {
        execute: 'migrate-set-capabilities',
        arguments: {
          capabilities: [
            { capability: 'x-rdma-pin-all', state: true },
            { capability: 'auto-converge', state: true },
          ],
        },
      },
      { execute: 'migrate', arguments: { uri: 'tcp:10.0.0.2:8102' } },
    ]);
  });

  it('QEMU 2.4 over QMP: still the legacy speed/downtime commands, events turned on', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '2.4.0' });
    const sent = await migrateCommands(mock, inst({ migration_caps: 'xbzrle' }));
    expect(sent.slice(3)).toEqual([
      { execute: 'migrate_set_speed', arguments: { value: 33554432 } },
      { execute: 'migrate_set_downtime', arguments: { value: 0.03 } },
      {
        execute: 'migrate-set-capabilities',
        arguments: {
          capabilities: [
            { capability: 'xbzrle', state: true },
            { capability: 'events', state: true },
          ],
        },
      },
      { execute: 'migrate', arguments: { uri: 'tcp:10.0.0.2:8102' } },
    ]);
  });

  it('QEMU 2.8 over QMP: one migrate-set-parameters without max-postcopy-bandwidth', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '2.8.0' });
    const sent = await migrateCommands(mock, inst({ migration_bandwidth: 64 }));
    expect(sent[3]).toEqual({ execute: 'query-migrate-parameters' });
    expect(sent.slice(4)).toEqual([
      { execute: 'migrate-set-parameters', arguments: { 'max-bandwidth': 67108864, 'downtime-limit': 30 } },
      {
        execute: 'migrate-set-capabilities',
        arguments: { capabilities: [{ capability: 'events', state: true }] },
      },
      { execute: 'migrate', arguments: { uri: 'tcp:10.0.0.2:8102' } },
    ]);
  });

  it('QEMU 3.0 over QMP: x-multifd by its 3.0 name; no max-postcopy-bandwidth without post-copy', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '3.0.0' });
    const sent = await migrateCommands(
      mock,
      inst({ migration_caps: 'multifd', migration_bandwidth: 64 }),
      false,
    );
    expect(sent[3]).toEqual({ execute: 'query-migrate-parameters' });
    expect(sent.slice(4)).toEqual([
      { execute: 'stop' },
      { execute: 'migrate-set-parameters', arguments: { 'max-bandwidth': 67108864, 'downtime-limit': 30 } },
      {
        execute: 'migrate-set-capabilities',
        arguments: {
          capabilities: [
            { capability: 'x-multifd', state: true },
            { capability: 'events', state: true },
          ],
        },
      },
      { execute: 'migrate', arguments: { uri: 'tcp:10.0.0.2:8102' } },
    ]);
  });

  it('QEMU 3.0 over QMP: post-copy also caps max-postcopy-bandwidth (Ganeti PR #1539)', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '3.0.0' });
    const sent = await migrateCommands(
      mock,
      inst({ migration_caps: 'postcopy-ram', migration_bandwidth: 64 }),
    );
    expect(sent.slice(4, 5)).toEqual([
      {
        execute: 'migrate-set-parameters',
        arguments: { 'max-bandwidth': 67108864, 'downtime-limit': 30, 'max-postcopy-bandwidth': 67108864 },
      },
    ]);
  });

  it('QEMU 7.2 over QMP: clears capabilities a failed migration left on', async () => {
    const mock = new MockMonitor({
      protocol: 'qmp',
      version: '7.2.22',
      capabilities: { 'auto-converge': true },
    });
    const sent = await migrateCommands(mock, inst({ migration_caps: 'xbzrle' }));
    expect(sent[5]).toEqual({
      execute: 'migrate-set-capabilities',
      arguments: {
        capabilities: [
          { capability: 'xbzrle', state: true },
          { capability: 'events', state: true },
          { capability: 'auto-converge', state: false },
        ],
      },
    });
    expect(mock.capabilities).toMatchObject({ xbzrle: true, events: true, 'auto-converge': false });
  });

  it('QEMU 11.0 (future): unknown statuses are waited on, not fatal', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '11.0.0' });
    const hv = hvWith(mock);
    const i = inst({ migration_caps: 'multifd:postcopy-ram' });
    await hv.migrateInstance(i, '10.0.0.2');
    const statuses: string[] = [];
    const done = hv.waitForMigration(i, {
      pollIntervalMs: 5,
      onProgress: (p) => {
        statuses.push(p.status);
        if (p.status === 'active' && !statuses.includes('failing-soon'))
          mock.migration.advance({ status: 'failing-soon' });
        if (p.status === 'failing-soon') mock.migration.advance({ status: 'postcopy-device' });
        if (p.status === 'postcopy-device') mock.completeMigration();
      },
    });
    const result = await done;
    expect(result.status).toBe('completed');
    expect(statuses).toContain('failing-soon');
    expect(statuses).toContain('postcopy-device');
  });
});

describe('checks before anything is sent', () => {
  it('names the capability and the version QEMU lacks, sends no change', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '2.4.0' });
    const err = await hvWith(mock)
      .migrateInstance(inst({ migration_caps: 'postcopy-ram' }), '10.0.0.2')
      .catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.message).toMatch(/'postcopy-ram' is not supported by QEMU 2\.4\.0/);
    expect(mock.sentCommands).toEqual(['query-status', 'query-migrate', 'query-migrate-capabilities']);
  });

  it('refuses a combination the version refuses (multifd + xbzrle on 8.1)', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '8.1.0' });
    const err = await hvWith(mock)
      .migrateInstance(inst({ migration_caps: 'multifd:xbzrle' }), '10.0.0.2')
      .catch((e) => e);
    expect(err.message).toMatch(/'multifd' cannot be combined with 'xbzrle' on QEMU 8\.1\.0/);
    expect(mock.sentCommands).not.toContain('migrate');
  });

  it('rejects a bad target and bad hvparams without a single command', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0' });
    await expect(hvWith(mock).migrateInstance(inst(), 'evil\nquit')).rejects.toThrow(/not a host name/);
    await expect(hvWith(mock).migrateInstance(inst({ migration_port: 65535 }), '10.0.0.2')).rejects.toThrow(
      HvParamError,
    );
    await expect(
      hvWith(mock).migrateInstance(inst({ migration_caps: 'xbzrle\nquit' }), '10.0.0.2'),
    ).rejects.toThrow(/migration_caps/);
    await expect(
      hvWith(mock).migrateInstance(inst({ migration_downtime: 2_000_001 }), '10.0.0.2'),
    ).rejects.toThrow(/2000000/);
    expect(mock.sent).toEqual([]);
  });

  it('refuses to migrate a source that has already been migrated away', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0', runState: 'postmigrate' });
    await expect(hvWith(mock).migrateInstance(inst(), '10.0.0.2')).rejects.toThrow(/already been migrated/);
    // The read-only queries go out together; nothing that changes the VM follows.
    expect(mock.sentCommands).toEqual([
      'query-status',
      'query-migrate',
      'query-migrate-capabilities',
      'query-migrate-parameters',
    ]);
  });
});

describe('failures are caught, reported and rolled back', () => {
  it('an HMP error text while setting the downtime stops everything and resumes the VM', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '2.8.0' });
    mock.failCommand(
      (c) => c.name === 'migrate_set_parameter' && String(c.line).includes('downtime'),
      'Error: nope',
    );
    const err = await hvWith(mock)
      .migrateInstance(inst({ migration_caps: 'xbzrle' }), '10.0.0.2', false)
      .catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.message).toMatch(/migrate_set_parameter downtime-limit 30.*Error: nope/);
    expect(mock.sent.at(-1)).toBe('cont');
    expect(mock.sent).not.toContain('migrate -d tcp:10.0.0.2:8102');
  });

  it('a QMP error on migrate clears the capabilities it set', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0' });
    mock.failCommand('migrate', { class: 'GenericError', desc: "There's a migration process in progress" });
    const err = await hvWith(mock)
      .migrateInstance(inst({ migration_caps: 'xbzrle' }), '10.0.0.2')
      .catch((e) => e);
    expect(err.message).toMatch(/There's a migration process in progress/);
    expect(mock.capabilities).toMatchObject({ xbzrle: false });
  });

  it('reports QEMU’s error-desc on failure', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    const waiting = hv.waitForMigration(inst(), { pollIntervalMs: 5 });
    mock.failMigration("Failed to connect to '10.0.0.2:8102': Connection refused");
    const err = await waiting.catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.status).toBe('failed');
    expect(err.reason).toBe("Failed to connect to '10.0.0.2:8102': Connection refused");
  });

  it('an event-driven completion is seen without waiting for the next poll', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    // With an hour between polls, only the MIGRATION event can end this wait in time.
    const waiting = hv.waitForMigration(inst(), { pollIntervalMs: 3_600_000 });
    setTimeout(() => mock.completeMigration(), 20);
    await expect(waiting).resolves.toMatchObject({ status: 'completed' });
  });

  it('refuses to resume a source whose migration completed', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    mock.completeMigration();
    await expect(hv.finalizeMigrationSource(inst(), false)).rejects.toThrow(/not resuming the source/);
    expect(mock.sentCommands).not.toContain('cont');
  });

  it('keeps a destination that already runs the VM after a failure report', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0', runState: 'running' });
    await expect(hvWith(mock).finalizeMigrationDst(inst(), false)).resolves.toEqual({
      side: 'destination',
      action: 'kept-running',
      status: 'running',
    });
    expect(mock.sentCommands).not.toContain('quit');
  });

  it('accepts on the destination: only capabilities needed at both ends, and only when inmigrate', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0', runState: 'inmigrate' });
    expect(await hvWith(mock).acceptInstance(inst({ migration_caps: 'xbzrle:postcopy-ram' }))).toEqual([
      'postcopy-ram',
    ]);
    expect(mock.capabilities).toMatchObject({ 'postcopy-ram': true, xbzrle: false });
    const running = new MockMonitor({ protocol: 'qmp', version: '7.2.0' });
    await expect(hvWith(running).acceptInstance(inst())).rejects.toThrow(
      /not waiting for an incoming migration/,
    );
  });
});

describe('destination finalize', () => {
  it('waits while the destination is still loading the VM, then resumes it', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0', runState: 'inmigrate' });
    const hv = hvWith(mock);
    let polls = 0;
    mock.setReply('query-status', () => {
      polls++;
      return polls < 3 ? { status: 'inmigrate', running: false } : { status: 'paused', running: false };
    });
    await hv.finalizeMigrationDst(inst(), true);
    expect(polls).toBeGreaterThanOrEqual(3);
    expect(mock.sentCommands.at(-1)).toBe('cont');
  });
});

describe('completion numbers', () => {
  it('asks again while QEMU reports completed with total-time 0', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    let n = 0;
    mock.setReply('query-migrate', () =>
      ++n < 3
        ? {
            status: 'completed',
            'total-time': 0,
            downtime: 0,
            ram: { transferred: 8000, total: 8000, remaining: 0 },
          }
        : {
            status: 'completed',
            'total-time': 4000,
            downtime: 9,
            ram: { transferred: 8000, total: 8000, remaining: 0 },
          },
    );
    const r = await hv.waitForMigration(inst(), { pollIntervalMs: 5 });
    expect(r).toMatchObject({
      totalTimeMs: 4000,
      downtimeMs: 9,
      transferredBytes: 8000,
      averageSpeedBytesPerSec: 2000,
    });
  });
});

describe('event-driven wait', () => {
  it('does not miss a MIGRATION event that arrives while a status query is in flight', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.0' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    let calls = 0;
    mock.setReply('query-migrate', () => {
      calls++;
      if (calls === 1) {
        // QEMU finishes (and sends its events) while this stale 'active' answer is on its way.
        mock.completeMigration();
        return { status: 'active', ram: { transferred: 1, remaining: 1, total: 2 } };
      }
      return {
        status: 'completed',
        'total-time': 10,
        downtime: 1,
        ram: { transferred: 2, remaining: 0, total: 2 },
      };
    });
    // An hour between polls: only the missed-event check can end this wait in time.
    await expect(hv.waitForMigration(inst(), { pollIntervalMs: 3_600_000 })).resolves.toMatchObject({
      status: 'completed',
    });
  });
});
