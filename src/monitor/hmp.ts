/**
 * `HmpMonitor`: a client for the human monitor on a raw `-monitor unix:` socket, the
 * way Ganeti's `_CallMonitorCommand` talks to QEMU, but over one persistent connection.
 */

import {
  HmpError,
  type MonitorClosedError,
  MonitorError,
  MonitorProtocolError,
  MonitorTimeoutError,
} from '../errors.js';
import type { MonitorLogger } from '../logger.js';
import { parseVersion, type QemuVersion } from '../qemu/version.js';
import { rejectedWaiter } from './events.js';
import { detectHmpError, type HmpFrame, HmpParser } from './hmp-parser.js';
import { readHandshake, StreamMonitor } from './stream-monitor.js';
import { connectTransport, describeAddress, type MonitorStream } from './transport.js';
import type { EventWaiter, Monitor, MonitorAddress, WaitForEventOptions } from './types.js';

/** Options for {@link HmpMonitor.connect} and {@link HmpMonitor.fromStream}. */
export interface HmpMonitorOptions {
  /** Default per-command timeout in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** How long to wait for the connection, the banner and the first prompt (default 10 000 ms). */
  greetingTimeoutMs?: number;
  /** Optional logger (pino or any {@link MonitorLogger}); every command sent is logged at debug level. */
  logger?: MonitorLogger;
  /**
   * Longest reply accepted, in bytes (default 64 MiB, minimum 16 MiB: the QMP line limit).
   * A longer reply closes the connection with `MonitorProtocolError` (`line-too-long`).
   */
  maxReplyBytes?: number;
  /** How to name this monitor in messages (default: the socket path or `host:port`, else `stream`). */
  description?: string;
}

/** Per-call options for {@link HmpMonitor.command}. */
export interface HmpCommandOptions {
  /** Timeout for this command only, in milliseconds. */
  timeoutMs?: number;
}

interface Waiter {
  line: string;
  resolve: (text: string) => void;
  reject: (err: Error) => void;
  /** False once the caller gave up (timeout): the late reply is then dropped. */
  live: boolean;
}

/**
 * An HMP monitor connection (`protocol: 'hmp'`).
 *
 * * Waits for the banner and the first `(qemu) ` prompt; the version comes from the
 *   banner (`QEMU 7.2.22 monitor - …`) or, failing that, from `info version`.
 * * Runs one command at a time, in call order; each reply is framed on the prompt and
 *   returned without echo, ANSI sequences, `\r` or prompt.
 * * Error text (see `detectHmpError`) rejects with `HmpError(command, text)`.
 * * A line containing `\r` or `\n` is refused with `HmpError` before anything is sent
 *   (it would run a second command).
 * * `execute()` rejects with `MonitorError` (HMP cannot run QMP), and `waitForEvent()`
 *   returns a waiter that is already rejected with `MonitorError`: HMP has no events,
 *   poll `info status` / `info migrate` instead.
 * * A command that times out rejects with `MonitorTimeoutError`; its reply, when it
 *   comes, is recognized by position and dropped, so later commands stay in step.
 */
export class HmpMonitor extends StreamMonitor<HmpFrame, HmpParser> implements Monitor {
  /** Always `'hmp'`. */
  readonly protocol = 'hmp' as const;
  /** The banner text (`QEMU 7.2.22 monitor - type 'help' for more information`). */
  readonly banner: string;
  private qemuVersion: QemuVersion;
  private readonly waiters: Waiter[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    stream: MonitorStream,
    parser: HmpParser,
    banner: string,
    version: QemuVersion,
    options: HmpMonitorOptions,
    description: string,
  ) {
    super('HMP', stream, parser, options, description);
    this.banner = banner;
    this.qemuVersion = version;
  }

  /** The QEMU version (from the banner, else from `info version`). */
  get version(): QemuVersion {
    return this.qemuVersion;
  }

  /**
   * Connects to an HMP socket and waits for the banner and first prompt. Rejects with
   * `MonitorError` naming the socket when it cannot connect or the peer is a QMP socket,
   * and `MonitorTimeoutError` when no prompt comes within `greetingTimeoutMs`.
   */
  static async connect(address: MonitorAddress, options: HmpMonitorOptions = {}): Promise<HmpMonitor> {
    const stream = await connectTransport(address, { timeoutMs: options.greetingTimeoutMs ?? 10_000 });
    return HmpMonitor.fromStream(stream, { description: describeAddress(address), ...options });
  }

  /** Waits for the banner over an already connected stream. On failure the stream is destroyed. */
  static async fromStream(stream: MonitorStream, options: HmpMonitorOptions = {}): Promise<HmpMonitor> {
    const description = options.description ?? 'stream';
    const parser = new HmpParser(
      options.maxReplyBytes === undefined ? {} : { maxReplyBytes: options.maxReplyBytes },
    );
    const timeoutMs = options.greetingTimeoutMs ?? 10_000;
    const banner = await readBanner(stream, parser, timeoutMs, description);
    const monitor = new HmpMonitor(
      stream,
      parser,
      banner.text,
      banner.version ?? { major: 0, minor: 0, micro: 0 },
      options,
      description,
    );
    monitor.attach();
    if (!banner.version) {
      try {
        const text = await monitor.command('info version', { timeoutMs });
        const v = parseInfoVersion(text);
        if (!v)
          throw new MonitorError(
            `cannot read the QEMU version from 'info version' on ${description}: ${text.trim()}`,
          );
        monitor.qemuVersion = v;
      } catch (err) {
        await monitor.close();
        throw err;
      }
    }
    return monitor;
  }

