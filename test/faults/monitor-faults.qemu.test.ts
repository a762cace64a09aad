/**
 * Fault matrix, part 2: the paths around QEMU break. The library's monitor connection is
 * cut while QEMU keeps migrating, the migration port is held by a foreign server that
 * answers with garbage, another client holds the only monitor socket, and the destination
 * was started with a different memory size. Real QEMU, over QMP and HMP; the verdict
 * comes from observer QMP sockets.
 */
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HypervisorError, MigrationError } from '../../src/errors.js';
import { KVMHypervisor, runMigration } from '../../src/internal.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import {
  expectRunsExactlyOnce,
  fullText,
  GUEST_MIB,
  migrationState,
  onceMigrating,
  PROTOCOLS,
  type Protocol,
  RUN_MS,
  rejectsIn,
  resolvesIn,
  runDeadline,
  runState,
  STEP_MS,
  settledMigrationState,
  settles,
  useFaultLab,
} from './harness.js';
import { GarbageServer, MonitorProxy } from './proxies.js';

const lab = useFaultLab('mon');

/** The socket the library uses for `protocol` on a VM. */
const librarySocket = (vm: { qmpPath: string; hmpPath: string | undefined }, protocol: Protocol) =>
  protocol === 'qmp' ? vm.qmpPath : vm.hmpPath!;

/** Opens the library's monitor through a proxy path. */
const viaProxy = (path: string, protocol: Protocol) =>
  protocol === 'qmp'
    ? QmpMonitor.connect({ path }, { timeoutMs: 10_000, greetingTimeoutMs: 5000 })
    : HmpMonitor.connect({ path }, { timeoutMs: 10_000, greetingTimeoutMs: 5000 });

