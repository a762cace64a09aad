/**
 * The post-copy recovery steps against every real QEMU release of the suite, over QMP
 * and HMP: a migration with `postcopy-ram` and the dirtying guest is switched to
 * post-copy, both ends are paused with `pausePostcopy` (on one host, pausing is how the
 * stream breaks), the destination accepts a recovery on a fresh port, the source
 * resumes, and the migration completes with the VM running on the destination only.
 * Run states, statuses and events are observed from outside, on the second QMP socket.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { Deadline } from '../../src/core/deadline.js';
import { MigrationError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { VmChannel } from '../../src/migration/channel.js';
import { acceptPostcopyRecovery, pausePostcopy, resumePostcopy } from '../../src/migration/postcopy.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import type { Monitor, MonitorProtocol } from '../../src/monitor/types.js';
import { versionAtLeast } from '../../src/qemu/version.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort } from '../../src/testing/qemu-vm.js';
import { describeEachRelease, releaseCases, versionOf } from '../support/real-qemu.js';
import {
  type Cleanup,
  cleanUp,
  guestStatus,
  guestSwept,
  migrationStatus,
  runState,
  startPair,
  until,
} from './real-pair.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-postcopy-'));
const cleanup: Cleanup = { vms: [], closers: [] };
afterEach(() => cleanUp(cleanup));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** 48 MiB dirtied at 16 MiB/s: pages left to fetch when post-copy starts. */
const guest = join(dir, 'guest.img');
writeGuestImage(guest, { dirtyMiB: 48, rateMiBps: 16 });
let seq = 0;

async function channel(protocol: MonitorProtocol, path: string, name: string): Promise<VmChannel> {
  const m: Monitor =
    protocol === 'qmp' ? await QmpMonitor.connect({ path }) : await HmpMonitor.connect({ path });
  cleanup.closers.push(() => m.close());
  return new VmChannel(name, m, silentLogger);
}

