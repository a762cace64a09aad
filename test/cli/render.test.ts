/**
 * The pure parts of `kvm-hv`: formatting, progress line, summary, status, errors and
 * exit codes, option parsers, `-H` merging, monitor option checks.
 */
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import pkg from '../../package.json' with { type: 'json' };
import { EXIT, exitCodeFor, formatError, InterruptedError, UsageError } from '../../src/cli/errors.js';
import { rawHvParams } from '../../src/cli/hvparams.js';
import { instanceName, monitorTarget } from '../../src/cli/monitor.js';
import { CLI_VERSION, errorJson } from '../../src/cli/program.js';
import { createProgressSink } from '../../src/cli/progress.js';
import {
  describeAction,
  displayParamValue,
  formatBytes,
  formatDuration,
  formatRate,
  progressPercent,
  renderBar,
  renderParams,
  renderProgressLine,
  renderStatus,
  renderSummary,
  statusJson,
  summaryJson,
} from '../../src/cli/render.js';
import { numberArg } from '../../src/cli/util.js';
import { HvParamError, MigrationError, MonitorError } from '../../src/errors.js';
import type { MigrationProgress, MigrationResult } from '../../src/migration/types.js';

const MiB = 1048576;

describe('formatting', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KiB'],
    [54 * MiB, '54.0 MiB'],
    [3 * 1024 * MiB, '3.00 GiB'],
    [undefined, '?'],
    [Number.NaN, '?'],
  ])('formatBytes(%s) = %s', (n, s) => {
    expect(formatBytes(n)).toBe(s);
  });

  it('formats rates and durations', () => {
    expect(formatRate(32 * MiB)).toBe('32.0 MiB/s');
    expect(formatRate(undefined)).toBe('?');
    expect(formatDuration(17)).toBe('17 ms');
    expect(formatDuration(999.6)).toBe('1000 ms');
    expect(formatDuration(10_800)).toBe('10.8 s');
    expect(formatDuration(125_000)).toBe('2 min 05 s');
    expect(formatDuration(undefined)).toBe('?');
  });

  it('draws bars of a fixed width with partial cells', () => {
    expect(renderBar(0, 10)).toBe('░'.repeat(10));
    expect(renderBar(100, 10)).toBe('█'.repeat(10));
    expect(renderBar(55, 10)).toBe('█████▌░░░░');
    expect([...renderBar(33, 24)]).toHaveLength(24);
    expect(renderBar(150, 4)).toBe('████');
    expect(renderBar(-5, 4)).toBe('░░░░');
  });
});

const active: MigrationProgress = {
  status: 'active',
  transferredBytes: 54 * MiB,
  remainingBytes: 32 * MiB,
  totalBytes: 128 * MiB,
  percent: 42.2,
  speedBytesPerSec: 31.2 * MiB,
  dirtyRateBytesPerSec: 12 * MiB,
  expectedDowntimeMs: 300,
  totalTimeMs: 4200,
  pass: 3,
};

describe('progress line', () => {
  it('shows percent, transferred/total, speed, dirty rate, expected downtime and pass', () => {
    expect(renderProgressLine(active, 8)).toBe(
      '[██████░░]  75% │ 54.0 MiB sent/128.0 MiB │ 31.2 MiB/s │ dirty 12.0 MiB/s │ downtime ~300 ms │ pass 3',
    );
  });

  it('uses 1 − remaining/total, so later passes do not stick at 100%', () => {
    expect(progressPercent({ ...active, transferredBytes: 300 * MiB, percent: 100 })).toBe(75);
    expect(progressPercent({ status: 'active', percent: 12 })).toBe(12);
    expect(progressPercent({ status: 'completed' })).toBe(100);
    expect(progressPercent({ status: 'setup' })).toBeUndefined();
  });

  it('shows the status when not active, and the throttle once auto-converge acts', () => {
    expect(renderProgressLine({ status: 'setup' }, 4)).toBe('[░░░░]   ?% │ setup');
    expect(renderProgressLine({ ...active, throttlePercent: 30 }, 4)).toMatch(/│ pass 3 │ throttle 30%$/);
    expect(renderProgressLine({ ...active, throttlePercent: 0 }, 4)).not.toContain('throttle');
  });

  it('describes convergence actions', () => {
    expect(describeAction({ kind: 'downtime', downtimeMs: 600, reason: 'stuck' })).toBe(
      'convergence: downtime limit raised to 600 ms (stuck)',
    );
    expect(describeAction({ kind: 'postcopy', reason: 'r' })).toBe('convergence: switched to post-copy (r)');
  });
});

