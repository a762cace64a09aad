import { describe, expect, it } from 'vitest';
import { QmpInputSplitter } from '../../src/testing/index.js';

const values = (out: ReturnType<QmpInputSplitter['push']>) =>
  out.map((m) => (m.kind === 'value' ? m.value : { error: m.text }));

describe('QmpInputSplitter: client input split as QEMU does', () => {
  it('splits commands with and without newlines between them', () => {
    const s = new QmpInputSplitter();
    expect(values(s.push('{"execute":"a","id":1}{"execute":"b","id":2}\n{"execute":"c"}\r\n'))).toEqual([
      { execute: 'a', id: 1 },
      { execute: 'b', id: 2 },
      { execute: 'c' },
    ]);
  });

  it('waits for the rest of a command split across chunks, also inside a string and a UTF-8 character', () => {
    const s = new QmpInputSplitter();
    const bytes = Buffer.from('{"execute":"x","arguments":{"s":"}{ \\" é"}}');
    const cut = bytes.indexOf(Buffer.from('é')) + 1; // inside the two bytes of é
    expect(s.push(bytes.subarray(0, 12))).toEqual([]);
    expect(s.push(bytes.subarray(12, cut))).toEqual([]);
    expect(values(s.push(bytes.subarray(cut)))).toEqual([{ execute: 'x', arguments: { s: '}{ " é' } }]);
  });

  it('reports unparsable input as QEMU would answer it, and carries on', () => {
    const s = new QmpInputSplitter();
    expect(values(s.push('{"execute": bad}\nnot-json {"execute":"ok"}'))).toEqual([
      { error: '{"execute": bad}' },
      { error: 'not-json' },
      { execute: 'ok' },
    ]);
  });

  it('refuses an unfinished command over its limit', () => {
    const s = new QmpInputSplitter({ maxBytes: 100 });
    expect(() => s.push(`{"execute":"x","arguments":{"pad":"${'p'.repeat(200)}`)).toThrow(/over 100 bytes/);
  });
});
