/**
 * Capability states are read on every migration (never cached: another client may have
 * changed them). Bandwidth, downtime and capabilities go out together; a refusal of
 * either rolls both back and `migrate` is never sent.
 */
import { describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { MockMonitor } from '../../src/testing/index.js';

const instance = { name: 'vm1', hvparams: { migration_caps: 'xbzrle' } };
const queries = (m: MockMonitor) => m.sentCommands.filter((c) => c === 'query-migrate-capabilities').length;

async function migrateAndFail(hv: KVMHypervisor, mock: MockMonitor): Promise<void> {
  await hv.migrateInstance(instance, '10.0.0.2');
  mock.failMigration('Connection refused');
  await hv.finalizeMigrationSource(instance, false);
}

describe('capability states', () => {
  it('are read again on every migration over the same monitor (pipelined with the other checks)', async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await migrateAndFail(hv, mock);
    expect(queries(mock)).toBe(1);
    await hv.migrateInstance(instance, '10.0.0.2');
    expect(queries(mock)).toBe(2);
    expect(mock.capabilities.xbzrle).toBe(true);
    expect(mock.capabilities.events).toBe(true);
  });

  it('a capability another client turned on between two migrations is cleared, not silently kept', async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await migrateAndFail(hv, mock);
    // Another client (another monitor socket of the same QEMU) turns auto-converge on.
    await mock.execute('migrate-set-capabilities', {
      capabilities: [{ capability: 'auto-converge', state: true }],
    });
    await hv.migrateInstance(instance, '10.0.0.2');
    expect(mock.capabilities['auto-converge']).toBe(false);
    expect(mock.capabilities.xbzrle).toBe(true);
  });
});

describe('set-up sends only what differs from QEMU’s current settings', () => {
  it("leaves 'events' on after the migration, so the next set-up need not send it", async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await migrateAndFail(hv, mock);
    expect(mock.capabilities).toMatchObject({ xbzrle: false, events: true });
    const before = mock.sent.length;
    await hv.migrateInstance(instance, '10.0.0.2');
    expect(mock.sent.slice(before)).toContainEqual({
      execute: 'migrate-set-capabilities',
      arguments: { capabilities: [{ capability: 'xbzrle', state: true }] },
    });
  });

  it('sends no migrate-set-parameters or migrate-set-capabilities when all are in place; restores nothing it did not change', async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    // Another client already set exactly what this instance asks for.
    await mock.execute('migrate-set-parameters', { 'max-bandwidth': 32 * 2 ** 20, 'downtime-limit': 30 });
    await mock.execute('migrate-set-capabilities', {
      capabilities: [
        { capability: 'xbzrle', state: true },
        { capability: 'events', state: true },
      ],
    });
    const hv = new KVMHypervisor({ monitor: () => mock });
    const before = mock.sent.length;
    await hv.migrateInstance(instance, '10.0.0.2');
    expect(mock.sentCommands.slice(before)).toEqual([
      'query-status',
      'query-migrate',
      'query-migrate-capabilities',
      'query-migrate-parameters',
      'migrate',
    ]);
    mock.failMigration('Connection refused');
    await hv.finalizeMigrationSource(instance, false);
    // xbzrle was on before this migration: it stays on.
    expect(mock.capabilities).toMatchObject({ xbzrle: true, events: true });
    expect(mock.parameters).toMatchObject({ 'max-bandwidth': 32 * 2 ** 20, 'downtime-limit': 30 });
  });
});

describe('set-up: bandwidth, downtime and capabilities together', () => {
  it('sends parameters and capabilities before either answers, and migrate after both', async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    let paramsAnswered = false;
    let capsSentBeforeParamsAnswered = false;
    const execute = mock.execute.bind(mock);
    mock.execute = (async (cmd: string, args?: Record<string, unknown>) => {
      if (cmd === 'migrate-set-capabilities') capsSentBeforeParamsAnswered = !paramsAnswered;
      const r = await execute(cmd, args);
      if (cmd === 'migrate-set-parameters') paramsAnswered = true;
      return r;
    }) as typeof mock.execute;
    const hv = new KVMHypervisor({ monitor: () => mock });
    await hv.migrateInstance(instance, '10.0.0.2');
    expect(capsSentBeforeParamsAnswered).toBe(true);
    const order = mock.sentCommands;
    expect(order.indexOf('migrate')).toBeGreaterThan(order.indexOf('migrate-set-capabilities'));
    expect(order.indexOf('migrate')).toBeGreaterThan(order.indexOf('migrate-set-parameters'));
  });

  it('a refused migrate-set-parameters rolls back the capabilities sent with it; migrate is not sent', async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    mock.failCommand('migrate-set-parameters', { class: 'GenericError', desc: 'nope' }, { times: 1 });
    const hv = new KVMHypervisor({ monitor: () => mock });
    const err = await hv.migrateInstance(instance, '10.0.0.2').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).message).toContain('setting bandwidth and downtime');
    expect((err as MigrationError).changedVm).toBe(true);
    expect(mock.sentCommands).not.toContain('migrate');
    expect(mock.capabilities.xbzrle).toBe(false);
    // 'events' only makes QEMU report migration states: once on, it stays on.
    expect(mock.capabilities.events).toBe(true);
  });
});
