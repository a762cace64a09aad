/**
 * HMP `info migrate` / `info status` and QMP `query-migrate` parsing, on the exact text real
 * QEMU 5.2, 7.2, 10.0 and 11.1 printed (test/fixtures/hmp, captured before, during and after
 * a migration and on the destination), plus properties over random text.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UnrecognizedOutputError } from '../../src/errors.js';
import {
  parseHumanSize,
  parseInfoMigrate,
  parseInfoStatus,
  parseQueryMigrate,
} from '../../src/migration/status.js';

const fixture = (name: string) => readFileSync(join(__dirname, '../fixtures/hmp', name), 'utf8');
const KiB = 1024;
const MiB = 1024 * 1024;

/** Passes when `fn` returns or throws an UnrecognizedOutputError quoting `text`. */
function onlyUnrecognized(fn: () => unknown, text: string): void {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof UnrecognizedOutputError)) throw error;
    expect(error.text).toBe(text);
  }
}

describe('parseInfoMigrate on real output', () => {
  it.each(['5.2', '7.2', '10.0', '11.1'])('QEMU %s: no migration yet is none', (release) => {
    expect(parseInfoMigrate(fixture(`qemu-${release}-info-migrate-none.txt`))).toEqual({ status: 'none' });
  });

  it('QEMU 5.2 active (classic layout, kbytes)', () => {
    const p = parseInfoMigrate(fixture('qemu-5.2-info-migrate-active.txt'));
    expect(p).toEqual({
      status: 'active',
      transferredBytes: 12324 * KiB,
      remainingBytes: 117380 * KiB,
      totalBytes: 131592 * KiB,
      speedBytesPerSec: (67.31 * 1e6) / 8,
      expectedDowntimeMs: 300,
      totalTimeMs: 1501,
      pass: 1,
      firstPassDone: false,
      percent: (100 * (131592 - 117380)) / 131592,
    });
  });

  it.each([
    ['7.2', 12324, 117388],
    ['10.0', 13470, 116244],
  ])('QEMU %s active', (release, transferred, remaining) => {
    expect(parseInfoMigrate(fixture(`qemu-${release}-info-migrate-active.txt`))).toMatchObject({
      status: 'active',
      transferredBytes: transferred * KiB,
      remainingBytes: remaining * KiB,
      totalBytes: 131592 * KiB,
      expectedDowntimeMs: 300,
      totalTimeMs: 1501,
      pass: 1,
      firstPassDone: false,
    });
  });

  it.each([
    ['5.2', 1654, 15, 66321, 329.26, 4],
    ['7.2', 1623, 31, 66341, 335.61, 3],
    ['10.0', 1691, 32, 66466, 322.19, 3],
  ])('QEMU %s completed', (release, total, down, transferred, mbps, passes) => {
    expect(parseInfoMigrate(fixture(`qemu-${release}-info-migrate-completed.txt`))).toEqual({
      status: 'completed',
      totalTimeMs: total,
      downtimeMs: down,
      transferredBytes: transferred * KiB,
      remainingBytes: 0,
      totalBytes: 131592 * KiB,
      speedBytesPerSec: (mbps * 1e6) / 8,
      pass: passes,
      firstPassDone: true,
      percent: 100,
    });
  });

  it('QEMU 11.1 active (sectioned layout, human units)', () => {
    expect(parseInfoMigrate(fixture('qemu-11.1-info-migrate-active.txt'))).toEqual({
      status: 'active',
      totalTimeMs: 1501,
      expectedDowntimeMs: 300,
      remainingBytes: 114 * MiB,
      totalBytes: 129 * MiB,
      transferredBytes: Math.round(13.2 * MiB),
      speedBytesPerSec: (73.55 * 1e6) / 8,
      pass: 1,
      firstPassDone: false,
      percent: (100 * (129 - 114)) / 129,
    });
  });

  it('QEMU 11.1 completed', () => {
    expect(parseInfoMigrate(fixture('qemu-11.1-info-migrate-completed.txt'))).toEqual({
      status: 'completed',
      totalTimeMs: 1717,
      downtimeMs: 46,
      remainingBytes: 0,
      totalBytes: 129 * MiB,
      transferredBytes: Math.round(64.9 * MiB),
      speedBytesPerSec: (316.99 * 1e6) / 8,
      pass: 2,
      firstPassDone: true,
      percent: 100,
    });
  });

  it.each(['5.2', '7.2', '10.0', '11.1'])('QEMU %s destination while incoming', (release) => {
    const p = parseInfoMigrate(fixture(`qemu-${release}-info-migrate-incoming.txt`));
    expect(p.status).toBe('active');
    expect(p.transferredBytes).toBeUndefined();
  });

  it.each(['5.2', '11.1'])('QEMU %s failed keeps the reason', (release) => {
    expect(parseInfoMigrate(fixture(`qemu-${release}-info-migrate-failed.txt`))).toMatchObject({
      status: 'failed',
      errorDesc: "Failed to connect to '127.0.0.1:1': Connection refused",
    });
  });
});

