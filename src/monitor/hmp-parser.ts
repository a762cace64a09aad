/**
 * Pure HMP framing: bytes in, banner and command outputs out, no I/O.
 *
 * On a raw `-monitor unix:` socket QEMU prints a banner, then the `(qemu) ` prompt. Its
 * readline layer echoes every keystroke of a command with ANSI redraw sequences
 * (`ESC[K`, `ESC[D`), then prints the command's output as `\r\n`-terminated lines and a
 * new prompt. Replies are framed on the prompt; the echo line, ANSI sequences and `\r`
 * are removed.
 */
import { MonitorProtocolError } from '../errors.js';
import { parseVersion, type QemuVersion } from '../qemu/version.js';
import { DEFAULT_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES } from './qmp-parser.js';

/** The HMP prompt. */
const HMP_PROMPT = '(qemu) ';

/** ANSI escape sequences QEMU's readline prints (`ESC[K`, `ESC[D`, `ESC[1;2H`, …). */
const ANSI_ESCAPE_RE = /\x1b\[[0-9;]*[A-Za-z]/g;

const BANNER_RE = /QEMU (\d+\.\d+(?:\.\d+)?)\S* monitor - type 'help' for more information/;

/** Parses the HMP banner; returns the version it names, or `undefined` if `text` is not one. */
export function parseHmpBanner(text: string): QemuVersion | undefined {
  const m = BANNER_RE.exec(text);
  return m?.[1] === undefined ? undefined : parseVersion(m[1]);
}

/** Removes ANSI escape sequences and `\r` from HMP text. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI_ESCAPE_RE, '').replace(/\r/g, '');
}

/**
 * Removes the readline echo of `commandLine` from the start of an HMP reply (already
 * stripped of ANSI sequences and `\r`). The echo is the first line when it ends with the
 * command line; a reply without echo comes back unchanged.
 */
export function stripHmpEcho(text: string, commandLine: string): string {
  const nl = text.indexOf('\n');
  const first = nl === -1 ? text : text.slice(0, nl);
  if (commandLine === '' ? first.trim() === '' : first.trimEnd().endsWith(commandLine.trim())) {
    return nl === -1 ? '' : text.slice(nl + 1);
  }
  return text;
}

/** One frame read from an HMP stream. */
export type HmpFrame =
  /** Text before the first prompt; `version` is set when it is QEMU's banner. */
  | { kind: 'banner'; text: string; version?: QemuVersion }
  /** Output of `command` (echo, prompt, ANSI and `\r` removed). */
  | { kind: 'reply'; command: string; text: string }
  /** A prompt nobody asked for (text printed asynchronously, or a reply after a reset). */
  | { kind: 'unsolicited'; text: string }
  /** The peer sent a QMP greeting: this is a QMP socket, not HMP. */
  | { kind: 'qmp-greeting'; text: string };

/** Options for {@link HmpParser}. */
export interface HmpParserOptions {
  /**
   * Longest reply (or banner) accepted, in bytes, prompt excluded: the same default
   * (64 MiB) and minimum (16 MiB) as the QMP line limit, see `QmpParserOptions.maxLineBytes`.
   */
  maxReplyBytes?: number;
}

/** `\n(qemu) `: a prompt starts a line. A frame starts as if right after a `\n`. */
const PROMPT_AT_LINE_START = Buffer.from(`\n${HMP_PROMPT}`, 'latin1');
/** Enough of the stream's start to tell a QMP greeting from an HMP banner. */
const GREETING_PROBE_BYTES = 64;
const QMP_GREETING_RE = /^\s*\{\s*"QMP"/;
/** What the start of a QMP greeting can look like before its `"QMP"` has fully arrived. */
const QMP_GREETING_PREFIX_RE = /^\s*(?:\{\s*(?:"(?:Q(?:M(?:P)?)?)?)?)?$/;

/**
 * Incremental HMP parser. Call {@link commandSent} for each command line written, in
 * order, then {@link push} every received chunk; each `(qemu) ` prompt completes a frame.
 *
 * Work and memory are linear in the input: each byte is scanned once for the prompt
 * (a prompt split across chunks is carried over as a partial match), chunks are kept as
 * they came and joined once per frame. A frame longer than `maxReplyBytes` throws a
 * `MonitorProtocolError` (`reason: 'line-too-long'`) as soon as the limit is passed,
 * after which the parser must not be used again.
 */
export class HmpParser {
  /** The reply limit in bytes. */
  readonly maxReplyBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes of `\n(qemu) ` matched at the end of what was read (1: a frame's start). */
  private promptMatched = 1;
  private bannerSeen = false;
  private greetingChecked = false;
  private failed = false;
  private readonly expected: string[] = [];

  constructor(options: HmpParserOptions = {}) {
    this.maxReplyBytes = Math.max(options.maxReplyBytes ?? DEFAULT_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES);
  }

  /** Records that `commandLine` was written, so the next prompt frames its reply. */
  commandSent(commandLine: string): void {
    this.expected.push(commandLine);
  }

  /** Number of commands written whose reply has not been framed yet. */
  get outstanding(): number {
    return this.expected.length;
  }

  /** Bytes of an unfinished frame held back for the next chunk. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** Consumes a chunk and returns the frames completed by it. */
  push(chunk: Buffer | Uint8Array | string): HmpFrame[] {
    if (this.failed) {
      throw new MonitorProtocolError('line-too-long', 'HMP parser used after a reply-length error');
    }
    const buf =
      typeof chunk === 'string'
        ? Buffer.from(chunk, 'utf8')
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: HmpFrame[] = [];
    if (!this.greetingChecked && this.isQmpGreeting(buf)) {
      this.bannerSeen = true;
      this.greetingChecked = true;
      out.push({ kind: 'qmp-greeting', text: this.take(buf, 0, buf.length, 0) });
      return out;
    }
    let frameStart = 0;
    let at = 0;
    for (;;) {
      const end = this.findPromptEnd(buf, at);
      if (end === -1) break;
      this.checkLength(this.pendingBytes + end - frameStart - HMP_PROMPT.length);
      out.push(this.frame(this.take(buf, frameStart, end, HMP_PROMPT.length)));
      frameStart = end;
      at = end;
    }
    if (frameStart < buf.length) {
      const rest = buf.subarray(frameStart);
      // The prompt's first bytes may already be here; the limit applies to the reply alone.
      this.checkLength(
        this.pendingBytes + rest.length - (this.promptMatched > 1 ? this.promptMatched - 1 : 0),
      );
      this.pending.push(rest);
      this.pendingBytes += rest.length;
    }
    return out;
  }

  /**
   * Returns the index in `buf` just past the next complete prompt, or -1, updating the
   * partial match carried between chunks. Only the bytes from `from` on are scanned.
   */
  private findPromptEnd(buf: Buffer, from: number): number {
    let at = from;
    if (this.promptMatched > 0) {
      // Finish a match begun in an earlier chunk (or at the start of a frame).
      const need = PROMPT_AT_LINE_START.length - this.promptMatched;
      const have = Math.min(need, buf.length - at);
      if (
        buf.compare(PROMPT_AT_LINE_START, this.promptMatched, this.promptMatched + have, at, at + have) === 0
      ) {
        if (have < need) {
          this.promptMatched += have;
          return -1;
        }
        this.promptMatched = 1;
        return at + need;
      }
      // The matched bytes hold no `\n`, so no other prompt can start inside them.
      this.promptMatched = 0;
    }
    const found = buf.indexOf(PROMPT_AT_LINE_START, at);
    if (found !== -1) {
      this.promptMatched = 1;
      return found + PROMPT_AT_LINE_START.length;
    }
    // Carry a prompt cut by the chunk's end: the longest tail that begins one.
    at = Math.max(at, buf.length - (PROMPT_AT_LINE_START.length - 1));
    for (; at < buf.length; at++) {
      const tail = buf.length - at;
      if (buf.compare(PROMPT_AT_LINE_START, 0, tail, at, buf.length) === 0) {
        this.promptMatched = tail;
        return -1;
      }
    }
    return -1;
  }

  /** Joins the held chunks and `buf[from, to)`, drops `dropTail` bytes, and decodes. */
  private take(buf: Buffer, from: number, to: number, dropTail: number): string {
    const piece = buf.subarray(from, to);
    const whole = this.pendingBytes > 0 ? Buffer.concat([...this.pending, piece]) : piece;
    this.pending = [];
    this.pendingBytes = 0;
    return whole.toString('utf8', 0, whole.length - dropTail);
  }

  /** Decides once, from the stream's first bytes, whether the peer greeted in QMP. */
  private isQmpGreeting(buf: Buffer): boolean {
    const seen = this.pendingBytes + buf.length;
    const head = Buffer.concat([...this.pending, buf.subarray(0, GREETING_PROBE_BYTES)]).toString(
      'latin1',
      0,
      Math.min(seen, GREETING_PROBE_BYTES),
    );
    if (QMP_GREETING_RE.test(head)) return true;
    if (!QMP_GREETING_PREFIX_RE.test(head) || seen >= GREETING_PROBE_BYTES) this.greetingChecked = true;
    return false;
  }

  private checkLength(bytes: number): void {
    if (bytes > this.maxReplyBytes) {
      this.failed = true;
      this.pending = [];
      this.pendingBytes = 0;
      throw new MonitorProtocolError(
        'line-too-long',
        `HMP reply longer than ${this.maxReplyBytes} bytes (at least ${bytes} bytes without a prompt)`,
      );
    }
  }

  private frame(raw: string): HmpFrame {
    this.greetingChecked = true;
    const clean = stripAnsi(raw);
    if (!this.bannerSeen) {
      this.bannerSeen = true;
      const version = parseHmpBanner(clean);
      const text = clean.trim();
      return version ? { kind: 'banner', text, version } : { kind: 'banner', text };
    }
    const command = this.expected.shift();
    if (command === undefined) return { kind: 'unsolicited', text: clean };
    return { kind: 'reply', command, text: stripHmpEcho(clean, command) };
  }
}

const HMP_ERROR_PATTERNS: readonly RegExp[] = [
  /^unknown command:/i,
  /^Error:/,
  /^Parameter '[^']*' expects /,
  /^Invalid parameter/i,
  /^invalid .*\bvalue\b/i,
  /^invalid (?:size|number|char|integer|address)\b/i,
  /^Could not /,
  /^Migration is disabled/i,
  /migration already in progress/i,
  /^There's a migration process in progress/,
  /^Usage:/i,
  /^Unknown /,
  /^Expected '/,
  /^Try "help /,
  /^[\w-]+: (?:[\w ]+ )?expected\b/,
  /^unexpected /i,
  /^Missing /,
];

/**
 * Recognizes HMP error text. HMP has no error channel: errors are printed like any
 * output, and `human-monitor-command` returns them in a *successful* QMP reply. Returns
 * the trimmed error text when any line looks like one of QEMU's error forms
 * (`unknown command: …`, `Error: …`, `Parameter '…' expects …`, `Invalid parameter …`,
 * `invalid … value`, `invalid size`, `Could not …`, `Migration is disabled`, `migration already in
 * progress`, `There's a migration process in progress`, `Usage: …`, `Unknown …`,
 * `Expected 'on' or 'off'`, `Try "help …"`, `cmd: string expected`), else `undefined`.
 */
export function detectHmpError(text: string): string | undefined {
  const clean = stripAnsi(text);
  for (const line of clean.split('\n')) {
    const l = line.trim();
    if (l !== '' && HMP_ERROR_PATTERNS.some((re) => re.test(l))) return clean.trim();
  }
  return undefined;
}
