/**
 * Automatic post-copy recovery in runMigration (issue 19, item 3) against the linked fake
 * pair, over QMP and HMP, on a QEMU before 9.1 (a pending connect does not show) and after
 * it: a broken stream (`postcopy-paused`) and a silent one (no byte moves for the stall
 * window) are paused on both ends, the destination listens on `migration_port + 1`, the
 * source resumes there, and the migration completes; a recovery that cannot reach the
 * destination gives up at its deadline with the VM reported split and nothing stopped; an
 * end that is gone is reported as the VM lost.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MigrationError, PostcopyStalledError } from '../../src/errors.js';
import { KVMHypervisor, runMigration } from '../../src/internal.js';
import type { PostcopyRecoveryEvent } from '../../src/migration/postcopy-recovery.js';
import { createFakeMigrationPair } from '../../src/testing/index.js';

const instance = {
  name: 'vm1',
  hvparams: {
    migration_bandwidth: 64,
    migration_downtime: 100,
    migration_caps: 'postcopy-ram',
    migration_port: 8102,
  },
};

const cases = [
  { protocol: 'qmp', version: '7.2.22' },
  { protocol: 'hmp', version: '7.2.22' },
  { protocol: 'qmp', version: '11.1.3' },
  { protocol: 'hmp', version: '11.1.3' },
] as const;

describe.each(cases)(
  'post-copy recovery in runMigration ($protocol, QEMU $version)',
  ({ protocol, version }) => {
    const opened: KVMHypervisor[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((h) => h.close()));
    });
    const setUp = () => {
      // Only the test moves time: post-copy moves no byte until the test says so.
      const pair = createFakeMigrationPair({ protocol, version, advancePerQueryMs: 0 });
      const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
      const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
      opened.push(src, dst);
      return { pair, src, dst };
    };
    type Pair = ReturnType<typeof setUp>['pair'];
    const run = (
      s: ReturnType<typeof setUp>,
      inPostcopy: (pair: Pair) => void,
      extra: Partial<Parameters<typeof runMigration>[0]> = {},
    ) => {
      const events: PostcopyRecoveryEvent[] = [];
      let switched = false;
      const done = runMigration({
        source: { hypervisor: s.src, instance },
        destination: { hypervisor: s.dst, instance },
        target: '10.0.0.2',
        stepTimeoutMs: 5000,
        timeoutMs: 30_000,
        pollIntervalMs: 5,
        postcopyStallMs: 300,
        onProgress: (p) => {
          if (switched || p.status !== 'active') return;
          switched = true;
          s.pair.source.qemu.startPostcopy();
          inPostcopy(s.pair);
        },
        onPostcopyRecovery: (e) => {
          events.push(e);
          // Once the stream runs again, the rest of the memory arrives.
          if (e.kind === 'resumed') setTimeout(() => s.pair.clock.advance(10_000), 20);
        },
        ...extra,
      });
      return { done, events };
    };
    const stoppedNothing = (pair: Pair) => {
      expect(pair.destination.received.filter((c) => /^(quit|q)$/.test(c))).toEqual([]);
      expect(pair.source.received.filter((c) => /^(cont|c|stop|quit|q)$/.test(c))).toEqual([]);
    };

    it('a broken stream (postcopy-paused) is recovered on migration_port + 1 and the migration completes', async () => {
      const s = setUp();
      const { done, events } = run(s, (pair) => pair.breakPostcopyStream());
      const r = await done;
      expect(r.status).toBe('completed');
      expect(r.postcopyRecoveries).toBe(1);
      expect(r.destination.action).toBe('running');
      expect(r.source.action).toBe('paused');
      expect(events.map((e) => e.kind)).toEqual([
        'stalled',
        'paused',
        'paused',
        'listening',
        'resume',
        'resumed',
      ]);
      expect(events[0]).toMatchObject({ kind: 'stalled', status: 'postcopy-paused', stalledMs: 0 });
      expect(events.find((e) => e.kind === 'listening')).toMatchObject({ uri: 'tcp:10.0.0.2:8103' });
      const recover = protocol === 'qmp' ? 'migrate-recover' : 'migrate_recover tcp:10.0.0.2:8103';
      expect(s.pair.destination.received).toContain(recover);
      expect(s.pair.source.qemu.migration.status).toBe('completed');
      expect(s.pair.destination.qemu.runState).toBe('running');
    });

    it('a silent stream (no byte moves for the stall window) is paused on both ends, recovered and completes', async () => {
      const s = setUp();
      const { done, events } = run(s, () => {});
      const r = await done;
      expect(r.postcopyRecoveries).toBe(1);
      const stalled = events[0];
      expect(stalled).toMatchObject({ kind: 'stalled', status: 'postcopy-active' });
      expect(stalled?.kind === 'stalled' && stalled.stalledMs).toBeGreaterThanOrEqual(300);
      // The source paused by the library, the destination paused too (or by the broken stream).
      const pauses = events.filter((e) => e.kind === 'paused');
      expect(pauses.map((e) => e.kind === 'paused' && e.side).sort()).toEqual(['destination', 'source']);
      expect(pauses.every((e) => e.kind === 'paused' && e.action !== 'failed')).toBe(true);
      const pause = protocol === 'qmp' ? 'migrate-pause' : 'migrate_pause';
      expect(s.pair.source.received).toContain(pause);
      expect(s.pair.source.qemu.migration.status).toBe('completed');
    });

    it('a recovery that cannot reach the destination gives up at its deadline: split, both paused, nothing stopped', async () => {
      const s = setUp();
      const { done, events } = run(
        s,
        (pair) => {
          pair.source.qemu.resumeReaches = () => false; // the link stays down
          pair.breakPostcopyStream();
        },
        { postcopyRecoveryMs: 1500 },
      );
      const err = await done.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(MigrationError);
      const e = err as MigrationError;
      expect(e.status).toBe('postcopy-paused');
      expect(e.message).toMatch(
        /runMigration tried to recover it and gave up: it did not succeed within 2 s/,
      );
      expect(e.message).toMatch(/the VM is split between the two hosts/);
      expect(e.message).toMatch(/stop neither QEMU/);
      expect(e.message).toMatch(/kvm-hv postcopy pause/);
      expect(e.message).not.toMatch(/is on the destination|completed nevertheless|forceResume/);
      expect(e.cause).toBeInstanceOf(PostcopyStalledError);
      expect(e.recovery?.destination).toMatchObject({ action: 'postcopy-paused' });
      expect(e.recovery?.source).toMatchObject({ action: 'split', migrationStatus: 'postcopy-paused' });
      expect(events.some((x) => x.kind === 'resume')).toBe(true);
      expect(events.some((x) => x.kind === 'resumed')).toBe(false);
      stoppedNothing(s.pair);
      expect(s.pair.source.qemu.migration.status).toBe('postcopy-paused');
      expect(s.pair.destination.qemu.incoming?.status).toBe('postcopy-paused');
      // Later, by hand, with the link back: the steps of the error message bring it back.
      s.pair.source.qemu.resumeReaches = undefined;
      const dstAgain = new KVMHypervisor({ monitor: s.pair.destinationMonitor });
      const srcAgain = new KVMHypervisor({ monitor: s.pair.sourceMonitor });
      opened.push(dstAgain, srcAgain);
      expect((await dstAgain.pausePostcopy(instance)).action).toBe('already-paused');
      expect((await srcAgain.pausePostcopy(instance)).action).toBe('already-paused');
      await dstAgain.acceptPostcopyRecovery(instance, 'tcp:10.0.0.2:8110');
      // Reaches the destination only through the fake pair's own rule (the listening port).
      (
        s.pair as unknown as { source: { qemu: { resumeReaches?: (u: string) => boolean } } }
      ).source.qemu.resumeReaches = (u) => u.endsWith(':8110');
      expect((await srcAgain.resumePostcopy(instance, 'tcp:10.0.0.2:8110')).action).toBe('resumed');
    });

    it('the destination killed in post-copy: the recovery sees it gone and the VM is reported lost, the source not resumed', async () => {
      const s = setUp();
      const { done, events } = run(s, (pair) => pair.destination.exit());
      const err = (await done.then(
        () => undefined,
        (e: unknown) => e,
      )) as MigrationError;
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.message).toMatch(/the VM is lost/);
      expect(err.message).not.toMatch(/is on the destination|completed nevertheless/);
      expect(
        events.some((e) => e.kind === 'paused' && e.side === 'destination' && e.action === 'failed'),
      ).toBe(true);
      expect(s.pair.source.received.filter((c) => /^(cont|c|quit|q)$/.test(c))).toEqual([]);
      expect(s.pair.source.qemu.migration.status).toBe('postcopy-paused');
    });

    it('with recovery off a silent stall rejects as split after the stall window, and nothing is stopped', async () => {
      const s = setUp();
      const { done } = run(s, () => {}, { postcopyRecoveryMs: false });
      const err = (await done.then(
        () => undefined,
        (e: unknown) => e,
      )) as MigrationError;
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.status).toBe('postcopy-active');
      expect(err.message).toMatch(/no byte moved for/);
      expect(err.message).toMatch(/the VM is split between the two hosts/);
      stoppedNothing(s.pair);
    });
  },
);

describe('waitForMigration in post-copy', () => {
  it('has a deadline without timeoutMs: a stall rejects with PostcopyStalledError naming the recovery steps', async () => {
    const pair = createFakeMigrationPair({ protocol: 'qmp', version: '10.0.8', advancePerQueryMs: 0 });
    const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
    const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
    try {
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      pair.clock.advance(100);
      expect(pair.source.qemu.startPostcopy()).toBeUndefined();
      const err = await src
        .waitForMigration(
          { name: 'vm1', hvparams: instance.hvparams },
          { pollIntervalMs: 5, postcopyStallMs: 200 },
        )
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(PostcopyStalledError);
      const e = err as PostcopyStalledError;
      expect(e.status).toBe('postcopy-active');
      expect(e.stalledMs).toBeGreaterThanOrEqual(200);
      expect(e.message).toMatch(
        /pausePostcopy on both ends, acceptPostcopyRecovery on the destination, resumePostcopy on the source/,
      );
      expect(pair.source.received.filter((c) => /^(cont|migrate_cancel|quit)$/.test(c))).toEqual([]);
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
  });
});

describe('kvm-hv migrate: the source half of the recovery', () => {
  it.each(['qmp', 'hmp'] as const)(
    'a broken stream is resumed to the original port, which a 7.2 destination keeps open, and completes (%s)',
    async (protocol) => {
      const { migrateSource } = await import('../../src/cli/migrate-flow.js');
      const { pino } = await import('pino');
      const pair = createFakeMigrationPair({ protocol, version: '7.2.22', advancePerQueryMs: 0 });
      const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
      const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
      const notes: string[] = [];
      let switched = false;
      const sink = {
        update: (p: { status: string }) => {
          if (switched || p.status !== 'active') return;
          switched = true;
          pair.source.qemu.startPostcopy();
          pair.breakPostcopyStream();
        },
        note: (n: string) => {
          notes.push(n);
          if (n.includes('the stream runs again')) setTimeout(() => pair.clock.advance(10_000), 20);
        },
        stop: () => {},
        maxThrottlePercent: 0,
      };
      try {
        await dst.acceptInstance(instance);
        const out = await migrateSource(src, instance, '10.0.0.2', true, {
          sink: sink as never,
          signal: new AbortController().signal,
          logger: pino({ level: 'silent' }),
          postcopyStallMs: 300,
          postcopyRecovery: { timeoutMs: 10_000, port: 8102 },
        });
        expect(out.result.status).toBe('completed');
        expect(notes.some((n) => n.includes('resuming to tcp:10.0.0.2:8102'))).toBe(true);
        // Only the source was touched: no migrate-recover on the destination.
        expect(pair.destination.received.some((c) => /migrate[-_]recover/.test(c))).toBe(false);
        expect(pair.source.qemu.migration.status).toBe('completed');
      } finally {
        await Promise.all([src.close(), dst.close()]);
      }
    },
  );

  it('gives up with the split error and the kvm-hv postcopy steps when the destination does not listen', async () => {
    const { migrateSource } = await import('../../src/cli/migrate-flow.js');
    const { pino } = await import('pino');
    const pair = createFakeMigrationPair({ protocol: 'qmp', version: '11.1.3', advancePerQueryMs: 0 });
    const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
    const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
    let switched = false;
    const sink = {
      update: (p: { status: string }) => {
        if (switched || p.status !== 'active') return;
        switched = true;
        pair.source.qemu.startPostcopy();
        pair.breakPostcopyStream();
      },
      note: () => {},
      stop: () => {},
      maxThrottlePercent: 0,
    };
    try {
      await dst.acceptInstance(instance);
      const err = await migrateSource(src, instance, '10.0.0.2', true, {
        sink: sink as never,
        signal: new AbortController().signal,
        logger: pino({ level: 'silent' }),
        postcopyStallMs: 300,
        postcopyRecovery: { timeoutMs: 1500, port: 9999 },
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PostcopyStalledError);
      const e = err as PostcopyStalledError;
      expect(e.status).toBe('postcopy-paused');
      expect(e.message).toMatch(/tried to recover it from the source for 2 s and gave up/);
      expect(e.message).toMatch(/stop neither QEMU/);
      expect(e.message).toMatch(/kvm-hv postcopy accept-recovery --listen ADDR on the destination/);
      expect(pair.source.received.filter((c) => /^(cont|quit|stop)$/.test(c))).toEqual([]);
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
  });
});

describe('waitForIncomingMigration in a broken post-copy', () => {
  it('rejects after postcopyPausedMs saying the VM is split, and stops nothing', async () => {
    const pair = createFakeMigrationPair({ protocol: 'qmp', version: '7.2.22', advancePerQueryMs: 0 });
    const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
    const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
    try {
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      pair.clock.advance(100);
      expect(pair.source.qemu.startPostcopy()).toBeUndefined();
      pair.breakPostcopyStream();
      const err = await dst
        .waitForIncomingMigration(instance, { pollIntervalMs: 5, postcopyPausedMs: 300 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MigrationError);
      const e = err as MigrationError;
      expect(e.status).toBe('postcopy-paused');
      expect(e.message).toMatch(/the VM is split between the two hosts/);
      expect(e.message).toMatch(/kvm-hv postcopy accept-recovery here/);
      expect(pair.destination.received.filter((c) => /^(quit|stop|cont)$/.test(c))).toEqual([]);
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
  });
});

describe('recoverPostcopyStream on QEMU before 9.1 (a failed connect shows only on stderr)', () => {
  type Steps = import('../../src/migration/postcopy-recovery.js').PostcopySourceSteps;
  /** A source whose resumes fail to connect `failing` times, printing it on its stderr. */
  const source = (version: string, failing: number, withStderr: boolean) => {
    let stderr = '';
    let status = 'postcopy-paused';
    let resumes = 0;
    const steps: Steps = {
      version: (() => {
        const [major, minor, micro] = version.split('.').map(Number);
        return { major: major ?? 0, minor: minor ?? 0, micro: micro ?? 0 };
      })(),
      pause: async () => ({ action: 'already-paused', status, outOfBand: true }),
      status: async () => ({ status }),
      resume: async (uri) => {
        resumes++;
        if (resumes <= failing) {
          stderr += `qemu-system-x86_64: Failed to connect to '${uri}': No route to host\n`;
          throw new MigrationError('still paused', { status: 'postcopy-paused' });
        }
        status = 'postcopy-active';
        return { action: 'resumed', uri, status };
      },
      ...(withStderr ? { connectFailures: () => (stderr.match(/Failed to connect/g) ?? []).length } : {}),
    };
    return { steps, resumes: () => resumes };
  };
  const plan = async (steps: Steps, ms: number) => {
    const { recoverPostcopyStream } = await import('../../src/migration/postcopy-recovery.js');
    const { Deadline } = await import('../../src/core/deadline.js');
    return recoverPostcopyStream({
      source: steps,
      port: 8103,
      listenUri: (p) => `tcp:10.0.0.2:${p}`,
      targetUri: (p) => `tcp:10.0.0.2:${p}`,
      deadline: Deadline.after(ms),
      episode: 1,
    });
  };

  it('7.2: a failed connect seen on stderr allows the next resume at once', async () => {
    const s = source('7.2.22', 1, true);
    expect(await plan(s.steps, 10_000)).toMatchObject({ outcome: 'resumed', attempts: 2 });
    expect(s.resumes()).toBe(2);
  });

  it('7.2 without stderr: the next resume waits for the connect budget, so the deadline ends it', async () => {
    const s = source('7.2.22', 1, false);
    expect(await plan(s.steps, 2500)).toMatchObject({ outcome: 'gave-up', attempts: 1 });
    expect(s.resumes()).toBe(1);
  });

  it('5.2: never a second resume after a failed one (5.2 aborts on it)', async () => {
    const s = source('5.2.0', 1, true);
    const r = await plan(s.steps, 10_000);
    expect(r).toMatchObject({ outcome: 'gave-up', attempts: 1 });
    expect(r.outcome === 'gave-up' && r.error.message).toMatch(
      /aborts on a second resume after a failed one/,
    );
    expect(s.resumes()).toBe(1);
  });

  it('a source whose migration ended by itself is reported as such, not resumed', async () => {
    const s = source('11.1.3', 0, true);
    s.steps.status = async () => ({
      status: 'failed',
      errorDesc: 'Postcopy migration is paused by the user',
    });
    expect(await plan(s.steps, 5000)).toEqual({
      outcome: 'source-ended',
      status: 'failed',
      reason: 'Postcopy migration is paused by the user',
    });
    expect(s.resumes()).toBe(0);
  });
});

