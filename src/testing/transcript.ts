/**
 * Monitor transcripts: a conversation with QEMU, command by command, kept as JSON and
 * replayed in unit tests (libvirt's `qemumonitortestutils` model).
 *
 * - {@link RecordingMonitor} wraps a real monitor and records what was sent and what
 *   QEMU answered, so a session against a real QEMU becomes a fixture.
 * - {@link TranscriptMonitor} replays a transcript: each command sent must be the next
 *   one in the transcript (else `TranscriptMismatchError`), and gets the recorded answer.
 *   So a replay asserts the exact commands, their order and their arguments, and feeds
 *   the code the exact replies of that QEMU version.
 */
import { isDeepStrictEqual } from 'node:util';
import { HmpError, HypervisorError, MonitorError, QmpError } from '../errors.js';
import { createEventWaiter, MonitorEmitter, rejectedWaiter } from '../monitor/events.js';
import { detectHmpError } from '../monitor/hmp-parser.js';
import { humanCommandOverQmp } from '../monitor/human-command.js';
import type {
  EventWaiter,
  Monitor,
  MonitorEvent,
  MonitorProtocol,
  WaitForEventOptions,
} from '../monitor/types.js';
import { formatVersion, parseVersion, type QemuVersion } from '../qemu/version.js';

/** What was sent: one HMP line, or a QMP command. */
export type TranscriptSend = string | { execute: string; arguments?: Record<string, unknown> };

/** What QEMU answered: HMP text, a QMP `return` or a QMP `error`. */
export type TranscriptReply =
  | { text: string }
  | { return: unknown }
  | { error: { class: string; desc: string } };

/** One command and its answer. */
export interface TranscriptExchange {
  send: TranscriptSend;
  reply: TranscriptReply;
  /** Events QEMU sent with this reply (replayed to `'event'` listeners after it). */
  events?: { event: string; data?: Record<string, unknown> }[];
}

/** A whole conversation with one monitor. */
export interface Transcript {
  /** QEMU version, e.g. `1.7.0`. */
  qemu: string;
  protocol: MonitorProtocol;
  /** What the conversation does. */
  description: string;
  /** Where it comes from: recorded from a real QEMU, or written from QEMU's sources. */
  origin: string;
  exchanges: TranscriptExchange[];
}

/** A replayed conversation went another way than the transcript. */
export class TranscriptMismatchError extends HypervisorError {
  override name = 'TranscriptMismatchError';
}

const show = (s: TranscriptSend | undefined) => (s === undefined ? 'nothing' : JSON.stringify(s));

/** Replays a {@link Transcript} as a {@link Monitor}. */
export class TranscriptMonitor extends MonitorEmitter implements Monitor {
  readonly protocol: MonitorProtocol;
  readonly version: QemuVersion;
  private readonly exchanges: TranscriptExchange[];
  private position = 0;
  private isClosed = false;