describeEachRelease('post-copy recovery steps', releaseCases(), (rel) => {
  const version = versionOf(rel);
  it.each(['qmp', 'hmp'] as const)(
    'pause both ends, recover on the destination, resume on the source: the VM completes on the destination only (%s)',
    async (protocol) => {
      const name = `pc${++seq}`;
      const p = await startPair(
        {
          dir,
          name,
          src: { release: rel, kernel: guest },
          dst: { release: rel, kernel: guest },
          protocol,
          memoryMiB: 112,
        },
        cleanup,
      );
      const events = { src: [] as string[], dst: [] as string[] };
      p.srcObs.on('event', (e) => e.event === 'MIGRATION' && events.src.push(String(e.data.status)));
      p.dstObs.on('event', (e) => e.event === 'MIGRATION' && events.dst.push(String(e.data.status)));
      const caps = {
        capabilities: [
          { capability: 'postcopy-ram', state: true },
          { capability: 'events', state: true },
        ],
      };
      await p.srcObs.execute('migrate-set-capabilities', caps);
      await p.dstObs.execute('migrate-set-capabilities', caps);
      // Slow enough that post-copy still has pages to fetch when it is paused.
      await p.srcObs.execute('migrate-set-parameters', {
        'max-bandwidth': 8 << 20,
        'max-postcopy-bandwidth': 4 << 20,
      });
      const src = await channel(protocol, protocol === 'qmp' ? p.src.qmpPath : p.src.hmpPath!, name);
      const dst = await channel(protocol, protocol === 'qmp' ? p.dst.qmpPath : p.dst.hmpPath!, name);
      await guestSwept(p.srcObs);
      await p.srcObs.execute('migrate', { uri: `tcp:127.0.0.1:${p.port}` });
      await until('pre-copy', async () => (await migrationStatus(p.srcObs)) === 'active');

      // Pre-copy: refused, the state named, nothing changed.
      const early = await pausePostcopy(src, Deadline.after(10_000)).catch((e: unknown) => e);
      expect(early).toBeInstanceOf(MigrationError);
      expect((early as MigrationError).status).toBe('active');
      expect((early as MigrationError).message).toContain(
        "cannot pause the post-copy migration: its status is 'active'",
      );

      await p.srcObs.execute('migrate-start-postcopy');
      await until(
        'post-copy on both ends',
        async () =>
          (await migrationStatus(p.srcObs)) === 'postcopy-active' &&
          (await migrationStatus(p.dstObs)) === 'postcopy-active',
      );
      expect(await runState(p.srcObs)).toBe('finish-migrate');
      expect(await runState(p.dstObs)).toBe('running');

      const pausedSrc = await pausePostcopy(src, Deadline.after(15_000));
      expect(pausedSrc).toEqual({
        action: 'paused',
        status: 'postcopy-paused',
        outOfBand: protocol === 'qmp',
      });
      // The source's pause breaks the stream; the destination sees it a moment later (once
      // read before it did on 11.1 under load, and paused by the step itself).
      await until('the destination to see the broken stream', async () => {
        return (await migrationStatus(p.dstObs)) === 'postcopy-paused';
      });
      const pausedDst = await pausePostcopy(dst, Deadline.after(15_000));
      // The source's pause broke the stream: the destination was paused already.
      expect(pausedDst).toMatchObject({ action: 'already-paused', status: 'postcopy-paused' });
      expect(await migrationStatus(p.dstObs)).toBe('postcopy-paused');
      // Split: the source holds pages the destination lacks; neither may stop.
      expect(await runState(p.srcObs)).toBe('finish-migrate');
      expect(await runState(p.dstObs)).toBe('running');
      const remaining = (await p.srcObs.execute<{ ram?: { remaining?: number } }>('query-migrate')).ram
        ?.remaining;
      expect(remaining).toBeGreaterThan(0);

      const uri = `tcp:127.0.0.1:${await freePort()}`;
      const accepted = await acceptPostcopyRecovery(dst, uri, Deadline.after(15_000));
      expect(accepted).toEqual({
        action: 'listening',
        uri,
        status: 'postcopy-paused',
        outOfBand: protocol === 'qmp',
      });
      const resumed = await resumePostcopy(src, uri, Deadline.after(20_000));
      expect(resumed.action).toBe('resumed');
      expect(['postcopy-recover', 'postcopy-active', 'completed']).toContain(resumed.status);

      await until(
        'the migration to complete on both ends',
        async () =>
          (await migrationStatus(p.srcObs)) === 'completed' &&
          (await migrationStatus(p.dstObs)) === 'completed',
        90_000,
      );
      // The VM runs on the destination only, its guest writing; the source stays stopped.
      expect(await runState(p.srcObs)).toBe('postmigrate');
      expect(await runState(p.dstObs)).toBe('running');
      const arrived = await guestStatus(p.dstObs);
      expect(arrived.running).toBe(true);
      await until(
        'the guest to write on the destination',
        async () => ((await guestStatus(p.dstObs)).pagesWritten - arrived.pagesWritten) >>> 0 > 0,
      );
      const stopped = await guestStatus(p.srcObs);
      await new Promise((r) => setTimeout(r, 300));
      expect((await guestStatus(p.srcObs)).pagesWritten).toBe(stopped.pagesWritten);

      // What each release says on the way (docs/migration.md, "Post-copy recovery steps").
      expect(events.src).toContain('postcopy-paused');
      expect(events.src).toContain('postcopy-recover');
      expect(events.src.at(-1)).toBe('completed');
      expect(events.src.includes('postcopy-recover-setup')).toBe(versionAtLeast(version, 9, 1));
      expect(events.src.includes('postcopy-device')).toBe(versionAtLeast(version, 10, 2));
      const afterPause = events.dst.slice(events.dst.indexOf('postcopy-paused'));
      expect(afterPause.includes('setup')).toBe(!versionAtLeast(version, 10, 0));
      expect(afterPause).toContain('postcopy-recover');
      expect(events.dst.at(-1)).toBe('completed');
    },
    180_000,
  );
});
