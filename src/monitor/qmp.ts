/**
 * `QmpMonitor`: a persistent QMP client. One connection, many commands in flight, each
 * with its own id and timeout; replies matched by id, events routed to listeners.
 */

import {
  type MonitorClosedError,
  MonitorError,
  MonitorProtocolError,
  MonitorTimeoutError,
  QmpArgumentsError,
  QmpError,
} from '../errors.js';
import type { MonitorLogger } from '../logger.js';
import type { QemuVersion } from '../qemu/version.js';
import { createEventWaiter, dispatchEvent } from './events.js';
import { humanCommandOverQmp } from './human-command.js';
import { type QmpGreeting, type QmpMessage, QmpParser } from './qmp-parser.js';
import { readHandshake, StreamMonitor } from './stream-monitor.js';
import { connectTransport, describeAddress, type MonitorStream } from './transport.js';
import type { EventWaiter, Monitor, MonitorAddress, WaitForEventOptions } from './types.js';

/** Options for {@link QmpMonitor.connect} and {@link QmpMonitor.fromStream}. */
export interface QmpMonitorOptions {
  /** Default per-command timeout in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** How long to wait for the connection and the greeting (default 10 000 ms). */
  greetingTimeoutMs?: number;
  /** Optional logger (pino or any {@link MonitorLogger}); every command sent is logged at debug level. */
  logger?: MonitorLogger;
  /** Longest QMP line accepted (default 64 MiB, at least 16 MiB). */
  maxLineBytes?: number;
  /** How to name this monitor in messages (default: the socket path or `host:port`, else `stream`). */
  description?: string;
}

/** Per-call options for {@link QmpMonitor.execute}. */
export interface ExecuteOptions {
  /** Timeout for this command only, in milliseconds. */
  timeoutMs?: number;
}

/** The command object as sent, without its id. */
export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

interface Pending {
  command: QmpCommand;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_GREETING_TIMEOUT_MS = 10_000;
const ID_PREFIX = 'kvmhv-';
const LATE_IDS_KEPT = 1024;

/**
 * A QMP monitor connection (`protocol: 'qmp'`).
 *
 * * Commands get unique ids (`kvmhv-1`, `kvmhv-2`, …); replies are matched by id, not by
 *   order, and many commands can be in flight at once.
 * * Error replies reject with `QmpError`; a command without reply in time rejects with
 *   `MonitorTimeoutError` and its late reply is dropped (logged at debug level).
 * * An error reply *without* id is QEMU's answer to input it could not parse. Because
 *   QEMU answers in-band commands strictly in order and this client never sends a
 *   command without id, it belongs to the oldest command still waiting: that command
 *   rejects with `QmpError` and the connection stays up (`qemu.qmp` disconnects instead).
 * * On EOF, reset or {@link close}, every pending command rejects with
 *   `MonitorClosedError` and `'close'` is emitted once.
 * * Events go to `'event'` listeners; a throwing listener is logged and cannot block
 *   replies.
 */
export class QmpMonitor extends StreamMonitor<QmpMessage, QmpParser> implements Monitor {
  /** Always `'qmp'`. */
  readonly protocol = 'qmp' as const;
  /** The parsed greeting: version, package and capabilities. */
  readonly greeting: QmpGreeting;
  private readonly pending = new Map<string, Pending>();
  private readonly lateIds = new Set<string>();
  private nextId = 1;

  private constructor(
    stream: MonitorStream,
    parser: QmpParser,
    greeting: QmpGreeting,
    options: QmpMonitorOptions,
    description: string,
  ) {
    super(
      'QMP',
      stream,
      parser,
      { ...options, timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS },
      description,
    );
    this.greeting = greeting;
  }

  /** The QEMU version from the greeting. */
  get version(): QemuVersion {
    return this.greeting.version;
  }

