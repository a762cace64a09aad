import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MonitorProtocolError } from '../../src/errors.js';
import {
  detectHmpError,
  HmpParser,
  parseHmpBanner,
  stripAnsi,
  stripHmpEcho,
} from '../../src/monitor/hmp-parser.js';

interface Fixture {
  banner: string;
  replies: { command: string; raw: string; text: string; isError: boolean }[];
  otherOutputs: Record<string, string>;
  humanMonitorCommand: Record<string, string>;
}
const fx: Fixture = JSON.parse(
  readFileSync(new URL('./fixtures/qemu-7.2.22-hmp.json', import.meta.url), 'utf8'),
);

describe('HmpParser on bytes captured from QEMU 7.2.22', () => {
  it('detects the banner and its version', () => {
    const p = new HmpParser();
    const frames = p.push(Buffer.from(fx.banner, 'latin1'));
    expect(frames).toEqual([
      {
        kind: 'banner',
        text: "QEMU 7.2.22 monitor - type 'help' for more information",
        version: { major: 7, minor: 2, micro: 22 },
      },
    ]);
  });

  for (const r of fx.replies) {
    it(`frames '${r.command}': echo, ANSI, CR and prompt removed`, () => {
      const p = new HmpParser();
      p.push(fx.banner);
      p.commandSent(r.command);
      const frames = p.push(Buffer.from(r.raw, 'latin1'));
      expect(frames).toEqual([{ kind: 'reply', command: r.command, text: r.text }]);
      expect(frames[0]?.kind === 'reply' && frames[0].text).not.toContain('\x1b');
      expect(p.outstanding).toBe(0);
    });
  }

  it('frames a session delivered byte by byte, several replies in order', () => {
    const p = new HmpParser();
    const all = Buffer.from(fx.banner + fx.replies.map((r) => r.raw).join(''), 'latin1');
    for (const r of fx.replies) p.commandSent(r.command);
    const frames = [];
    for (let i = 0; i < all.length; i++) frames.push(...p.push(all.subarray(i, i + 1)));
    expect(frames[0]?.kind).toBe('banner');
    expect(frames.slice(1)).toEqual(
      fx.replies.map((r) => ({ kind: 'reply', command: r.command, text: r.text })),
    );
  });

  it('reports a prompt nobody asked for as unsolicited', () => {
    const p = new HmpParser();
    p.push(fx.banner);
    expect(p.push('some async text\r\n(qemu) ')).toEqual([
      { kind: 'unsolicited', text: 'some async text\n' },
    ]);
  });

  it('recognizes a QMP greeting on what should be an HMP socket', () => {
    const frames = new HmpParser().push('{"QMP": {"version": {}}}\r\n');
    expect(frames[0]?.kind).toBe('qmp-greeting');
  });

  it('accepts a banner without version and a reply without echo', () => {
    const p = new HmpParser();
    expect(p.push('hello\r\n(qemu) ')).toEqual([{ kind: 'banner', text: 'hello' }]);
    p.commandSent('info status');
    expect(p.push('VM status: running\r\n(qemu) ')).toEqual([
      { kind: 'reply', command: 'info status', text: 'VM status: running\n' },
    ]);
  });

  it('frames a prompt cut at every position between two chunks', () => {
    const stream = Buffer.from('banner\r\n(qemu) info status\r\nVM status: running\r\n(qemu) ', 'latin1');
    for (let cut = 0; cut <= stream.length; cut++) {
      const p = new HmpParser();
      p.commandSent('info status');
      const frames = [...p.push(stream.subarray(0, cut)), ...p.push(stream.subarray(cut))];
      expect(frames).toEqual([
        { kind: 'banner', text: 'banner' },
        { kind: 'reply', command: 'info status', text: 'VM status: running\n' },
      ]);
      expect(p.bufferedBytes).toBe(0);
    }
  });

  it('keeps text that only looks like part of a prompt', () => {
    const p = new HmpParser();
    p.push('(qemu) ');
    p.commandSent('x');
    const frames = [...p.push('x\r\n(qem'), ...p.push('u)x\r\n(qemu'), ...p.push(') ')];
    expect(frames).toEqual([{ kind: 'reply', command: 'x', text: '(qemu)x\n' }]);
  });

  it('uses the QMP line limit: default 64 MiB, at least 16 MiB', () => {
    expect(new HmpParser().maxReplyBytes).toBe(64 * 1024 * 1024);
    expect(new HmpParser({ maxReplyBytes: 100 }).maxReplyBytes).toBe(16 * 1024 * 1024);
  });

  it('accepts a reply of exactly the limit, prompt split across chunks', () => {
    const limit = 16 * 1024 * 1024;
    const p = new HmpParser({ maxReplyBytes: limit });
    p.push('(qemu) ');
    p.commandSent('big');
    const body = Buffer.alloc(limit, 0x61);
    body[limit - 1] = 0x0a;
    expect(p.push(body)).toEqual([]);
    expect(p.push('(qemu')).toEqual([]);
    const frames = p.push(') ');
    expect(frames).toHaveLength(1);
    expect(frames[0]?.kind === 'reply' && frames[0].text.length).toBe(limit);
  });

  it('throws line-too-long as soon as a reply passes the limit, then refuses more input', () => {
    const limit = 16 * 1024 * 1024;
    const p = new HmpParser({ maxReplyBytes: limit });
    p.push('(qemu) ');
    p.commandSent('flood');
    const chunk = Buffer.alloc(64 * 1024, 0x78);
    let pushed = 0;
    let error: unknown;
    try {
      for (;;) {
        p.push(chunk);
        pushed += chunk.length;
        expect(p.bufferedBytes).toBeLessThanOrEqual(limit);
      }
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MonitorProtocolError);
    expect((error as MonitorProtocolError).reason).toBe('line-too-long');
    expect(pushed).toBe(limit);
    expect(p.bufferedBytes).toBe(0);
    expect(() => p.push('(qemu) ')).toThrow(MonitorProtocolError);
  });

  it('applies the limit to a reply completed inside one chunk', () => {
    const limit = 16 * 1024 * 1024;
    const p = new HmpParser({ maxReplyBytes: limit });
    p.push('(qemu) ');
    p.commandSent('big');
    const body = Buffer.concat([Buffer.alloc(limit, 0x61), Buffer.from('\n(qemu) ')]);
    expect(() => p.push(body)).toThrow(/HMP reply longer than 16777216 bytes/);
  });
});

