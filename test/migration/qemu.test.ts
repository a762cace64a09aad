/**
 * Live migration between real QEMU 7.2 processes on loopback. Each test starts its own
 * pair of VMs (TCG, 64 MiB) and kills them afterwards, even when it fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { writeGuestImage } from '../../src/guest/index.js';
import { KVMHypervisor } from '../../src/kvm.js';
import type { ConvergenceAction, Instance } from '../../src/migration/types.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { freePort, QemuVm } from '../../src/qemu/process.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-mig-'));
const vms: QemuVm[] = [];
const closers: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0)) await c().catch(() => {});
  await Promise.all(vms.splice(0).map((vm) => vm.kill()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
/** A busy guest: 8 MiB dirtied again and again at 16 MiB/s, which cannot converge at 4 MiB/s. */
const busyGuest = join(dir, 'busy.img');
writeGuestImage(busyGuest, { dirtyMiB: 8, rateMiBps: 16 });

async function pair(opts: { busy?: boolean } = {}) {
  const n = ++seq;
  const port = await freePort();
  const kernel = opts.busy ? { kernel: busyGuest } : {};
  const src = await QemuVm.start({ name: `src${n}`, dir, qmpSockets: 2, memoryMiB: 64, ...kernel });
  vms.push(src);
  const dst = await QemuVm.start({
    name: `dst${n}`,
    dir,
    qmpSockets: 2,
    memoryMiB: 64,
    incoming: `tcp:127.0.0.1:${port}`,
    ...kernel,
  });
  vms.push(dst);
  const srcHv = new KVMHypervisor({ monitor: () => QmpMonitor.connect({ path: src.qmpPath }) });
  const dstHv = new KVMHypervisor({ monitor: () => QmpMonitor.connect({ path: dst.qmpPath }) });
  // Independent observers on the second QMP socket: what QEMU itself says.
  const srcObs = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
  const dstObs = await QmpMonitor.connect({ path: dst.qmpPaths[1]! });
  closers.push(
    () => srcHv.close(),
    () => dstHv.close(),
    () => srcObs.close(),
    () => dstObs.close(),
  );
  return { src, dst, srcHv, dstHv, srcObs, dstObs, port };
}

const status = async (m: QmpMonitor) => ((await m.execute('query-status')) as { status: string }).status;
const caps = async (m: QmpMonitor) =>
  Object.fromEntries(
    ((await m.execute('query-migrate-capabilities')) as { capability: string; state: boolean }[]).map((c) => [
      c.capability,
      c.state,
    ]),
  );

