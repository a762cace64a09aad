/**
 * `QmpMonitor`: a persistent QMP client. One connection, many commands in flight, each
 * with its own timeout; in-band replies matched in order (as QMP answers them),
 * out-of-band replies matched by id, events routed to listeners.
 */

import {
  type MonitorClosedError,
  MonitorError,
  MonitorProtocolError,
  MonitorTimeoutError,
  OutOfBandUnavailableError,
  QmpArgumentsError,
  QmpError,
} from '../errors.js';
import type { MonitorLogger } from '../logger.js';
import { type QemuVersion, versionAtLeast } from '../qemu/version.js';
import { createEventWaiter, dispatchEvent } from './events.js';
import { humanCommandOverQmp } from './human-command.js';
import { type QmpGreeting, type QmpMessage, QmpParser } from './qmp-parser.js';
import { readHandshake, StreamMonitor, WRITTEN } from './stream-monitor.js';
import { connectTransport, describeAddress, type MonitorStream } from './transport.js';
import type { EventWaiter, Monitor, MonitorAddress, OutOfBandOptions, WaitForEventOptions } from './types.js';

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
  /**
   * Negotiate QMP's `oob` capability when the greeting offers it and QEMU is 3.1 or
   * later (default true). QEMU then keeps reading the next in-band commands while the
   * current one runs (up to 8 queued) instead of stopping after each; replies to in-band
   * commands still come in order. `false` keeps the one-command-at-a-time mode.
   */
  outOfBand?: boolean;
  /**
   * End each command with `\n` (default false). QEMU's JSON parser needs no separator, and
   * it reads monitor input a byte per main-loop turn, a trailing newline included; set it
   * for a peer that reads commands by lines.
   */
  newlineAfterCommand?: boolean;
}

/** Per-call options for {@link QmpMonitor.execute}. */
export interface ExecuteOptions {
  /** Timeout for this command only, in milliseconds. */
  timeoutMs?: number;
}

/** The command object as sent. */
export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

/** Prefix of the ids this client gives its out-of-band commands (in-band ones carry none). */
const OUT_OF_BAND_ID_PREFIX = 'kvmhv-oob-';

/**
 * QEMU's limit of in-band commands queued per monitor (`QMP_REQ_QUEUE_LEN_MAX`): with `oob`
 * on it stops reading the socket while that many wait, and then reads no out-of-band
 * command either.
 */
export const QMP_IN_BAND_QUEUE_LIMIT = 8;

