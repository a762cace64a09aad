/**
 * Fault matrix, part 1: one end of a migration killed (SIGKILL) or frozen (SIGSTOP) mid-way,
 * on real QEMU, over QMP and HMP. Each case checks, through observer QMP sockets, that the
 * VM runs in exactly one place afterwards (nowhere only after the source itself was
 * killed, with an error that says so), that every library call settled within its
 * deadline (+ a hang margin), and that QEMU's reason reached the caller.
 */
import { describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { runMigration } from '../../src/internal.js';
import {
  bothStates,
  expectRunsExactlyOnce,
  fullText,
  onceMigrating,
  PROTOCOLS,
  RUN_MS,
  rejectsIn,
  resolvesIn,
  runDeadline,
  runState,
  STEP_MS,
  settledMigrationState,
  settles,
  signal,
  useFaultLab,
} from './harness.js';

const lab = useFaultLab('proc');

/** The deadline of calls made while QEMU is frozen. */
const FROZEN_MS = 3000;
/** Deadline of recovery calls once QEMU answers again. */

describe.each(PROTOCOLS)('process faults over %s', (protocol) => {
  it.each([true, false])('destination SIGKILL mid-migration (live=%s): failed, source runs', async (live) => {
    const p = await lab.pair({ protocol });
    const err = await rejectsIn(
      'runMigration',
      runMigration({
        source: { hypervisor: p.srcHv, instance: p.inst },
        destination: { hypervisor: p.dstHv, instance: p.inst },
        target: p.target,
        live,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
        onProgress: onceMigrating(() => signal(p.dst, 'SIGKILL')),
      }),
      runDeadline(RUN_MS),
    );
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.status).toBe('failed');
    // QEMU's own reason (error-desc / "Migration status: failed (…)") reaches the caller
    // whenever QEMU recorded one; some write errors reach QEMU 7.2 without an Error object
    // and then it has no error-desc at all (checked through the observer).
    const qemuDesc = ((await p.srcObs.execute('query-migrate')) as { 'error-desc'?: string })['error-desc'];
    if (qemuDesc !== undefined || err.reason !== undefined) {
      expect(err.reason).toMatch(/socket|pipe|reset|connection/i);
      expect(err.message).toContain(err.reason);
    }
    expect(err.recovery?.destination).toMatchObject({ action: 'already-gone' });
    expect(err.recovery?.source).toMatchObject({ action: live ? 'already-running' : 'resumed' });
    expect(await expectRunsExactlyOnce(p)).toBe('src');
    expect(await settledMigrationState(p.src, p.srcObs)).toBe('failed');
  });

  it('source SIGKILL mid-migration: the VM runs nowhere and the error says the source is gone', async () => {
    const p = await lab.pair({ protocol });
    const err = await rejectsIn(
      'runMigration',
      runMigration({
        source: { hypervisor: p.srcHv, instance: p.inst },
        destination: { hypervisor: p.dstHv, instance: p.inst },
        target: p.target,
        live: true,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
        onProgress: onceMigrating(() => signal(p.src, 'SIGKILL')),
      }),
      runDeadline(RUN_MS),
    );
    expect(err).toBeInstanceOf(MigrationError);
    expect(fullText(err)).toMatch(/gone|lost|closed|exited|refused|ENOENT/i);
    // The destination held an incomplete VM: it must not be left running (nor is it resumed).
    const states = await bothStates(p);
    expect(states.src).toBe('gone');
    expect(states.dst).not.toBe('running');
    // The recovery reports the source as gone, not as "resumed".
    const src = err.recovery?.source;
    expect(src === undefined || 'error' in src || src.action === 'gone', JSON.stringify(src)).toBe(true);
  });

  it.each(['timeoutMs', 'AbortSignal'])(
    'source SIGSTOP mid-wait, cut by %s: settles, unresponsive; after SIGCONT the source runs, no migration continues',
    async (bound) => {
      const p = await lab.pair({ protocol });
      await settles('acceptInstance', p.dstHv.acceptInstance(p.inst, { timeoutMs: STEP_MS }), STEP_MS);
      await resolvesIn(
        'migrateInstance',
        p.srcHv.migrateInstance(p.inst, p.target, true, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      const abort = new AbortController();
      const err = await rejectsIn(
        'waitForMigration',
        p.srcHv.waitForMigration(p.inst, {
          pollIntervalMs: 100,
          ...(bound === 'timeoutMs'
            ? { timeoutMs: FROZEN_MS }
            : { signal: abort.signal, timeoutMs: 120_000 }),
          onProgress: onceMigrating(() => {
            signal(p.src, 'SIGSTOP');
            if (bound === 'AbortSignal') setTimeout(() => abort.abort(), 500);
          }),
        }),
        FROZEN_MS,
      );
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.unresponsive).toBe(true);
      expect(err.message).toMatch(/unresponsive/i);

      // Still frozen: the failure finalize must settle by its deadline too, and not claim a resume.
      const frozen = await settles(
        'finalizeMigrationSource while frozen',
        p.srcHv.finalizeMigrationSource(p.inst, false, { timeoutMs: FROZEN_MS }),
        FROZEN_MS,
      );
      // KNOWN FAILURE on main: the frozen finalize settles in time and refuses to resume,
      // but its MigrationError ("not resuming the source: its run state cannot be read (…
      // no answer within the 3000 ms deadline)") has `unresponsive: false`; the API
      // promises `unresponsive: true` whenever QEMU did not answer in time.
      if (frozen.ok) expect(frozen.value.action).not.toMatch(/resumed/);
      else expect((frozen.error as MigrationError).unresponsive, fullText(frozen.error)).toBe(true);

      signal(p.src, 'SIGCONT');
      await settles(
        'finalizeMigrationDst',
        p.dstHv.finalizeMigrationDst(p.inst, false, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      const after = await settles(
        'finalizeMigrationSource after SIGCONT',
        p.srcHv.finalizeMigrationSource(p.inst, false, { timeoutMs: STEP_MS }),
        STEP_MS,
      );
      expect(after.ok, after.ok ? '' : fullText(after.error)).toBe(true);
      expect(await settledMigrationState(p.src, p.srcObs)).toMatch(/^(cancelled|failed)$/);
      expect(await expectRunsExactlyOnce(p)).toBe('src');
    },
  );

  it('destination SIGSTOP mid-migration: the wait times out, the source runs, finalize settles', async () => {
    const p = await lab.pair({ protocol });
    await resolvesIn('acceptInstance', p.dstHv.acceptInstance(p.inst, { timeoutMs: STEP_MS }), STEP_MS);
    await resolvesIn(
      'migrateInstance',
      p.srcHv.migrateInstance(p.inst, p.target, true, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    const err = await rejectsIn(
      'waitForMigration',
      p.srcHv.waitForMigration(p.inst, {
        pollIntervalMs: 100,
        timeoutMs: 4000,
        onProgress: onceMigrating(() => signal(p.dst, 'SIGSTOP')),
      }),
      4000,
    );
    expect(err).toBeInstanceOf(MigrationError);
    // The source answered: its migration was cancelled and it still runs.
    expect(await settledMigrationState(p.src, p.srcObs)).toMatch(/^(cancelled|failed)$/);
    expect(await runState(p.src, p.srcObs)).toBe('running');

    // The recovery, destination first while it is still frozen: bounded, and the source side still runs.
    const dstFinal = await settles(
      'finalizeMigrationDst while frozen',
      p.dstHv.finalizeMigrationDst(p.inst, false, { timeoutMs: FROZEN_MS }),
      FROZEN_MS,
    );
    // KNOWN FAILURE on main: "cannot read the destination's state: … no answer within the
    // 3000 ms deadline" arrives in time but with `unresponsive: false`.
    if (!dstFinal.ok)
      expect((dstFinal.error as MigrationError).unresponsive, fullText(dstFinal.error)).toBe(true);
    const srcFinal = await settles(
      'finalizeMigrationSource',
      p.srcHv.finalizeMigrationSource(p.inst, false, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    expect(srcFinal.ok, srcFinal.ok ? '' : fullText(srcFinal.error)).toBe(true);
    signal(p.dst, 'SIGCONT');
    // Thawed, the destination quits (the queued `quit`) or fails its incoming migration; it never runs.
    await Promise.race([p.dst.exited, new Promise((r) => setTimeout(r, 3000))]);
    expect(await expectRunsExactlyOnce(p)).toBe('src');
  });
});
