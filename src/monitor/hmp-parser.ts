/**
 * Pure HMP framing: bytes in, banner and command outputs out, no I/O.
 *
 * On a raw `-monitor unix:` socket QEMU prints a banner, then the `(qemu) ` prompt. Its
 * readline layer echoes every keystroke of a command with ANSI redraw sequences
 * (`ESC[K`, `ESC[D`), then prints the command's output as `\r\n`-terminated lines and a
 * new prompt. Replies are framed on the prompt; the echo line, ANSI sequences and `\r`
 * are removed.
 */
import { StringDecoder } from 'node:string_decoder';
import { MonitorProtocolError } from '../errors.js';
import { parseVersion, type QemuVersion } from '../qemu/version.js';

/** The HMP prompt. */
export const HMP_PROMPT = '(qemu) ';

/** ANSI escape sequences QEMU's readline prints (`ESC[K`, `ESC[D`, `ESC[1;2H`, …). */
export const ANSI_ESCAPE_RE = /\x1b\[[0-9;]*[A-Za-z]/g;

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
  /** Longest reply accepted, in characters (default 64 MiB). */
  maxReplyChars?: number;
}

/**
 * Incremental HMP parser. Call {@link commandSent} for each command line written, in
 * order, then {@link push} every received chunk; each `(qemu) ` prompt completes a frame.
 */
export class HmpParser {
  private readonly decoder = new StringDecoder('utf8');
  private buffer = '';
  private bannerSeen = false;
  private readonly expected: string[] = [];
  private readonly maxReplyChars: number;

  constructor(options: HmpParserOptions = {}) {
    this.maxReplyChars = options.maxReplyChars ?? 64 * 1024 * 1024;
  }

  /** Records that `commandLine` was written, so the next prompt frames its reply. */
  commandSent(commandLine: string): void {
    this.expected.push(commandLine);
  }

  /** Number of commands written whose reply has not been framed yet. */
  get outstanding(): number {
    return this.expected.length;
  }

  /** Consumes a chunk and returns the frames completed by it. */
  push(chunk: Buffer | string): HmpFrame[] {
    this.buffer += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const out: HmpFrame[] = [];
    if (!this.bannerSeen && /^\s*\{\s*"QMP"/.test(this.buffer)) {
      this.bannerSeen = true;
      out.push({ kind: 'qmp-greeting', text: this.buffer });
      this.buffer = '';
      return out;
    }
    for (;;) {
      const at = this.findPrompt();
      if (at === -1) break;
      const raw = this.buffer.slice(0, at);
      this.buffer = this.buffer.slice(at + HMP_PROMPT.length);
      out.push(this.frame(raw));
    }
    if (this.buffer.length > this.maxReplyChars) {
      this.buffer = '';
      throw new MonitorProtocolError(
        'line-too-long',
        `HMP reply longer than ${this.maxReplyChars} characters without a prompt`,
      );
    }
    return out;
  }

  private findPrompt(): number {
    if (this.buffer.startsWith(HMP_PROMPT)) return 0;
    const i = this.buffer.indexOf(`\n${HMP_PROMPT}`);
    return i === -1 ? -1 : i + 1;
  }

  private frame(raw: string): HmpFrame {
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
