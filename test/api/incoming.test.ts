import { afterEach, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import type { MigrationProgress } from '../../src/migration/types.js';
import { MockMonitor } from '../../src/testing/index.js';

/**
 * A destination QEMU started with `-incoming`: its `query-migrate` answers with
 * `incoming` (QEMU's destination-side view), its run state is `inmigrate` until set.
 */
function destination(): {
  mock: MockMonitor;
  hv: KVMHypervisor;
  incoming: { value: Record<string, unknown> };
} {
  const mock = new MockMonitor({ version: '8.2.0', runState: 'inmigrate' });
  const incoming = { value: {} as Record<string, unknown> };
  mock.setReply('query-migrate', () => incoming.value);
  const hv = new KVMHypervisor({ monitor: () => mock });
  return { mock, hv, incoming };
}

const instance = { name: 'web1' };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** True when nothing but read-only queries reached QEMU. */
const onlyQueries = (mock: MockMonitor) =>
  mock.sentCommands.every((c) => /^(query-migrate|query-status|info migrate|info status)\b/.test(c));

describe('KVMHypervisor.waitForIncomingMigration', () => {
  it('resolves with the run state once the VM is loaded, woken by MIGRATION events', async () => {
    const { mock, hv, incoming } = destination();
    cleanups.push(() => hv.close());
    const seen: MigrationProgress[] = [];
    // A poll interval far beyond the test's own timeout: only the events can wake the wait.
    const waiting = hv.waitForIncomingMigration(instance, {
      pollIntervalMs: 3_600_000,
      onProgress: (p) => seen.push(p),
    });
    await new Promise((r) => setTimeout(r, 20));
    incoming.value = { status: 'active' };
    mock.emitEvent('MIGRATION', { status: 'active' });
    await new Promise((r) => setTimeout(r, 20));
    incoming.value = { status: 'completed' };
    // Completed, but the device state is still loading for a moment.
    setTimeout(() => {
      mock.runState = 'paused';
    }, 100);
    mock.emitEvent('MIGRATION', { status: 'completed' });
    const result = await waiting;
    expect(result).toMatchObject({ status: 'completed', runState: 'paused', running: false });
    expect(result.final.status).toBe('completed');
    expect(seen.map((p) => p.status)).toEqual(['none', 'active', 'completed']);
    expect(onlyQueries(mock)).toBe(true);
    expect(mock.sentCommands.filter((c) => c.startsWith('query-status')).length).toBeGreaterThan(1);
  });

  it('works over HMP by polling', async () => {
    const mock = new MockMonitor({ protocol: 'hmp', version: '7.2.0', runState: 'inmigrate' });
    let text = '';
    mock.setReply('info migrate', () => text);
    const hv = new KVMHypervisor({ monitor: () => mock });
    cleanups.push(() => hv.close());
    const waiting = hv.waitForIncomingMigration(instance, { pollIntervalMs: 5 });
    await new Promise((r) => setTimeout(r, 20));
    text = 'Migration status: completed\ntotal time: 50 ms\n';
    mock.runState = 'running';
    await expect(waiting).resolves.toMatchObject({ runState: 'running', running: true });
  });

  it('rejects with QEMU’s reason on failed, and changes nothing', async () => {
    const { mock, hv, incoming } = destination();
    cleanups.push(() => hv.close());
    incoming.value = { status: 'failed', 'error-desc': 'load of migration failed: Input/output error' };
    const err = await hv.waitForIncomingMigration(instance, { pollIntervalMs: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err).toMatchObject({
      status: 'failed',
      reason: 'load of migration failed: Input/output error',
      instance: 'web1',
    });
    expect(String((err as Error).message)).toContain('incoming migration failed: load of migration failed');
    expect(onlyQueries(mock)).toBe(true);
  });

  it('rejects on cancelled', async () => {
    const { hv, incoming } = destination();
    cleanups.push(() => hv.close());
    incoming.value = { status: 'cancelled' };
    await expect(hv.waitForIncomingMigration(instance, { pollIntervalMs: 5 })).rejects.toMatchObject({
      status: 'cancelled',
    });
  });

  it('says so when the destination QEMU exits (its monitor closes)', async () => {
    const { mock, hv, incoming } = destination();
    cleanups.push(() => hv.close());
    const waiting = hv.waitForIncomingMigration(instance, { pollIntervalMs: 5 });
    incoming.value = { status: 'active' };
    await new Promise((r) => setTimeout(r, 30));
    mock.disconnect();
    const err = await waiting.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as Error).message).toMatch(
      /^instance 'web1': the destination QEMU closed its monitor: it exits when an incoming migration fails .*last status 'active'/,
    );
    expect(err).toMatchObject({ status: 'active' });
  });

  it('gives up at timeoutMs and on abort, leaving the destination as it is', async () => {
    const { mock, hv } = destination();
    cleanups.push(() => hv.close());
    await expect(
      hv.waitForIncomingMigration(instance, { timeoutMs: 100, pollIntervalMs: 5 }),
    ).rejects.toThrow(/no incoming migration completed within 0 s; the destination was left as it is/);
    const abort = new AbortController();
    const waiting = hv.waitForIncomingMigration(instance, { signal: abort.signal, pollIntervalMs: 5 });
    setTimeout(() => abort.abort(), 20);
    await expect(waiting).rejects.toThrow(
      /stopped waiting for the incoming migration; the destination was left as it is/,
    );
    expect(onlyQueries(mock)).toBe(true);
    expect(mock.runState).toBe('inmigrate');
  });

  it('ends after 5 failed status queries in a row, naming the failure', async () => {
    const { mock, hv } = destination();
    cleanups.push(() => hv.close());
    mock.clearScripts();
    mock.failCommand('query-migrate', { class: 'GenericError', desc: 'temporarily unavailable' });
    await expect(hv.waitForIncomingMigration(instance, { pollIntervalMs: 5 })).rejects.toThrow(
      /5 status queries in a row failed: .*temporarily unavailable/,
    );
  });

  it('an unreadable status is an error quoting the text, not a default', async () => {
    const { hv, incoming } = destination();
    cleanups.push(() => hv.close());
    incoming.value = { status: 42 };
    await expect(hv.waitForIncomingMigration(instance, { pollIntervalMs: 5 })).rejects.toThrow(
      /the incoming migration status cannot be read: .*42/,
    );
  });
});