describe('a source that ends its migration by itself during the recovery (QEMU 11.1)', () => {
  it('runMigration names two running copies when the source runs again while the destination holds the VM', async () => {
    const pair = createFakeMigrationPair({ protocol: 'qmp', version: '11.1.3', advancePerQueryMs: 0 });
    const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
    const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
    let switched = false;
    try {
      const err = await runMigration({
        source: { hypervisor: src, instance },
        destination: { hypervisor: dst, instance },
        target: '10.0.0.2',
        stepTimeoutMs: 5000,
        timeoutMs: 30_000,
        pollIntervalMs: 5,
        postcopyStallMs: 300,
        onProgress: (p) => {
          if (switched || p.status !== 'active') return;
          switched = true;
          pair.source.qemu.startPostcopy();
          // As 11.1 does with nothing left to send: the pause fails the migration, and the
          // source runs its VM again.
          pair.breakPostcopyStream();
          pair.source.qemu.failMigration('Postcopy migration is paused by the user');
          pair.source.qemu.runState = 'running';
        },
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(MigrationError);
      const e = err as MigrationError;
      expect(e.message).toMatch(/TWO COPIES of the VM exist/);
      expect(e.message).toMatch(/quit the destination QEMU/);
      expect(e.message).not.toMatch(/is on the destination|completed nevertheless/);
      expect(e.recovery?.destination).toMatchObject({ action: 'postcopy-paused' });
      expect(pair.destination.received.filter((c) => /^(quit|cont)$/.test(c))).toEqual([]);
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
  });
});
