/**
 * Issue 22, item 1, on real QEMU of every release in the matrix: with the migration guard
 * (on by default with `tls`), strangers on the destination's migration port (idle,
 * slow-loris, garbage) and a silent fake destination stall nothing. Without the guard each
 * of these froze QEMU (measured on 5.2, 7.2, 10.0, 11.1: QEMU does the TLS handshake on its
 * main loop with a blocking socket). Guest progress is read from outside, through a second
 * monitor (`xp` of the guest's status block); no wall-clock asserts: "keeps running" is a
 * pages-written counter that grows. Every guard process is found by its environment and
 * must be gone after the clean-up; tests end their QEMUs, guards and sockets even on failure.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { runMigration } from '../../src/migration/run.js';
import { isPostcopy } from '../../src/migration/safety.js';
import type { Instance } from '../../src/migration/types.js';
import type { QmpMonitor } from '../../src/monitor/qmp.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { generateTestPki, type TestPki } from '../../src/testing/test-pki.js';
import {
  type Cleanup,
  cleanUp,
  guestStatus,
  guestSwept,
  runState,
  startPair,
  until,
} from '../migration/real-pair.js';
import { describeEachRelease, releaseCases } from '../support/real-qemu.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-stall-'));
const guest = join(dir, 'guest.img');
writeGuestImage(guest, { dirtyMiB: 16, rateMiBps: 8 });
let pki: TestPki;
beforeAll(async () => {
  pki = await generateTestPki({ dir: join(dir, 'pki'), nodes: ['node-a', 'node-b', 'node-c'] });
});
afterAll(() => {
  for (const pid of guardPids()) process.kill(pid, 'SIGKILL');
  // KVMHV_KEEP_TEST_DIR=1 keeps the guard logs for a post-mortem.
  if (!process.env.KVMHV_KEEP_TEST_DIR) rmSync(dir, { recursive: true, force: true });
});

/** Pids of the guard processes of this file (their environment names this file's folder). */
function guardPids(): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const env = readFileSync(`/proc/${e}/environ`, 'utf8');
      if (env.includes('KVMHV_GUARD=') && env.includes(dir)) pids.push(Number(e));
    } catch {
      // gone, or not ours
    }
  }
  return pids;
}

/** Waits until the guest has written more pages than `before` (it runs): a counter, not a clock. */
async function progresses(m: QmpMonitor, what: string): Promise<void> {
  const before = (await guestStatus(m)).pagesWritten;
  await until(
    `${what}: the guest writes pages`,
    async () => (await guestStatus(m)).pagesWritten !== before,
    30_000,
  );
}

let seq = 0;

