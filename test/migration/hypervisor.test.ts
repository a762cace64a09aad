import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { KVMHypervisor } from '../../src/kvm.js';
import { MockMonitor } from '../../src/testing/index.js';

describe('KVMHypervisor monitors', () => {
  it('keeps one open monitor per instance, reopens a closed one, closes all in close()', async () => {
    const opened: MockMonitor[] = [];
    const hv = new KVMHypervisor({
      monitor: (name) => {
        const m = new MockMonitor({ version: name === 'old' ? '2.4.0' : '7.2.0' });
        opened.push(m);
        return m;
      },
    });
    const a1 = await hv.monitorFor('a');
    const [a2, b] = await Promise.all([hv.monitorFor('a'), hv.monitorFor('b')]);
    expect(a2).toBe(a1);
    expect(b).not.toBe(a1);
    expect(opened).toHaveLength(2);
    await a1.close();
    const a3 = await hv.monitorFor('a');
    expect(a3).not.toBe(a1);
    expect(opened).toHaveLength(3);
    await hv.close();
    expect(opened.map((m) => m.closed)).toEqual([true, true, true]);
  });

  it('a failing factory is not cached', async () => {
    let calls = 0;
    const hv = new KVMHypervisor({
      monitor: async () => {
        calls++;
        if (calls === 1) throw new Error('no socket at /run/x.qmp');
        return new MockMonitor();
      },
    });
    await expect(hv.monitorFor('x')).rejects.toThrow('/run/x.qmp');
    await expect(hv.monitorFor('x')).resolves.toBeInstanceOf(MockMonitor);
  });

  it('logs every command with the instance name, at debug', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'debug' },
      { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
    );
    const mock = new MockMonitor({ version: '7.2.0' });
    const hv = new KVMHypervisor({ monitor: () => mock, logger });
    await hv.migrateInstance({ name: 'web1', hvparams: { migration_caps: 'xbzrle' } }, '10.0.0.9');
    const commands = lines.filter((l) => l.msg === 'monitor command');
    expect(commands.map((l) => l.command)).toContain('migrate {"uri":"tcp:10.0.0.9:8102"}');
    expect(commands.every((l) => l.instance === 'web1' && l.level === 20)).toBe(true);
    expect(lines.some((l) => l.msg === 'starting migration' && l.level === 30 && l.instance === 'web1')).toBe(
      true,
    );
  });
});
