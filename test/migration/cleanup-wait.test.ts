/**
 * Settings are put back only once QEMU has cleaned the migration up: on QEMU 11.1.3,
 * turning `multifd` and the TLS parameters off a moment after `completed` made the source
 * abort (`yank_unregister_instance` assertion) and the destination fail its load.
 */
import { describe, expect, it } from 'vitest';
import { UnrecognizedOutputError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { migrationYankRegistered } from '../../src/migration/cleanup-wait.js';
import { MockMonitor } from '../../src/testing/index.js';

const instance = { name: 'vm1', hvparams: { migration_caps: 'multifd' } };
const isSetting = (c: string) => c === 'migrate-set-parameters' || c === 'migrate-set-capabilities';

describe('migrationYankRegistered', () => {
  it("reads query-yank's list", () => {
    expect(migrationYankRegistered([{ type: 'chardev', id: 'mon0' }, { type: 'migration' }])).toBe(true);
    expect(migrationYankRegistered([{ type: 'chardev', id: 'mon0' }])).toBe(false);
    expect(migrationYankRegistered([])).toBe(false);
  });

  it('an answer of another shape is an error quoting it', () => {
    expect(() => migrationYankRegistered({})).toThrow(UnrecognizedOutputError);
    expect(() => migrationYankRegistered([{ id: 'x' }])).toThrow(
      expect.objectContaining({ command: 'query-yank', text: '[{"id":"x"}]' }),
    );
  });
});

describe('restoring after a migration', () => {
  it('waits until QEMU has cleaned up (its migration yank instance is gone) before any setting', async () => {
    const mock = new MockMonitor({ version: '11.1.3' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await hv.migrateInstance(instance, '10.0.0.2');
    mock.completeMigration();
    mock.migration.cleanupPolls = 3;
    const from = mock.sent.length;
    await hv.finalizeMigrationSource(instance, true);
    const after = mock.sentCommands.slice(from);
    const yanks = after.flatMap((c, i) => (c === 'query-yank' ? [i] : []));
    expect(yanks).toHaveLength(4);
    const firstSetting = after.findIndex(isSetting);
    expect(firstSetting).toBeGreaterThan(yanks.at(-1)!);
    expect(mock.capabilities.multifd).toBe(false);
  });

  it('leaves the settings alone when the clean-up does not end within the step', async () => {
    const mock = new MockMonitor({ version: '11.1.3' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await hv.migrateInstance(instance, '10.0.0.2');
    mock.completeMigration();
    mock.migration.cleanupPolls = Number.POSITIVE_INFINITY;
    const from = mock.sent.length;
    const outcome = await hv.finalizeMigrationSource(instance, true, { timeoutMs: 200 });
    expect(outcome).toMatchObject({ side: 'source', action: 'paused' });
    expect(mock.sentCommands.slice(from).filter(isSetting)).toEqual([]);
    // A later set-up clears what was left on.
    expect(mock.capabilities.multifd).toBe(true);
  });

  it('applies on the destination too, before its settings are put back', async () => {
    const dst = new MockMonitor({ version: '11.1.3', runState: 'inmigrate' });
    const hv = new KVMHypervisor({ monitor: () => dst });
    await hv.acceptInstance(instance);
    dst.migration.status = 'completed';
    dst.migration.cleanupPolls = 2;
    dst.runState = 'running';
    const from = dst.sent.length;
    await hv.finalizeMigrationDst(instance, true);
    const after = dst.sentCommands.slice(from);
    expect(after.filter((c) => c === 'query-yank')).toHaveLength(3);
    expect(after.findIndex(isSetting)).toBeGreaterThan(after.lastIndexOf('query-yank'));
  });

  it('without query-yank (QEMU 5.2) it waits for the run state to leave finish-migrate', async () => {
    const mock = new MockMonitor({ version: '5.2.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await hv.migrateInstance(instance, '10.0.0.2');
    mock.completeMigration();
    const from = mock.sent.length;
    await hv.finalizeMigrationSource(instance, true);
    expect(mock.sentCommands.slice(from)).not.toContain('query-yank');
    expect(mock.capabilities.multifd).toBe(false);
  });
});

describe('a destination whose load failed', () => {
  it('is reported at once with QEMU’s reason, not after the whole wait', async () => {
    const dst = new MockMonitor({ version: '11.1.3', runState: 'inmigrate' });
    const hv = new KVMHypervisor({ monitor: () => dst });
    await hv.acceptInstance(instance);
    dst.migration.status = 'failed';
    dst.migration.errorDesc = 'Cannot read from TLS channel: The TLS connection was non-properly terminated.';
    const from = dst.sent.length;
    const e = await hv.finalizeMigrationDst(instance, true, { timeoutMs: 20_000 }).catch((x) => x);
    // One look at each: no polling until the step's end.
    expect(dst.sentCommands.slice(from).filter((c) => c === 'query-status')).toHaveLength(1);
    expect(e).toMatchObject({
      status: 'failed',
      reason: 'Cannot read from TLS channel: The TLS connection was non-properly terminated.',
    });
    expect(e.message).toContain("the destination's incoming migration failed: Cannot read from TLS channel");
  });
});

describe('a source whose migration failed, read before QEMU restored its run state', () => {
  // QEMU sets `failed` from its migration thread and resumes the VM when it next holds the
  // main lock; a query in between reads `failed` + `finish-migrate` (seen on 10.0, TCG, loaded).
  it('waits for QEMU to leave finish-migrate, then reports the VM running (QEMU resumed it, not us)', async () => {
    const mock = new MockMonitor({ version: '10.0.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await hv.migrateInstance(instance, '10.0.0.2');
    mock.failMigration('Unable to write to socket: Connection reset by peer');
    mock.runState = 'finish-migrate';
    let reads = 0;
    mock.setReply('query-status', () => {
      if (++reads === 3) mock.runState = 'running';
      return { status: mock.runState, running: mock.runState === 'running', singlestep: false };
    });
    const from = mock.sent.length;
    const outcome = await hv.finalizeMigrationSource(instance, false);
    expect(outcome).toMatchObject({ side: 'source', action: 'already-running' });
    expect(reads).toBeGreaterThanOrEqual(3);
    expect(mock.sentCommands.slice(from)).not.toContain('cont');
  });

  it('refuses to resume when QEMU stays in finish-migrate for the whole step', async () => {
    const mock = new MockMonitor({ version: '10.0.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await hv.migrateInstance(instance, '10.0.0.2');
    mock.failMigration('Unable to write to socket: Connection reset by peer');
    mock.runState = 'finish-migrate';
    const from = mock.sent.length;
    const e = await hv.finalizeMigrationSource(instance, false, { timeoutMs: 300 }).catch((x) => x);
    expect(e.message).toContain("its run state is 'finish-migrate'");
    expect(mock.sentCommands.slice(from)).not.toContain('cont');
    expect(mock.sentCommands.slice(from).filter((c) => c === 'query-status').length).toBeGreaterThan(1);
  });
});
