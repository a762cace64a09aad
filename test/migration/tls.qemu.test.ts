/**
 * Migration over TLS between real QEMUs of every release in the matrix, over QMP and HMP:
 * a TLS migration completes and leaves no credentials behind; a source with a certificate
 * from another CA, a source whose DN the destination does not allow, and a plain-TCP
 * source are refused with QEMU's reason, and the VM runs in exactly one place (the
 * source); TLS with multifd and in post-copy. Certificates come from generateTestPki.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { runMigration } from '../../src/migration/run.js';
import { isPostcopy } from '../../src/migration/safety.js';
import type { Instance } from '../../src/migration/types.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { versionAtLeast } from '../../src/qemu/version.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { QemuVm } from '../../src/testing/qemu-vm.js';
import { generateTestPki, type TestPki } from '../../src/testing/test-pki.js';
import {
  describeEachRelease,
  migrationProtocols,
  releaseCases,
  versionOf,
  vmOptions,
} from '../support/real-qemu.js';
import { type Cleanup, cleanUp, guestSwept, type Pair, runState, startPair } from './real-pair.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-tls-'));
const guest = join(dir, 'guest.img');
writeGuestImage(guest, { dirtyMiB: 16, rateMiBps: 8 });
let pki: TestPki;
let otherCa: TestPki;
let orgPki: TestPki;
beforeAll(async () => {
  orgPki = await generateTestPki({
    dir: join(dir, 'org'),
    nodes: ['node-a', 'node-b'],
    organization: 'Example',
  });
  pki = await generateTestPki({ dir: join(dir, 'pki'), nodes: ['node-a', 'node-b', 'node-c'] });
  otherCa = await generateTestPki({ dir: join(dir, 'rogue'), nodes: ['node-a'], caName: 'rogue CA' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;

/** The tls-* parameters QEMU reports, and whether our objects still exist. */
async function tlsState(m: QmpMonitor) {
  const p = await m.execute<Record<string, unknown>>('query-migrate-parameters');
  const objects = await m.execute<{ name: string }[]>('qom-list', { path: '/objects' });
  return {
    creds: p['tls-creds'],
    hostname: p['tls-hostname'],
    objects: objects.map((o) => o.name).filter((n) => n.startsWith('kvmhv-')),
  };
}

/** The VM runs on the source only: source running, destination not running (or gone). */
async function runsOnSourceOnly(p: Pair): Promise<void> {
  expect(await runState(p.srcObs)).toBe('running');
  if (p.dst.alive) {
    const dstState = await runState(p.dstObs).catch(() => 'gone');
    expect(dstState).not.toBe('running');
  }
}

/** The destination never ran the VM and is gone: quit by the recovery, or exited by itself. */
async function destinationEnded(p: Pair, e: MigrationError): Promise<void> {
  const action = e.recovery && 'action' in e.recovery.destination ? e.recovery.destination.action : 'error';
  expect(['quit', 'already-gone']).toContain(action);
  const exit = await p.dst.exited;
  expect(exit.signal).toBeNull();
}