describe('progress sink', () => {
  const fakeStream = () => {
    const chunks: string[] = [];
    return {
      chunks,
      stream: { write: (s: string) => chunks.push(s) > 0, isTTY: false } as unknown as NodeJS.WriteStream,
    };
  };

  it('lines mode writes at most one line per interval, plus status changes, and tracks the throttle', () => {
    const { chunks, stream } = fakeStream();
    const sink = createProgressSink('lines', stream, 60_000);
    sink.update({ status: 'setup' });
    sink.update({ ...active, throttlePercent: 20 });
    sink.update({ ...active, throttlePercent: 40 });
    sink.update({ ...active, throttlePercent: 30 });
    sink.note('convergence: x');
    expect(chunks).toEqual([
      'progress: [░░░░░░░░░░░░░░░░░░░░]   ?% │ setup\n',
      expect.stringMatching(/^progress: \[.*\] {2}75% │ .* │ throttle 20%\n$/),
      'convergence: x\n',
    ]);
    expect(sink.maxThrottlePercent).toBe(40);
  });

  it('none mode writes nothing but still tracks the throttle', () => {
    const { chunks, stream } = fakeStream();
    const sink = createProgressSink('none', stream);
    sink.update({ ...active, throttlePercent: 50 });
    sink.note('x');
    sink.stop();
    expect(chunks).toEqual([]);
    expect(sink.maxThrottlePercent).toBe(50);
  });
});

const result: MigrationResult = {
  status: 'completed',
  totalTimeMs: 10_800,
  downtimeMs: 17,
  transferredBytes: 378_389_467,
  totalBytes: 134_750_208,
  averageSpeedBytesPerSec: 35_036_061.8,
  final: { status: 'completed', pass: 17 },
};

describe('summary', () => {
  it('builds the JSON summary with nulls for what QEMU did not say', () => {
    expect(summaryJson('vm1', result, 11_234.4, 40)).toEqual({
      instance: 'vm1',
      status: 'completed',
      wallTimeMs: 11_234,
      totalTimeMs: 10_800,
      downtimeMs: 17,
      transferredBytes: 378_389_467,
      totalBytes: 134_750_208,
      averageSpeedBytesPerSec: 35_036_062,
      passes: 17,
      maxThrottlePercent: 40,
    });
    const bare = summaryJson('vm1', { status: 'completed', final: { status: 'completed' } }, 5, 0);
    expect(bare).toMatchObject({
      totalTimeMs: null,
      downtimeMs: null,
      averageSpeedBytesPerSec: null,
      passes: null,
    });
    expect(bare.maxThrottlePercent).toBeNull();
  });

  it('computes the average speed when the library gave none', () => {
    const s = summaryJson('vm', { ...result, averageSpeedBytesPerSec: undefined }, 1);
    expect(s.averageSpeedBytesPerSec).toBe(Math.round((378_389_467 * 1000) / 10_800));
  });

  it('renders total time, downtime, bytes sent and average speed', () => {
    expect(renderSummary(summaryJson('vm1', result, 11_000, 40)).split('\n')).toEqual([
      'migration:        completed (instance vm1)',
      'total time:       10.8 s',
      'downtime:         17 ms',
      'bytes sent:       360.9 MiB (378389467 bytes)',
      'guest RAM:        128.5 MiB',
      'average speed:    33.4 MiB/s',
      'passes:           17',
      'max CPU throttle: 40%',
    ]);
  });
});

describe('status report', () => {
  it('renders an active migration', () => {
    const text = renderStatus('vm1', { ...active, throttlePercent: 20 });
    expect(text).toContain('status:            active');
    expect(text).toContain('transferred:       54.0 MiB of 128.0 MiB (42.2%)');
    expect(text).toContain('dirty rate:        12.0 MiB/s');
    expect(text).toContain('expected downtime: 300 ms');
    expect(text).toContain('CPU throttle:      20%');
  });

  it('explains status none and shows the error of a failed migration', () => {
    expect(renderStatus('vm1', { status: 'none' })).toBe(
      'instance: vm1\nstatus:   none (no migration has run)',
    );
    expect(renderStatus('vm1', { status: 'failed', errorDesc: 'Connection refused' })).toContain(
      'error:    Connection refused',
    );
  });

  it('drops the raw reply from the JSON', () => {
    expect(statusJson('vm1', { status: 'active', raw: { x: 1 }, pass: 2 })).toEqual({
      instance: 'vm1',
      status: 'active',
      pass: 2,
    });
  });
});

