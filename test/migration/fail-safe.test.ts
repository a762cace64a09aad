/**
 * The fail-safe rules without QEMU: the resume verdict, deadlines that hold against a
 * frozen monitor, recovery that cannot strand a VM, settings restored, double calls.
 * The same faults on real QEMU are in test/faults/.
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Deadline, DeadlineError } from '../../src/core/deadline.js';
import { MigrationError, MonitorError, UnrecognizedOutputError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { parseInfoMigrateParameters, parseQueryMigrateParameters } from '../../src/migration/parameters.js';
import { runMigration } from '../../src/migration/run.js';
import { sourceVerdict } from '../../src/migration/safety.js';
import { restoreCommands } from '../../src/migration/settings.js';
import type { Instance } from '../../src/migration/types.js';
import { parseVersion } from '../../src/qemu/version.js';
import { MockMonitor } from '../../src/testing/index.js';

const inst = (hvparams: Instance['hvparams'] = {}): Instance => ({
  name: 'vm',
  hvparams: { migration_port: 8102, migration_bandwidth: 32, migration_downtime: 30, ...hvparams },
});
const hvWith = (mock: MockMonitor) => new KVMHypervisor({ monitor: () => mock });
const never = () => new Promise<never>(() => {});
const elapsed = async <T>(p: Promise<T>): Promise<[T | Error, number]> => {
  const t0 = Date.now();
  const r = await p.catch((e: Error) => e);
  return [r, Date.now() - t0];
};

describe('the resume verdict (safety.ts)', () => {
  const running = { running: true, status: 'running' };
  const paused = { running: false, status: 'paused' };
  const post = { running: false, status: 'postmigrate' };
  it.each([
    ['postmigrate with an unreadable status', post, { error: new Error('x') }, 'refuse'],
    ['postmigrate with status none (the 11.x HMP case)', post, { status: 'none' }, 'refuse'],
    ['completed', paused, { status: 'completed' }, 'refuse'],
    [
      'finish-migrate (11.1 right after completed)',
      { running: false, status: 'finish-migrate' },
      { status: 'failed' },
      'refuse',
    ],
    ['post-copy', paused, { status: 'postcopy-active' }, 'refuse'],
    ['an unknown status', paused, { status: 'colo-future' }, 'refuse'],
    ['unreadable run state', { error: new Error('x') }, { status: 'failed' }, 'refuse'],
    ['unreadable migration status', paused, { error: new Error('x') }, 'refuse'],
    ['active', paused, { status: 'active' }, 'cancel-first'],
    ['failed and paused', paused, { status: 'failed' }, 'resume'],
    ['cancelled and running', running, { status: 'cancelled' }, 'already-running'],
    ['no migration, paused', paused, { status: 'none' }, 'resume'],
  ] as const)('%s → %s', (_what, runState, migration, kind) => {
    expect(sourceVerdict({ runState, migration }).kind).toBe(kind);
  });
});

describe('Deadline', () => {
  it('abandons a call that never answers at the deadline', async () => {
    const [r, ms] = await elapsed(Deadline.after(100).race(never(), 'query-status'));
    expect(r).toBeInstanceOf(DeadlineError);
    expect((r as DeadlineError).deadlineCause).toBe('timeout');
    expect(ms).toBeLessThan(1000);
  });
  it('abandons it at once when the signal fires', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    const r = await Deadline.after(undefined, ac.signal)
      .race(never(), 'x')
      .catch((e) => e);
    expect((r as DeadlineError).deadlineCause).toBe('aborted');
  });
  it('rejects a negative limit', () => {
    expect(() => Deadline.after(-1)).toThrow(/timeoutMs/);
  });
});

describe('parameter snapshots', () => {
  const v72 = parseVersion('7.2.22')!;
  it('reads QEMU 7.2 HMP info migrate_parameters', () => {
    const text =
      'announce-initial: 50 ms\r\nmax-bandwidth: 134217728 bytes/second\r\ndowntime-limit: 300 ms\r\n' +
      'x-checkpoint-delay: 20000 ms\r\nmax-postcopy-bandwidth: 0\r\n';
    expect(parseInfoMigrateParameters(text, v72)).toEqual({
      maxBandwidth: 134217728,
      downtimeLimit: 300,
      maxPostcopyBandwidth: 0,
    });
  });
  it('reads the one-line layout of QEMU 2.8', () => {
    const text =
      "parameters: compress-level: 1 tls-hostname: '' max-bandwidth: 33554432 bytes/second downtime-limit: 300 milliseconds\r\n";
    expect(parseInfoMigrateParameters(text, parseVersion('2.8.0')!)).toEqual({
      maxBandwidth: 33554432,
      downtimeLimit: 300,
    });
  });
  it('quotes text it cannot read instead of inventing a value', () => {
    expect(() => parseInfoMigrateParameters('max-bandwidth: fast\ndowntime-limit: 3 ms\n', v72)).toThrow(
      UnrecognizedOutputError,
    );
    expect(() => parseInfoMigrateParameters('something else', v72)).toThrow(/no 'max-bandwidth'/);
    expect(() => parseQueryMigrateParameters({ 'max-bandwidth': 1 }, v72)).toThrow(/downtime-limit/);
    expect(() => parseQueryMigrateParameters([], v72)).toThrow(UnrecognizedOutputError);
  });
  it('restores with an explicit byte suffix over HMP', () => {
    expect(
      restoreCommands('hmp', {
        parameters: { maxBandwidth: 1048576, downtimeLimit: 300 },
        capabilities: [['xbzrle', false]],
      }),
    ).toEqual([
      { kind: 'hmp', line: 'migrate_set_parameter max-bandwidth 1048576B' },
      { kind: 'hmp', line: 'migrate_set_parameter downtime-limit 300' },
      { kind: 'hmp', line: 'migrate_set_capability xbzrle off' },
    ]);
  });
});

describe('finalizeMigrationSource(false): never resumes a source that may have migrated', () => {
  it('refuses postmigrate even when the HMP status text is a layout never seen (QEMU 11.1 case)', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '11.1.0', runState: 'postmigrate' });
    mock.setReply('info migrate', 'Status: \t\tcompleted\nTime (ms): \t\ttotal=1717, setup=0, down=46\n');
    const err = await hvWith(mock)
      .finalizeMigrationSource(inst(), false)
      .catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.message).toMatch(/not resuming the source: its run state is 'postmigrate'/);
    expect(err.message).toMatch(/forceResume/);
    expect(mock.sentCommands).not.toContain('cont');
  });

  it('refuses a completed migration over QMP, and only forceResume resumes it', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    mock.completeMigration();
    await expect(hv.finalizeMigrationSource(inst(), false)).rejects.toThrow(/'postmigrate'|'completed'/);
    expect(mock.sentCommands).not.toContain('cont');
    const forced = await hv.finalizeMigrationSource(inst(), false, { forceResume: true });
    expect(forced.action).toBe('force-resumed');
    expect(mock.sentCommands).toContain('cont');
  });

  it('refuses when the migration status cannot be read after migrate', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '7.2.22' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst({ migration_mode: 'non-live' }), '10.0.0.2');
    mock.setReply('info migrate', 'Migration state? who knows\n');
    const err = await hv.finalizeMigrationSource(inst(), false).catch((e) => e);
    expect(err.message).toMatch(/migration status cannot be read/);
    expect(err.message).toContain('who knows');
    expect(mock.sentCommands).not.toContain('cont');
  });

  it('cancels a running migration, resumes the VM it stopped, and restores bandwidth and downtime', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const before = { ...mock.parameters };
    const hv = hvWith(mock);
    await hv.migrateInstance(inst({ migration_caps: 'xbzrle', migration_mode: 'non-live' }), '10.0.0.2');
    expect(mock.parameters['max-bandwidth']).toBe(32 * 2 ** 20);
    const out = await hv.finalizeMigrationSource(inst(), false);
    expect(out).toEqual({ side: 'source', action: 'resumed', status: 'running' });
    expect(mock.sentCommands).toContain('migrate_cancel');
    expect(mock.parameters['max-bandwidth']).toBe(before['max-bandwidth']);
    expect(mock.parameters['downtime-limit']).toBe(before['downtime-limit']);
    // 'events' only makes QEMU report migration states: once on, it stays on.
    expect(mock.capabilities).toMatchObject({ xbzrle: false, events: true });
  });

  it('restores the settings after a successful migration too', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '7.2.22' });
    const before = { ...mock.parameters };
    const hv = hvWith(mock);
    await hv.migrateInstance(inst({ migration_caps: 'auto-converge' }), '10.0.0.2');
    mock.completeMigration();
    await hv.waitForMigration(inst(), { pollIntervalMs: 1 });
    expect(await hv.finalizeMigrationSource(inst(), true)).toMatchObject({ action: 'paused' });
    expect(mock.parameters).toMatchObject({
      'max-bandwidth': before['max-bandwidth'],
      'downtime-limit': before['downtime-limit'],
    });
    expect(mock.capabilities['auto-converge']).toBe(false);
  });

  it('says the source QEMU is gone instead of pretending it runs', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    mock.disconnect();
    const gone = new KVMHypervisor({
      monitor: () => {
        throw new MonitorError('cannot connect to monitor socket /x: ECONNREFUSED: connect ECONNREFUSED', {
          cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
        });
      },
    });
    await expect(gone.finalizeMigrationSource(inst(), false)).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('deadlines hold against a frozen QEMU', () => {
  it('waitForMigration with timeoutMs settles within the deadline + 1 s, says unresponsive, sends migrate_cancel', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    mock.setReply('query-migrate', never);
    mock.setReply('migrate_cancel', never);
    const [err, ms] = await elapsed(hv.waitForMigration(inst(), { timeoutMs: 300, pollIntervalMs: 10 }));
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).unresponsive).toBe(true);
    expect((err as Error).message).toMatch(/unresponsive.*not resumed/);
    expect(ms).toBeLessThan(300 + 1000 + 500);
    expect(mock.sentCommands).toContain('migrate_cancel');
  });

  it('an AbortSignal ends a frozen wait at once', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '7.2.22' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    mock.setReply('info migrate', never);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const [err, ms] = await elapsed(hv.waitForMigration(inst(), { signal: ac.signal, pollIntervalMs: 10 }));
    expect((err as Error).message).toMatch(/cancelled by the caller/);
    expect(ms).toBeLessThan(100 + 1000 + 500);
  });

  it('finalize, cancel and accept take timeoutMs and settle on a frozen monitor', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.22', runState: 'inmigrate' });
    mock.setReply('query-status', never);
    mock.setReply('query-migrate', never);
    const hv = hvWith(mock);
    for (const call of <(() => Promise<unknown>)[]>[
      () => hv.acceptInstance(inst(), { timeoutMs: 200 }),
      () => hv.cancelMigration(inst(), { timeoutMs: 200 }),
      () => hv.finalizeMigrationDst(inst(), false, { timeoutMs: 200 }),
      () => hv.finalizeMigrationSource(inst(), false, { timeoutMs: 200 }),
    ]) {
      const [err, ms] = await elapsed(call());
      expect(err).toBeInstanceOf(MigrationError);
      expect(ms).toBeLessThan(200 + 1000 + 500);
    }
    expect(mock.sentCommands).not.toContain('quit');
    expect(mock.sentCommands).not.toContain('cont');
  });

  it('a monitor whose factory never connects is bounded too', async () => {
    const hv = new KVMHypervisor({ monitor: never });
    const [err, ms] = await elapsed(hv.getMigrationStatus(inst(), { timeoutMs: 150 }));
    expect((err as MigrationError).unresponsive).toBe(true);
    expect(ms).toBeLessThan(1500);
  });
});

describe('recovery that cannot strand a VM', () => {
  const refused = () =>
    new KVMHypervisor({
      monitor: () => {
        throw new MonitorError('cannot connect to monitor socket /run/x.qmp: ECONNREFUSED', {
          cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
        });
      },
    });

  it('finalizeMigrationDst(false) with the destination QEMU gone is a success', async () => {
    await expect(refused().finalizeMigrationDst(inst(), false)).resolves.toEqual({
      side: 'destination',
      action: 'already-gone',
    });
  });

  it('runMigration: destination dies mid-way → destination already-gone, source cancelled and resumed', async () => {
    const srcMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const dstMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22', runState: 'inmigrate' });
    const dst = new KVMHypervisor({ monitor: () => (dstMock.closed ? refusedFactory() : dstMock) });
    const err = await runMigration({
      source: { hypervisor: hvWith(srcMock), instance: inst({ migration_mode: 'non-live' }) },
      destination: { hypervisor: dst, instance: inst() },
      target: '10.0.0.2',
      pollIntervalMs: 5,
      onProgress: (p) => {
        if (p.status === 'active' && !dstMock.closed) {
          dstMock.disconnect();
          srcMock.failMigration('Unable to write to socket: Connection reset by peer');
        }
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.reason).toMatch(/Connection reset by peer/);
    expect(err.recovery.destination).toEqual({ side: 'destination', action: 'already-gone' });
    expect(err.recovery.source).toMatchObject({ side: 'source', action: 'resumed' });
    expect(srcMock.runState).toBe('running');
  });

  it("runMigration: a destination's own words come from diagnostics when its monitor is gone", async () => {
    const srcMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const dstMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22', runState: 'inmigrate' });
    const dst = new KVMHypervisor({ monitor: () => (dstMock.closed ? refusedFactory() : dstMock) });
    const err = await runMigration({
      source: { hypervisor: hvWith(srcMock), instance: inst() },
      destination: {
        hypervisor: dst,
        instance: inst(),
        diagnostics: () =>
          'warning: something harmless\nqemu: Size mismatch: pc.ram: 0x4000000 != 0x8000000\nqemu: load of migration failed: Invalid argument\n',
      },
      target: '10.0.0.2',
      pollIntervalMs: 5,
      onProgress: (p) => {
        if (p.status === 'active' && !dstMock.closed) {
          dstMock.disconnect();
          srcMock.failMigration('Unable to write to socket: Broken pipe');
        }
      },
    }).catch((e) => e);
    expect(err.destinationReason).toMatch(/Size mismatch: pc.ram/);
    expect(err.message).toMatch(/destination: .*Size mismatch/);
    expect(err.message).toMatch(/Broken pipe/);
  });

  it('runMigration: a source that completed although the wait failed finalizes both ends as done', async () => {
    const srcMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const dstMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22', runState: 'inmigrate' });
    dstMock.setReply('query-status', () =>
      srcMock.migration.status === 'completed'
        ? { status: 'running', running: true }
        : { status: 'inmigrate', running: false },
    );
    let polls = 0;
    const err = await runMigration({
      source: { hypervisor: hvWith(srcMock), instance: inst() },
      destination: { hypervisor: hvWith(dstMock), instance: inst() },
      target: '10.0.0.2',
      pollIntervalMs: 5,
      onProgress: () => {
        if (++polls === 1) {
          // QEMU completes, but our wait only sees failing queries from here on.
          srcMock.failCommand('query-migrate', { class: 'GenericError', desc: 'busy' }, { times: 5 });
          srcMock.completeMigration();
        }
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.message).toMatch(/completed nevertheless/);
    expect(err.recovery.destination).toMatchObject({ action: 'running' });
    expect(err.recovery.source).toMatchObject({ action: 'paused' });
    expect(dstMock.sentCommands).not.toContain('quit');
  });

  it('runMigration: an unreadable status but a postmigrate source never quits the destination still loading', async () => {
    const srcMock = new MockMonitor({ protocol: 'hmp', version: '7.2.22' });
    const dstMock = new MockMonitor({ protocol: 'hmp', version: '7.2.22', runState: 'inmigrate' });
    let loads = 0;
    dstMock.setReply('info status', () =>
      srcMock.migration.status === 'completed' && ++loads > 3
        ? 'VM status: running\n'
        : 'VM status: paused (inmigrate)\n',
    );
    const err = await runMigration({
      source: { hypervisor: hvWith(srcMock), instance: inst() },
      destination: { hypervisor: hvWith(dstMock), instance: inst() },
      target: '10.0.0.2',
      pollIntervalMs: 5,
      onProgress: (p) => {
        if (p.status === 'active') {
          // QEMU completes; from now on its status text is a layout nobody has seen.
          srcMock.completeMigration();
          srcMock.setReply('info migrate', 'Zustand: unbekannt\n');
        }
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.message).toMatch(/Zustand/);
    expect(err.message).toMatch(/completed nevertheless/);
    expect(err.recovery.destination).toMatchObject({ action: 'running' });
    expect(dstMock.sentCommands).not.toContain('quit');
    expect(srcMock.sentCommands).not.toContain('cont');
  });

  it('runMigration: success finalizes both ends', async () => {
    const srcMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22', autoCompleteAfterPolls: 2 });
    const dstMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22', runState: 'inmigrate' });
    dstMock.setReply('query-status', () =>
      srcMock.migration.status === 'completed'
        ? { status: 'running', running: true }
        : { status: 'inmigrate', running: false },
    );
    const r = await runMigration({
      source: { hypervisor: hvWith(srcMock), instance: inst() },
      destination: { hypervisor: hvWith(dstMock), instance: inst() },
      target: '10.0.0.2',
      pollIntervalMs: 5,
    });
    expect(r.status).toBe('completed');
    expect(r.source.action).toBe('paused');
    expect(r.destination.action).toBe('running');
  });

  it('a refused request changes nothing and leaves the source untouched', async () => {
    const srcMock = new MockMonitor({ protocol: 'qmp', version: '2.4.0' });
    const dstMock = new MockMonitor({ protocol: 'qmp', version: '2.4.0', runState: 'inmigrate' });
    const err = await runMigration({
      source: { hypervisor: hvWith(srcMock), instance: inst({ migration_caps: 'postcopy-ram' }) },
      destination: { hypervisor: hvWith(dstMock), instance: inst() },
      target: '10.0.0.2',
    }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.recovery.source).toEqual({ side: 'source', action: 'untouched' });
    expect(srcMock.sentCommands).not.toContain('cont');
  });
});

function refusedFactory(): never {
  throw new MonitorError('cannot connect to monitor socket /run/dst.qmp: ECONNREFUSED', {
    cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
  });
}

describe("listeners on the caller's AbortSignal", () => {
  it('do not pile up when events wake the wait often (MaxListenersExceededWarning seen in kvm-hv migrate)', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    const ac = new AbortController();
    let most = 0;
    const done = hv.waitForMigration(inst(), {
      signal: ac.signal,
      pollIntervalMs: 500,
      onProgress: () => {
        most = Math.max(most, getEventListeners(ac.signal, 'abort').length);
      },
    });
    for (let i = 0; i < 40; i++) {
      mock.emitEvent('MIGRATION_PASS', { pass: i + 1 });
      await new Promise((r) => setTimeout(r, 2));
      most = Math.max(most, getEventListeners(ac.signal, 'abort').length);
    }
    mock.completeMigration();
    await done;
    expect(most).toBeLessThanOrEqual(2);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });
});

describe('a lost monitor connection', () => {
  it('is reopened and the wait carries on while QEMU keeps migrating', async () => {
    const first = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const second = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    second.setReply('query-migrate', { status: 'completed', 'total-time': 1234, downtime: 12 });
    let opened = 0;
    const hv = new KVMHypervisor({ monitor: () => (opened++ === 0 ? first : second) });
    await hv.migrateInstance(inst(), '10.0.0.2');
    setTimeout(() => first.disconnect(), 20);
    const r = await hv.waitForMigration(inst(), { pollIntervalMs: 10 });
    expect(r).toMatchObject({ status: 'completed', totalTimeMs: 1234, downtimeMs: 12 });
    expect(opened).toBe(2);
  });

  it('says so, without resuming, when QEMU itself is gone', async () => {
    const first = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    let opened = 0;
    const hv = new KVMHypervisor({ monitor: () => (opened++ === 0 ? first : refusedFactory()) });
    await hv.migrateInstance(inst(), '10.0.0.2');
    setTimeout(() => first.disconnect(), 20);
    const err = await hv.waitForMigration(inst(), { pollIntervalMs: 10 }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.message).toMatch(/cannot reconnect.*ECONNREFUSED/);
    expect(first.sentCommands).not.toContain('cont');
  });
});

describe('double calls', () => {
  it('a second migrateInstance is refused without disturbing the first', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    const err = await hv.migrateInstance(inst(), '10.0.0.2').catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.changedVm).toBe(false);
    expect(err.message).toMatch(/has not been finalized/);
    // The first session still hears MIGRATION events: completion wakes the wait at once.
    const done = hv.waitForMigration(inst(), { pollIntervalMs: 60_000 });
    setTimeout(() => mock.completeMigration(), 20);
    const [r, ms] = await elapsed(done);
    expect((r as { status: string }).status).toBe('completed');
    expect(ms).toBeLessThan(5000);
  });

  it('double finalize on both sides is harmless', async () => {
    const mock = new MockMonitor({ protocol: 'qmp', version: '7.2.22' });
    const hv = hvWith(mock);
    await hv.migrateInstance(inst(), '10.0.0.2');
    await hv.finalizeMigrationSource(inst(), false);
    expect(await hv.finalizeMigrationSource(inst(), false)).toMatchObject({ action: 'already-running' });
    const dstMock = new MockMonitor({ protocol: 'qmp', version: '7.2.22', runState: 'inmigrate' });
    const dst = new KVMHypervisor({ monitor: () => (dstMock.closed ? refusedFactory() : dstMock) });
    expect(await dst.finalizeMigrationDst(inst(), false)).toMatchObject({ action: 'quit' });
    expect(await dst.finalizeMigrationDst(inst(), false)).toMatchObject({ action: 'already-gone' });
  });
});
