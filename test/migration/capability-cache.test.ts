/**
 * The capability list is read once per monitor connection: a second migration on the
 * same monitor skips `query-migrate-capabilities`, a new monitor reads it again, and a
 * capability command that failed drops the cached states. Bandwidth, downtime and
 * capabilities go out together; a refusal of either rolls both back and `migrate` is
 * never sent.
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

describe('capability list cache', () => {
  it('is used on the second migration over the same monitor, with the states the first one left', async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await migrateAndFail(hv, mock);
    expect(queries(mock)).toBe(1);
    const before = mock.sent.length;
    await hv.migrateInstance(instance, '10.0.0.2');
    expect(queries(mock)).toBe(1);
    // The second set-up still turns xbzrle (and events) on: the cache says they are off again.
    const setCaps = mock.sent
      .slice(before)
      .filter((s) => typeof s !== 'string' && s.execute === 'migrate-set-capabilities');
    expect(setCaps).toHaveLength(1);
    expect(mock.capabilities.xbzrle).toBe(true);
    expect(mock.capabilities.events).toBe(true);
    mock.failMigration('Connection refused');
    await hv.finalizeMigrationSource(instance, false);
    expect(mock.capabilities.xbzrle).toBe(false);
    expect(mock.capabilities.events).toBe(false);
  });

  it('is invalidated with a new monitor', async () => {
    const opened: MockMonitor[] = [];
    const hv = new KVMHypervisor({
      monitor: () => {
        const m = new MockMonitor({ version: '7.2.0' });
        opened.push(m);
        return m;
      },
    });
    await hv.monitorFor(instance.name);
    await migrateAndFail(hv, opened[0]!);
    await opened[0]!.close();
    // A restarted QEMU with a capability left on: the new monitor must read it and clear it.
    await hv.monitorFor(instance.name);
    const second = opened[1]!;
    await second.execute('migrate-set-capabilities', {
      capabilities: [{ capability: 'auto-converge', state: true }],
    });
    await hv.migrateInstance(instance, '10.0.0.2');
    expect(queries(second)).toBe(1);
    expect(second.capabilities['auto-converge']).toBe(false);
    expect(second.capabilities.xbzrle).toBe(true);
  });

  it('is dropped when a capability command fails, so the next set-up reads QEMU again', async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    await migrateAndFail(hv, mock);
    mock.failCommand('migrate-set-capabilities', { class: 'GenericError', desc: 'busy' }, { times: 1 });
    const before = mock.sent.length;
    await expect(hv.migrateInstance(instance, '10.0.0.2')).rejects.toThrow(MigrationError);
    expect(mock.sentCommands.slice(before)).not.toContain('migrate');
    await hv.migrateInstance(instance, '10.0.0.2');
    expect(queries(mock)).toBe(2);
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
    expect(mock.capabilities.events).toBe(false);
  });
});
