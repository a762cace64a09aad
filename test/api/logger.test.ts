import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { LoggerLike } from '../../src/internal.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { childLogger, silentLogger } from '../../src/logger.js';
import { MockMonitor } from '../../src/testing/index.js';

/** A logger with pino's six level methods and no `child`, recording every line. */
function recordingLogger(): {
  logger: LoggerLike;
  lines: Array<{ level: string; obj: object; msg?: string }>;
} {
  const lines: Array<{ level: string; obj: object; msg?: string }> = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj, ...(msg === undefined ? {} : { msg }) });
    };
  return {
    lines,
    logger: {
      trace: at('trace'),
      debug: at('debug'),
      info: at('info'),
      warn: at('warn'),
      error: at('error'),
      fatal: at('fatal'),
    },
  };
}

describe('logger option', () => {
  it('accepts a logger without child(): the instance name is merged into every line', async () => {
    const { logger, lines } = recordingLogger();
    const hv = new KVMHypervisor({ monitor: () => new MockMonitor({ version: '7.2.0' }), logger });
    await hv.migrateInstance({ name: 'web1', hvparams: { migration_caps: 'xbzrle' } }, '10.0.0.9');
    const commands = lines.filter((l) => l.msg === 'monitor command');
    expect(commands.map((l) => (l.obj as { command?: string }).command)).toContain(
      'migrate {"uri":"tcp:10.0.0.9:8102"}',
    );
    expect(
      commands.every((l) => l.level === 'debug' && (l.obj as { instance?: string }).instance === 'web1'),
    ).toBe(true);
    expect(lines.some((l) => l.level === 'info' && l.msg === 'starting migration')).toBe(true);
    await hv.close();
  });

  it('a pino logger fits LoggerLike and its own child() is used', () => {
    const written: Record<string, unknown>[] = [];
    const log: LoggerLike = pino({ level: 'info' }, { write: (s: string) => written.push(JSON.parse(s)) });
    childLogger(log, { instance: 'a' }).info({ step: 1 }, 'hello');
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({ instance: 'a', step: 1, msg: 'hello', level: 30 });
  });

  it('the wrapper keeps the line’s own keys over the bindings and nests children', () => {
    const { logger, lines } = recordingLogger();
    const child = childLogger(logger, { instance: 'a', side: 'source' });
    child.warn({ side: 'destination', n: 1 }, 'w');
    childLogger(child, { step: 'accept' }).error({}, 'e');
    expect(lines).toEqual([
      { level: 'warn', obj: { instance: 'a', side: 'destination', n: 1 }, msg: 'w' },
      { level: 'error', obj: { instance: 'a', side: 'source', step: 'accept' }, msg: 'e' },
    ]);
  });

  it('the default logger is silent and stays silent as a child', () => {
    expect(childLogger(silentLogger, { instance: 'x' })).toBe(silentLogger);
    expect(() => silentLogger.fatal({}, 'nothing')).not.toThrow();
  });
});