describe('parseInfoMigrate on other layouts', () => {
  it('QEMU ≤ 2.x: capabilities line, "milliseconds", dirty rate and throttle', () => {
    const text = [
      'capabilities: xbzrle: off rdma-pin-all: off auto-converge: on',
      'Migration status: active',
      'total time: 1503 milliseconds',
      'expected downtime: 300 milliseconds',
      'transferred ram: 122 kbytes',
      'throughput: 0.66 mbps',
      'remaining ram: 261648 kbytes',
      'total ram: 262664 kbytes',
      'dirty sync count: 3',
      'page size: 4 kbytes',
      'dirty pages rate: 10 pages',
      'cpu throttle percentage: 20',
    ].join('\r\n');
    expect(parseInfoMigrate(text)).toMatchObject({
      status: 'active',
      totalTimeMs: 1503,
      expectedDowntimeMs: 300,
      dirtyRateBytesPerSec: 40960,
      throttlePercent: 20,
      pass: 3,
    });
  });

  it('sectioned layout: dirty page rate, CPU throttle, globals and blockers', () => {
    const text = [
      'Outgoing migration blocked:',
      '  some device is not migratable',
      'Status: \t\tactive',
      'Time (ms): \t\ttotal=9000, setup=2, exp_down=1200',
      'Remaining: \t\t0.98 GiB',
      'RAM info:',
      '  Throughput (Mbps): \t268.44',
      '  Sizes: \t\tpagesize=4 KiB, total=2 GiB',
      '  Transfers: \t\ttransferred=1.5 GiB, remain=0.98 GiB',
      '  Page Rates (pps): \ttransfer=8192, dirty=2048',
      '  Others: \t\tdirty_syncs=7, postcopy_req=0',
      'XBZRLE: size=67108864, transferred=0, pages=0, miss=0',
      '  miss_rate=0.00, encode_rate=0.00, overflow=0',
      'CPU Throttle (%): 40',
      'Globals:',
      '  store-global-state: on',
      '  clear-bitmap-shift: 18',
    ].join('\n');
    expect(parseInfoMigrate(text)).toMatchObject({
      status: 'active',
      totalTimeMs: 9000,
      expectedDowntimeMs: 1200,
      remainingBytes: Math.round(0.98 * 1024 * MiB),
      totalBytes: 2 * 1024 * MiB,
      transferredBytes: 1.5 * 1024 * MiB,
      dirtyRateBytesPerSec: 2048 * 4096,
      pass: 7,
      throttlePercent: 40,
    });
  });

  it('the first pass is over when the page counts cover the total (classic layout)', () => {
    const text = (normal: number, zero: number) =>
      [
        'Migration status: active',
        'total ram: 65536 kbytes',
        `duplicate: ${zero} pages`,
        `normal: ${normal} pages`,
        'dirty sync count: 2',
        'page size: 4 kbytes',
      ].join('\n');
    expect(parseInfoMigrate(text(4000, 12383)).firstPassDone).toBe(false);
    expect(parseInfoMigrate(text(4000, 12384)).firstPassDone).toBe(true);
  });

  it('QEMU 11 with postcopy-ram: many dirty syncs within the first pass, the page counts tell', () => {
    const text = (normal: number, zero: number) =>
      [
        'Status: \t\tactive',
        'RAM info:',
        '  Sizes: \t\tpagesize=4 KiB, total=64.5 MiB',
        `    Page Types: \tnormal=${normal}, zero=${zero}`,
        '  Others: \t\tdirty_syncs=35',
      ].join('\n');
    // 64.5 MiB is 16512 pages, printed to three digits: the count may fall short by 0.5 %.
    expect(parseInfoMigrate(text(3000, 12000))).toMatchObject({ pass: 35, firstPassDone: false });
    expect(parseInfoMigrate(text(4000, 12430))).toMatchObject({ pass: 35, firstPassDone: true });
  });

  it('without page counts the first pass is not guessed', () => {
    expect(
      parseInfoMigrate('Migration status: active\ntotal ram: 65536 kbytes\ndirty sync count: 2\n'),
    ).not.toHaveProperty('firstPassDone');
  });

  it('only globals (either spelling) or only migration blockers is none', () => {
    expect(parseInfoMigrate('Globals:\n  store-global-state: on\n  clear-bitmap-shift: 18\n').status).toBe(
      'none',
    );
    expect(parseInfoMigrate('Outgoing migration blocked:\n  device x is not migratable\n').status).toBe(
      'none',
    );
    expect(parseInfoMigrate('\r\n').status).toBe('none');
  });

  it.each([
    ['an HMP error', "unknown command: 'info migrate'\r\n"],
    ['a future layout', 'State of migration: active\ntransferred: 12 MiB\n'],
    ['statistics without a status line', 'total time: 1501 ms\ntransferred ram: 12324 kbytes\n'],
    ['an unreadable status line', 'Migration status: \n'],
    ['a status line with spaces', 'Status: \t\tis going well\n'],
    ['two status lines', 'Migration status: active\nMigration status: completed\n'],
    ['a capabilities line alone', 'capabilities: xbzrle: off auto-converge: on\n'],
    ['globals followed by junk', 'globals:\nstore-global-state: on\nsomething else happened\n'],
  ])('%s is an UnrecognizedOutputError quoting the text', (_what, text) => {
    expect(() => parseInfoMigrate(text)).toThrow(UnrecognizedOutputError);
    try {
      parseInfoMigrate(text);
    } catch (error) {
      expect((error as UnrecognizedOutputError).text).toBe(text);
      expect((error as UnrecognizedOutputError).command).toBe('info migrate');
      expect((error as Error).message).toContain(JSON.stringify(text).slice(1, 20));
    }
  });

  it('random text never throws anything but UnrecognizedOutputError', () => {
    const line = fc.oneof(
      fc.string(),
      fc.constantFrom(
        'Migration status: active',
        'Status: \t\tcompleted',
        'globals:',
        'Globals:',
        'socket address: [',
        'Sockets: [',
        ']',
        'Time (ms): \t\ttotal=x, down=',
        '  Sizes: \t\tpagesize=, total=9e999 MiB',
        'transferred ram: 99999999999999999999999 kbytes',
        'Outgoing migration blocked:',
        'capabilities: xbzrle: on',
      ),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), fc.constantFrom('\n', '\r\n'), (lines, eol) => {
        const text = lines.join(eol);
        onlyUnrecognized(() => parseInfoMigrate(text), text);
      }),
      { numRuns: 2000 },
    );
  });

  it('any text with a readable status line gives that status', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('Migration status: ', 'Status: \t\t'),
        fc.stringMatching(/^[a-z][a-z-]{0,15}$/),
        fc.array(
          fc.string().filter((s) => !/status:/i.test(s) && !/[\r\n]/.test(s)),
          { maxLength: 5 },
        ),
        (prefix, status, noise) => {
          const text = [prefix + status, ...noise].join('\n');
          expect(parseInfoMigrate(text).status).toBe(status);
        },
      ),
    );
  });
});

