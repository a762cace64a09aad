import { describe, expect, it } from 'vitest';
import { MonitorProtocolError } from '../../src/errors.js';
import { classifyQmpMessage, QmpParser } from '../../src/monitor/qmp-parser.js';

const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}\r\n';

describe('QmpParser', () => {
  it('parses QEMU 7.2 greeting bytes', () => {
    const [m] = new QmpParser().push(Buffer.from(GREETING));
    expect(m).toMatchObject({
      kind: 'greeting',
      greeting: {
        version: { major: 7, minor: 2, micro: 22 },
        package: 'Debian 1:7.2+dfsg-7+deb12u18+b3',
        capabilities: ['oob'],
      },
    });
  });

  it('reassembles a line split across chunks at every byte offset', () => {
    const line = Buffer.from('{"return": {"status": "running", "running": true}, "id": "kvmhv-1"}\r\n');
    for (let cut = 1; cut < line.length; cut++) {
      const p = new QmpParser();
      expect(p.push(line.subarray(0, cut))).toEqual([]);
      const out = p.push(line.subarray(cut));
      expect(out).toHaveLength(1);
      expect(out[0]).toMatchObject({ kind: 'return', id: 'kvmhv-1', value: { status: 'running' } });
      expect(p.bufferedBytes).toBe(0);
    }
  });

  it('returns several messages from one chunk, in order, events between command and reply', () => {
    const chunk =
      '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", "data": {"status": "setup"}}\r\n' +
      '{"return": {}, "id": "kvmhv-7"}\r\n' +
      '{"timestamp": {"seconds": 1, "microseconds": 3}, "event": "STOP"}\r\n' +
      '{"return": {}, "id": "kvmhv-8"}\r\n';
    const out = new QmpParser().push(Buffer.from(chunk));
    expect(out.map((m) => m.kind)).toEqual(['event', 'return', 'event', 'return']);
    expect(out[0]).toMatchObject({
      event: { event: 'MIGRATION', data: { status: 'setup' }, timestamp: { seconds: 1, microseconds: 2 } },
    });
    expect(out[2]).toMatchObject({ event: { event: 'STOP', data: {} } });
    expect(out[3]).toMatchObject({ id: 'kvmhv-8' });
  });

  it('classifies an error without id (QEMU parse error) and with id', () => {
    const out = new QmpParser().push(
      Buffer.from(
        '{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\r\n' +
          '{"id": "x", "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}\r\n',
      ),
    );
    expect(out[0]).toEqual({
      kind: 'error',
      errorClass: 'GenericError',
      desc: 'JSON parse error, expecting value',
      raw: expect.any(Object),
    });
    expect('id' in out[0]!).toBe(false);
    expect(out[1]).toMatchObject({ kind: 'error', id: 'x', errorClass: 'CommandNotFound' });
  });

  it('keeps ids of any JSON type verbatim (unknown ids are the client’s business)', () => {
    const [m] = new QmpParser().push('{"return": 1, "id": {"k": [1, 2]}}\n');
    expect(m).toMatchObject({ kind: 'return', id: { k: [1, 2] }, value: 1 });
  });

  it('turns bad JSON into a parse-error message and keeps going', () => {
    const out = new QmpParser().push(
      Buffer.from('{"return": \r\nnot json at all\r\n{"return": 5, "id": "a"}\r\n'),
    );
    expect(out.map((m) => m.kind)).toEqual(['parse-error', 'parse-error', 'return']);
    expect(out[1]).toMatchObject({ line: 'not json at all' });
  });

  it('classifies non-objects and objects without known keys as unknown, skips blank lines', () => {
    const out = new QmpParser().push('[1,2]\n\r\n   \n{"foo": 1}\n');
    expect(out).toEqual([
      { kind: 'unknown', raw: [1, 2] },
      { kind: 'unknown', raw: { foo: 1 } },
    ]);
  });

  it('decodes a multi-byte UTF-8 character split across chunks', () => {
    const bytes = Buffer.from('{"return": "Grüße € 😀", "id": "u"}\n', 'utf8');
    const euro = bytes.indexOf(0xe2);
    const emoji = bytes.indexOf(0xf0);
    const p = new QmpParser();
    expect(p.push(bytes.subarray(0, euro + 1))).toEqual([]);
    expect(p.push(bytes.subarray(euro + 1, emoji + 2))).toEqual([]);
    const [m] = p.push(bytes.subarray(emoji + 2));
    expect(m).toMatchObject({ kind: 'return', value: 'Grüße € 😀' });
  });

  it('accepts a 20 MiB line delivered in 64 KiB chunks', () => {
    const big = 'x'.repeat(20 * 1024 * 1024);
    const bytes = Buffer.from(`{"return": "${big}", "id": "big"}\r\n`);
    const p = new QmpParser();
    const out = [];
    for (let i = 0; i < bytes.length; i += 65536) out.push(...p.push(bytes.subarray(i, i + 65536)));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ kind: 'return', id: 'big' });
    expect((out[0] as { value: string }).value.length).toBe(big.length);
  });

  it('throws a typed error past the line limit (minimum 16 MiB)', () => {
    const p = new QmpParser({ maxLineBytes: 1 });
    expect(p.maxLineBytes).toBe(16 * 1024 * 1024);
    const chunk = Buffer.alloc(8 * 1024 * 1024, 0x61);
    p.push(chunk);
    p.push(chunk);
    let err: unknown;
    try {
      p.push(Buffer.from('a'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MonitorProtocolError);
    expect((err as MonitorProtocolError).reason).toBe('line-too-long');
    expect(() => p.push('{}\n')).toThrow(MonitorProtocolError);
    p.reset();
    expect(p.push('{"return": 1}\n')).toHaveLength(1);
  });

  it('defaults to a 64 MiB line limit', () => {
    expect(new QmpParser().maxLineBytes).toBe(64 * 1024 * 1024);
  });
});

describe('classifyQmpMessage', () => {
  it('fills defaults for an event without data or timestamp', () => {
    expect(classifyQmpMessage({ event: 'RESUME' })).toMatchObject({
      kind: 'event',
      event: { event: 'RESUME', data: {}, timestamp: { seconds: -1, microseconds: -1 } },
    });
  });
  it('gives GenericError to an error without class', () => {
    expect(classifyQmpMessage({ error: { desc: 'x' } })).toMatchObject({
      errorClass: 'GenericError',
      desc: 'x',
    });
  });
});
