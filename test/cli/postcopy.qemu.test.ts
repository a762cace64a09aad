/**
 * `kvm-hv postcopy pause|accept-recovery|resume` on real QEMU (the host's): a migration
 * with `postcopy-ram` is put in post-copy, paused from the command line on both nodes
 * (QMP on one, HMP on the other), the destination accepts the recovery on a fresh port,
 * the source resumes there, and the migration completes with the VM on the destination.
 * Refusals outside post-copy name the state; a missing address is a usage error.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort, QemuVm } from '../../src/testing/qemu-vm.js';
import { guestSwept, migrationStatus, runState, until } from '../migration/real-pair.js';
import { ensureBuilt, run } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-cli-postcopy-'));
const vms: QemuVm[] = [];
const monitors: QmpMonitor[] = [];
const guest = join(dir, 'guest.img');
writeGuestImage(guest, { dirtyMiB: 48, rateMiBps: 16 });

beforeAll(() => ensureBuilt(), 120_000);
afterEach(async () => {
  for (const m of monitors.splice(0)) await m.close().catch(() => {});
  await Promise.all(vms.splice(0).map((vm) => vm.kill()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kvm-hv postcopy', () => {
  it('pause on both nodes, accept-recovery on the destination, resume on the source: the migration completes', async () => {
    const port = await freePort();
    const opts = { dir, qmpSockets: 2, memoryMiB: 112, kernel: guest };
    const dst = await QemuVm.start({ name: `pd${port}`, ...opts, incoming: `tcp:127.0.0.1:${port}` });
    vms.push(dst);
    const src = await QemuVm.start({ name: `ps${port}`, ...opts });
    vms.push(src);
    const srcObs = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
    const dstObs = await QmpMonitor.connect({ path: dst.qmpPaths[1]! });
    monitors.push(srcObs, dstObs);
    const h = `kvm:migration_port=${port},migration_caps=postcopy-ram`;

    // Outside post-copy: refused, the state named, exit 1.
    const early = await run(['postcopy', 'pause', '--qmp', src.qmpPath, '-H', h]);
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/cannot pause the post-copy migration: its status is 'none'/);
    const usage = await run(['postcopy', 'accept-recovery', '--qmp', dst.qmpPath, '-H', h]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/give --uri, or --listen/);

    const caps = { capabilities: [{ capability: 'postcopy-ram', state: true }] };
    await srcObs.execute('migrate-set-capabilities', caps);
    await dstObs.execute('migrate-set-capabilities', caps);
    await srcObs.execute('migrate-set-parameters', {
      'max-bandwidth': 8 << 20,
      'max-postcopy-bandwidth': 2 << 20,
    });
    // A guest that has dirtied its region leaves pages to fetch in post-copy.
    await guestSwept(srcObs);
    await srcObs.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    await until('pre-copy', async () => (await migrationStatus(srcObs)) === 'active');
    await srcObs.execute('migrate-start-postcopy');
    await until('post-copy', async () => (await migrationStatus(dstObs)) === 'postcopy-active');

    const pausedSrc = await run(['postcopy', 'pause', '--qmp', src.qmpPath, '-H', h, '--json']);
    expect(pausedSrc.code, pausedSrc.stderr).toBe(0);
    expect(JSON.parse(pausedSrc.stdout)).toMatchObject({
      action: 'paused',
      status: 'postcopy-paused',
      outOfBand: true,
    });
    const pausedDst = await run(['postcopy', 'pause', '--hmp', dst.hmpPath!, '-H', h]);
    expect(pausedDst.code, pausedDst.stderr).toBe(0);
    expect(pausedDst.stdout).toMatch(/already-paused/);
    expect(await runState(srcObs)).toBe('finish-migrate');

    const recoveryPort = await freePort();
    const accepted = await run([
      'postcopy',
      'accept-recovery',
      '--qmp',
      dst.qmpPath,
      '-H',
      h,
      '--listen',
      '127.0.0.1',
      '--port',
      String(recoveryPort),
      '--json',
    ]);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(JSON.parse(accepted.stdout)).toMatchObject({
      action: 'listening',
      uri: `tcp:127.0.0.1:${recoveryPort}`,
    });
    const resumed = await run([
      'postcopy',
      'resume',
      '--hmp',
      src.hmpPath!,
      '-H',
      h,
      '--target',
      '127.0.0.1',
      '--port',
      String(recoveryPort),
    ]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resumed to tcp:127\.0\.0\.1:\d+/);
    await until(
      'completed on both ends',
      async () =>
        (await migrationStatus(srcObs)) === 'completed' && (await migrationStatus(dstObs)) === 'completed',
      120_000,
    );
    expect(await runState(srcObs)).toBe('postmigrate');
    expect(await runState(dstObs)).toBe('running');
  }, 240_000);
});