  /**
   * Runs one HMP command line and resolves with its output (no echo, prompt, ANSI or
   * `\r`). Rejects with `HmpError` on error text or a line with `\r`/`\n`,
   * `MonitorTimeoutError` after the timeout, `MonitorClosedError` when closed.
   */
  command(commandLine: string, options: HmpCommandOptions = {}): Promise<string> {
    if (/[\r\n]/.test(commandLine)) {
      return Promise.reject(
        new HmpError(
          commandLine,
          `refused: an HMP command line must not contain \\r or \\n (monitor ${this.description})`,
        ),
      );
    }
    const run = this.queue.then(() => this.runOne(commandLine, options.timeoutMs ?? this.timeoutMs));
    this.queue = run.catch(() => {});
    return run;
  }

  /** Same as {@link command}: the `Monitor` interface spelling. */
  humanCommand(commandLine: string, options?: HmpCommandOptions): Promise<string> {
    return this.command(commandLine, options);
  }

  /** Always rejects with `MonitorError`: QMP commands cannot run over HMP. */
  execute<T = unknown>(command: string, _args?: Record<string, unknown>): Promise<T> {
    return Promise.reject(
      new MonitorError(
        `QMP command '${command}' cannot run over the HMP monitor ${this.description}; use humanCommand()`,
      ),
    );
  }

  /** HMP has no events: returns a waiter already rejected with `MonitorError`. */
  waitForEvent(name: string | readonly string[], _options?: WaitForEventOptions): EventWaiter {
    const label = typeof name === 'string' ? name : name.join('|');
    return rejectedWaiter(
      new MonitorError(
        `HMP monitor ${this.description} has no events (waiting for ${label}); poll 'info status' / 'info migrate' instead`,
      ),
    );
  }

  private async runOne(line: string, timeoutMs: number): Promise<string> {
    if (this.closed) throw this.closedError(line);
    const text = await new Promise<string>((resolve, reject) => {
      const waiter: Waiter = { line, resolve, reject, live: true };
      const timer =
        timeoutMs > 0 && Number.isFinite(timeoutMs)
          ? setTimeout(() => {
              if (!waiter.live) return;
              waiter.live = false;
              reject(
                new MonitorTimeoutError(
                  `HMP command '${line}' on ${this.description} got no reply within ${timeoutMs} ms`,
                ),
              );
            }, timeoutMs)
          : undefined;
      waiter.resolve = (t) => {
        if (timer) clearTimeout(timer);
        resolve(t);
      };
      waiter.reject = (e) => {
        if (timer) clearTimeout(timer);
        reject(e);
      };
      this.waiters.push(waiter);
      this.parser.commandSent(line);
      if (this.debugEnabled)
        this.logger?.debug({ monitor: this.description, command: line }, `HMP send ${line}`);
      this.write(`${line}\n`).catch((err: Error) => {
        if (waiter.live) {
          waiter.live = false;
          waiter.reject(err);
        }
      });
    });
    const err = detectHmpError(text);
    if (err !== undefined) throw new HmpError(line, err);
    return text;
  }

  protected route(f: HmpFrame): void {
    if (f.kind !== 'reply') {
      this.logger?.debug({ monitor: this.description, frame: f }, 'unsolicited HMP output dropped');
      return;
    }
    const w = this.waiters.shift();
    if (!w) return;
    if (!w.live) {
      this.logger?.debug(
        { monitor: this.description, command: w.line },
        'late HMP reply after timeout dropped',
      );
      return;
    }
    w.live = false;
    w.resolve(f.text);
  }

  protected rejectWaiting(closedError: (command: string) => MonitorClosedError): void {
    for (const w of this.waiters.splice(0)) {
      if (!w.live) continue;
      w.live = false;
      w.reject(closedError(w.line));
    }
  }
}

/**
 * Reads the version from `info version` output. QEMU glues the package string to the
 * version (`7.2.22Debian 1:7.2+dfsg-7`), which a word-boundary match would cut to 7.2.
 */
export function parseInfoVersion(text: string): QemuVersion | undefined {
  const m = /^\s*(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (m) return { major: Number(m[1]), minor: Number(m[2]), micro: m[3] === undefined ? 0 : Number(m[3]) };
  return parseVersion(text);
}

function readBanner(
  stream: MonitorStream,
  parser: HmpParser,
  timeoutMs: number,
  description: string,
): Promise<{ text: string; version?: QemuVersion }> {
  return readHandshake<HmpFrame, { text: string; version?: QemuVersion }>(
    stream,
    parser,
    timeoutMs,
    description,
    'HMP banner and prompt',
    (frames: HmpFrame[]) => {
      const f = frames[0];
      if (!f) return undefined;
      if (f.kind === 'qmp-greeting') {
        return {
          error: new MonitorProtocolError(
            'bad-greeting',
            `${description} is a QMP socket, not an HMP monitor`,
          ),
        };
      }
      if (f.kind !== 'banner') return undefined;
      return { done: f.version ? { text: f.text, version: f.version } : { text: f.text } };
    },
  );
}