describe('parseHumanSize', () => {
  it.each([
    ['0 B', 0],
    ['4 KiB', 4096],
    ['13.2 MiB', Math.round(13.2 * MiB)],
    ['0.98 GiB', Math.round(0.98 * 1024 * MiB)],
    ['1 TiB', 1024 ** 4],
  ])('%s -> %d', (text, bytes) => {
    expect(parseHumanSize(text)).toBe(bytes);
  });

  it.each(['', '12', '12 MB', 'MiB', '-1 KiB'])('%j is not a size', (text) => {
    expect(parseHumanSize(text)).toBeUndefined();
  });
});

describe('parseInfoStatus', () => {
  it.each(['5.2', '7.2', '10.0', '11.1'])('QEMU %s source and destination', (release) => {
    const [src, dst] = fixture(`qemu-${release}-info-status-src-dst.txt`).trim().split('\n');
    expect(parseInfoStatus(src!)).toEqual({ running: false, status: 'postmigrate' });
    expect(parseInfoStatus(dst!)).toEqual({ running: true, status: 'running' });
  });

  it('reads a plain pause and ignores the single-step note of old QEMU', () => {
    expect(parseInfoStatus('VM status: paused\r\n')).toEqual({ running: false, status: 'paused' });
    expect(parseInfoStatus('VM status: running (single step mode)\n')).toEqual({
      running: true,
      status: 'running',
    });
    expect(parseInfoStatus('VM status: paused (single step mode) (inmigrate)')).toEqual({
      running: false,
      status: 'inmigrate',
    });
  });

  it.each(['', "unknown command: 'info status'", 'VM status: sleeping', 'status: running'])(
    '%j is an UnrecognizedOutputError',
    (text) => {
      expect(() => parseInfoStatus(text)).toThrow(UnrecognizedOutputError);
    },
  );

  it('random text never throws anything but UnrecognizedOutputError', () => {
    fc.assert(
      fc.property(fc.string(), (text) => onlyUnrecognized(() => parseInfoStatus(text), text)),
      { numRuns: 1000 },
    );
  });
});

