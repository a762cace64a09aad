/**
 * Live migration between real QEMU processes on loopback, on every release of the suite,
 * under every accelerator this machine has (TCG, and KVM where /dev/kvm works), with the
 * library on QMP and on HMP (HMP under TCG only: see `migrationProtocols`). Each test
 * starts its own pair of VMs (64 MiB) and kills them afterwards, even when it fails.
 * Expectations follow the version QEMU reports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import type { ConvergenceAction, Instance, MigrationProgress } from '../../src/migration/types.js';
import type { MonitorProtocol } from '../../src/monitor/types.js';
import { formatVersion, versionAtLeast } from '../../src/qemu/version.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort } from '../../src/testing/qemu-vm.js';
import {
  accelerators,
  describeEachRelease,
  migrationProtocols,
  type ReleaseCase,
  releaseCases,
  versionOf,
} from '../support/real-qemu.js';
import {
  type Cleanup,
  capabilityStates as caps,
  cleanUp,
  guestSwept,
  migrationSettingCommands,
  type PairOptions,
  startPair,
  runState as status,
} from './real-pair.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-mig-'));
const cleanup: Cleanup = { vms: [], closers: [] };
afterEach(() => cleanUp(cleanup));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A busy guest: 8 MiB dirtied again and again at 16 MiB/s, which cannot converge at 4 MiB/s. */
const busyGuest = join(dir, 'busy.img');
writeGuestImage(busyGuest, { dirtyMiB: 8, rateMiBps: 16 });
const MiB = 1024 * 1024;
let seq = 0;