  /** Number of commands waiting for their reply. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Connects to a QMP socket, reads the greeting and negotiates capabilities
   * (`qmp_capabilities`). Rejects with `MonitorError` naming the socket when it cannot
   * connect or the peer is not a QMP server, and `MonitorTimeoutError` when no greeting
   * arrives within `greetingTimeoutMs`.
   */
  static async connect(address: MonitorAddress, options: QmpMonitorOptions = {}): Promise<QmpMonitor> {
    const stream = await connectTransport(address, {
      timeoutMs: options.greetingTimeoutMs ?? DEFAULT_GREETING_TIMEOUT_MS,
    });
    return QmpMonitor.fromStream(stream, { description: describeAddress(address), ...options });
  }

  /**
   * Runs the QMP handshake over an already connected stream (a socket, an in-memory
   * duplex, a proxy). On failure the stream is destroyed.
   */
  static async fromStream(stream: MonitorStream, options: QmpMonitorOptions = {}): Promise<QmpMonitor> {
    const description = options.description ?? 'stream';
    const parser = new QmpParser(
      options.maxLineBytes === undefined ? {} : { maxLineBytes: options.maxLineBytes },
    );
    const greetingTimeoutMs = options.greetingTimeoutMs ?? DEFAULT_GREETING_TIMEOUT_MS;
    const { greeting, rest } = await readGreeting(stream, parser, greetingTimeoutMs, description);
    const monitor = new QmpMonitor(stream, parser, greeting, options, description);
    monitor.attach();
    for (const m of rest) monitor.route(m);
    try {
      await monitor.execute('qmp_capabilities', undefined, { timeoutMs: greetingTimeoutMs });
    } catch (err) {
      monitor.destroy();
      if (err instanceof QmpError) {
        throw new MonitorError(`QMP capabilities negotiation failed on ${description}: ${err.desc}`, {
          cause: err,
        });
      }
      throw err;
    }
    return monitor;
  }

  /**
   * Runs a QMP command and resolves with its `return` value. Rejects with `QmpError`
   * (class, desc, command) on an error reply, `MonitorTimeoutError` after the timeout,
   * `MonitorClosedError` when the connection is or gets closed, and at once with
   * `QmpArgumentsError` (nothing sent, nothing pending) when `args` cannot be encoded as
   * JSON (a `BigInt`, a cycle).
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: ExecuteOptions = {},
  ): Promise<T> {
    const cmd: QmpCommand = args === undefined ? { execute: command } : { execute: command, arguments: args };
    // Encode before anything is registered: arguments JSON cannot carry must not leave a
    // command pending that was never sent.
    let encoded: string;
    try {
      encoded = JSON.stringify(cmd);
    } catch (err) {
      return Promise.reject(
        new QmpArgumentsError(
          command,
          `QMP command '${command}' not sent to ${this.description}: its arguments cannot be encoded as JSON (${err instanceof Error ? err.message : String(err)})`,
          { cause: err },
        ),
      );
    }
    if (this.closed) return Promise.reject(this.closedError(command));
    const id = `${ID_PREFIX}${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = {
        command: cmd,
        resolve: resolve as (v: unknown) => void,
        reject,
        timer: undefined,
      };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          if (!this.pending.delete(id)) return;
          this.rememberLate(id);
          reject(
            new MonitorTimeoutError(
              `QMP command '${command}' on ${this.description} got no reply within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
      }
      this.pending.set(id, entry);
      // `encoded` is a JSON object: the id goes in before its closing brace.
      const line = `${encoded.slice(0, -1)},"id":${JSON.stringify(id)}}\n`;
      this.logger?.debug({ monitor: this.description, id, command: cmd }, `QMP send ${command}`);
      this.write(line).catch((err: unknown) => {
        if (this.pending.delete(id)) {
          if (entry.timer) clearTimeout(entry.timer);
          reject(err instanceof Error ? err : new MonitorError(String(err)));
        }
      });
    });
  }

  /**
   * Runs an HMP command line through `human-monitor-command` and resolves with its text
   * (`\r` removed). HMP errors come back inside a successful QMP reply; they are found
   * with `detectHmpError` and reject with `HmpError`; a reply that is not a string rejects
   * with `UnrecognizedOutputError`.
   */
  humanCommand(commandLine: string, options: ExecuteOptions = {}): Promise<string> {
    return humanCommandOverQmp((command, args) => this.execute(command, args, options), commandLine);
  }