describe('parseQueryMigrate strictness', () => {
  it.each([null, undefined, 'active', 42, ['status']])('%j is an UnrecognizedOutputError', (reply) => {
    expect(() => parseQueryMigrate(reply)).toThrow(UnrecognizedOutputError);
  });

  it('a status that is not a string is an UnrecognizedOutputError quoting the reply', () => {
    expect(() => parseQueryMigrate({ status: 3 })).toThrow(/query-migrate.*status/);
    expect(() => parseQueryMigrate({ status: null })).toThrow(UnrecognizedOutputError);
  });

  it('QEMU 11’s INT64_MAX expected downtime (no bandwidth measured yet) is no estimate', () => {
    // JSON.parse of 9223372036854775807, as the 11.1.3 transcript has it.
    const p = parseQueryMigrate(JSON.parse('{"status":"active","expected-downtime":9223372036854775807}'));
    expect(p.expectedDowntimeMs).toBeUndefined();
    expect(parseQueryMigrate({ status: 'active', 'expected-downtime': 300 }).expectedDowntimeMs).toBe(300);
  });

  it('random JSON never throws anything but UnrecognizedOutputError', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (reply) => {
        try {
          parseQueryMigrate(reply);
        } catch (error) {
          if (!(error instanceof UnrecognizedOutputError)) throw error;
        }
      }),
      { numRuns: 1000 },
    );
  });
});