describeEachRelease('live migration', releaseCases(accelerators()), (rel: ReleaseCase) => {
  const version = versionOf(rel);
  describe.each(migrationProtocols(rel.accel))('over %s', (protocol: MonitorProtocol) => {
    /** A pair; a busy one once its guest has dirtied its whole region. */
    const pair = async (opts: { busy?: boolean; srcHv?: PairOptions['srcHv'] } = {}) => {
      const end = { release: rel, accel: rel.accel, kernel: opts.busy ? busyGuest : undefined };
      const p = await startPair(
        { dir, name: `m${++seq}`, src: end, dst: end, protocol, srcHv: opts.srcHv },
        cleanup,
      );
      if (opts.busy) await guestSwept(p.srcObs);
      return p;
    };

    it('migrates live with capabilities and the requested bandwidth and downtime', async () => {
      const { srcHv, dstHv, srcObs, dstObs, port, srcRecorder } = await pair();
      expect(await srcObs.execute('query-kvm')).toMatchObject({ enabled: rel.accel === 'kvm' });
      const inst: Instance = {
        name: 'vm1',
        hvparams: {
          migration_port: port,
          migration_bandwidth: 200,
          migration_downtime: 250,
          migration_caps: 'xbzrle:auto-converge',
        },
      };
      expect(await dstHv.acceptInstance(inst)).toEqual([]); // both are source-side capabilities
      await srcHv.migrateInstance(inst, '127.0.0.1', true);

      const params = (await srcObs.execute('query-migrate-parameters')) as Record<string, number>;
      expect(params['max-bandwidth']).toBe(200 * MiB);
      // No post-copy among the capabilities: the post-copy bandwidth is left as it was.
      expect(params['max-postcopy-bandwidth']).toBe(0);
      expect(params['downtime-limit']).toBe(250);
      // Only QMP can receive events, so only a QMP source turns them on.
      expect(await caps(srcObs)).toMatchObject({
        xbzrle: true,
        'auto-converge': true,
        events: protocol === 'qmp',
      });
      // The commands QEMU got: every release here has migrate-set-parameters (QEMU >= 2.8).
      const uri = `tcp:127.0.0.1:${port}`;
      expect(migrationSettingCommands(srcRecorder())).toEqual(
        protocol === 'qmp'
          ? [
              `migrate-set-parameters ${JSON.stringify({ 'max-bandwidth': 200 * MiB, 'downtime-limit': 250 })}`,
              `migrate-set-capabilities ${JSON.stringify({
                capabilities: [
                  { capability: 'xbzrle', state: true },
                  { capability: 'auto-converge', state: true },
                  { capability: 'events', state: true },
                ],
              })}`,
              `migrate ${JSON.stringify({ uri })}`,
            ]
          : [
              'migrate_set_parameter max-bandwidth 200M',
              'migrate_set_parameter downtime-limit 250',
              'migrate_set_capability xbzrle on',
              'migrate_set_capability auto-converge on',
              `migrate -d ${uri}`,
            ],
      );

      const seen: string[] = [];
      const result = await srcHv.waitForMigration(inst, {
        pollIntervalMs: 100,
        onProgress: (p) => seen.push(p.status),
      });
      expect(result.status).toBe('completed');
      expect(result.transferredBytes).toBeGreaterThan(0);
      expect(result.totalBytes).toBeGreaterThanOrEqual(64 * MiB);
      expect(seen.at(-1)).toBe('completed');

      await srcHv.finalizeMigrationSource(inst, true, true);
      await dstHv.finalizeMigrationDst(inst, true);
      expect(await status(dstObs)).toBe('running');
      expect(await status(srcObs)).toBe('postmigrate');
      // Finalize on success clears the source capabilities only on failure; the destination's are cleared.
      expect(await caps(dstObs)).toMatchObject({ xbzrle: false, 'auto-converge': false });
    });

    it('migrates non-live: the source is stopped first, the destination runs at the end', async () => {
      const { srcHv, dstHv, srcObs, dstObs, port } = await pair();
      const inst: Instance = { name: 'vm2', hvparams: { migration_port: port, migration_mode: 'non-live' } };
      await dstHv.acceptInstance(inst);
      const stops = srcObs.waitForEvent('STOP', { timeoutMs: 10_000 });
      await srcHv.migrateInstance(inst, '127.0.0.1');
      await stops.promise;
      await srcHv.waitForMigration(inst, { pollIntervalMs: 100 });
      await srcHv.finalizeMigrationSource(inst, true, false);
      await dstHv.finalizeMigrationDst(inst, true);
      expect(await status(dstObs)).toBe('running');
      expect(await status(srcObs)).toBe('postmigrate');
    });

    it('reports QEMU’s reason for a refused target and leaves the source running', async () => {
      const { srcHv, srcObs } = await pair();
      const closedPort = await freePort();
      const inst: Instance = {
        name: 'vm4',
        hvparams: { migration_port: closedPort, migration_caps: 'xbzrle' },
      };
      await srcHv.migrateInstance(inst, '127.0.0.1');
      const err = await srcHv.waitForMigration(inst, { pollIntervalMs: 100 }).catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.status).toBe('failed');
      expect(err.reason).toMatch(/Connection refused/);
      expect(err.message).toMatch(/Connection refused/);
      await srcHv.finalizeMigrationSource(inst, false);
      expect(await status(srcObs)).toBe('running');
      expect(await caps(srcObs)).toMatchObject({ xbzrle: false });
    });

    it('refuses a capability this QEMU lacks before changing anything', async () => {
      const { srcHv, srcObs, port } = await pair();
      // switchover-ack arrived in 8.1; block (and compress) left in 9.1.
      const [missing, why] = versionAtLeast(version, 9, 1)
        ? ['block', 'removed in QEMU 9.1.0']
        : ['switchover-ack', 'added in QEMU 8.1.0'];
      expect(Object.keys(await caps(srcObs))).not.toContain(missing);
      const before = await srcObs.execute('query-migrate-parameters');
      const inst: Instance = {
        name: 'vm5',
        hvparams: { migration_port: port, migration_bandwidth: 5, migration_caps: `return-path:${missing}` },
      };
      const err = await srcHv.migrateInstance(inst, '127.0.0.1').catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.message).toContain(
        `capability '${missing}' is not supported by QEMU ${formatVersion(version)} (${why})`,
      );
      expect(await srcObs.execute('query-migrate')).toEqual({});
      expect(await srcObs.execute('query-migrate-parameters')).toEqual(before);
      expect(await caps(srcObs)).toMatchObject({ 'return-path': false });
      expect(await status(srcObs)).toBe('running');
    });

    it('cancels on request and leaves the source running', async () => {
      const { srcHv, srcObs, port } = await pair({ busy: true });
      const inst: Instance = { name: 'vm6', hvparams: { migration_port: port, migration_bandwidth: 1 } };
      await srcHv.migrateInstance(inst, '127.0.0.1');
      const waiting = srcHv.waitForMigration(inst, { pollIntervalMs: 100 }).catch((e) => e);
      await srcHv.cancelMigration(inst);
      const err = await waiting;
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.status).toBe('cancelled');
      await srcHv.finalizeMigrationSource(inst, false);
      expect(await status(srcObs)).toBe('running');
    });

    it('survives the destination dying mid-migration: failed, source running', async () => {
      const { dst, srcHv, srcObs, port } = await pair({ busy: true });
      const inst: Instance = { name: 'vm7', hvparams: { migration_port: port, migration_bandwidth: 1 } };
      await srcHv.migrateInstance(inst, '127.0.0.1');
      let killed = false;
      const err = await srcHv
        .waitForMigration(inst, {
          pollIntervalMs: 100,
          onProgress: (p) => {
            if (!killed && p.status === 'active') {
              killed = true;
              void dst.kill(0);
            }
          },
        })
        .catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.status).toBe('failed');
      await srcHv.finalizeMigrationSource(inst, false);
      expect(await status(srcObs)).toBe('running');
    });

    it('raises the downtime when stalled, then cancels at the completion timeout, source running', async () => {
      const {
        srcHv: hv,
        srcObs,
        port,
      } = await pair({
        busy: true,
        srcHv: { convergence: { stallMs: 200, maxDowntimeMs: 300 } },
      });
      // 4 MiB/s and at most 300 ms: 1.2 MiB per switch-over window, less than the busy guest
      // dirties meanwhile even on a loaded machine (at 4 MiB/s and 500 ms it once converged).
      const inst: Instance = {
        name: 'vm8',
        hvparams: { migration_port: port, migration_bandwidth: 4, migration_downtime: 100 },
      };
      await hv.migrateInstance(inst, '127.0.0.1', true);
      const actions: ConvergenceAction[] = [];
      const err = await hv
        .waitForMigration(inst, { timeoutMs: 5000, pollIntervalMs: 50, onAction: (a) => actions.push(a) })
        .catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.status).toBe('cancelled');
      expect(err.message).toMatch(/did not complete within 5 s/);
      // Under load the first pass may take most of the time: at least one step must happen,
      // each step doubles (capped at 300 ms), and QEMU holds the last value asked for.
      const steps = actions.map((a) => (a.kind === 'downtime' ? a.downtimeMs : -1));
      expect(steps.length).toBeGreaterThan(0);
      expect(steps).toEqual([200, 300].slice(0, steps.length));
      const params = (await srcObs.execute('query-migrate-parameters')) as Record<string, number>;
      expect(params['downtime-limit']).toBe(steps.at(-1));
      expect(await status(srcObs)).toBe('running');
      await hv.finalizeMigrationSource(inst, false);
      expect(await status(srcObs)).toBe('running');
    });

    it('resumes a source stopped for a non-live migration when the wait is aborted', async () => {
      const { srcHv, srcObs, port } = await pair({ busy: true });
      const inst: Instance = { name: 'vm9', hvparams: { migration_port: port, migration_bandwidth: 1 } };
      await srcHv.migrateInstance(inst, '127.0.0.1', false);
      expect(await status(srcObs)).not.toBe('running');
      const abort = new AbortController();
      setTimeout(() => abort.abort(), 300);
      const err = await srcHv
        .waitForMigration(inst, { signal: abort.signal, pollIntervalMs: 50 })
        .catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.status).toBe('cancelled');
      expect(err.message).toMatch(/cancelled by the caller/);
      expect(await status(srcObs)).toBe('running');
    });

    it('switches a busy guest to post-copy once the first pass is over, and completes', async () => {
      const { srcHv, dstHv, srcObs, dstObs, port } = await pair({ busy: true });
      const inst: Instance = {
        name: 'vm10',
        hvparams: { migration_port: port, migration_bandwidth: 4, migration_caps: 'postcopy-ram' },
      };
      expect(await dstHv.acceptInstance(inst)).toEqual(['postcopy-ram']);
      expect(await caps(dstObs)).toMatchObject({ 'postcopy-ram': true });
      // QEMU's own MIGRATION events (broadcast to every QMP client) prove the switch.
      await srcObs.execute('migrate-set-capabilities', {
        capabilities: [{ capability: 'events', state: true }],
      });
      const postcopy = srcObs.waitForEvent('MIGRATION', {
        filter: (e) => e.data.status === 'postcopy-active',
        timeoutMs: 30_000,
      });
      await srcHv.migrateInstance(inst, '127.0.0.1');
      // The restore waits for this yank instance to go (cleanup-wait.ts): QEMU must have it.
      const yankHas = async () =>
        ((await srcObs.execute('query-yank')) as { type: string }[]).some((i) => i.type === 'migration');
      if (versionAtLeast(version, 6, 0)) expect(await yankHas()).toBe(true);
      const actions: ConvergenceAction[] = [];
      let atSwitch: MigrationProgress | undefined;
      let last: MigrationProgress | undefined;
      await srcHv.waitForMigration(inst, {
        pollIntervalMs: 50,
        onProgress: (p) => {
          last = p;
        },
        onAction: (a) => {
          actions.push(a);
          atSwitch = last;
        },
      });
      expect(actions).toEqual([
        {
          kind: 'postcopy',
          reason: expect.stringMatching(/^the first precopy pass is over \(dirty sync count \d+\)$/),
        },
      ]);
      // Every page was sent or found zero before the switch (QEMU 11 with postcopy-ram
      // counts ten dirty syncs a second from the start: the count alone switched at once).
      expect(atSwitch).toMatchObject({ status: 'active', firstPassDone: true });
      const ram = atSwitch?.raw?.ram as Record<string, number> | undefined;
      if (ram) expect((ram.normal! + ram.duplicate!) * ram['page-size']!).toBeGreaterThanOrEqual(ram.total!);
      await postcopy.promise;
      await srcHv.finalizeMigrationSource(inst, true);
      if (versionAtLeast(version, 6, 0)) expect(await yankHas()).toBe(false);
      await dstHv.finalizeMigrationDst(inst, true);
      expect(await status(dstObs)).toBe('running');
      expect(await status(srcObs)).toBe('postmigrate');
      expect(await caps(dstObs)).toMatchObject({ 'postcopy-ram': false });
    });
  });
});
