/**
 * Truthful post-copy outcomes (issue 19, item 4) against the linked fake pair, over QMP and
 * HMP: a migration that ends in post-copy is never reported as completed (the VM is split),
 * a paused post-copy destination is its own outcome, a destination lost in post-copy means
 * the VM is lost, the source's refusal does not suggest an override QEMU refuses, and a
 * successful destination finalize in post-copy neither reports `running` nor floods QEMU
 * with `query-yank`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type FinalizeOutcome, MigrationError } from '../../src/errors.js';
import { KVMHypervisor, runMigration } from '../../src/internal.js';
import { createFakeMigrationPair, type FakeMigrationPairOptions } from '../../src/testing/index.js';

const instance = {
  name: 'vm1',
  hvparams: { migration_bandwidth: 64, migration_downtime: 100, migration_caps: 'postcopy-ram' },
};
const fast = { pollIntervalMs: 1 };

const cases = [
  { protocol: 'qmp', version: '7.2.22' },
  { protocol: 'hmp', version: '7.2.22' },
  { protocol: 'qmp', version: '11.1.3' },
  { protocol: 'hmp', version: '11.1.3' },
] as const;

async function rejection(p: Promise<unknown>): Promise<MigrationError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(MigrationError);
  return e as MigrationError;
}

const outcome = (o: FinalizeOutcome | { error: Error } | undefined) => o as FinalizeOutcome;

describe.each(cases)('post-copy outcomes ($protocol, QEMU $version)', ({ protocol, version }) => {
  const opened: KVMHypervisor[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((h) => h.close()));
  });
  /** Only the test moves time (advancePerQueryMs 0): post-copy never completes by itself. */
  const setUp = (extra: FakeMigrationPairOptions = {}) => {
    const pair = createFakeMigrationPair({ protocol, version, advancePerQueryMs: 0, ...extra });
    const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
    const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
    opened.push(src, dst);
    return { pair, src, dst };
  };
  /** A migration switched to post-copy by hand, through the library's own set-up. */
  const inPostcopy = async (extra: FakeMigrationPairOptions = {}) => {
    const s = setUp(extra);
    await s.dst.acceptInstance(instance);
    await s.src.migrateInstance(instance, '10.0.0.2');
    s.pair.clock.advance(100);
    expect(s.pair.source.qemu.startPostcopy()).toBeUndefined();
    expect(s.pair.destination.qemu.incoming?.status).toBe('postcopy-active');
    return s;
  };
  const runPostcopy = (
    s: ReturnType<typeof setUp>,
    inPostcopyDo: (pair: ReturnType<typeof setUp>['pair']) => void = () => {},
    extra: Partial<Parameters<typeof runMigration>[0]> = {},
  ) => {
    let switched = false;
    return runMigration({
      source: { hypervisor: s.src, instance },
      destination: { hypervisor: s.dst, instance },
      target: '10.0.0.2',
      timeoutMs: 1500,
      stepTimeoutMs: 3000,
      ...fast,
      onProgress: (p) => {
        if (switched || p.status !== 'active') return;
        switched = true;
        s.pair.source.qemu.startPostcopy();
        inPostcopyDo(s.pair);
      },
      ...extra,
    });
  };
  const noneStopped = (pair: ReturnType<typeof setUp>['pair']) => {
    expect(pair.destination.received).not.toContain('quit');
    expect(pair.destination.received).not.toContain('q');
    expect(pair.source.received.filter((c) => /^(cont|c|stop|quit|q)$/.test(c))).toEqual([]);
  };

  it('runMigration ending in post-copy reports the VM split, finalizes neither end and stops nothing', async () => {
    const s = setUp();
    const err = await rejection(runPostcopy(s));
    expect(err.status).toBe('postcopy-active');
    expect(outcome(err.recovery?.source)).toEqual({
      side: 'source',
      action: 'split',
      migrationStatus: 'postcopy-active',
    });
    expect(outcome(err.recovery?.destination)).toMatchObject({
      side: 'destination',
      action: 'split',
      migrationStatus: 'postcopy-active',
    });
    expect(err.message).toMatch(/the VM is split between the two hosts/);
    expect(err.message).toMatch(/stop neither QEMU/);
    expect(err.message).toMatch(/Wait again \(waitForMigration on the source\)/);
    expect(err.message).not.toMatch(
      /completed nevertheless|is on the destination|the destination runs the VM;/,
    );
    noneStopped(s.pair);
    expect(s.pair.source.qemu.migration.status).toBe('postcopy-active');
    expect(s.pair.destination.qemu.runState).toBe('running');
    // Nothing was finalized as a success: no settings put back, no yank polling.
    expect(s.pair.destination.received).not.toContain('query-yank');
    expect(s.pair.destination.qemu.capabilities['postcopy-ram']).toBe(true);
    // It completes later; then both ends finalize as usual.
    s.pair.clock.advance(10_000);
    expect(s.pair.source.qemu.migration.status).toBe('completed');
    expect((await s.dst.finalizeMigrationDst(instance, true)).action).toBe('running');
    expect((await s.src.finalizeMigrationSource(instance, true)).action).toBe('paused');
  });

  it('runMigration with the post-copy stream broken and recovery off: the destination is postcopy-paused, the steps are named', async () => {
    const s = setUp();
    const err = await rejection(
      runPostcopy(s, (pair) => pair.breakPostcopyStream(), { postcopyRecoveryMs: false }),
    );
    expect(err.status).toBe('postcopy-paused');
    expect(outcome(err.recovery?.source)).toMatchObject({
      action: 'split',
      migrationStatus: 'postcopy-paused',
    });
    expect(outcome(err.recovery?.destination)).toMatchObject({
      action: 'postcopy-paused',
      migrationStatus: 'postcopy-paused',
    });
    expect(err.message).toMatch(/the VM is split between the two hosts/);
    expect(err.message).toMatch(
      /pausePostcopy on both ends, acceptPostcopyRecovery on the destination and resumePostcopy/,
    );
    expect(err.message).not.toMatch(/completed nevertheless|is on the destination/);
    noneStopped(s.pair);
  });

  it('runMigration with the destination killed in post-copy says the VM is lost, never that it is on the destination', async () => {
    const s = setUp();
    const err = await rejection(runPostcopy(s, (pair) => pair.destination.exit()));
    expect(s.pair.source.qemu.migration.status).toBe('postcopy-paused');
    expect(err.status).toBe('postcopy-paused');
    expect(outcome(err.recovery?.source)).toEqual({
      side: 'source',
      action: 'lost',
      migrationStatus: 'postcopy-paused',
    });
    expect(outcome(err.recovery?.destination)).toEqual({ side: 'destination', action: 'already-gone' });
    expect(err.message).toMatch(/the VM is lost/);
    expect(err.message).toMatch(/restart the VM from its disks/);
    expect(err.message).not.toMatch(/is on the destination|completed nevertheless|forceResume: true/);
    expect(s.pair.source.received.filter((c) => /^(cont|c)$/.test(c))).toEqual([]);
  });

  it('runMigration with the source killed in post-copy says the VM is lost, the destination left as it is', async () => {
    const s = setUp();
    const err = await rejection(runPostcopy(s, (pair) => pair.source.exit()));
    expect(s.pair.destination.qemu.incoming?.status).toBe('postcopy-paused');
    expect(err.status).toBe('postcopy-paused');
    expect(outcome(err.recovery?.destination)).toMatchObject({
      action: 'postcopy-paused',
      migrationStatus: 'postcopy-paused',
    });
    expect(err.message).toMatch(/the source QEMU is gone: the VM is lost/);
    expect(err.message).toMatch(/restart the VM from its disks/);
    expect(err.message).not.toMatch(/is on the destination|completed nevertheless/);
    expect(s.pair.destination.received).not.toContain('quit');
  });

  it('waitForMigration giving up in post-copy says the VM is split, not that the destination runs it', async () => {
    const { src } = await inPostcopy();
    const err = await rejection(src.waitForMigration(instance, { ...fast, timeoutMs: 300 }));
    expect(err.status).toBe('postcopy-active');
    expect(err.message).toMatch(/it cannot be cancelled and the VM is split between the two hosts/);
    expect(err.message).not.toMatch(/the destination runs the VM;/);
  });

  it('operator path on a paused post-copy: the destination is postcopy-paused, the source refusal does not suggest forceResume', async () => {
    const { pair, src, dst } = await inPostcopy();
    pair.breakPostcopyStream();
    const d = await dst.finalizeMigrationDst(instance, false, { timeoutMs: 3000 });
    expect(d).toEqual({
      side: 'destination',
      action: 'postcopy-paused',
      status: 'running',
      migrationStatus: 'postcopy-paused',
    });
    const refused = await rejection(src.finalizeMigrationSource(instance, false, { timeoutMs: 3000 }));
    expect(refused.status).toBe('postcopy-paused');
    expect(refused.message).toMatch(/QEMU refuses 'cont' on the source until the migration is finalized/);
    expect(refused.message).toMatch(/acceptPostcopyRecovery/);
    expect(refused.message).not.toMatch(
      /finalizeMigrationSource\(instance, false, \{ forceResume: true \}\)/,
    );
    // The override cannot help either: nothing is sent that QEMU would refuse.
    const forced = await rejection(
      src.finalizeMigrationSource(instance, false, { timeoutMs: 3000, forceResume: true }),
    );
    expect(forced.status).toBe('postcopy-paused');
    noneStopped(pair);
    expect(pair.destination.qemu.hasExited).toBe(false);
  });

  it('a destination finalized as failed while post-copy runs is reported split and kept running', async () => {
    const { pair, dst } = await inPostcopy();
    expect(await dst.finalizeMigrationDst(instance, false, { timeoutMs: 3000 })).toMatchObject({
      action: 'split',
      status: 'running',
      migrationStatus: 'postcopy-active',
    });
    expect(pair.destination.received).not.toContain('quit');
  });

  it('finalize(true) on a destination stuck in post-copy: a split error within its deadline, no query-yank flood', async () => {
    const { pair, dst } = await inPostcopy();
    const before = pair.destination.received.length;
    const err = await rejection(dst.finalizeMigrationDst(instance, true, { timeoutMs: 1500 }));
    expect(err.status).toBe('postcopy-active');
    expect(err.message).toMatch(
      /still in post-copy \('postcopy-active'\).*the VM is split between the two hosts/,
    );
    const sent = pair.destination.received.slice(before);
    expect(sent).not.toContain('query-yank');
    expect(sent.filter((c) => /^(cont|c|quit|q)$/.test(c))).toEqual([]);
    // Backed off to 200 ms: a handful of status reads, not hundreds of commands.
    expect(sent.length).toBeLessThan(40);
    expect(pair.destination.qemu.capabilities['postcopy-ram']).toBe(true);
  });

  it('finalize(true) on a paused post-copy destination reports postcopy-paused; once recovered it completes', async () => {
    const { pair, dst } = await inPostcopy();
    pair.breakPostcopyStream();
    expect(await dst.finalizeMigrationDst(instance, true, { timeoutMs: 3000 })).toMatchObject({
      action: 'postcopy-paused',
      migrationStatus: 'postcopy-paused',
    });
    expect(pair.destination.received).not.toContain('query-yank');
  });

  it('finalize(true) waits for a post-copy that completes meanwhile, then reports running', async () => {
    // Each status query moves fake time: the destination's own polls finish the post-copy.
    const { pair, dst } = await inPostcopy({ advancePerQueryMs: 1000 });
    expect(await dst.finalizeMigrationDst(instance, true, { timeoutMs: 10_000 })).toMatchObject({
      action: 'running',
    });
    expect(pair.source.qemu.migration.status).toBe('completed');
    expect(pair.destination.qemu.capabilities['postcopy-ram']).toBe(false);
  });
});