describe('params listing', () => {
  it('quotes empty strings and strings with spaces, marks given keys', () => {
    expect(displayParamValue('')).toBe('""');
    expect(displayParamValue('a b')).toBe('"a b"');
    expect(displayParamValue('disk')).toBe('disk');
    expect(displayParamValue(null)).toBe('null');
    expect(displayParamValue(32)).toBe('32');
    expect(renderParams({ b: 1, a: '' }, new Set(['b']))).toBe('  a  ""\n* b  1');
  });
});

describe('errors and exit codes', () => {
  it('maps errors to exit codes', () => {
    expect(exitCodeFor(new UsageError('x'))).toBe(EXIT.usage);
    expect(exitCodeFor(new HvParamError([{ param: 'a', message: 'm' }]))).toBe(2);
    expect(exitCodeFor(new InterruptedError('x'))).toBe(130);
    expect(exitCodeFor(new MigrationError('x'))).toBe(1);
    expect(exitCodeFor(new Error('x'))).toBe(1);
  });

  it('formats one line per error, plus one per hvparam problem', () => {
    expect(formatError(new MigrationError('instance a: failed\n  because'))).toBe(
      'kvm-hv: instance a: failed because',
    );
    expect(formatError(new MonitorError('no socket'))).toBe('kvm-hv: no socket');
    expect(formatError(new TypeError('bad'))).toBe('kvm-hv: bad (TypeError)');
    expect(formatError('weird')).toBe('kvm-hv: weird');
    expect(
      formatError(
        new HvParamError([
          { param: 'a', message: 'A is bad' },
          { param: '', message: 'cross problem' },
        ]),
      ),
    ).toBe('kvm-hv: invalid hypervisor parameters (2 problems):\n  - a: A is bad\n  - cross problem');
  });

  it('builds the JSON error document', () => {
    expect(errorJson(new HvParamError([{ param: 'a', message: 'A' }]))).toEqual({
      ok: false,
      exitCode: 2,
      error: { name: 'HvParamError', message: 'A', problems: [{ param: 'a', message: 'A' }] },
    });
    expect(errorJson(new MigrationError('m'))).toEqual({
      ok: false,
      exitCode: 1,
      error: { name: 'MigrationError', message: 'm' },
    });
  });

  it('keeps the CLI version in step with package.json', () => {
    expect(CLI_VERSION).toBe(pkg.version);
  });
});

describe('option parsing', () => {
  it('parses numbers with bounds', () => {
    expect(numberArg('--x')('1.5')).toBe(1.5);
    expect(numberArg('--x', { allowZero: true })('0')).toBe(0);
    expect(() => numberArg('--x')('0')).toThrow(InvalidArgumentError);
    expect(() => numberArg('--x', { integer: true })('2.5')).toThrow(/integer/);
    expect(() => numberArg('--x')('')).toThrow(/--x must be a number > 0, got ''/);
    expect(() => numberArg('--x')('1e999')).toThrow(InvalidArgumentError);
  });

  it('merges several -H options, a later one winning per key', () => {
    expect(rawHvParams(['kvm:a=1,b', 'kvm:a=2,no_c,-d'])).toEqual({ a: '2', b: true, c: false, d: null });
    expect(rawHvParams([])).toEqual({});
    expect(() => rawHvParams(['xen:a'])).toThrow(UsageError);
    expect(() => rawHvParams(['kvm:=1'])).toThrow(UsageError);
  });

  it('needs exactly one monitor socket and names the instance after it', () => {
    expect(monitorTarget({ qmp: '/run/a.qmp' })).toEqual({ protocol: 'qmp', path: '/run/a.qmp' });
    expect(monitorTarget({ hmp: '/run/a.monitor' })).toEqual({ protocol: 'hmp', path: '/run/a.monitor' });
    expect(() => monitorTarget({})).toThrow(UsageError);
    expect(() => monitorTarget({ qmp: 'a', hmp: 'b' })).toThrow(UsageError);
    expect(instanceName({ qmp: '/run/web1.qmp' })).toBe('web1');
    expect(instanceName({ hmp: '/run/web1' })).toBe('web1');
    expect(instanceName({ qmp: '/run/web1.qmp', name: 'db' })).toBe('db');
  });
});
