/**
 * Property tests of the QMP and HMP readers: any chunking of a valid stream gives the same
 * messages, garbage never throws anything but the documented error, and memory stays
 * bounded by the limit however much is streamed.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MonitorProtocolError } from '../../src/errors.js';
import { type HmpFrame, HmpParser } from '../../src/monitor/hmp-parser.js';
import { MIN_MAX_LINE_BYTES, type QmpMessage, QmpParser } from '../../src/monitor/qmp-parser.js';

const MiB = 1024 * 1024;

/** `bytes` cut at `cuts` (any positions, also inside a UTF-8 character or a prompt). */
function chunked(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  return out;
}

/** Pushes every chunk; only `MonitorProtocolError` may escape (and it ends the stream). */
function pushAll<F>(parser: { push(b: Buffer): F[] }, chunks: Buffer[]): F[] {
  const out: F[] = [];
  for (const c of chunks) out.push(...parser.push(c));
  return out;
}

function expectOnlyProtocolErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(MonitorProtocolError);
    expect((error as MonitorProtocolError).reason).toBe('line-too-long');
  }
}

/** Chunks of fresh memory, as a socket delivers them (views of one buffer would not count). */
function* freshChunks(total: number, size: number, fill: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += size) yield Buffer.alloc(Math.min(size, total - sent), fill);
}

const cuts = fc.array(fc.nat(), { maxLength: 40 });

