/**
 * Property tests (fast-check) of the two monitor readers: whatever the bytes and however
 * the socket splits them, a reader returns the same frames as for the whole input, throws
 * nothing but the documented `MonitorProtocolError`, and holds back a bounded amount.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MonitorProtocolError } from '../../src/errors.js';
import { HMP_PROMPT, type HmpFrame, HmpParser } from '../../src/monitor/hmp-parser.js';
import { type QmpMessage, QmpParser } from '../../src/monitor/qmp-parser.js';

/** Splits `buf` at the given cut points (any order, duplicates allowed). */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

/** Pushes every chunk; returns the frames, or the error a push threw. */
function feed<F>(push: (b: Buffer) => F[], chunks: Buffer[]): { frames: F[]; error?: unknown } {
  const frames: F[] = [];
  try {
    for (const c of chunks) frames.push(...push(c));
  } catch (error) {
    return { frames, error };
  }
  return { frames };
}

const qmpMessage = fc.oneof(
  fc.record({ return: fc.jsonValue(), id: fc.string() }),
  fc.record({
    event: fc.constantFrom('MIGRATION', 'STOP', 'RESUME'),
    data: fc.dictionary(fc.string(), fc.jsonValue()),
  }),
  fc.record({ error: fc.record({ class: fc.string(), desc: fc.string() }), id: fc.string() }),
  fc.jsonValue(),
);

describe('QmpParser properties', () => {
  it('any split of a stream of JSON lines gives the messages of the whole stream', () => {
    fc.assert(
      fc.property(
        fc.array(qmpMessage, { maxLength: 20 }),
        fc.constantFrom('\n', '\r\n'),
        fc.array(fc.nat(), { maxLength: 30 }),
        (messages, eol, cuts) => {
          const bytes = Buffer.from(messages.map((m) => JSON.stringify(m) + eol).join(''), 'utf8');
          const whole = new QmpParser().push(bytes);
          const p = new QmpParser();
          const pieces = feed<QmpMessage>((b) => p.push(b), split(bytes, cuts));
          expect(pieces.error).toBeUndefined();
          expect(pieces.frames).toEqual(whole);
          expect(whole).toHaveLength(messages.length);
          expect(whole.every((m) => m.kind !== 'parse-error')).toBe(true);
          expect(p.bufferedBytes).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('arbitrary bytes: only MonitorProtocolError is thrown, and what is held back stays within the limit', () => {
    const limit = 16 * 1024 * 1024;
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 4096 }), { maxLength: 40 }), (chunks) => {
        const p = new QmpParser({ maxLineBytes: limit });
        const r = feed<QmpMessage>(
          (b) => p.push(b),
          chunks.map((c) => Buffer.from(c)),
        );
        if (r.error !== undefined) expect(r.error).toBeInstanceOf(MonitorProtocolError);
        expect(p.bufferedBytes).toBeLessThanOrEqual(limit);
      }),
      { numRuns: 300 },
    );
  });

  it('a line past the limit fails with line-too-long as soon as the limit is crossed', () => {
    const limit = 16 * 1024 * 1024;
    const p = new QmpParser({ maxLineBytes: limit });
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    let error: unknown;
    let pushed = 0;
    while (error === undefined && pushed <= limit * 2) {
      try {
        p.push(chunk);
      } catch (e) {
        error = e;
      }
      pushed += chunk.length;
      expect(p.bufferedBytes).toBeLessThanOrEqual(limit);
    }
    expect(error).toBeInstanceOf(MonitorProtocolError);
    expect((error as MonitorProtocolError).reason).toBe('line-too-long');
    expect(pushed).toBeLessThanOrEqual(limit + chunk.length);
  });
});

/** Reply text that cannot contain a prompt of its own. */
const replyText = fc
  .array(fc.oneof(fc.string({ unit: 'grapheme' }), fc.constantFrom('\r\n', '\n', '\x1b[K', 'ü', '€', '😀')), {
    maxLength: 12,
  })
  .map((parts) => parts.join('').replaceAll(HMP_PROMPT, '(qemu)'));

describe('HmpParser properties', () => {
  it('any split (through multi-byte characters too) gives the frames of the whole stream', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('info status', 'info migrate', 'cont'), replyText), {
          maxLength: 10,
        }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (replies, cuts) => {
          const text =
            `QEMU 7.2.22 monitor - type 'help' for more information\r\n${HMP_PROMPT}` +
            replies.map(([cmd, out]) => `${cmd}\r\n${out}\r\n${HMP_PROMPT}`).join('');
          const bytes = Buffer.from(text, 'utf8');
          const run = (chunks: Buffer[]) => {
            const p = new HmpParser();
            for (const [cmd] of replies) p.commandSent(cmd);
            return feed<HmpFrame>((b) => p.push(b), chunks);
          };
          const whole = run([bytes]);
          const pieces = run(split(bytes, cuts));
          expect(whole.error).toBeUndefined();
          expect(pieces.error).toBeUndefined();
          expect(pieces.frames).toEqual(whole.frames);
          expect(whole.frames.map((f) => f.kind)).toEqual(['banner', ...replies.map(() => 'reply')]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('arbitrary bytes: only MonitorProtocolError is thrown', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 2048 }), { maxLength: 40 }), (chunks) => {
        const p = new HmpParser({ maxReplyChars: 16 * 1024 });
        p.commandSent('info migrate');
        const r = feed<HmpFrame>(
          (b) => p.push(b),
          chunks.map((c) => Buffer.from(c)),
        );
        if (r.error !== undefined) expect(r.error).toBeInstanceOf(MonitorProtocolError);
      }),
      { numRuns: 300 },
    );
  });

  it('output without a prompt fails with line-too-long once past the limit, like QMP', () => {
    const limit = 1024 * 1024;
    fc.assert(
      fc.property(fc.integer({ min: 1024, max: 64 * 1024 }), (chunkSize) => {
        const p = new HmpParser({ maxReplyChars: limit });
        p.push(`QEMU 7.2.22 monitor\r\n${HMP_PROMPT}`);
        p.commandSent('info migrate');
        const chunk = Buffer.alloc(chunkSize, 0x61);
        let error: unknown;
        let pushed = 0;
        while (error === undefined && pushed <= limit * 2) {
          try {
            p.push(chunk);
          } catch (e) {
            error = e;
          }
          pushed += chunk.length;
        }
        expect(error).toBeInstanceOf(MonitorProtocolError);
        expect((error as MonitorProtocolError).reason).toBe('line-too-long');
        expect(pushed).toBeLessThanOrEqual(limit + chunkSize);
      }),
      { numRuns: 6 },
    );
  });
});