interface Pending {
  command: QmpCommand;
  /** Sequence number for logs (never sent). */
  seq: number;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
  /** Timed out: its reply, when it comes, is dropped. */
  abandoned: boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_GREETING_TIMEOUT_MS = 10_000;
/** Timed-out commands still owed a reply after which the connection is given up. */
const UNANSWERED_LIMIT = 1024;

/**
 * Whether to negotiate `oob`: offered in the greeting (2.12+, QMP sockets served by the
 * monitor I/O thread) and QEMU 3.1+. QEMU 2.12 and 3.0 dropped in-band commands beyond
 * the queue limit (COMMAND_DROPPED) where 3.1 stops reading instead.
 */
function offersOutOfBand(greeting: QmpGreeting): boolean {
  return greeting.capabilities.includes('oob') && versionAtLeast(greeting.version, 3, 1);
}

/**
 * A QMP monitor connection (`protocol: 'qmp'`).
 *
 * * Commands carry no `id` and no trailing newline: QEMU reads its monitor input a byte
 *   per main-loop turn, so every byte costs latency (`bench/setup-wire.ts` measures it). Replies are matched in order, which QMP guarantees for
 *   in-band commands (Ganeti's client matches the same way); many commands can be in
 *   flight at once. A peer must answer in order, as QEMU does.
 * * With `oob` negotiated (QEMU 3.1+, the default where offered) QEMU parses the next
 *   in-band command while the current one runs. In-band commands carry no id, so their
 *   replies, and QEMU's errors for input it could not parse, are matched in order.
 * * {@link executeOutOfBand} sends `exec-oob` with an id (`kvmhv-oob-N`): its reply may
 *   overtake in-band ones and is matched by that id; a reply with an id this client
 *   never sent is dropped (logged).
 * * Error replies reject with `QmpError`; a command without reply in time rejects with
 *   `MonitorTimeoutError` and keeps its place: its late reply is dropped (logged at debug
 *   level). After 1024 such commands the connection is closed (`unanswered`).
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
  /** Commands sent and not yet answered, oldest first; timed-out ones stay, abandoned. */
  private readonly queue: Pending[] = [];
  /** Out-of-band commands not yet answered, by id; timed-out ones stay, abandoned. */
  private readonly outOfBandPending = new Map<string, Pending>();
  private seq = 0;
  private oob = false;
  private readonly terminator: string;

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
    this.terminator = options.newlineAfterCommand ? '\n' : '';
  }

  /** The QEMU version from the greeting. */
  get version(): QemuVersion {
    return this.greeting.version;
  }

  /** True when the `oob` capability was negotiated (see {@link QmpMonitorOptions.outOfBand}). */
  get outOfBand(): boolean {
    return this.oob;
  }

  /** Number of commands waiting for their reply. */
  get pendingCount(): number {
    let n = this.queue.filter((e) => !e.abandoned).length;
    for (const e of this.outOfBandPending.values()) if (!e.abandoned) n++;
    return n;
  }

  /**
   * In-band commands QEMU still owes a reply, timed-out ones included: QEMU queues them,
   * and at {@link QMP_IN_BAND_QUEUE_LIMIT} it stops reading this connection, out-of-band
   * commands included.
   */
  get unansweredInBand(): number {
    return this.queue.length;
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
    const oob = options.outOfBand !== false && offersOutOfBand(greeting);
    try {
      await monitor.execute('qmp_capabilities', oob ? { enable: ['oob'] } : undefined, {
        timeoutMs: greetingTimeoutMs,
      });
      monitor.oob = oob;
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
    return this.send<T>(command, args, options.timeoutMs, false);
  }

  /**
   * Runs a QMP command out of band: `{"exec-oob": command, "id": …}`. QEMU runs it in its
   * monitor I/O thread, ahead of the in-band commands it has queued and while its main
   * loop is busy (a post-copy destination stuck on a dead stream, a long in-band
   * command); only commands QEMU marks `allow-oob` qualify (`migrate-pause`,
   * `migrate-recover`, `x-oob-test`), others are refused with `QmpError` ("does not
   * support OOB"). The reply is matched by its id, so it may overtake in-band replies.
   *
   * Rejects with `OutOfBandUnavailableError`, nothing sent, where `oob` was not
   * negotiated ({@link outOfBand}), unless `fallbackInBand` asks to run it in band then;
   * otherwise like {@link execute}: `QmpError`, `MonitorTimeoutError` after the timeout
   * (its late reply is dropped), `MonitorClosedError`, `QmpArgumentsError`.
   *
   * QEMU stops reading a connection with {@link QMP_IN_BAND_QUEUE_LIMIT} in-band commands
   * queued, so an out-of-band command gets through only while fewer are unanswered
   * ({@link unansweredInBand}); a timeout then says so.
   */
  executeOutOfBand<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: OutOfBandOptions = {},
  ): Promise<T> {
    if (!this.oob) {
      if (options.fallbackInBand) {
        this.logger?.debug(
          { monitor: this.description, command },
          'oob not negotiated: out-of-band command sent in band',
        );
        return this.send<T>(command, args, options.timeoutMs, false);
      }
      return Promise.reject(
        new OutOfBandUnavailableError(
          command,
          `QMP command '${command}' not sent to ${this.description}: out-of-band execution needs the 'oob' capability, which was not negotiated (${this.oobAbsence()})`,
        ),
      );
    }
    return this.send<T>(command, args, options.timeoutMs, true);
  }

  /** Why `oob` is off on this connection, for messages. */
  private oobAbsence(): string {
    if (!this.greeting.capabilities.includes('oob')) return 'the greeting does not offer it';
    if (!versionAtLeast(this.greeting.version, 3, 1)) return 'QEMU before 3.1';
    return 'turned off with outOfBand: false';
  }

  /** Sends one command, in band (no id) or out of band (`exec-oob` with an id). */
  private send<T>(
    command: string,
    args: Record<string, unknown> | undefined,
    timeoutOption: number | undefined,
    outOfBand: boolean,
  ): Promise<T> {
    const seq = ++this.seq;
    const id = outOfBand ? `${OUT_OF_BAND_ID_PREFIX}${seq}` : undefined;
    const cmd: QmpCommand = args === undefined ? { execute: command } : { execute: command, arguments: args };
    // Encode before anything is registered: arguments JSON cannot carry must not leave a
    // command pending that was never sent.
    let encoded: string;
    try {
      encoded = JSON.stringify(
        id === undefined
          ? cmd
          : args === undefined
            ? { 'exec-oob': command, id }
            : { 'exec-oob': command, arguments: args, id },
      );
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
    const timeoutMs = timeoutOption ?? this.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = {
        command: cmd,
        seq,
        resolve: resolve as (v: unknown) => void,
        reject,
        timer: undefined,
        abandoned: false,
      };
      const waiting = () =>
        id === undefined ? this.queue.includes(entry) : this.outOfBandPending.get(id) === entry;
      // QEMU reads nothing more from a connection whose in-band queue is full.
      const queuedInBand = id === undefined ? 0 : this.queue.length;
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          if (entry.abandoned || !waiting()) return;
          entry.abandoned = true;
          const note =
            queuedInBand >= QMP_IN_BAND_QUEUE_LIMIT
              ? ` (sent out of band behind ${queuedInBand} unanswered in-band commands: QEMU stops reading at ${QMP_IN_BAND_QUEUE_LIMIT})`
              : id === undefined
                ? ''
                : ' (sent out of band)';
          reject(
            new MonitorTimeoutError(
              `QMP command '${command}' on ${this.description} got no reply within ${timeoutMs} ms${note}`,
            ),
          );
          let unanswered = this.queue.filter((e) => e.abandoned).length;
          for (const e of this.outOfBandPending.values()) if (e.abandoned) unanswered++;
          if (unanswered >= UNANSWERED_LIMIT) this.giveUp(unanswered);
        }, timeoutMs);
      }
      if (id === undefined) this.queue.push(entry);
      else this.outOfBandPending.set(id, entry);
      if (this.debugEnabled)
        this.logger?.debug(
          { monitor: this.description, seq, command: cmd, ...(id === undefined ? {} : { id }) },
          `QMP send ${command}${id === undefined ? '' : ' out of band'}`,
        );
      if (queuedInBand >= QMP_IN_BAND_QUEUE_LIMIT) {
        this.logger?.warn(
          { monitor: this.description, command, unansweredInBand: queuedInBand },
          'out-of-band command sent while QEMU owes replies to a full in-band queue: it may not read it',
        );
      }
      const written = this.write(encoded + this.terminator);
      // Taken by the socket at once (the common case): nothing can fail later.
      if (written === WRITTEN) return;
      written.catch((err: unknown) => {
        // Never sent: no reply will come for it.
        if (!waiting()) return;
        if (id === undefined) this.queue.splice(this.queue.indexOf(entry), 1);
        else this.outOfBandPending.delete(id);
        if (entry.timer) clearTimeout(entry.timer);
        if (!entry.abandoned) reject(err instanceof Error ? err : new MonitorError(String(err)));
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
        // Only out-of-band commands carry an id: their replies may overtake in-band ones.
        if (m.id !== undefined) {
          this.routeOutOfBand(m);
          return;
        }
        // In order: the oldest command sent is the one answered (QEMU's errors for input
        // it could not parse included; they carry no id either).
        const entry = this.queue.shift();
        if (!entry) {
          this.logger?.warn(
            { monitor: this.description, message: m.raw },
            'QMP reply with no command waiting dropped',
          );
          return;
        }
        if (entry.timer) clearTimeout(entry.timer);
        if (entry.abandoned) {
          this.logger?.debug(
            { monitor: this.description, seq: entry.seq, command: entry.command.execute },
            'late QMP reply after timeout dropped',
          );
          return;
        }
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

  /** A reply with an id: the out-of-band command it answers, else dropped (logged). */
  private routeOutOfBand(m: Extract<QmpMessage, { kind: 'return' | 'error' }>): void {
    const id = typeof m.id === 'string' ? m.id : undefined;
    const entry = id === undefined ? undefined : this.outOfBandPending.get(id);
    if (!entry || id === undefined) {
      this.logger?.warn(
        { monitor: this.description, message: m.raw },
        'QMP reply with an id no command was sent with dropped',
      );
      return;
    }
    this.outOfBandPending.delete(id);
    if (entry.timer) clearTimeout(entry.timer);
    if (entry.abandoned) {
      this.logger?.debug(
        { monitor: this.description, seq: entry.seq, command: entry.command.execute, id },
        'late out-of-band QMP reply after timeout dropped',
      );
      return;
    }
    if (m.kind === 'return') entry.resolve(m.value);
    else entry.reject(new QmpError(m.errorClass, m.desc, entry.command));
  }

  /** QEMU left too many commands unanswered on this connection: close it (`unanswered`). */
  private giveUp(unanswered: number): void {
    const error = new MonitorProtocolError(
      'unanswered',
      `QMP monitor ${this.description} left ${unanswered} commands unanswered after their timeouts; connection closed`,
    );
    this.logger?.warn({ monitor: this.description, unanswered }, error.message);
    this.finish(error, 'commands unanswered');
    this.stream.destroy();
  }

  private destroy(): void {
    this.finish(undefined, 'handshake failed');
    this.stream.destroy();
  }

  protected rejectWaiting(closedError: (command: string) => MonitorClosedError): void {
    const all = [...this.queue.splice(0), ...this.outOfBandPending.values()];
    this.outOfBandPending.clear();
    for (const entry of all) {
      if (entry.timer) clearTimeout(entry.timer);
      if (!entry.abandoned) entry.reject(closedError(entry.command.execute));
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