describe('HMP helpers', () => {
  it('parseHmpBanner', () => {
    expect(parseHmpBanner("QEMU 1.7.0 monitor - type 'help' for more information")).toEqual({
      major: 1,
      minor: 7,
      micro: 0,
    });
    expect(parseHmpBanner("QEMU 10.2.50 monitor - type 'help' for more information")).toEqual({
      major: 10,
      minor: 2,
      micro: 50,
    });
    expect(parseHmpBanner('not a banner')).toBeUndefined();
  });
  it('stripAnsi and stripHmpEcho', () => {
    expect(stripAnsi('a\x1b[K\x1b[Db\x1b[1;2Hc\r\n')).toBe('abc\n');
    expect(stripHmpEcho('iininfo status\nVM status: running\n', 'info status')).toBe('VM status: running\n');
    expect(stripHmpEcho('VM status: running\n', 'info status')).toBe('VM status: running\n');
    expect(stripHmpEcho('stop', 'stop')).toBe('');
  });
});

describe('detectHmpError', () => {
  it('flags every error reply captured from QEMU 7.2.22 and no normal output', () => {
    for (const r of fx.replies) {
      expect({ command: r.command, error: detectHmpError(r.text) !== undefined }).toEqual({
        command: r.command,
        error: r.isError,
      });
    }
  });

  it('flags errors returned by human-monitor-command (with CRLF) on QEMU 7.2.22', () => {
    const h = fx.humanMonitorCommand;
    expect(detectHmpError(h['migrate_set_speed 10']!)).toBe("unknown command: 'migrate_set_speed'");
    expect(detectHmpError(h['migrate_set_capability nope on']!)).toBe('Error: invalid parameter value: nope');
    expect(detectHmpError(h['migrate_start_postcopy']!)).toMatch(/^Error: Enable postcopy/);
    expect(detectHmpError(h['migrate_set_parameter downtime-limit bogus']!)).toMatch(
      /expects a non-negative/,
    );
    expect(detectHmpError(h['migrate -d bogus:x']!)).toMatch(/valid migration protocol/);
    expect(detectHmpError(h['migrate -d tcp:127.0.0.1:1']!)).toBeUndefined();
    expect(detectHmpError(h['info version']!)).toBeUndefined();
    expect(detectHmpError(h['info status']!)).toBeUndefined();
  });

  it('flags the other captured outputs correctly', () => {
    const o = fx.otherOutputs;
    expect(detectHmpError(o['migrate (vm in postmigrate)']!)).toMatch(/^Error: Can't migrate/);
    expect(detectHmpError(o['migrate_set_parameter (no args)']!)).toMatch(/string expected/);
    expect(detectHmpError(o['info migrate (before any migration)']!)).toBeUndefined();
    expect(detectHmpError(o['info migrate (completed)']!)).toBeUndefined();
    expect(detectHmpError(o['info status (postmigrate)']!)).toBeUndefined();
    expect(detectHmpError(o['info status (inmigrate)']!)).toBeUndefined();
  });

  it('knows the error forms of older QEMUs', () => {
    for (const text of [
      "Parameter 'value' expects a number",
      "Invalid parameter 'nope'",
      'invalid size',
      'Could not connect to migration target',
      'Migration is disabled when VirtIO-9p is used',
      'migration already in progress',
      "There's a migration process in progress",
      'Usage: migrate [-d] [-b] [-i] uri',
      'Unknown migration capability',
      "Expected 'on' or 'off'",
    ]) {
      expect(detectHmpError(`${text}\r\n`), text).toBe(text);
    }
  });

  it('does not flag ordinary output', () => {
    for (const text of [
      '',
      'VM status: running',
      "Migration status: failed (Failed to connect to '127.0.0.1:1': Connection refused)\ntotal time: 0 ms",
      'expected downtime: 300 ms\nxbzrle: off',
      'errors: 0',
    ]) {
      expect(detectHmpError(text), text).toBeUndefined();
    }
  });
});