describeEachRelease('the migration guard holds against strangers', releaseCases(), (c) => {
  const cleanup: Cleanup = { vms: [], closers: [] };
  const extra: (Socket | Server)[] = [];
  const endAll = async () => {
    for (const s of extra.splice(0)) s instanceof Server ? s.close() : s.destroy();
    await cleanUp(cleanup);
  };
  const pair = async (srcNode = 'node-a') => {
    const name = `g${++seq}`;
    const a = pki.nodes['node-a']!;
    const srcCerts = pki.nodes[srcNode]!;
    const p = await startPair(
      {
        dir,
        name,
        src: { release: c, accel: c.accel, kernel: guest },
        dst: { release: c, accel: c.accel },
        protocol: 'qmp',
        deferIncoming: true,
        srcHv: { tls: { dir: srcCerts.dir }, stateDir: join(dir, `${name}-src-state`) },
        dstHv: {
          tls: { dir: pki.nodes['node-b']!.dir, allowedPeers: [a.clientDn] },
          stateDir: join(dir, `${name}-dst-state`),
          migrationGuard: { handshakeTimeoutMs: 1500, connectTimeoutMs: 1500 },
        },
      },
      cleanup,
    );
    const instance: Instance = { name, hvparams: { migration_port: p.port, migration_bandwidth: 0 } };
    return { p, instance };
  };
  const migrate = (p: Awaited<ReturnType<typeof pair>>['p'], inst: Instance) =>
    runMigration({
      source: { hypervisor: p.srcHv, instance: inst, diagnostics: () => p.src.stderr },
      destination: { hypervisor: p.dstHv, instance: inst, diagnostics: () => p.dst.stderr },
      target: '127.0.0.1',
      listen: '127.0.0.1',
      timeoutMs: 90_000,
      pollIntervalMs: 100,
    });

  it('in clear with allowedAddresses: a stranger from another address that connects first is never taken as the stream', async () => {
    try {
      const name = `g${++seq}`;
      const p = await startPair(
        {
          dir,
          name,
          src: { release: c, accel: c.accel, kernel: guest },
          dst: { release: c, accel: c.accel },
          protocol: 'qmp',
          deferIncoming: true,
          srcHv: { stateDir: join(dir, `${name}-src-state`) },
          dstHv: {
            stateDir: join(dir, `${name}-dst-state`),
            migrationGuard: { allowedAddresses: ['127.0.0.1'] },
          },
        },
        cleanup,
      );
      const instance: Instance = { name, hvparams: { migration_port: p.port, migration_bandwidth: 0 } };
      await guestSwept(p.srcObs);
      await p.dstHv.acceptInstance(instance, { listen: '127.0.0.1' });
      // Without the guard QEMU would load this as the VM (and fail): the first connection wins.
      const stranger = createConnection({ host: '127.0.0.1', port: p.port, localAddress: '127.0.0.2' });
      extra.push(stranger);
      stranger.on('error', () => {});
      stranger.write(Buffer.from('QEVM\x00\x00\x00\x03garbage'));
      expect(await runState(p.dstObs)).toBe('inmigrate');
      await p.srcHv.migrateInstance(instance, '127.0.0.1');
      await p.srcHv.waitForMigration(instance, { timeoutMs: 120_000 });
      await p.dstHv.finalizeMigrationDst(instance, true);
      await p.srcHv.finalizeMigrationSource(instance, true);
      expect(await runState(p.dstObs)).toBe('running');
      await progresses(p.dstObs, 'destination after the migration');
      await until('the guard to exit', async () => guardPids().length === 0, 10_000);
    } finally {
      await endAll();
    }
  });

  it('multifd: every channel passes the guard (TLS), the VM arrives and runs, no guard is left', async () => {
    try {
      const { p, instance } = await pair();
      await guestSwept(p.srcObs);
      const inst = { ...instance, hvparams: { ...instance.hvparams, migration_caps: 'multifd' } };
      const result = await migrate(p, inst);
      expect(result.status).toBe('completed');
      expect(await runState(p.dstObs)).toBe('running');
      await progresses(p.dstObs, 'destination after a multifd migration');
      await until('the guards to exit', async () => guardPids().length === 0, 10_000);
    } finally {
      await endAll();
    }
  });

  it('post-copy through the guard (the return path flows back through it) completes', async () => {
    try {
      const { p, instance } = await pair();
      await guestSwept(p.srcObs);
      const inst = {
        ...instance,
        hvparams: { ...instance.hvparams, migration_caps: 'postcopy-ram', migration_bandwidth: 4 },
      };
      let outcome: unknown = 'still running';
      const running = migrate(p, inst);
      running.then(
        (r) => {
          outcome = r.status;
        },
        (e) => {
          outcome = e;
        },
      );
      await until(
        `the migration to become active (runMigration: ${String(outcome)})`,
        async () => (await p.srcObs.execute<{ status?: string }>('query-migrate')).status === 'active',
        30_000,
      );
      await p.srcObs.execute('migrate-start-postcopy');
      await until(
        'post-copy',
        async () => isPostcopy((await p.srcObs.execute<{ status?: string }>('query-migrate')).status ?? ''),
        30_000,
      );
      expect((await running).status).toBe('completed');
      expect(await runState(p.dstObs)).toBe('running');
      await progresses(p.dstObs, 'destination after post-copy');
      await until('the guards to exit', async () => guardPids().length === 0, 10_000);
    } finally {
      await endAll();
    }
  });

  it('a source whose DN is not allowed is refused by the guard; QEMU never sees it, the source runs on', async () => {
    try {
      const { p, instance } = await pair('node-c');
      await guestSwept(p.srcObs);
      const e = await migrate(p, instance).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(MigrationError);
      expect(await runState(p.srcObs)).toBe('running');
      await progresses(p.srcObs, 'source after the refusal');
      await until('the guards to exit', async () => guardPids().length === 0, 10_000);
    } finally {
      await endAll();
    }
  });

  it('idle, slow-loris and garbage strangers on the port: the migration completes, no QEMU stalls, no guard is left', async () => {
    try {
      const { p, instance } = await pair();
      await guestSwept(p.srcObs);
      await p.dstHv.acceptInstance(instance, { listen: '127.0.0.1' });
      expect(guardPids()).toHaveLength(1);
      const idle = createConnection({ host: '127.0.0.1', port: p.port });
      const loris = createConnection({ host: '127.0.0.1', port: p.port });
      const garbage = createConnection({ host: '127.0.0.1', port: p.port });
      extra.push(idle, loris, garbage);
      for (const s of [idle, loris, garbage]) s.on('error', () => {});
      garbage.write(Buffer.alloc(65536, 0x5a));
      // A TLS record header, one byte at a time: the classic slow-loris.
      const header = [0x16, 0x03, 0x01, 0x02, 0x00];
      let i = 0;
      const drip = setInterval(
        () => loris.writable && loris.write(Buffer.from([header[i++ % header.length]!])),
        200,
      );
      try {
        // The destination QEMU answers its monitor while the strangers hang on.
        expect(await runState(p.dstObs)).toBe('inmigrate');
        await p.srcHv.migrateInstance(instance, '127.0.0.1');
        // The source guest runs on while migrating (and the source monitor answers).
        await progresses(p.srcObs, 'source during the migration');
        await p.srcHv.waitForMigration(instance, { timeoutMs: 120_000 });
      } finally {
        clearInterval(drip);
      }
      await p.dstHv.finalizeMigrationDst(instance, true);
      await p.srcHv.finalizeMigrationSource(instance, true);
      expect(await runState(p.dstObs)).toBe('running');
      await progresses(p.dstObs, 'destination after the migration');
      expect(await runState(p.srcObs)).toBe('postmigrate');
      await until('the guards to exit', async () => guardPids().length === 0, 10_000);
    } finally {
      await endAll();
    }
  });

  it('a silent fake destination: the migration fails, the source guest never stalls, no guard is left', async () => {
    try {
      const { p, instance } = await pair();
      const held: Socket[] = [];
      const silent = createServer((s) => {
        held.push(s);
        extra.push(s);
      });
      extra.push(silent);
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const port = (silent.address() as { port: number }).port;
      const inst: Instance = { ...instance, hvparams: { ...instance.hvparams, migration_port: port } };
      await guestSwept(p.srcObs);
      await p.srcHv.migrateInstance(inst, '127.0.0.1');
      expect(guardPids().length).toBeGreaterThanOrEqual(1);
      // While the silent peer holds the connection, the guest and the monitor go on.
      await progresses(p.srcObs, 'source facing a silent peer');
      const e = await p.srcHv.waitForMigration(inst, { timeoutMs: 60_000 }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(MigrationError);
      expect(held.length).toBeGreaterThanOrEqual(1); // it did reach the silent peer
      await p.srcHv.finalizeMigrationSource(inst, false);
      expect(await runState(p.srcObs)).toBe('running');
      await progresses(p.srcObs, 'source after the failed migration');
      await until('the source guard to exit', async () => guardPids().length === 0, 10_000);
    } finally {
      await endAll();
    }
  });
});

describe('guard clean-up', () => {
  it('leaves no guard process once every test of this file is done', async () => {
    await until('no guard left', async () => guardPids().length === 0, 10_000);
  });
});
