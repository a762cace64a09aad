/**
 * Out-of-band commands against every real QEMU release of the suite that offers `oob`
 * (3.1+: all of them here): `exec-oob` answered by id between pipelined in-band commands,
 * QEMU's own refusals quoted, and the typed refusal where `oob` is turned off.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OutOfBandUnavailableError, QmpError } from '../../src/errors.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { versionAtLeast } from '../../src/qemu/version.js';
import { QemuVm } from '../../src/testing/qemu-vm.js';
import { describeEachRelease, releaseCases, vmOptions } from '../support/real-qemu.js';
import { rejectionOf } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-oob-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeEachRelease('out-of-band QMP commands', releaseCases(), (rel) => {
  let vm: QemuVm | undefined;
  const monitors: QmpMonitor[] = [];

  beforeAll(async () => {
    vm = await QemuVm.start({
      name: `oob-${rel.release}`,
      dir,
      qmpSockets: 2,
      memoryMiB: 64,
      ...vmOptions(rel),
    });
  });
  afterAll(async () => {
    await Promise.allSettled(monitors.map((m) => m.close()));
    await vm?.kill();
  });

  it('exec-oob migrate-pause is answered by id between pipelined in-band commands', async () => {
    const mon = await QmpMonitor.connect({ path: vm!.qmpPath });
    monitors.push(mon);
    expect(mon.outOfBand).toBe(true);
    const [status, pause, notOob, version] = await Promise.allSettled([
      mon.execute<{ status: string }>('query-status'),
      mon.executeOutOfBand('migrate-pause', undefined, { timeoutMs: 10_000 }),
      mon.executeOutOfBand('query-status', undefined, { timeoutMs: 10_000 }),
      mon.execute<{ qemu: unknown }>('query-version'),
    ]);
    expect(status).toMatchObject({ status: 'fulfilled', value: { status: 'running' } });
    expect(version).toMatchObject({ status: 'fulfilled', value: { qemu: mon.version } });
    // No migration: QEMU ran migrate-pause out of band and refused it, in its own words.
    expect(pause.status).toBe('rejected');
    const pauseErr = (pause as PromiseRejectedResult).reason as QmpError;
    expect(pauseErr).toBeInstanceOf(QmpError);
    expect(pauseErr.desc).toBe(
      versionAtLeast(mon.version, 8, 2)
        ? 'migrate-pause is currently only supported during postcopy-active or postcopy-recover state'
        : 'migrate-pause is currently only supported during postcopy-active state',
    );
    const notOobErr = (notOob as PromiseRejectedResult).reason as QmpError;
    expect(notOobErr).toBeInstanceOf(QmpError);
    expect(notOobErr.desc).toBe('The command query-status does not support OOB');
    expect(mon.pendingCount).toBe(0);
  });

  it('refuses before sending, with a typed error, where oob is turned off', async () => {
    const mon = await QmpMonitor.connect({ path: vm!.qmpPaths[1]! }, { outOfBand: false });
    monitors.push(mon);
    const err = await rejectionOf(mon.executeOutOfBand('migrate-pause'));
    expect(err).toBeInstanceOf(OutOfBandUnavailableError);
    expect(await mon.execute('query-status')).toMatchObject({ status: 'running' });
  });
});
