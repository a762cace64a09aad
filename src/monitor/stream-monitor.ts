/**
 * The connection life cycle shared by `QmpMonitor` and `HmpMonitor`: feeding socket
 * bytes to a pure parser, writes that respect backpressure, and one orderly close that
 * rejects whatever still waits for a reply.
 */

import { once } from 'node:events';
import { MonitorClosedError, MonitorError, MonitorTimeoutError } from '../errors.js';
import type { MonitorLogger } from '../logger.js';
import { MonitorEmitter } from './events.js';
import type { MonitorStream } from './transport.js';

/** What {@link StreamMonitor.write} returns when the socket took the data at once. */
export const WRITTEN: Promise<void> = Promise.resolve();

/** A pure parser: bytes in, frames out. */
export interface FrameParser<Frame> {
  push(chunk: Buffer): Frame[];
}

/** Options every stream monitor takes. */
export interface StreamMonitorOptions {
  /** Default per-command timeout in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Optional logger: pino or any {@link MonitorLogger}. */
  logger?: MonitorLogger;
}

/** Base class of the socket monitors; subclasses route frames and own their pending commands. */
export abstract class StreamMonitor<Frame, Parser extends FrameParser<Frame>> extends MonitorEmitter {
  /** The default per-command timeout in milliseconds. */
  readonly timeoutMs: number;
  /** How this monitor is named in messages (the socket path or `host:port`). */
  readonly description: string;
  protected readonly stream: MonitorStream;
  protected readonly parser: Parser;
  protected readonly logger: MonitorLogger | undefined;
  /** The first error seen on the connection, kept as the cause of later failures. */
  protected closeError: Error | undefined;
  private readonly label: string;
  private isClosed = false;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  private writeChain: Promise<void> = Promise.resolve();
  /** Writes waiting in {@link writeChain} (for a `drain`, or behind one that does). */
  private writesQueued = 0;
  private corked = false;

  protected constructor(
    label: 'QMP' | 'HMP',
    stream: MonitorStream,
    parser: Parser,
    options: StreamMonitorOptions,
    description: string,
  ) {
    super();
    this.label = label;
    this.stream = stream;
    this.parser = parser;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.logger = options.logger;
    this.description = description;
    this.closedPromise = new Promise((r) => {
      this.resolveClosed = r;
    });
  }

  /** True once the connection is closed (by either side). */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Closes the connection. Idempotent; waiting commands reject with `MonitorClosedError`. */
  async close(): Promise<void> {
    if (!this.isClosed) {
      this.finish(undefined, 'closed by client');
      this.stream.end();
      this.stream.destroy();
    }
    await this.closedPromise;
  }

  /** Routes one parsed frame (a reply, an event, …). */
  protected abstract route(frame: Frame): void;

  /** Rejects every command still waiting for its reply with the error `closedError` gives. */
  protected abstract rejectWaiting(closedError: (command: string) => MonitorClosedError): void;

  /** `{ cause }` for errors raised after the connection failed. */
  protected causeOpt(): { cause: Error } | undefined {
    return this.closeError ? { cause: this.closeError } : undefined;
  }

  /** A `MonitorClosedError` for `what` (a command) on this closed monitor. */
  protected closedError(what: string): MonitorClosedError {
    return new MonitorClosedError(
      `${this.label} monitor ${this.description} is closed; cannot run '${what}'`,
      this.causeOpt(),
    );
  }

