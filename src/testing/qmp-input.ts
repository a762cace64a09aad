/**
 * Pure splitting of a client's QMP input, as QEMU's JSON streamer does it: a command ends
 * where its braces and brackets balance outside strings, with or without a newline after
 * it (this library sends none). The test servers use it; no I/O here.
 */
import { StringDecoder } from 'node:string_decoder';

/** One piece of client input: a parsed JSON value, or text QEMU would answer with a parse error. */
export type QmpInput = { kind: 'value'; value: unknown } | { kind: 'parse-error'; text: string };

/** Default limit of one unfinished command: 64 MiB, as the client-side line limit. */
const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/** Splits a QMP client's byte stream into JSON values (see the module comment). */
export class QmpInputSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private readonly maxBytes: number;
  private text = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Start of the value being read in `text`, or -1 between values. */
  private start = -1;
  /** Start of stray text outside any value, or -1. */
  private strayStart = -1;

  constructor(options: { maxBytes?: number } = {}) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  }

  /** Consumes a chunk; returns the values (and parse errors) it completed. Throws past the size limit. */
  push(chunk: Buffer | Uint8Array | string): QmpInput[] {
    const from = this.text.length;
    this.text += typeof chunk === 'string' ? chunk : this.decoder.write(Buffer.from(chunk));
    const out: QmpInput[] = [];
    const t = this.text;
    for (let i = from; i < t.length; i++) {
      const c = t[i]!;
      if (this.start === -1) {
        if (c === '{' || c === '[') {
          this.flushStray(out, i);
          this.start = i;
          this.depth = 1;
        } else if (c === ' ' || c === '\n' || c === '\r' || c === '\t') {
          this.flushStray(out, i);
        } else if (this.strayStart === -1) {
          this.strayStart = i;
        }
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === '{' || c === '[') this.depth++;
      else if ((c === '}' || c === ']') && --this.depth === 0) {
        const piece = t.slice(this.start, i + 1);
        this.start = -1;
        try {
          out.push({ kind: 'value', value: JSON.parse(piece) });
        } catch {
          out.push({ kind: 'parse-error', text: piece });
        }
      }
    }
    this.compact();
    return out;
  }

  private flushStray(out: QmpInput[], end: number): void {
    if (this.strayStart === -1) return;
    out.push({ kind: 'parse-error', text: this.text.slice(this.strayStart, end) });
    this.strayStart = -1;
  }

  /** Drops consumed text; keeps an unfinished value (or stray text) within the limit. */
  private compact(): void {
    // At most one of the two is set: stray text is flushed before a value starts.
    const keepFrom = this.start !== -1 ? this.start : this.strayStart;
    if (keepFrom === -1) {
      this.text = '';
      return;
    }
    this.text = this.text.slice(keepFrom);
    if (this.start !== -1) this.start = 0;
    else this.strayStart = 0;
    if (Buffer.byteLength(this.text) > this.maxBytes) {
      throw new RangeError(`QMP input: an unfinished command is over ${this.maxBytes} bytes`);
    }
  }
}
