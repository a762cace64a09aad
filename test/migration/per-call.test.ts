/**
 * The per-call model, against the fake pair: every step from a new `KVMHypervisor` (as
 * Ganeti's node daemon builds one per RPC) gives what one long-lived object gives, through
 * the migration journal; `recoverMigration` finishes or undoes a migration whose control
 * plane died; `close()` settles what is pending on an object.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { KVMHypervisor, recoverMigrationPair } from '../../src/internal.js';
import type { Monitor } from '../../src/monitor/types.js';
import { createFakeMigrationPair, type FakeMigrationPairOptions } from '../../src/testing/index.js';

const instance = {
  name: 'vm1',
  hvparams: { migration_bandwidth: 8, migration_downtime: 100, migration_caps: 'auto-converge' },
};
const fast = { pollIntervalMs: 1 };
/** Capability states; `events` stays on once set (it only adds MIGRATION events). */
const caps = (c: Record<string, boolean>) => ({ ...c, events: false });

const dirs: string[] = [];
const opened: KVMHypervisor[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((h) => h.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function lab(protocol: 'qmp' | 'hmp', extra: FakeMigrationPairOptions = {}) {
  const pair = createFakeMigrationPair({ protocol, version: '7.2.22', ...extra });
  const root = mkdtempSync(join(tmpdir(), 'kvmhv-percall-'));
  dirs.push(root);
  const srcDir = join(root, 'node1');
  const dstDir = join(root, 'node2');
  // A new object per call, as a node daemon does.
  const src = () => {
    const hv = new KVMHypervisor({ monitor: pair.sourceMonitor, stateDir: srcDir });
    opened.push(hv);
    return hv;
  };
  const dst = () => {
    const hv = new KVMHypervisor({ monitor: pair.destinationMonitor, stateDir: dstDir });
    opened.push(hv);
    return hv;
  };
  const journals = () => [
    ...(existsSync(srcDir) ? readdirSync(srcDir) : []),
    ...(existsSync(dstDir) ? readdirSync(dstDir) : []),
  ];
  return { pair, src, dst, journals };
}
/** The journal folder a lab object uses. */
lab.dirOf = (hv: KVMHypervisor): string =>
  (hv as unknown as { migrations: { stateDir: string } }).migrations.stateDir;

describe.each(['qmp', 'hmp'] as const)('per-call migration steps (%s)', (protocol) => {
  it('a new object per step ends like one object: settings restored exactly, journals gone', async () => {
    const settingsAfter = async (perCall: boolean) => {
      const { pair, src, dst, journals } = lab(protocol, { dirtyRateBytesPerSec: 4 * 2 ** 20 });
      const before = { ...pair.source.qemu.parameters };
      const capsBefore = { ...pair.source.qemu.capabilities };
      const one = src();
      const d = dst();
      await d.acceptInstance(instance);
      await (perCall ? src() : one).migrateInstance(instance, '10.0.0.2');
      expect(journals()).toEqual(['vm1.source.migration', 'vm1.destination.migration']);
      const result = await (perCall ? src() : one).waitForMigration(instance, fast);
      expect(result.status).toBe('completed');
      expect(await (perCall ? src() : one).getMigrationStatus(instance)).toMatchObject({
        status: 'completed',
      });
      expect(await (perCall ? dst() : d).finalizeMigrationDst(instance, true)).toMatchObject({
        action: 'running',
      });
      expect(await (perCall ? src() : one).finalizeMigrationSource(instance, true)).toMatchObject({
        action: 'paused',
      });
      expect(pair.source.qemu.parameters).toEqual(before);
      expect(caps(pair.source.qemu.capabilities)).toEqual(caps(capsBefore));
      expect(journals()).toEqual([]);
      return {
        parameters: pair.source.qemu.parameters,
        capabilities: pair.source.qemu.capabilities,
        destinationCaps: pair.destination.qemu.capabilities,
        src: pair.source.qemu.runState,
        dst: pair.destination.qemu.runState,
      };
    };
    expect(await settingsAfter(true)).toEqual(await settingsAfter(false));
  });

  it('a second migration is refused from another object while the first is journaled', async () => {
    const { pair, src, dst } = lab(protocol, { advancePerQueryMs: 0 });
    await dst().acceptInstance(instance);
    await src().migrateInstance(instance, '10.0.0.2');
    const err = (await src()
      .migrateInstance(instance, '10.0.0.3')
      .catch((e: unknown) => e)) as MigrationError;
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.changedVm).toBe(false);
    expect(err.message).toMatch(/a migration to 10\.0\.0\.2 \(phase 'migrating'.*has not been finalized/);
    expect(pair.source.qemu.migration.uri).toBe('tcp:10.0.0.2:8102');
  });

  it('finalize is idempotent from fresh objects, after a failure too', async () => {
    const { pair, src, dst, journals } = lab(protocol, { advancePerQueryMs: 0 });
    const before = { ...pair.source.qemu.parameters };
    await dst().acceptInstance(instance);
    await src().migrateInstance(instance, '10.0.0.2');
    pair.clock.advance(500);
    pair.fail('Unable to write to socket: Broken pipe', { destination: 'waits' });
    await expect(src().waitForMigration(instance, fast)).rejects.toMatchObject({ status: 'failed' });
    expect(await dst().finalizeMigrationDst(instance, false)).toMatchObject({ action: 'quit' });
    expect(await dst().finalizeMigrationDst(instance, false)).toMatchObject({ action: 'already-gone' });
    expect(await src().finalizeMigrationSource(instance, false)).toMatchObject({ action: 'already-running' });
    expect(await src().finalizeMigrationSource(instance, false)).toMatchObject({ action: 'already-running' });
    expect(pair.source.qemu.parameters).toEqual(before);
    expect(journals()).toEqual([]);
  });

  it('close() ends a pending wait at once; the migration goes on and a new object finishes it', async () => {
    const { pair, src, dst, journals } = lab(protocol, { advancePerQueryMs: 0 });
    await dst().acceptInstance(instance);
    const first = src();
    await first.migrateInstance(instance, '10.0.0.2');
    const waiting = first.waitForMigration(instance, { pollIntervalMs: 20 }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    await first.close();
    const err = (await waiting) as MigrationError;
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.message).toMatch(/hypervisor object was closed/);
    await expect(first.getMigrationStatus(instance)).rejects.toThrow(/closed/);
    expect(pair.source.qemu.migration.running).toBe(true);
    pair.completeNow();
    const again = await src().waitForMigration(instance, fast);
    expect(again.status).toBe('completed');
    await dst().finalizeMigrationDst(instance, true);
    await src().finalizeMigrationSource(instance, true);
    expect(journals()).toEqual([]);
  });
});

describe.each(['qmp', 'hmp'] as const)('recoverMigration from fresh objects (%s)', (protocol) => {
  it('completed before any finalize: the paused destination is resumed, the source waits for confirmation', async () => {
    const { pair, src, dst, journals } = lab(protocol, { destinationStartsPaused: true });
    const before = { ...pair.source.qemu.parameters };
    await dst().acceptInstance(instance);
    await src().migrateInstance(instance, '10.0.0.2');
    pair.completeNow();
    // The job died here. Each node recovers on its own.
    const s1 = await src().recoverMigration('vm1');
    expect(s1).toMatchObject({
      role: 'source',
      action: 'awaiting-destination',
      settled: false,
      vm: 'unknown',
    });
    expect(pair.source.qemu.parameters).toEqual(before);
    const d1 = await dst().recoverMigration('vm1');
    expect(d1).toMatchObject({ role: 'destination', action: 'resumed', vm: 'here', settled: true });
    expect(pair.destination.qemu.runState).toBe('running');
    const s2 = await src().recoverMigration('vm1', { destinationRuns: true });
    expect(s2).toMatchObject({ role: 'source', action: 'paused', vm: 'not-here', settled: true });
    expect(journals()).toEqual([]);
    // A second recovery changes nothing.
    expect(await src().recoverMigration('vm1')).toMatchObject({ action: 'nothing', settled: true });
    expect(await dst().recoverMigration('vm1')).toMatchObject({
      action: 'nothing',
      settled: true,
      vm: 'here',
    });
    expect(pair.source.qemu.runState).toBe('postmigrate');
  });

  it('failed migration: the destination is quit, the source runs with its settings back', async () => {
    const { pair, src, dst, journals } = lab(protocol, { advancePerQueryMs: 0 });
    const before = { ...pair.source.qemu.parameters };
    const capsBefore = { ...pair.source.qemu.capabilities };
    await dst().acceptInstance(instance);
    await src().migrateInstance(instance, '10.0.0.2');
    pair.clock.advance(500);
    pair.fail('Unable to write to socket: Broken pipe', { destination: 'reports' });
    const both = await recoverMigrationPair({
      source: { hypervisor: src(), instance },
      destination: { hypervisor: dst(), instance },
    });
    expect(both.source).toMatchObject({ action: 'already-running', vm: 'here', settled: true });
    expect(both.destination).toMatchObject({ action: 'quit', vm: 'not-here', settled: true });
    expect(pair.destination.qemu.hasExited).toBe(true);
    expect(pair.source.qemu.parameters).toEqual(before);
    expect(caps(pair.source.qemu.capabilities)).toEqual(caps(capsBefore));
    expect(journals()).toEqual([]);
  });

  it('still migrating: the pair recovery waits for the end, then finishes both nodes', async () => {
    const { pair, src, dst, journals } = lab(protocol, { dirtyRateBytesPerSec: 2 ** 20 });
    await dst().acceptInstance(instance);
    await src().migrateInstance(instance, '10.0.0.2');
    const both = await recoverMigrationPair(
      { source: { hypervisor: src(), instance }, destination: { hypervisor: dst(), instance } },
      { timeoutMs: 30_000 },
    );
    expect(both.source).toMatchObject({ action: 'paused', vm: 'not-here', settled: true });
    expect(both.destination).toMatchObject({ action: 'running', vm: 'here', settled: true });
    expect(pair.destination.qemu.runState).toBe('running');
    expect(journals()).toEqual([]);
  });

  it('still migrating, cancel asked: the source runs again and the destination is quit', async () => {
    const { pair, src, dst, journals } = lab(protocol, { advancePerQueryMs: 0 });
    await dst().acceptInstance(instance);
    await src().migrateInstance(instance, '10.0.0.2');
    const both = await recoverMigrationPair(
      { source: { hypervisor: src(), instance }, destination: { hypervisor: dst(), instance } },
      { active: 'cancel' },
    );
    expect(both.source).toMatchObject({ vm: 'here', settled: true });
    expect(both.destination).toMatchObject({ vm: 'not-here', settled: true });
    expect(pair.source.qemu.runState).toBe('running');
    expect(journals()).toEqual([]);
  });

  it('the pair recovery: a completed source whose status cannot be read never has its destination quit', async () => {
    const { pair, src, dst, journals } = lab(protocol, { advancePerQueryMs: 0, destinationLoadMs: 3000 });
    await dst().acceptInstance(instance);
    await src().migrateInstance(instance, '10.0.0.2');
    pair.completeNow();
    // The source's migration status is unreadable from now on; its run state still says postmigrate.
    pair.source.faults.refuse(protocol === 'qmp' ? 'query-migrate' : 'info migrate', {
      class: 'GenericError',
      desc: 'busy',
    });
    // The destination is still loading: fake time passes as the recovery polls.
    const ticking = setInterval(() => pair.clock.advance(500), 20);
    try {
      const both = await recoverMigrationPair(
        { source: { hypervisor: src(), instance }, destination: { hypervisor: dst(), instance } },
        { active: 'cancel', timeoutMs: 20_000 },
      );
      expect(both.destination).toMatchObject({ vm: 'here', settled: true });
      expect(both.source).toMatchObject({ vm: 'not-here', settled: true });
    } finally {
      clearInterval(ticking);
    }
    expect(pair.destination.qemu.hasExited).toBe(false);
    expect(pair.destination.qemu.runState).toBe('running');
    expect(pair.source.qemu.runState).toBe('postmigrate');
    expect(journals()).toEqual([]);
  });

  it('the object that started it, without any journal, recovers from its memory', async () => {
    const pair = createFakeMigrationPair({ protocol, version: '7.2.22', advancePerQueryMs: 0 });
    const src = new KVMHypervisor({ monitor: pair.sourceMonitor });
    const dst = new KVMHypervisor({ monitor: pair.destinationMonitor });
    opened.push(src, dst);
    const before = { ...pair.source.qemu.parameters };
    await dst.acceptInstance(instance);
    await src.migrateInstance(instance, '10.0.0.2');
    pair.clock.advance(500);
    pair.fail('Unable to write to socket: Broken pipe', { destination: 'reports' });
    expect(await src.recoverMigration('vm1')).toMatchObject({ role: 'source', action: 'already-running' });
    expect(await dst.recoverMigration('vm1')).toMatchObject({ role: 'destination', action: 'quit' });
    expect(pair.source.qemu.parameters).toEqual(before);
    expect(await src.recoverMigration('vm1')).toMatchObject({ action: 'nothing' });
  });

  it('the process died between the settings and migrate: recovery puts the settings back', async () => {
    const { pair, src, journals } = lab(protocol, { advancePerQueryMs: 0 });
    const before = { ...pair.source.qemu.parameters };
    const capsBefore = { ...pair.source.qemu.capabilities };
    // `migrate` never reaches QEMU: the step ends at its deadline with the settings changed,
    // as a process killed at that point leaves them.
    const swallowMigrate = async (): Promise<Monitor> => {
      const m = await pair.sourceMonitor();
      return new Proxy(m, {
        get(target, key) {
          if (key === 'execute') {
            return (cmd: string, args?: Record<string, unknown>) =>
              cmd === 'migrate' ? new Promise(() => {}) : target.execute(cmd, args);
          }
          if (key === 'humanCommand') {
            return (line: string) =>
              line.startsWith('migrate ') ? new Promise(() => {}) : target.humanCommand(line);
          }
          const v = Reflect.get(target, key, target);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
    };
    const dying = new KVMHypervisor({ monitor: swallowMigrate, stateDir: lab.dirOf(src()) });
    opened.push(dying);
    await expect(dying.migrateInstance(instance, '10.0.0.2', undefined, { timeoutMs: 300 })).rejects.toThrow(
      /did not answer in time|deadline/,
    );
    expect(pair.source.qemu.parameters).not.toEqual(before);
    expect(journals()).toEqual(['vm1.source.migration']);
    const report = await src().recoverMigration('vm1');
    expect(report).toMatchObject({ role: 'source', action: 'already-running', vm: 'here', settled: true });
    expect(pair.source.qemu.parameters).toEqual(before);
    expect(caps(pair.source.qemu.capabilities)).toEqual(caps(capsBefore));
    expect(journals()).toEqual([]);
    expect(await src().recoverMigration('vm1')).toMatchObject({ action: 'nothing', settled: true });
  });
});
