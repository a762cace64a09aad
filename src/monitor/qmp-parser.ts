/**
 * Pure QMP framing and classification: bytes in, messages out, no I/O.
 *
 * QEMU sends one compact JSON object per line, terminated by CRLF. Lines are split on
 * `\n` over raw bytes *before* UTF-8 decoding, so a multi-byte character split across
 * two chunks survives; `\r` is stripped.
 */
import { MonitorProtocolError } from '../errors.js';
import type { QemuVersion } from '../qemu/version.js';
import type { MonitorEvent } from './types.js';

/** The QMP greeting, parsed: QEMU version, package string and offered capabilities. */
export interface QmpGreeting {
  /** QEMU version from `QMP.version.qemu`. */
  version: QemuVersion;
  /** Distribution package string (`QMP.version.package`), trimmed; `''` when absent. */
  package: string;
  /** Capabilities offered by the server (`oob` on QEMU ≥ 3.0). */
  capabilities: string[];
}

/** One message read from a QMP stream. Every variant keeps the decoded JSON in `raw`. */
export type QmpMessage =
  | { kind: 'greeting'; greeting: QmpGreeting; raw: Record<string, unknown> }
  | { kind: 'return'; id?: unknown; value: unknown; raw: Record<string, unknown> }
  | { kind: 'error'; id?: unknown; errorClass: string; desc: string; raw: Record<string, unknown> }
  | { kind: 'event'; event: MonitorEvent; raw: Record<string, unknown> }
  | { kind: 'unknown'; raw: unknown }
  | { kind: 'parse-error'; line: string; message: string };

/** Options for {@link QmpParser}. */
export interface QmpParserOptions {
  /** Longest line accepted, in bytes (default 64 MiB, minimum 16 MiB). */
  maxLineBytes?: number;
}

/** Default line limit: 64 MiB (a full `query-qmp-schema` reply is about 1 MB). */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;
/** Smallest line limit accepted: 16 MiB. */
export const MIN_MAX_LINE_BYTES = 16 * 1024 * 1024;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Classifies one decoded JSON value as a QMP greeting, reply, error, event or unknown. */
export function classifyQmpMessage(value: unknown): QmpMessage {
  if (!isObject(value)) return { kind: 'unknown', raw: value };
  if (isObject(value.QMP)) {
    const qmp = value.QMP;
    const ver = isObject(qmp.version) ? qmp.version : {};
    const q = isObject(ver.qemu) ? ver.qemu : {};
    const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : 0);
    return {
      kind: 'greeting',
      greeting: {
        version: { major: num(q.major), minor: num(q.minor), micro: num(q.micro) },
        package: typeof ver.package === 'string' ? ver.package.trim() : '',
        capabilities: Array.isArray(qmp.capabilities)
          ? qmp.capabilities.filter((c): c is string => typeof c === 'string')
          : [],
      },
      raw: value,
    };
  }
  const idPart = 'id' in value ? { id: value.id } : {};
  if ('return' in value) return { kind: 'return', ...idPart, value: value.return, raw: value };
  if ('error' in value) {
    const err = isObject(value.error) ? value.error : {};
    return {
      kind: 'error',
      ...idPart,
      errorClass: typeof err.class === 'string' ? err.class : 'GenericError',
      desc: typeof err.desc === 'string' ? err.desc : JSON.stringify(value.error),
      raw: value,
    };
  }
  if (typeof value.event === 'string') {
    const ts = isObject(value.timestamp) ? value.timestamp : {};
    return {
      kind: 'event',
      event: {
        event: value.event,
        data: isObject(value.data) ? value.data : {},
        timestamp: {
          seconds: typeof ts.seconds === 'number' ? ts.seconds : -1,
          microseconds: typeof ts.microseconds === 'number' ? ts.microseconds : -1,
        },
      },
      raw: value,
    };
  }
  return { kind: 'unknown', raw: value };
}

/**
 * Incremental QMP parser. Feed it chunks with {@link push}; it returns every complete
 * message in order. Bad JSON becomes a `parse-error` message (never a throw); a line
 * longer than `maxLineBytes` throws a `MonitorProtocolError` (`reason: 'line-too-long'`),
 * after which the parser must not be used again.
 */
export class QmpParser {
  /** The line limit in bytes. */
  readonly maxLineBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private failed = false;

  constructor(options: QmpParserOptions = {}) {
    this.maxLineBytes = Math.max(options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES);
  }

  /** Bytes of an unfinished line held back for the next chunk. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** Consumes a chunk and returns the messages completed by it. */
  push(chunk: Buffer | Uint8Array | string): QmpMessage[] {
    if (this.failed)
      throw new MonitorProtocolError('line-too-long', 'QMP parser used after a line-length error');
    const buf =
      typeof chunk === 'string'
        ? Buffer.from(chunk, 'utf8')
        : Buffer.isBuffer(chunk)
          ? chunk
          : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: QmpMessage[] = [];
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = buf.subarray(start, nl);
      start = nl + 1;
      const total = this.pendingBytes + piece.length;
      this.checkLength(total);
      const line = this.pendingBytes > 0 ? Buffer.concat([...this.pending, piece], total) : piece;
      this.pending = [];
      this.pendingBytes = 0;
      const msg = this.parseLine(line);
      if (msg) out.push(msg);
    }
    if (start < buf.length) {
      const rest = buf.subarray(start);
      this.checkLength(this.pendingBytes + rest.length);
      this.pending.push(rest);
      this.pendingBytes += rest.length;
    }
    return out;
  }

  /** Drops any partial line (after a reconnect, for instance). */
  reset(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.failed = false;
  }

  private checkLength(bytes: number): void {
    if (bytes > this.maxLineBytes) {
      this.failed = true;
      this.pending = [];
      this.pendingBytes = 0;
      throw new MonitorProtocolError(
        'line-too-long',
        `QMP message longer than ${this.maxLineBytes} bytes (at least ${bytes} bytes without a newline)`,
      );
    }
  }

  private parseLine(line: Buffer): QmpMessage | undefined {
    let end = line.length;
    while (end > 0 && (line[end - 1] === 0x0d || line[end - 1] === 0x20 || line[end - 1] === 0x09)) end--;
    let begin = 0;
    while (begin < end && (line[begin] === 0x20 || line[begin] === 0x09 || line[begin] === 0x0d)) begin++;
    if (begin >= end) return undefined;
    const text = line.toString('utf8', begin, end);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return {
        kind: 'parse-error',
        line: text.length > 200 ? `${text.slice(0, 200)}…` : text,
        message: e instanceof Error ? e.message : String(e),
      };
    }
    return classifyQmpMessage(value);
  }
}