describe('live migration on real QEMU 7.2', () => {
  it('migrates live with capabilities and the requested bandwidth and downtime', async () => {
    const { srcHv, dstHv, srcObs, dstObs, port } = await pair();
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
    expect(params['max-bandwidth']).toBe(200 * 1024 * 1024);
    expect(params['max-postcopy-bandwidth']).toBe(200 * 1024 * 1024);
    expect(params['downtime-limit']).toBe(250);
    expect(await caps(srcObs)).toMatchObject({ xbzrle: true, 'auto-converge': true, events: true });

    const seen: string[] = [];
    const result = await srcHv.waitForMigration(inst, { onProgress: (p) => seen.push(p.status) });
    expect(result.status).toBe('completed');
    expect(result.transferredBytes).toBeGreaterThan(0);
    expect(result.totalBytes).toBeGreaterThanOrEqual(64 * 1024 * 1024);
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
    await srcHv.waitForMigration(inst);
    await srcHv.finalizeMigrationSource(inst, true, false);
    await dstHv.finalizeMigrationDst(inst, true);
    expect(await status(dstObs)).toBe('running');
    expect(await status(srcObs)).toBe('postmigrate');
  });

  it('migrates over an HMP monitor with the unit conversions right', async () => {
    const { src, dstHv, srcObs, dstObs, port } = await pair();
    const hv = new KVMHypervisor({ monitor: () => HmpMonitor.connect({ path: src.hmpPath! }) });
    closers.push(() => hv.close());
    const inst: Instance = {
      name: 'vm3',
      hvparams: {
        migration_port: port,
        migration_bandwidth: 100,
        migration_downtime: 40,
        migration_caps: 'xbzrle',
      },
    };
    await dstHv.acceptInstance(inst);
    await hv.migrateInstance(inst, '127.0.0.1', true);
    const params = (await srcObs.execute('query-migrate-parameters')) as Record<string, number>;
    expect(params['max-bandwidth']).toBe(100 * 1024 * 1024);
    expect(params['downtime-limit']).toBe(40);
    expect(await caps(srcObs)).toMatchObject({ xbzrle: true });
    await hv.waitForMigration(inst, { pollIntervalMs: 100 });
    await hv.finalizeMigrationSource(inst, true);
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
    const err = await srcHv.waitForMigration(inst).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.status).toBe('failed');
    expect(err.reason).toMatch(/Connection refused/);
    expect(err.message).toMatch(/Connection refused/);
    await srcHv.finalizeMigrationSource(inst, false);
    expect(await status(srcObs)).toBe('running');
    expect(await caps(srcObs)).toMatchObject({ xbzrle: false });
  });

  it('refuses a capability QEMU 7.2 lacks before changing anything', async () => {
    const { srcHv, srcObs, port } = await pair();
    const before = await srcObs.execute('query-migrate-parameters');
    const inst: Instance = {
      name: 'vm5',
      hvparams: {
        migration_port: port,
        migration_bandwidth: 5,
        migration_caps: 'return-path:switchover-ack',
      },
    };
    const err = await srcHv.migrateInstance(inst, '127.0.0.1').catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.message).toMatch(/'switchover-ack' is not supported by QEMU 7\.2\.\d+/);
    expect(await srcObs.execute('query-migrate')).toEqual({});
    expect(await srcObs.execute('query-migrate-parameters')).toEqual(before);
    expect(await caps(srcObs)).toMatchObject({ 'return-path': false });
    expect(await status(srcObs)).toBe('running');
  });

  it('cancels on request and leaves the source running', async () => {
    const { srcHv, srcObs, port } = await pair({ busy: true });
    const inst: Instance = { name: 'vm6', hvparams: { migration_port: port, migration_bandwidth: 1 } };
    await srcHv.migrateInstance(inst, '127.0.0.1');
    const waiting = srcHv.waitForMigration(inst).catch((e) => e);
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
    const { src, srcObs, port } = await pair({ busy: true });
    const hv = new KVMHypervisor({
      monitor: () => QmpMonitor.connect({ path: src.qmpPath }),
      convergence: { stallMs: 200, maxDowntimeMs: 500 },
    });
    closers.push(() => hv.close());
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
    // each step doubles (capped at 500 ms), and QEMU holds the last value asked for.
    const steps = actions.map((a) => (a.kind === 'downtime' ? a.downtimeMs : -1));
    expect(steps.length).toBeGreaterThan(0);
    expect(steps).toEqual([200, 400, 500].slice(0, steps.length));
    const params = (await srcObs.execute('query-migrate-parameters')) as Record<string, number>;
    expect(params['downtime-limit']).toBe(steps.at(-1));
    expect(await status(srcObs)).toBe('running');
    await hv.finalizeMigrationSource(inst, false);
    expect(await status(srcObs)).toBe('running');
  });

  it('resumes a source stopped for a non-live migration when the wait is aborted', async () => {
    const { srcHv, srcObs, port } = await pair({ busy: true });
    const inst: Instance = { name: 'vm9', hvparams: { migration_port: port, migration_bandwidth: 1 } };
    // Let the guest dirty its 8 MiB first: at 1 MiB/s that takes far longer than the test.
    await new Promise((r) => setTimeout(r, 1000));
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

  it('switches a busy guest to post-copy after two passes and completes', async () => {
    const { srcHv, dstHv, srcObs, dstObs, port } = await pair({ busy: true });
    const inst: Instance = {
      name: 'vm10',
      hvparams: { migration_port: port, migration_bandwidth: 4, migration_caps: 'postcopy-ram' },
    };
    expect(await dstHv.acceptInstance(inst)).toEqual(['postcopy-ram']);
    expect(await caps(dstObs)).toMatchObject({ 'postcopy-ram': true });
    // Let the guest dirty its whole region, so that precopy alone cannot converge at 4 MiB/s.
    await new Promise((r) => setTimeout(r, 1000));
    // QEMU's own MIGRATION events (broadcast to every QMP client) prove the switch.
    const postcopy = srcObs.waitForEvent('MIGRATION', {
      filter: (e) => e.data.status === 'postcopy-active',
      timeoutMs: 30_000,
    });
    await srcHv.migrateInstance(inst, '127.0.0.1');
    const actions: ConvergenceAction[] = [];
    await srcHv.waitForMigration(inst, { pollIntervalMs: 50, onAction: (a) => actions.push(a) });
    expect(actions).toEqual([{ kind: 'postcopy', reason: 'precopy pass 2 reached' }]);
    await postcopy.promise;
    await srcHv.finalizeMigrationSource(inst, true);
    await dstHv.finalizeMigrationDst(inst, true);
    expect(await status(dstObs)).toBe('running');
    expect(await status(srcObs)).toBe('postmigrate');
    expect(await caps(dstObs)).toMatchObject({ 'postcopy-ram': false });
  });
});
