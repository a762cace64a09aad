/**
 * Fault matrix, part 3: the caller gets the order wrong. A second `migrateInstance` while
 * one runs, finalize called twice on each end, `finalize(false)` after the migration
 * completed (it must not resume; only `forceResume` does), and cancel then wait. Real
 * QEMU, over QMP and HMP; the verdict comes from observer QMP sockets.
 */
import { describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import {
  expectRunsExactlyOnce,
  fullText,
  type Pair,
  PROTOCOLS,
  RUN_MS,
  rejectsIn,
  resolvesIn,
  runState,
  STEP_MS,
  settledMigrationState,
  settles,
  useFaultLab,
} from './harness.js';

const lab = useFaultLab('order');

/**
 * Runs a migration to completion: non-live with the busy guest (~1 s at 16 MiB/s), or live
 * with an idle one (which converges at once).
 */
async function completed(p: Pair, live = false): Promise<void> {
  await resolvesIn('acceptInstance', p.dstHv.acceptInstance(p.inst, { timeoutMs: STEP_MS }), STEP_MS);
  await resolvesIn(
    'migrateInstance',
    p.srcHv.migrateInstance(p.inst, p.target, live, { timeoutMs: STEP_MS }),
    STEP_MS,
  );
  await resolvesIn(
    'waitForMigration',
    p.srcHv.waitForMigration(p.inst, { timeoutMs: RUN_MS, pollIntervalMs: 100 }),
    RUN_MS,
  );
}

describe.each(PROTOCOLS)('calls in the wrong order over %s', (protocol) => {
  it('a second migrateInstance is refused and leaves the running migration alone', async () => {
    const p = await lab.pair({ protocol, hvparams: { migration_bandwidth: 8 } });
    await resolvesIn('acceptInstance', p.dstHv.acceptInstance(p.inst, { timeoutMs: STEP_MS }), STEP_MS);
    await resolvesIn(
      'migrateInstance',
      p.srcHv.migrateInstance(p.inst, p.target, false, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    const second = await rejectsIn(
      'second migrateInstance',
      p.srcHv.migrateInstance(p.inst, p.target, false),
      STEP_MS,
    );
    expect(second).toBeInstanceOf(MigrationError);
    expect(second.message, second.message).toMatch(/in progress|already|running|started/i);
    // The first session still hears QEMU: over QMP its completion comes by event, so even
    // with a poll interval longer than the deadline the wait must see it (a detached
    // session would only notice at the next poll, after the deadline).
    const result = await resolvesIn(
      'waitForMigration',
      p.srcHv.waitForMigration(p.inst, {
        timeoutMs: RUN_MS,
        pollIntervalMs: protocol === 'qmp' ? 60_000 : 100,
      }),
      RUN_MS,
    );
    expect(result.status).toBe('completed');
    await resolvesIn(
      'finalizeMigrationSource',
      p.srcHv.finalizeMigrationSource(p.inst, true, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    await resolvesIn(
      'finalizeMigrationDst',
      p.dstHv.finalizeMigrationDst(p.inst, true, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    expect(await expectRunsExactlyOnce(p)).toBe('dst');
  });

  it('finalize twice on both ends after success: same outcome, VM runs on the destination only', async () => {
    const p = await lab.pair({ protocol, hvparams: { migration_bandwidth: 16 } });
    await completed(p);
    for (let i = 0; i < 2; i++) {
      const s = await resolvesIn(
        `finalizeMigrationSource(true) #${i + 1}`,
        p.srcHv.finalizeMigrationSource(p.inst, true, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      expect(s.side).toBe('source');
      const d = await resolvesIn(
        `finalizeMigrationDst(true) #${i + 1}`,
        p.dstHv.finalizeMigrationDst(p.inst, true, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      expect(d).toMatchObject({ side: 'destination', action: expect.stringMatching(/^(running|resumed)$/) });
    }
    expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
    expect(await expectRunsExactlyOnce(p)).toBe('dst');
  });

  it('finalize(false) twice on both ends after a failure: the destination quits once, the source runs', async () => {
    const p = await lab.pair({ protocol });
    await resolvesIn('acceptInstance', p.dstHv.acceptInstance(p.inst, { timeoutMs: STEP_MS }), STEP_MS);
    // Live at 8 MiB/s the busy guest never converges: the wait's deadline ends it.
    await resolvesIn(
      'migrateInstance',
      p.srcHv.migrateInstance(p.inst, p.target, true, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    await rejectsIn(
      'waitForMigration',
      p.srcHv.waitForMigration(p.inst, { timeoutMs: 1500, pollIntervalMs: 100 }),
      1500,
    );
    const dstActions: string[] = [];
    const srcActions: string[] = [];
    for (let i = 0; i < 2; i++) {
      const d = await settles(
        'finalizeMigrationDst(false)',
        p.dstHv.finalizeMigrationDst(p.inst, false, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      expect(d.ok, d.ok ? '' : fullText(d.error)).toBe(true);
      if (d.ok) dstActions.push(d.value.action);
      const s = await settles(
        'finalizeMigrationSource(false)',
        p.srcHv.finalizeMigrationSource(p.inst, false, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      expect(s.ok, s.ok ? '' : fullText(s.error)).toBe(true);
      if (s.ok) srcActions.push(s.value.action);
    }
    expect(dstActions[0]).toMatch(/^(quit|already-gone)$/);
    expect(dstActions[1]).toBe('already-gone');
    expect(srcActions[0]).toBe('already-running');
    expect(srcActions[1]).toBe('already-running');
    expect(await expectRunsExactlyOnce(p)).toBe('src');
  });

  it.each([true, false])(
    'finalize(false) after completion (live=%s) does not resume the source; only forceResume does',
    async (live) => {
      const p = await lab.pair({
        protocol,
        guest: live ? 'idle' : 'busy',
        hvparams: { migration_bandwidth: 16 },
      });
      await completed(p, live);
      // The caller wrongly reports a failure on both ends.
      const s = await settles(
        'finalizeMigrationSource(false) after completion',
        p.srcHv.finalizeMigrationSource(p.inst, false, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      if (s.ok) expect(s.value.action).not.toMatch(/resumed|already-running/);
      // QEMU 11.1 may still be in `finish-migrate` a moment after `completed`.
      else expect(fullText(s.error)).toMatch(/completed|postmigrate|finish-migrate/);
      const d = await resolvesIn(
        'finalizeMigrationDst(false) after completion',
        p.dstHv.finalizeMigrationDst(p.inst, false, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      // The destination holds the only copy of the VM now: it is kept, never quit.
      // Live: it already runs (`kept-running`); non-live: its incoming migration completed,
      // so it is resumed (`resumed-after-completion`): never nowhere.
      expect(d.action).toBe(live ? 'kept-running' : 'resumed-after-completion');
      expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
      expect(await expectRunsExactlyOnce(p)).toBe('dst');

      // The operator override, explicitly asked for, does resume it (now two copies run:
      // that is the operator's call, after making sure the destination is stopped).
      await p.dstObs.execute('stop');
      const forced = await resolvesIn(
        'finalizeMigrationSource(false, forceResume)',
        p.srcHv.finalizeMigrationSource(p.inst, false, { timeoutMs: STEP_MS, forceResume: true }),
        STEP_MS,
      );
      expect(forced.action).toMatch(/resumed/);
      expect(await expectRunsExactlyOnce(p)).toBe('src');
    },
  );

  it('cancel then wait: the wait reports cancelled at once, the source runs, no migration continues', async () => {
    const p = await lab.pair({ protocol });
    await resolvesIn('acceptInstance', p.dstHv.acceptInstance(p.inst, { timeoutMs: STEP_MS }), STEP_MS);
    await resolvesIn(
      'migrateInstance',
      p.srcHv.migrateInstance(p.inst, p.target, true, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    await resolvesIn('cancelMigration', p.srcHv.cancelMigration(p.inst, { timeoutMs: STEP_MS }), STEP_MS);
    const err = await rejectsIn(
      'waitForMigration',
      p.srcHv.waitForMigration(p.inst, { timeoutMs: RUN_MS, pollIntervalMs: 100 }),
      STEP_MS,
    );
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.status).toBe('cancelled');
    await resolvesIn(
      'finalizeMigrationDst',
      p.dstHv.finalizeMigrationDst(p.inst, false, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    const s = await resolvesIn(
      'finalizeMigrationSource',
      p.srcHv.finalizeMigrationSource(p.inst, false, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    expect(s.action).toBe('already-running');
    expect(await settledMigrationState(p.src, p.srcObs)).toBe('cancelled');
    expect(await expectRunsExactlyOnce(p)).toBe('src');
  });
});