  constructor(transcript: Transcript) {
    super();
    const version = parseVersion(transcript.qemu);
    if (!version) throw new TranscriptMismatchError(`transcript has no QEMU version: '${transcript.qemu}'`);
    this.protocol = transcript.protocol;
    this.version = version;
    this.exchanges = transcript.exchanges;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** How many exchanges were replayed so far. */
  get replayed(): number {
    return this.position;
  }

  /** Throws unless every exchange of the transcript was replayed. */
  assertComplete(): void {
    if (this.position < this.exchanges.length) {
      throw new TranscriptMismatchError(
        `transcript not finished: ${this.exchanges.length - this.position} exchange(s) left, next ${show(this.exchanges[this.position]?.send)}`,
      );
    }
  }

  private next(sent: TranscriptSend): TranscriptExchange {
    if (this.isClosed) throw new MonitorError('transcript monitor is closed');
    const ex = this.exchanges[this.position];
    if (!ex || !isDeepStrictEqual(ex.send, sent)) {
      throw new TranscriptMismatchError(
        `QEMU ${formatVersion(this.version)} transcript, exchange ${this.position + 1}: expected ${show(ex?.send)}, got ${show(sent)}`,
      );
    }
    this.position++;
    return ex;
  }

  private replayEvents(ex: TranscriptExchange): void {
    for (const e of ex.events ?? []) {
      const ev: MonitorEvent = {
        event: e.event,
        data: e.data ?? {},
        timestamp: { seconds: -1, microseconds: -1 },
      };
      queueMicrotask(() => this.emit('event', ev));
    }
  }

  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.protocol === 'hmp')
      throw new MonitorError(`no QMP over an HMP transcript (command '${command}')`);
    const sent: TranscriptSend =
      args === undefined ? { execute: command } : { execute: command, arguments: args };
    const ex = this.next(sent);
    this.replayEvents(ex);
    if ('error' in ex.reply) throw new QmpError(ex.reply.error.class, ex.reply.error.desc, sent);
    if ('return' in ex.reply) return ex.reply.return as T;
    throw new TranscriptMismatchError(`exchange for ${show(sent)} has no QMP reply`);
  }

  async humanCommand(commandLine: string): Promise<string> {
    if (this.protocol === 'qmp') {
      return humanCommandOverQmp((command, args) => this.execute(command, args), commandLine);
    }
    const ex = this.next(commandLine);
    if (!('text' in ex.reply))
      throw new TranscriptMismatchError(`exchange for '${commandLine}' has no HMP text`);
    const err = detectHmpError(ex.reply.text);
    if (err !== undefined) throw new HmpError(commandLine, err);
    return ex.reply.text;
  }

  waitForEvent(name: string | readonly string[], options?: WaitForEventOptions): EventWaiter {
    if (this.protocol === 'hmp') return rejectedWaiter(new MonitorError('HMP transcripts have no events'));
    return createEventWaiter(this, name, options, 'transcript monitor');
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    this.emit('close');
  }
}

/** Wraps a real monitor and records every exchange into {@link transcript}. */
export class RecordingMonitor extends MonitorEmitter implements Monitor {
  readonly transcript: Transcript;
  private readonly inner: Monitor;
  private pendingEvents: { event: string; data: Record<string, unknown> }[] = [];

  constructor(inner: Monitor, description: string, origin: string) {
    super();
    this.inner = inner;
    this.transcript = {
      qemu: formatVersion(inner.version),
      protocol: inner.protocol,
      description,
      origin,
      exchanges: [],
    };
    inner.on('event', (ev) => {
      this.pendingEvents.push({ event: ev.event, data: ev.data });
      this.emit('event', ev);
    });
    inner.on('close', (err) => this.emit('close', err));
  }

  get protocol(): MonitorProtocol {
    return this.inner.protocol;
  }
  get version(): QemuVersion {
    return this.inner.version;
  }
  get closed(): boolean {
    return this.inner.closed;
  }

  private record(send: TranscriptSend, reply: TranscriptReply): void {
    const ex: TranscriptExchange = { send, reply };
    if (this.pendingEvents.length > 0) ex.events = this.pendingEvents;
    this.pendingEvents = [];
    this.transcript.exchanges.push(ex);
  }

  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    const send: TranscriptSend =
      args === undefined ? { execute: command } : { execute: command, arguments: args };
    try {
      const r = await this.inner.execute<T>(command, args);
      this.record(send, { return: r });
      return r;
    } catch (e) {
      if (e instanceof QmpError) this.record(send, { error: { class: e.errorClass, desc: e.desc } });
      throw e;
    }
  }

  async humanCommand(commandLine: string): Promise<string> {
    if (this.inner.protocol === 'qmp') {
      // Recorded as the QMP command it is, so a replay runs the same error detection.
      return humanCommandOverQmp((command, args) => this.execute(command, args), commandLine);
    }
    try {
      const text = await this.inner.humanCommand(commandLine);
      this.record(commandLine, { text });
      return text;
    } catch (e) {
      if (e instanceof HmpError) this.record(commandLine, { text: e.text });
      throw e;
    }
  }

  waitForEvent(name: string | readonly string[], options?: WaitForEventOptions): EventWaiter {
    return this.inner.waitForEvent(name, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
