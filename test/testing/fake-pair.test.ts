/**
 * Whole migrations through `KVMHypervisor` against the linked fake pair, in both
 * dialects: success, failure with QEMU's reason, cancel, a frozen destination, a lost
 * monitor, and the documented recovery path. The real clients run underneath.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { KVMHypervisor, runMigration } from '../../src/internal.js';
import { createFakeMigrationPair, type FakeMigrationPairOptions } from '../../src/testing/index.js';

const instance = { name: 'vm1', hvparams: { migration_bandwidth: 64, migration_downtime: 100 } };
const fast = { pollIntervalMs: 1 };

const cases = [
  { protocol: 'qmp', version: '7.2.22' },
  { protocol: 'hmp', version: '7.2.22' },
  { protocol: 'hmp', version: '11.1.3' },
  { protocol: 'qmp', version: '2.8.0' },
] as const;

describe.each(cases)(
  'KVMHypervisor against the fake pair ($protocol, QEMU $version)',
  ({ protocol, version }) => {
    const opened: KVMHypervisor[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((h) => h.close()));
    });
    const setUp = (extra: FakeMigrationPairOptions = {}) => {
      const pair = createFakeMigrationPair({ protocol, version, ...extra });
      const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
      const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
      opened.push(src, dst);
      return { pair, src, dst };
    };

    it('migrates step by step: the VM ends up running on the destination only', async () => {
      const { pair, src, dst } = setUp({ dirtyRateBytesPerSec: 8 * 2 ** 20 });
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      const seen: number[] = [];
      const result = await src.waitForMigration(instance, {
        ...fast,
        onProgress: (p) => seen.push(p.transferredBytes ?? 0),
      });
      expect(result.status).toBe('completed');
      expect(result.transferredBytes).toBeGreaterThanOrEqual(128 * 2 ** 20);
      expect(seen.length).toBeGreaterThan(1);
      expect(await dst.finalizeMigrationDst(instance, true)).toMatchObject({ action: 'running' });
      expect(await src.finalizeMigrationSource(instance, true)).toMatchObject({ action: 'paused' });
      expect(pair.source.qemu.runState).toBe('postmigrate');
      expect(pair.destination.qemu.runState).toBe('running');
      expect(pair.source.qemu.migration.passes).toBeGreaterThan(1);
    });

    it('is deterministic: the same settings give the same snapshots and the same fake time', async () => {
      const run = async () => {
        const { pair, src, dst } = setUp({ dirtyRateBytesPerSec: 16 * 2 ** 20 });
        await dst.acceptInstance(instance);
        await src.migrateInstance(instance, '10.0.0.2');
        const seen: string[] = [];
        await src.waitForMigration(instance, {
          ...fast,
          onProgress: (p) => seen.push(`${p.status}:${p.transferredBytes}:${p.pass}`),
        });
        return { seen, now: pair.clock.now, passes: pair.source.qemu.migration.passes };
      };
      const first = await run();
      expect(await run()).toEqual(first);
      expect(first.seen.at(-1)).toMatch(/^completed:/);
      expect(first.passes).toBeGreaterThan(1);
    });

    it('a non-live migration leaves the destination paused until finalize resumes it', async () => {
      const { pair, src, dst } = setUp();
      const r = await runMigration({
        source: { hypervisor: src, instance },
        destination: { hypervisor: dst, instance },
        target: '10.0.0.2',
        live: false,
        ...fast,
      });
      expect(r.destination.action).toBe('resumed');
      expect(pair.destination.qemu.runState).toBe('running');
      expect(pair.source.qemu.runState).toBe('postmigrate');
    });

    it("a failure carries QEMU's reason; the recovery quits the destination and resumes nothing that moved", async () => {
      const { pair, src, dst } = setUp({ advancePerQueryMs: 0 });
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      pair.clock.advance(500);
      pair.fail('Unable to write to socket: Broken pipe', { destination: 'waits' });
      const err = (await src.waitForMigration(instance, fast).catch((e: unknown) => e)) as MigrationError;
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.status).toBe('failed');
      expect(err.reason).toBe('Unable to write to socket: Broken pipe');
      // The documented recovery: the destination first, then the source.
      expect(await dst.finalizeMigrationDst(instance, false)).toMatchObject({ action: 'quit' });
      expect(pair.destination.qemu.hasExited).toBe(true);
      expect(await src.finalizeMigrationSource(instance, false)).toMatchObject({ action: 'already-running' });
      expect(pair.source.qemu.runState).toBe('running');
    });

    it('a destination that exits on the failure counts as gone in the recovery', async () => {
      const { pair, src, dst } = setUp({ advancePerQueryMs: 0 });
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      pair.clock.advance(500);
      pair.fail('Unable to write to socket: Connection reset by peer');
      await expect(src.waitForMigration(instance, fast)).rejects.toMatchObject({ status: 'failed' });
      expect(pair.destination.qemu.hasExited).toBe(true);
      expect(await dst.finalizeMigrationDst(instance, false)).toMatchObject({ action: 'already-gone' });
      expect(await src.finalizeMigrationSource(instance, false)).toMatchObject({ action: 'already-running' });
    });

    it('runMigration to a port nobody listens on fails with "Connection refused" and recovers both ends', async () => {
      const { pair, src, dst } = setUp({ migrationPort: 9000 });
      const err = (await runMigration({
        source: { hypervisor: src, instance },
        destination: { hypervisor: dst, instance },
        target: '10.0.0.2',
        ...fast,
      }).catch((e: unknown) => e)) as MigrationError;
      expect(err.reason).toBe("Failed to connect to '10.0.0.2:8102': Connection refused");
      expect(err.recovery?.destination).toMatchObject({ action: 'quit' });
      expect(pair.source.qemu.runState).toBe('running');
      expect(pair.destination.qemu.hasExited).toBe(true);
    });

    it.each([true, false])(
      'finalize(false) waits for a destination still loading after the source completed (live=%s)',
      async (live) => {
        // The source reports `completed` while the destination still loads the state
        // (`inmigrate`, incoming `active`): seen on real QEMU under load. Quitting it then
        // would leave the VM nowhere (the source is postmigrate and is not resumed).
        const { pair, src, dst } = setUp({ destinationLoadMs: 5000 });
        await dst.acceptInstance(instance);
        await src.migrateInstance(instance, '10.0.0.2', live);
        expect((await src.waitForMigration(instance, fast)).status).toBe('completed');
        expect(pair.destination.qemu.runState).toBe('inmigrate');
        expect(pair.destination.qemu.incoming?.status).toBe('active');
        // The caller wrongly reports a failure.
        const d = await dst.finalizeMigrationDst(instance, false, { timeoutMs: 20_000 });
        expect(d.action).toBe(live ? 'kept-running' : 'resumed-after-completion');
        expect(pair.destination.qemu.hasExited).toBe(false);
        expect(pair.destination.qemu.runState).toBe('running');
        expect(pair.destination.received).not.toContain('quit');
        expect(pair.source.qemu.runState).toBe('postmigrate');
      },
    );

    it('finalize(false) leaves a destination still loading at its deadline alone, saying so', async () => {
      const { pair, src, dst } = setUp({ advancePerQueryMs: 0, destinationLoadMs: 1000 });
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      pair.completeNow();
      // Only the test moves time: the destination stays loading for the whole step.
      const err = (await dst
        .finalizeMigrationDst(instance, false, { timeoutMs: 1500 })
        .catch((e: unknown) => e)) as MigrationError;
      expect(err, err.message).toBeInstanceOf(MigrationError);
      expect(err.status, err.message).toBe('active');
      expect(err.message).toMatch(/still running \(status 'active'\).*not quitting it/);
      expect(pair.destination.qemu.hasExited).toBe(false);
      expect(pair.destination.qemu.runState).toBe('inmigrate');
      pair.clock.advance(1000);
      expect(await dst.finalizeMigrationDst(instance, false)).toMatchObject({ action: 'kept-running' });
    });

    it("runMigration: the destination's words reach the caller when its stderr arrives after it exited", async () => {
      const { pair, src, dst } = setUp({ advancePerQueryMs: 0 });
      // What a process's stderr pipe does under load: the text is there only on a later read.
      let reads = 0;
      const diagnostics = () =>
        pair.destination.qemu.hasExited && ++reads > 1
          ? "qemu: Size mismatch: pc.ram: 0x4000000 != 0x8000000: Invalid argument\nqemu: error while loading state for instance 0x0 of device 'ram'\n"
          : undefined;
      let failed = false;
      const err = (await runMigration({
        source: { hypervisor: src, instance },
        destination: { hypervisor: dst, instance, diagnostics },
        target: '10.0.0.2',
        timeoutMs: 10_000,
        stepTimeoutMs: 10_000,
        ...fast,
        onProgress: () => {
          if (failed) return;
          failed = true;
          pair.fail('Unable to write to socket: Broken pipe');
        },
      }).catch((e: unknown) => e)) as MigrationError;
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.reason).toBe('Unable to write to socket: Broken pipe');
      expect(err.destinationReason).toMatch(/Size mismatch: pc\.ram.*error while loading state/);
      expect(err.recovery?.destination).toMatchObject({ action: 'already-gone' });
    });

    it('runMigration: a destination still loading when first asked is waited for until it exits with its words', async () => {
      const { pair, src } = setUp({ advancePerQueryMs: 0 });
      // The destination fails slowly: still `active` (no error-desc) when first asked
      // after the source failed, gone by the next status query, its words on stderr then.
      let stderr = '';
      let queries = 0;
      const slowExit = new KVMHypervisor({
        monitor: async () => {
          const m = await pair.destinationMonitor();
          const countQuery = () => {
            if (pair.source.qemu.migration.status === 'failed' && ++queries === 2) {
              stderr =
                "qemu: Size mismatch: pc.ram: 0x4000000 != 0x8000000: Invalid argument\nqemu: error while loading state for instance 0x0 of device 'ram'\n";
              pair.destination.exit();
            }
          };
          const execute = m.execute.bind(m);
          const human = m.humanCommand.bind(m);
          m.execute = ((cmd: string, args?: Record<string, unknown>) => {
            if (cmd === 'query-migrate') countQuery();
            return execute(cmd, args);
          }) as typeof m.execute;
          m.humanCommand = (line: string) => {
            if (line.trim() === 'info migrate') countQuery();
            return human(line);
          };
          return m;
        },
      });
      opened.push(slowExit);
      let failed = false;
      const err = (await runMigration({
        source: { hypervisor: src, instance },
        destination: { hypervisor: slowExit, instance, diagnostics: () => stderr },
        target: '10.0.0.2',
        timeoutMs: 10_000,
        stepTimeoutMs: 10_000,
        ...fast,
        onProgress: () => {
          if (failed) return;
          failed = true;
          pair.fail('Unable to write to socket: Broken pipe', { destination: 'waits' });
          // Connected: it had started loading, and has not noticed yet.
          pair.destination.qemu.incoming!.status = 'active';
        },
      }).catch((e: unknown) => e)) as MigrationError;
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.destinationReason).toMatch(/Size mismatch: pc\.ram.*error while loading state/);
      expect(err.recovery?.destination).toMatchObject({ action: 'already-gone' });
      expect(pair.source.qemu.runState).toBe('running');
    });

    it('cancelMigration ends the wait as cancelled; the source runs on', async () => {
      const { pair, src, dst } = setUp({ advancePerQueryMs: 0 });
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      pair.clock.advance(200);
      await src.cancelMigration(instance);
      await expect(src.waitForMigration(instance, fast)).rejects.toMatchObject({ status: 'cancelled' });
      expect(await src.finalizeMigrationSource(instance, false)).toMatchObject({ action: 'already-running' });
      expect(pair.source.qemu.runState).toBe('running');
    });

    it('a frozen destination ends its waits at their deadline, saying it is unresponsive', async () => {
      const { pair, src, dst } = setUp();
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      await src.waitForMigration(instance, fast);
      pair.destination.freeze();
      const err = (await dst
        .finalizeMigrationDst(instance, true, { timeoutMs: 300 })
        .catch((e: unknown) => e)) as MigrationError;
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.unresponsive).toBe(true);
      pair.destination.thaw();
      expect(await dst.finalizeMigrationDst(instance, true)).toMatchObject({ action: 'running' });
    });

    it('a monitor connection lost mid-wait is reopened; a source QEMU that exits ends the wait', async () => {
      const { pair, src, dst } = setUp();
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      let dropped = false;
      const r = await src.waitForMigration(instance, {
        ...fast,
        onProgress: () => {
          if (dropped) return;
          dropped = true;
          pair.source.dropConnections();
        },
      });
      expect(r.status).toBe('completed');
      await dst.finalizeMigrationDst(instance, true);
      await src.finalizeMigrationSource(instance, true);

      const second = setUp({ advancePerQueryMs: 0 });
      await second.dst.acceptInstance(instance);
      await second.src.migrateInstance(instance, '10.0.0.2');
      second.pair.source.exit();
      const err = (await second.src
        .waitForMigration(instance, fast)
        .catch((e: unknown) => e)) as MigrationError;
      expect(err.message).toMatch(/lost the monitor/);
      expect(err.message).toMatch(/must not be resumed blindly/);
    });

    it("the destination's own wait sees the VM arrive, or QEMU's reason, or the destination exit", async () => {
      const { pair, src, dst } = setUp();
      await dst.acceptInstance(instance);
      await src.migrateInstance(instance, '10.0.0.2');
      // Only the destination polls: its queries move the fake time for both ends.
      const arrived = await dst.waitForIncomingMigration(instance, fast);
      expect(arrived).toMatchObject({ status: 'completed', runState: 'running', running: true });
      expect(pair.source.qemu.migration.status).toBe('completed');

      for (const destination of ['reports', 'exits'] as const) {
        const other = setUp({ advancePerQueryMs: 0 });
        await other.dst.acceptInstance(instance);
        await other.src.migrateInstance(instance, '10.0.0.2');
        other.pair.clock.advance(100);
        other.pair.fail('Unable to write to socket: Broken pipe', { destination });
        const err = (await other.dst
          .waitForIncomingMigration(instance, { ...fast, timeoutMs: 5000 })
          .catch((e: unknown) => e)) as MigrationError;
        expect(err).toBeInstanceOf(MigrationError);
        if (destination === 'reports') expect(err.status).toBe('failed');
        else expect(err.message).toMatch(/closed its monitor/);
      }
    });
  },
);