  /** Starts reading: bytes go to the parser, frames to {@link route}. */
  protected attach(): void {
    this.stream.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.parser.push(chunk);
      } catch (err) {
        this.logger?.warn({ monitor: this.description, err }, `${this.label} framing error; closing`);
        this.finish(err as Error, (err as Error).message);
        this.stream.destroy();
        return;
      }
      for (const f of frames) this.route(f);
    });
    this.stream.on('error', (err: Error) => {
      this.closeError ??= err;
    });
    this.stream.on('end', () => this.stream.destroy());
    this.stream.on('close', () => {
      this.finish(
        this.closeError ?? new MonitorClosedError(`${this.label} monitor ${this.description} closed by peer`),
        'connection closed',
      );
    });
    this.stream.resume();
  }

  /** True when a debug line would be written: pino's `isLevelEnabled`, else whether a logger is set. */
  protected get debugEnabled(): boolean {
    const l = this.logger as (MonitorLogger & { isLevelEnabled?: (level: string) => boolean }) | undefined;
    if (!l) return false;
    return typeof l.isLevelEnabled === 'function' ? l.isLevelEnabled('debug') : true;
  }

  /**
   * Writes in call order, waiting for `drain` when the socket buffer is full. With no
   * earlier write still waiting for `drain`, the data goes to the socket at once (no
   * promise hop per command: the common case of a round trip).
   */
  protected write(data: string): Promise<void> {
    if (this.writesQueued === 0) {
      if (this.isClosed) {
        return Promise.reject(
          new MonitorClosedError(`${this.label} monitor ${this.description} is closed`, this.causeOpt()),
        );
      }
      this.corkForThisTick();
      if (this.stream.write(data)) return WRITTEN;
      // The socket buffer is full: later writes queue behind the `drain` of this one.
      return this.queueWrite(async () => this.waitDrain());
    }
    return this.queueWrite(async () => {
      if (this.isClosed) {
        throw new MonitorClosedError(`${this.label} monitor ${this.description} is closed`, this.causeOpt());
      }
      if (!this.stream.write(data)) await this.waitDrain();
    });
  }

  /**
   * Commands written in one tick (a pipelined batch) leave in one system call: each
   * write wakes QEMU, which then competes with this process for the CPU.
   */
  private corkForThisTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.stream.cork();
    process.nextTick(() => {
      this.corked = false;
      this.stream.uncork();
    });
  }

  private queueWrite(step: () => Promise<void>): Promise<void> {
    this.writesQueued++;
    const next = this.writeChain.then(step).finally(() => {
      this.writesQueued--;
    });
    this.writeChain = next.catch(() => {});
    return next;
  }

  private async waitDrain(): Promise<void> {
    const ac = new AbortController();
    void this.closedPromise.then(() => ac.abort());
    try {
      await once(this.stream, 'drain', { signal: ac.signal });
    } catch {
      throw new MonitorClosedError(
        `${this.label} monitor ${this.description} closed while writing`,
        this.causeOpt(),
      );
    } finally {
      ac.abort();
    }
  }

  /** Marks the monitor closed (once), rejects what waits, and emits `'close'`. */
  protected finish(error: Error | undefined, why: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (error) this.closeError ??= error;
    this.rejectWaiting(
      (command) =>
        new MonitorClosedError(
          `${this.label} monitor ${this.description} closed (${why}) before '${command}' got its reply`,
          this.causeOpt(),
        ),
    );
    this.resolveClosed();
    this.emit('close', error);
  }
}

/** What a handshake step decided about the frames read so far. */
export type HandshakeStep<R> = { done: R } | { error: Error } | undefined;

/**
 * Reads the first frames of a connection (QMP greeting, HMP banner) until `step`
 * returns `{ done }`, with a timeout, and leaves the stream paused for the monitor.
 * On a timeout, a close, a socket error or `{ error }`, the stream is destroyed and the
 * promise rejects with an error naming `description` and `what`.
 */
export function readHandshake<Frame, R>(
  stream: MonitorStream,
  parser: FrameParser<Frame>,
  timeoutMs: number,
  description: string,
  what: string,
  step: (frames: Frame[], chunk: Buffer) => HandshakeStep<R>,
): Promise<R> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('close', onClose);
      stream.off('error', onError);
    };
    const fail = (err: Error) => {
      cleanup();
      stream.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new MonitorTimeoutError(`no ${what} from ${description} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      let result: HandshakeStep<R>;
      try {
        result = step(parser.push(chunk), chunk);
      } catch (err) {
        fail(err as Error);
        return;
      }
      if (result === undefined) return;
      if ('error' in result) {
        fail(result.error);
        return;
      }
      cleanup();
      stream.pause();
      resolve(result.done);
    };
    const onClose = () =>
      fail(new MonitorClosedError(`${description} closed the connection before the ${what}`));
    const onError = (err: Error) =>
      fail(
        new MonitorError(`error on ${description} while waiting for the ${what}: ${err.message}`, {
          cause: err,
        }),
      );
    stream.on('data', onData);
    stream.once('close', onClose);
    stream.once('error', onError);
  });
}