  /** Subscribes at once and waits for the first matching event (see `Monitor.waitForEvent`). */
  waitForEvent(name: string | readonly string[], options?: WaitForEventOptions): EventWaiter {
    return createEventWaiter(this, name, options, `QMP monitor ${this.description}`);
  }

  protected route(m: QmpMessage): void {
    switch (m.kind) {
      case 'event':
        dispatchEvent(this, m.event, this.logger);
        return;
      case 'return':
      case 'error': {
        if (!('id' in m)) {
          if (m.kind === 'error') this.serverParseError(m.errorClass, m.desc);
          else
            this.logger?.warn({ monitor: this.description, message: m.raw }, 'QMP reply without id dropped');
          return;
        }
        const id = typeof m.id === 'string' ? m.id : JSON.stringify(m.id);
        const entry = this.pending.get(id);
        if (!entry) {
          if (this.lateIds.delete(id)) {
            this.logger?.debug({ monitor: this.description, id }, 'late QMP reply after timeout dropped');
          } else {
            this.logger?.warn({ monitor: this.description, id }, 'QMP reply with unknown id dropped');
          }
          return;
        }
        this.pending.delete(id);
        if (entry.timer) clearTimeout(entry.timer);
        if (m.kind === 'return') entry.resolve(m.value);
        else entry.reject(new QmpError(m.errorClass, m.desc, entry.command));
        return;
      }
      case 'greeting':
        this.logger?.debug({ monitor: this.description }, 'extra QMP greeting ignored');
        return;
      case 'parse-error':
        this.logger?.warn(
          { monitor: this.description, line: m.line, error: m.message },
          'unparsable QMP line dropped',
        );
        return;
      default:
        this.logger?.warn({ monitor: this.description, message: m.raw }, 'unknown QMP message dropped');
    }
  }

  private serverParseError(errorClass: string, desc: string): void {
    const first = this.pending.entries().next();
    if (first.done) {
      this.logger?.warn(
        { monitor: this.description, errorClass, desc },
        'QMP error without id and no command waiting',
      );
      return;
    }
    const [id, entry] = first.value;
    this.pending.delete(id);
    if (entry.timer) clearTimeout(entry.timer);
    this.logger?.warn(
      { monitor: this.description, id, errorClass, desc },
      'QMP error without id: QEMU could not parse a command',
    );
    entry.reject(new QmpError(errorClass, desc, entry.command));
  }

  private rememberLate(id: string): void {
    this.lateIds.add(id);
    if (this.lateIds.size > LATE_IDS_KEPT) {
      const oldest = this.lateIds.values().next();
      if (!oldest.done) this.lateIds.delete(oldest.value);
    }
  }

  private destroy(): void {
    this.finish(undefined, 'handshake failed');
    this.stream.destroy();
  }

  protected rejectWaiting(closedError: (command: string) => MonitorClosedError): void {
    for (const [id, entry] of this.pending) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(closedError(entry.command.execute));
      this.pending.delete(id);
    }
  }
}

function readGreeting(
  stream: MonitorStream,
  parser: QmpParser,
  timeoutMs: number,
  description: string,
): Promise<{ greeting: QmpGreeting; rest: QmpMessage[] }> {
  let seen = '';
  const notQmp = () =>
    new MonitorProtocolError(
      'bad-greeting',
      `${description} is not a QMP monitor (wrong server greeting): ${JSON.stringify(seen.slice(0, 120))}`,
    );
  return readHandshake<QmpMessage, { greeting: QmpGreeting; rest: QmpMessage[] }>(
    stream,
    parser,
    timeoutMs,
    description,
    'QMP greeting',
    (messages: QmpMessage[], chunk) => {
      if (seen.length < 200) seen += chunk.toString('utf8', 0, Math.min(chunk.length, 200));
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i]!;
        if (m.kind === 'event') continue;
        if (m.kind === 'greeting') return { done: { greeting: m.greeting, rest: messages.slice(i + 1) } };
        return { error: notQmp() };
      }
      // A peer that is not speaking JSON (an HMP banner, say) never ends a line QMP can use.
      if (parser.bufferedBytes > 0 && !/^\s*\{/.test(seen)) return { error: notQmp() };
      return undefined;
    },
  );
}