describeEachRelease('TLS migration', releaseCases(), (c) => {
  const version = versionOf(c);
  for (const protocol of migrationProtocols(c.accel)) {
    // QEMU 10.1+ HMP stores "" literally: TLS could not be undone, so it is refused.
    const hmpRefused = protocol === 'hmp' && versionAtLeast(version, 10, 1);
    describe(`over ${protocol}`, () => {
      const cleanup: Cleanup = { vms: [], closers: [] };
      const pair = async (o: {
        srcTls?: { dir: string } | undefined;
        allowedPeers?: string[];
        kernel?: boolean;
        dstDir?: string;
      }) =>
        startPair(
          {
            dir,
            name: `t${++seq}`,
            src: { release: c, accel: c.accel, ...(o.kernel ? { kernel: guest } : {}) },
            dst: { release: c, accel: c.accel },
            protocol,
            deferIncoming: true,
            // QEMU's own TLS (the guard is tested in test/guard/): explicitly without the guard.
            ...(o.srcTls ? { srcHv: { tls: o.srcTls, migrationGuard: false } } : {}),
            dstHv: {
              migrationGuard: false,
              tls: {
                dir: o.dstDir ?? pki.nodes['node-b']!.dir,
                ...(o.allowedPeers ? { allowedPeers: o.allowedPeers } : {}),
              },
            },
          },
          cleanup,
        );
      const instance = (p: Pair, hv: Record<string, unknown> = {}): Instance => ({
        name: `t${seq}`,
        hvparams: { migration_port: p.port, migration_bandwidth: 64, ...hv },
      });
      const migrate = (p: Pair, inst: Instance) =>
        runMigration({
          source: { hypervisor: p.srcHv, instance: inst, diagnostics: () => p.src.stderr },
          destination: { hypervisor: p.dstHv, instance: inst, diagnostics: () => p.dst.stderr },
          target: '127.0.0.1',
          listen: '127.0.0.1',
          timeoutMs: 60_000,
          pollIntervalMs: 100,
        });

      it.skipIf(!hmpRefused)('is refused with the QEMU version named, nothing changed', async () => {
        try {
          const p = await pair({ srcTls: { dir: pki.nodes['node-a']!.dir } });
          const e = await p.dstHv.acceptInstance(instance(p), { listen: '127.0.0.1' }).catch((x) => x);
          expect(e).toBeInstanceOf(MigrationError);
          expect(e.message).toContain(`QEMU ${c.version}'s HMP cannot reset the tls-* migration parameters`);
          expect(e.changedVm).toBe(false);
          expect((await tlsState(p.dstObs)).objects).toEqual([]);
        } finally {
          await cleanUp(cleanup);
        }
      });

      describe.skipIf(hmpRefused)('', () => {
        it('completes, and both ends are left without TLS objects or parameters', async () => {
          try {
            const a = pki.nodes['node-a']!;
            const p = await pair({ srcTls: { dir: a.dir }, allowedPeers: [a.clientDn], kernel: true });
            await guestSwept(p.srcObs);
            const result = await migrate(p, instance(p));
            expect(result.status).toBe('completed');
            expect(result.destination.action).toMatch(/running|resumed/);
            expect(await runState(p.srcObs)).toBe('postmigrate');
            expect(await runState(p.dstObs)).toBe('running');
            const sent = p.srcRecorder().transcript.exchanges.map((e) => JSON.stringify(e.send));
            expect(sent.some((s) => s.includes('tls-creds-x509'))).toBe(true);
            for (const obs of [p.srcObs, p.dstObs]) {
              expect(await tlsState(obs)).toEqual({ creds: '', hostname: '', objects: [] });
            }
          } finally {
            await cleanUp(cleanup);
          }
        });

        // HMP before 6.0 takes one identity (authz-simple): the DN must be in the certificate's order there.
        it.skipIf(protocol === 'hmp' && !versionAtLeast(version, 6, 0))(
          'accepts an allowed peer written in RFC 2253 order (CN first) as well as in the certificate order',
          async () => {
            try {
              const a = orgPki.nodes['node-a']!;
              expect(a.clientDn).toBe('O=Example,CN=node-a-client');
              const p = await pair({
                srcTls: { dir: a.dir },
                allowedPeers: ['CN=node-a-client,O=Example'],
                dstDir: orgPki.nodes['node-b']!.dir,
              });
              const result = await migrate(p, instance(p));
              expect(result.status).toBe('completed');
              expect(await runState(p.dstObs)).toBe('running');
            } finally {
              await cleanUp(cleanup);
            }
          },
        );

        it('refuses a source whose certificate comes from another CA; the source runs on', async () => {
          try {
            const p = await pair({ srcTls: { dir: otherCa.nodes['node-a']!.dir } });
            const e = await migrate(p, instance(p)).catch((x) => x);
            expect(e).toBeInstanceOf(MigrationError);
            // The source refuses the destination's certificate (a CA it does not know).
            expect(e.reason).toBe("The certificate hasn't got a known issuer");
            expect(e.message).toContain(e.reason);
            await runsOnSourceOnly(p);
            await destinationEnded(p, e);
            expect((await tlsState(p.srcObs)).objects).toEqual([]);
          } finally {
            await cleanUp(cleanup);
          }
        });

        it.skipIf(!versionAtLeast(version, 4, 0))(
          'refuses a source whose DN is not in the allowed list; the source runs on',
          async () => {
            try {
              const p = await pair({
                srcTls: { dir: pki.nodes['node-c']!.dir },
                allowedPeers: [pki.nodes['node-a']!.clientDn],
              });
              const e = await migrate(p, instance(p)).catch((x) => x);
              expect(e).toBeInstanceOf(MigrationError);
              const denied = `TLS x509 authz check for ${pki.nodes['node-c']!.clientDn} is denied`;
              expect(e.destinationReason).toContain(denied);
              expect(e.message).toContain(denied);
              await runsOnSourceOnly(p);
              await destinationEnded(p, e);
            } finally {
              await cleanUp(cleanup);
            }
          },
        );

        it('after refusing a source from another CA and one not allowed, the destination still waits and takes the right one', async () => {
          try {
            const a = pki.nodes['node-a']!;
            const p = await pair({ srcTls: { dir: a.dir }, allowedPeers: [a.clientDn] });
            const inst = instance(p);
            await p.dstHv.acceptInstance(inst, { listen: '127.0.0.1' });
            const rogues: [string, string][] = [
              [otherCa.nodes['node-a']!.dir, "The certificate hasn't got a known issuer"],
              [pki.nodes['node-c']!.dir, ''],
            ];
            for (const [tlsDir, reason] of rogues) {
              const vm = await QemuVm.start({ ...vmOptions(c, c.accel), name: `rogue${++seq}`, dir });
              cleanup.vms.push(vm);
              const hv = new KVMHypervisor({
                monitor: () => QmpMonitor.connect({ path: vm.qmpPath }),
                migrationGuard: false,
                tls: { dir: tlsDir },
              });
              cleanup.closers.push(() => hv.close());
              await hv.migrateInstance(inst, '127.0.0.1');
              const e = await hv.waitForMigration(inst, { timeoutMs: 30_000 }).catch((x) => x);
              expect(e).toBeInstanceOf(MigrationError);
              if (reason) expect(e.reason).toBe(reason);
              await hv.finalizeMigrationSource(inst, false);
              expect(await runState(p.dstObs)).toBe('inmigrate');
            }
            expect(p.dst.stderr).toContain(
              `TLS x509 authz check for ${pki.nodes['node-c']!.clientDn} is denied`,
            );
            await p.srcHv.migrateInstance(inst, '127.0.0.1');
            expect((await p.srcHv.waitForMigration(inst, { timeoutMs: 60_000 })).status).toBe('completed');
            await p.srcHv.finalizeMigrationSource(inst, true);
            await p.dstHv.finalizeMigrationDst(inst, true);
            expect(await runState(p.dstObs)).toBe('running');
            expect(await runState(p.srcObs)).toBe('postmigrate');
          } finally {
            await cleanUp(cleanup);
          }
        });

        it('a plain-TCP source cannot feed a TLS destination; the source runs on', async () => {
          try {
            const p = await pair({ kernel: true });
            await guestSwept(p.srcObs);
            const e = await migrate(p, instance(p)).catch((x) => x);
            expect(e).toBeInstanceOf(MigrationError);
            expect(e.destinationReason).toContain('TLS handshake failed');
            await runsOnSourceOnly(p);
            await destinationEnded(p, e);
            expect(await tlsState(p.srcObs)).toEqual({ creds: '', hostname: '', objects: [] });
          } finally {
            await cleanUp(cleanup);
          }
        });

        it('completes in post-copy', async () => {
          try {
            const a = pki.nodes['node-a']!;
            const p = await pair({ srcTls: { dir: a.dir }, kernel: true });
            await guestSwept(p.srcObs);
            // 4 MiB/s: still copying when post-copy is started from the observer socket.
            const running = migrate(
              p,
              instance(p, { migration_caps: 'postcopy-ram', migration_bandwidth: 4 }),
            );
            let outcome: unknown = 'still running';
            running.then(
              (r) => {
                outcome = r.status;
              },
              (e) => {
                outcome = e;
              },
            );
            // The first pass at 4 MiB/s takes seconds: the library's policy switches only
            // after it, so 'active' is seen first (on QEMU 11 it used to switch at once).
            const deadline = Date.now() + 30_000;
            for (;;) {
              const { status } = await p.srcObs.execute<{ status?: string }>('query-migrate');
              if (status === 'active') break;
              if (Date.now() > deadline || (status !== undefined && status !== 'setup')) {
                throw new Error(
                  `the migration did not become active: source status ${status}, runMigration: ${String(outcome)}`,
                );
              }
              await new Promise((r) => setTimeout(r, 50));
            }
            await p.srcObs.execute('migrate-start-postcopy');
            // migrate-start-postcopy takes effect at the next iteration; up to 10.x the
            // switch-over itself shows as `device` (11.x: `postcopy-device`).
            let after: string | undefined = 'active';
            while ((after === 'active' || after === 'device') && Date.now() < deadline) {
              await new Promise((r) => setTimeout(r, 20));
              after = (await p.srcObs.execute<{ status?: string }>('query-migrate')).status;
            }
            // 16 MiB at 4 MiB/s cannot have completed in pre-copy meanwhile (11.1 reports
            // `postcopy-device` while the destination loads the device state).
            expect(isPostcopy(after ?? ''), `status after migrate-start-postcopy: ${after}`).toBe(true);
            const result = await running;
            expect(result.status).toBe('completed');
            expect(await runState(p.dstObs)).toBe('running');
            expect(await runState(p.srcObs)).toBe('postmigrate');
            expect(await tlsState(p.dstObs)).toEqual({ creds: '', hostname: '', objects: [] });
          } finally {
            await cleanUp(cleanup);
          }
        });

        it('completes with multifd', async () => {
          try {
            const a = pki.nodes['node-a']!;
            const p = await pair({ srcTls: { dir: a.dir }, kernel: true });
            await guestSwept(p.srcObs);
            const result = await migrate(p, instance(p, { migration_caps: 'multifd' }));
            expect(result.status).toBe('completed');
            expect(await runState(p.dstObs)).toBe('running');
            expect(await runState(p.srcObs)).toBe('postmigrate');
          } finally {
            await cleanUp(cleanup);
          }
        });
      });
    });
  }
});