describe('QmpParser properties', () => {
  const qmpMessage = fc.oneof(
    fc.record({ return: fc.jsonValue(), id: fc.string() }),
    fc.record({ error: fc.record({ class: fc.string(), desc: fc.string() }), id: fc.string() }),
    fc.record({
      event: fc.string(),
      data: fc.dictionary(fc.string(), fc.jsonValue()),
      timestamp: fc.record({ seconds: fc.nat(), microseconds: fc.nat() }),
    }),
  );

  it('any chunking of a valid stream gives the same messages as one push', () => {
    fc.assert(
      fc.property(fc.array(qmpMessage, { maxLength: 20 }), cuts, (messages, at) => {
        const bytes = Buffer.from(messages.map((m) => `${JSON.stringify(m)}\r\n`).join(''), 'utf8');
        const whole = new QmpParser().push(bytes);
        expect(whole.map((m) => (m as { raw: unknown }).raw)).toEqual(
          JSON.parse(`[${messages.map((m) => JSON.stringify(m)).join(',')}]`),
        );
        const parser = new QmpParser();
        expect(pushAll<QmpMessage>(parser, chunked(bytes, at))).toEqual(whole);
        expect(parser.bufferedBytes).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('garbage never throws, and only yields documented message kinds', () => {
    const garbage = fc.array(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        fc.constantFrom('\n', '\r\n', '{', '}', '{"QMP":', '{"return":', '"id":', '\u00e9', '\ud83d'),
        fc.string({ unit: 'binary', maxLength: 50 }),
      ),
      { maxLength: 40 },
    );
    fc.assert(
      fc.property(garbage, (pieces) => {
        const parser = new QmpParser();
        for (const piece of pieces) {
          const out = parser.push(typeof piece === 'string' ? piece : Buffer.from(piece));
          for (const m of out)
            expect(['greeting', 'return', 'error', 'event', 'unknown', 'parse-error']).toContain(m.kind);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a line without end fails once the limit is passed, never holding more than the limit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 4096, max: 512 * 1024 }), (size) => {
        const parser = new QmpParser({ maxLineBytes: MIN_MAX_LINE_BYTES });
        let fed = 0;
        let maxBuffered = 0;
        let error: unknown;
        for (const chunk of freshChunks(64 * MiB, size, 0x61)) {
          try {
            parser.push(chunk);
          } catch (e) {
            error = e;
            break;
          }
          fed += chunk.length;
          maxBuffered = Math.max(maxBuffered, parser.bufferedBytes);
        }
        expect(maxBuffered).toBeLessThanOrEqual(MIN_MAX_LINE_BYTES);
        expect(error).toBeInstanceOf(MonitorProtocolError);
        expect((error as MonitorProtocolError).reason).toBe('line-too-long');
        expect(fed).toBeLessThanOrEqual(MIN_MAX_LINE_BYTES);
        expect(fed).toBeGreaterThan(MIN_MAX_LINE_BYTES - size);
      }),
      { numRuns: 4 },
    );
  });
});

describe('QmpParser memory', () => {
  it('streaming 256 MiB of messages keeps the buffered bytes and Buffer memory bounded', () => {
    const parser = new QmpParser();
    const line = Buffer.from(`${JSON.stringify({ return: 'z'.repeat(MiB - 40), id: 'kvmhv-1' })}\r\n`);
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let messages = 0;
    let maxBuffered = 0;
    const size = 64 * 1024 + 3;
    for (let r = 0; r < 256; r++) {
      for (let at = 0; at < line.length; at += size) {
        messages += parser.push(Buffer.from(line.subarray(at, at + size))).length;
        maxBuffered = Math.max(maxBuffered, parser.bufferedBytes);
      }
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
    }
    expect(messages).toBe(256);
    expect(maxBuffered).toBeLessThanOrEqual(MiB);
    expect(peak).toBeLessThan(128 * MiB);
  });
});

/** A reply line: any text without `\n`, `\r` or ESC (the reader removes those). */
const replyLine = fc
  .string({ unit: 'binary', maxLength: 60 })
  // Round trip through UTF-8 so that lone surrogates become U+FFFD, as on the wire.
  .map((s) => Buffer.from(s.replace(/[\r\n\x1b]/g, ''), 'utf8').toString('utf8'))
  .filter((s) => !s.startsWith('(qemu) '));

describe('HmpParser properties', () => {
  const session = fc.record({
    banner: replyLine.filter((s) => !/^\s*\{\s*"QMP"/.test(s) && !s.startsWith('(qemu) ')),
    replies: fc.array(
      fc.record({
        command: fc.constantFrom('info status', 'info migrate', 'stop', 'cont', 'x'),
        lines: fc.array(replyLine, { maxLength: 6 }),
      }),
      { maxLength: 8 },
    ),
  });

  it('any chunking of a session gives the same frames, with the text that was sent', () => {
    fc.assert(
      fc.property(session, cuts, ({ banner, replies }, at) => {
        let text = `${banner}\r\n(qemu) `;
        for (const r of replies)
          text += `${r.command}\x1b[K\r\n${r.lines.map((l) => `${l}\r\n`).join('')}(qemu) `;
        const bytes = Buffer.from(text, 'utf8');
        const expected: HmpFrame[] = [
          { kind: 'banner', text: banner.trim() },
          ...replies.map(
            (r): HmpFrame => ({
              kind: 'reply',
              command: r.command,
              text: r.lines.map((l) => `${l}\n`).join(''),
            }),
          ),
        ];
        const whole = new HmpParser();
        for (const r of replies) whole.commandSent(r.command);
        expect(whole.push(bytes)).toEqual(expected);
        const parser = new HmpParser();
        for (const r of replies) parser.commandSent(r.command);
        expect(pushAll<HmpFrame>(parser, chunked(bytes, at))).toEqual(expected);
        expect(parser.bufferedBytes).toBe(0);
        expect(parser.outstanding).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('garbage never throws, and only yields documented frame kinds', () => {
    const garbage = fc.array(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        fc.constantFrom(
          '\n',
          '(qemu) ',
          '\n(qemu) ',
          '(qem',
          'u) ',
          '\x1b[K',
          '{"QMP"',
          ' ',
          '\u00e9',
          '\ud83d',
        ),
        fc.string({ unit: 'binary', maxLength: 50 }),
      ),
      { maxLength: 40 },
    );
    fc.assert(
      fc.property(garbage, fc.nat({ max: 5 }), (pieces, commands) => {
        const parser = new HmpParser();
        for (let i = 0; i < commands; i++) parser.commandSent(`cmd${i}`);
        for (const piece of pieces) {
          const out = parser.push(typeof piece === 'string' ? piece : Buffer.from(piece));
          for (const f of out) expect(['banner', 'reply', 'unsolicited', 'qmp-greeting']).toContain(f.kind);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a reply without prompt fails once the limit is passed, never holding more than the limit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 4096, max: 512 * 1024 }), fc.boolean(), (size, withNewlines) => {
        const parser = new HmpParser({ maxReplyBytes: MIN_MAX_LINE_BYTES });
        parser.push("QEMU 9.2.0 monitor - type 'help' for more information\r\n(qemu) ");
        parser.commandSent('info flood');
        let fed = 0;
        let maxBuffered = 0;
        let error: unknown;
        for (const chunk of freshChunks(64 * MiB, size, withNewlines ? 0x0a : 0x78)) {
          try {
            parser.push(chunk);
          } catch (e) {
            error = e;
            break;
          }
          fed += chunk.length;
          maxBuffered = Math.max(maxBuffered, parser.bufferedBytes);
        }
        expect(maxBuffered).toBeLessThanOrEqual(MIN_MAX_LINE_BYTES);
        expect(error).toBeInstanceOf(MonitorProtocolError);
        expect((error as MonitorProtocolError).reason).toBe('line-too-long');
        expect(fed).toBeLessThanOrEqual(MIN_MAX_LINE_BYTES);
        expect(fed).toBeGreaterThan(MIN_MAX_LINE_BYTES - size);
        expect(parser.bufferedBytes).toBe(0);
      }),
      { numRuns: 4 },
    );
  });

  it('streaming 256 MiB of replies keeps the buffered bytes and Buffer memory bounded', () => {
    const parser = new HmpParser();
    parser.push('(qemu) ');
    const reply = Buffer.concat([
      Buffer.from('info big\r\n'),
      Buffer.alloc(MiB - 20, 0x79),
      Buffer.from('\r\n(qemu) '),
    ]);
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let frames = 0;
    let maxBuffered = 0;
    const size = 64 * 1024 + 7; // chunks that cut prompts at varying places
    for (let r = 0; r < 256; r++) {
      parser.commandSent('info big');
      for (let at = 0; at < reply.length; at += size) {
        frames += parser.push(Buffer.from(reply.subarray(at, at + size))).length;
        maxBuffered = Math.max(maxBuffered, parser.bufferedBytes);
      }
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
    }
    expect(frames).toBe(256);
    expect(maxBuffered).toBeLessThanOrEqual(MiB);
    // Garbage chunks wait for the collector; a leak would keep all 256 MiB.
    expect(peak).toBeLessThan(128 * MiB);
  });

  it('garbage around any number of prompts only ever throws line-too-long', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'binary' }), { maxLength: 30 }), (pieces) => {
        expectOnlyProtocolErrors(() => {
          const parser = new HmpParser();
          for (const p of pieces) parser.push(`${p}\n(qemu) `);
        });
      }),
    );
  });
});
