/**
 * Automatic post-copy recovery in runMigration on every real QEMU release of the suite:
 * the migration stream goes through a TCP relay that the test freezes once both ends are
 * in post-copy (as a link that drops every packet: both QEMUs stay `postcopy-active`, no
 * byte moves, the destination's guest waits for pages). runMigration must see the stall,
 * pause both ends, have the destination listen on the recovery port, resume the source
 * there, and complete: the VM runs on the destination only with its guest writing, the
 * source stopped in `postmigrate`. Observed from outside on the second QMP sockets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { runMigration } from '../../src/internal.js';
import type { PostcopyRecoveryEvent } from '../../src/migration/postcopy-recovery.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort } from '../../src/testing/qemu-vm.js';
import { describeEachRelease, releaseCases } from '../support/real-qemu.js';
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

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-pcrec-'));
const cleanup: Cleanup = { vms: [], closers: [] };
afterEach(() => cleanUp(cleanup));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** 48 MiB dirtied at 16 MiB/s: pages left to fetch when post-copy starts. */
const guest = join(dir, 'guest.img');
writeGuestImage(guest, { dirtyMiB: 48, rateMiBps: 16 });
let seq = 0;

/** A TCP relay whose connections can be frozen: nothing is read or written any more. */
class FreezableRelay {
  private readonly sockets = new Set<Socket>();
  private frozen = false;
  private constructor(private readonly server: Server) {}

  static async start(port: number, upstreamPort: number): Promise<FreezableRelay> {
    const server = createServer();
    const relay = new FreezableRelay(server);
    server.on('connection', (client) => {
      const upstream = connect(upstreamPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        relay.sockets.add(s);
        s.on('close', () => relay.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      if (relay.frozen) relay.freeze();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return relay;
  }

  /** Stops moving bytes in both directions, connections left open (a dead link). */
  freeze(): void {
    this.frozen = true;
    for (const s of this.sockets) {
      s.unpipe();
      s.pause();
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

describeEachRelease('runMigration recovers a frozen post-copy stream', releaseCases(), (rel) => {
  it('stall seen, both ends paused, the destination listens on the recovery port, the source resumes, the VM completes on the destination', async () => {
    const name = `pcr${++seq}`;
    const p = await startPair(
      {
        dir,
        name,
        src: { release: rel, kernel: guest },
        dst: { release: rel, kernel: guest },
        protocol: 'qmp',
        memoryMiB: 112,
      },
      cleanup,
    );
    const relayPort = await freePort();
    const relay = await FreezableRelay.start(relayPort, p.port);
    cleanup.closers.push(() => relay.close());
    const recoveryPort = await freePort();
    const instance = {
      name,
      memoryMiB: 112,
      hvparams: {
        migration_port: relayPort,
        migration_bandwidth: 8,
        migration_downtime: 30,
        migration_caps: 'postcopy-ram',
      },
    };
    await guestSwept(p.srcObs);
    const events: PostcopyRecoveryEvent[] = [];
    let switching = false;
    let switched: Promise<void> | undefined;
    const result = await runMigration({
      source: { hypervisor: p.srcHv, instance },
      destination: { hypervisor: p.dstHv, instance },
      target: '127.0.0.1',
      stepTimeoutMs: 30_000,
      timeoutMs: 170_000,
      postcopyStallMs: 3000,
      postcopyRecoveryMs: 90_000,
      postcopyRecoveryPort: recoveryPort,
      onPostcopyRecovery: (e) => events.push(e),
      onProgress: (pr) => {
        if (switching || pr.status !== 'active' || (pr.transferredBytes ?? 0) < 4 << 20) return;
        switching = true;
        // Post-copy by hand (slowed so pages are left to fetch), then the link dies.
        switched = (async () => {
          await p.srcObs.execute('migrate-set-parameters', { 'max-postcopy-bandwidth': 4 << 20 });
          await p.srcObs.execute('migrate-start-postcopy').catch(() => undefined);
          // Both ends past the switch-over (11.1's `postcopy-device` refuses migrate-pause:
          // a link that dies inside that moment is not this test's case).
          await until(
            'post-copy on both ends',
            async () =>
              (await migrationStatus(p.srcObs)) === 'postcopy-active' &&
              (await migrationStatus(p.dstObs)) === 'postcopy-active',
          );
          relay.freeze();
        })();
      },
    });
    await switched;
    expect(result.status).toBe('completed');
    expect(result.postcopyRecoveries).toBeGreaterThanOrEqual(1);
    expect(result.destination.action).toBe('running');
    const kinds = events.map((e) => e.kind);
    expect(kinds[0]).toBe('stalled');
    expect(kinds).toContain('listening');
    expect(kinds.at(-1)).toBe('resumed');
    expect(events.find((e) => e.kind === 'listening')).toMatchObject({
      uri: `tcp:127.0.0.1:${recoveryPort}`,
    });
    // The VM runs on the destination only, its guest writing; the source stays stopped.
    expect(await runState(p.srcObs)).toBe('postmigrate');
    expect(await runState(p.dstObs)).toBe('running');
    const arrived = await guestStatus(p.dstObs);
    await until(
      'the guest to write on the destination',
      async () => ((await guestStatus(p.dstObs)).pagesWritten - arrived.pagesWritten) >>> 0 > 0,
    );
    const stopped = await guestStatus(p.srcObs);
    await new Promise((r) => setTimeout(r, 300));
    expect((await guestStatus(p.srcObs)).pagesWritten).toBe(stopped.pagesWritten);
  }, 240_000);
});