describe.each(PROTOCOLS)('monitor and network faults over %s', (protocol) => {
  it('monitor connection cut while QEMU keeps migrating (non-live): the VM ends up running once', async () => {
    let proxy: MonitorProxy | undefined;
    const p = await lab.pair({
      protocol,
      hvparams: { migration_bandwidth: 8 },
      srcMonitor: () => viaProxy(proxy!.path, protocol),
    });
    proxy = await MonitorProxy.start(join(lab.dir, `${p.inst.name}.proxy`), librarySocket(p.src, protocol));
    lab.defer(() => proxy!.kill());
    const run = await settles(
      'runMigration',
      runMigration({
        source: { hypervisor: p.srcHv, instance: p.inst },
        destination: { hypervisor: p.dstHv, instance: p.inst },
        target: p.target,
        live: false,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
        // The non-live transfer takes ~2 s at 8 MiB/s: QEMU finishes it while the library is blind.
        onProgress: onceMigrating(() => proxy!.cut()),
      }),
      runDeadline(RUN_MS),
    );
    // Success (the library reconnected and saw completion) or a failure with a full
    // recovery: either way QEMU must end with one running copy.
    const where = await expectRunsExactlyOnce(p);
    if (run.ok) expect(where).toBe('dst');
    else {
      expect(run.error).toBeInstanceOf(MigrationError);
      if (where === 'dst') expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
    }
  });

  it('monitor unreachable for good during a live migration: bounded, neither end stopped blindly, runs once', async () => {
    let proxy: MonitorProxy | undefined;
    const p = await lab.pair({ protocol, srcMonitor: () => viaProxy(proxy!.path, protocol) });
    proxy = await MonitorProxy.start(join(lab.dir, `${p.inst.name}.proxy`), librarySocket(p.src, protocol));
    lab.defer(() => proxy!.kill());
    const err = await rejectsIn(
      'runMigration',
      runMigration({
        source: { hypervisor: p.srcHv, instance: p.inst },
        destination: { hypervisor: p.dstHv, instance: p.inst },
        target: p.target,
        live: true,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
        onProgress: onceMigrating(() => void proxy!.kill()),
      }),
      runDeadline(RUN_MS),
    );
    expect(err).toBeInstanceOf(MigrationError);
    expect(fullText(err)).toMatch(/monitor|connect|closed|ENOENT|ECONNREFUSED/i);
    expect(err.message).toMatch(/not be resumed|not resuming/);
    // The source side's state could not be read: the recovery must not claim to have resumed it.
    const src = err.recovery?.source;
    if (src && !('error' in src)) expect(src.action).not.toMatch(/resumed/);
    // Nor is the destination quit while its incoming migration is active: the source QEMU,
    // out of reach, may still complete it (then the VM runs there, the source postmigrate).
    const dst = err.recovery?.destination;
    if (dst && 'error' in dst) expect(dst.error.message).toMatch(/still running .*not quitting it/);
    const where = await expectRunsExactlyOnce(p);
    if (where === 'dst') expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
  });

  it('migration port held by a non-QEMU server sending garbage (non-live): failed with QEMU’s reason, source resumed', async () => {
    const garbage = await GarbageServer.start();
    lab.defer(() => garbage.close());
    const p = await lab.pair({ protocol });
    const inst = { ...p.inst, hvparams: { ...p.inst.hvparams, migration_port: garbage.port } };
    const paramsBefore = await p.srcObs.execute('query-migrate-parameters');
    await resolvesIn(
      'migrateInstance',
      p.srcHv.migrateInstance(inst, '127.0.0.1', false, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    const err = await rejectsIn(
      'waitForMigration',
      p.srcHv.waitForMigration(inst, { timeoutMs: RUN_MS, pollIntervalMs: 100 }),
      RUN_MS,
    );
    expect(garbage.received).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.status).toBe('failed');
    expect(err.reason).toMatch(/socket|pipe|reset|connection/i);
    expect(err.message).toContain(err.reason);
    const fin = await settles(
      'finalizeMigrationSource',
      p.srcHv.finalizeMigrationSource(inst, false, { timeoutMs: STEP_MS }),
      STEP_MS,
    );
    expect(fin.ok, fin.ok ? '' : fullText(fin.error)).toBe(true);
    if (fin.ok) expect(fin.value.action).toBe('resumed');
    // Bandwidth and downtime are back to what they were before the migration.
    expect(await p.srcObs.execute('query-migrate-parameters')).toEqual(paramsBefore);
    // The incoming QEMU of the pair was never touched and never runs.
    expect(await runState(p.dst, p.dstObs)).toBe('inmigrate');
    expect(await expectRunsExactlyOnce(p)).toBe('src');
  });

  it('another client holds the only monitor socket: the calls fail by their deadline, VM untouched', async () => {
    const name = lab.nextName();
    const vm = await lab.vm({ name, dir: lab.dir, qmpSockets: 2, memoryMiB: GUEST_MIB });
    const observer = await QmpMonitor.connect({ path: vm.qmpPaths[1]! });
    lab.defer(() => observer.close());
    const socketPath = librarySocket(vm, protocol);
    // The foreign client: connected first, reads the greeting, never lets go.
    const holder: Socket = connect(socketPath);
    holder.on('error', () => {});
    lab.defer(async () => holder.destroy());
    await new Promise((resolve) => holder.once('data', resolve));

    // The factory's own greeting timeout is long: the step deadline must bound the call,
    // connecting included (a frozen QEMU does not greet either).
    const hv = new KVMHypervisor({
      monitor: () =>
        protocol === 'qmp'
          ? QmpMonitor.connect({ path: socketPath }, { greetingTimeoutMs: 30_000 })
          : HmpMonitor.connect({ path: socketPath }, { greetingTimeoutMs: 30_000 }),
    });
    lab.defer(() => hv.close());
    const inst = { name, hvparams: { migration_port: 1 } };
    const err = await rejectsIn(
      'migrateInstance',
      hv.migrateInstance(inst, '127.0.0.1', false, { timeoutMs: 3000 }),
      3000,
    );
    // The error says the monitor could not be opened in time. (The socket path is known
    // only to the factory, whose own error is abandoned at the step deadline.)
    expect(err).toBeInstanceOf(HypervisorError);
    expect(fullText(err)).toMatch(/monitor/i);
    expect(fullText(err)).toMatch(/deadline|greeting|timed out/i);
    const accept = await rejectsIn('acceptInstance', hv.acceptInstance(inst, { timeoutMs: 3000 }), 3000);
    expect(accept).toBeInstanceOf(HypervisorError);
    expect(fullText(accept)).toMatch(/monitor/i);
    // Nothing reached QEMU: still running, no migration, not stopped for the non-live attempt.
    expect(await runState(vm, observer)).toBe('running');
    expect(await migrationState(vm, observer)).toBe('none');
  });

  it('destination started with a different -m: the destination’s reason reaches the caller, source runs', async () => {
    const p = await lab.pair({ protocol, guest: 'idle', dstMemoryMiB: GUEST_MIB * 2 });
    const err = await rejectsIn(
      'runMigration',
      runMigration({
        source: { hypervisor: p.srcHv, instance: p.inst },
        // QEMU started with -incoming tcp: exits on a load error and says why only on stderr.
        destination: { hypervisor: p.dstHv, instance: p.inst, diagnostics: () => p.dst.stderr },
        target: p.target,
        live: true,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
      }),
      runDeadline(RUN_MS),
    );
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.destinationReason).toMatch(/error while loading state|Length mismatch|Size mismatch/);
    // QEMU's destination says why: "Size mismatch: pc.ram: 0x4000000 != 0x8000000" (7.2;
    // "Length mismatch" in other releases) and "error while loading state for instance 0x0
    // of device 'ram'". The source alone only knows "Unable to write to socket: Broken
    // pipe". Observed on 7.2: the destination QEMU prints its reason on stderr, emits a
    // MIGRATION {status: failed} event and exits at once, so its monitor can only be
    // asked while the load fails; the reason must still reach the caller.
    expect(fullText(err)).toMatch(/error while loading state|Length mismatch|Size mismatch/);
    expect(await settledMigrationState(p.src, p.srcObs)).toMatch(/^(failed|cancelled)$/);
    expect(await expectRunsExactlyOnce(p)).toBe('src');
  });
});
