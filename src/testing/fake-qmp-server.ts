/**
 * `FakeQmpServer`: a scripted QMP server on a UNIX socket for socket-level tests of QMP
 * clients: configurable greeting, per-command handlers, raw and split writes, delayed or
 * missing replies, events, dropped connections.
 */
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QemuVersion } from '../qemu/version.js';
import { type QmpInput, QmpInputSplitter } from './qmp-input.js';

/** A command as the fake server received it. */
export interface FakeQmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  /** The id sent by the client, when any. */
  id?: unknown;
}

/** What a handler answers: a `return` value, an `error`, or `undefined` for no reply (answer later with {@link FakeQmpServer.reply}). */
export type FakeQmpReply = { return: unknown } | { error: { class: string; desc: string } } | undefined;

/** Handles one command; may be async (to delay the reply). */
export type FakeQmpHandler = (cmd: FakeQmpCommand, conn: Socket) => FakeQmpReply | Promise<FakeQmpReply>;

/** Options for {@link FakeQmpServer.start}. */
export interface FakeQmpServerOptions {
  /** Socket path (default: a fresh file in the OS temp folder). */
  path?: string;
  /** QEMU version in the default greeting and `query-version` (default 7.2.22). */
  version?: QemuVersion;
  /**
   * The greeting: `'default'` (QEMU's), `'none'` (send nothing), a raw string sent as is
   * (e.g. an HMP banner), or an object sent as one JSON line.
   */
  greeting?: 'default' | 'none' | string | Record<string, unknown>;
  /** Handlers by command name, on top of the defaults (`qmp_capabilities`, `query-version`, `query-status`). */
  handlers?: Record<string, FakeQmpHandler>;
  /** Delay every reply by this many milliseconds. */
  replyDelayMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A scripted QMP server. Unknown commands get QEMU's `CommandNotFound` error. Every
 * received command is recorded in {@link received}; `'command'` is emitted for each.
 */
export class FakeQmpServer extends EventEmitter {
  /** The socket path. */
  readonly path: string;
  /** The QEMU version announced. */
  readonly version: QemuVersion;
  /** Every command received, in order. */
  readonly received: FakeQmpCommand[] = [];
  /** Open client connections. */
  readonly connections = new Set<Socket>();
  private readonly server: Server;
  private readonly handlers = new Map<string, FakeQmpHandler>();
  private readonly options: FakeQmpServerOptions;
  private connectionCount = 0;

  private constructor(server: Server, path: string, options: FakeQmpServerOptions) {
    super();
    this.server = server;
    this.path = path;
    this.options = options;
    this.version = options.version ?? { major: 7, minor: 2, micro: 22 };
    this.handlers.set('qmp_capabilities', () => ({ return: {} }));
    this.handlers.set('query-version', () => ({
      return: { qemu: { ...this.version }, package: 'fake' },
    }));
    this.handlers.set('query-status', () => ({ return: { status: 'running', running: true } }));
    for (const [k, h] of Object.entries(options.handlers ?? {})) this.handlers.set(k, h);
  }

  /** Starts listening. */
  static async start(options: FakeQmpServerOptions = {}): Promise<FakeQmpServer> {
    const path =
      options.path ??
      join(
        tmpdir(),
        `kvmhv-fakeqmp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.sock`,
      );
    rmSync(path, { force: true });
    const server = createServer();
    const fake = new FakeQmpServer(server, path, options);
    server.on('connection', (s) => fake.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return fake;
  }

  /** Number of connections accepted so far. */
  get acceptedCount(): number {
    return this.connectionCount;
  }

  /** Sets (or replaces) the handler of a command. */
  handle(command: string, handler: FakeQmpHandler): this {
    this.handlers.set(command, handler);
    return this;
  }

  /** Sends a reply for `id` to every connection (for handlers that returned `undefined`). */
  reply(id: unknown, reply: NonNullable<FakeQmpReply>): void {
    this.sendLine({ ...reply, id });
  }

  /** Sends an event to every connection. */
  sendEvent(event: string, data?: Record<string, unknown>): void {
    const now = Date.now();
    this.sendLine({
      event,
      ...(data ? { data } : {}),
      timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 },
    });
  }

  /** Sends one JSON object as a CRLF-terminated line to every connection. */
  sendLine(obj: unknown): void {
    this.broadcast(`${JSON.stringify(obj)}\r\n`);
  }

  /**
   * Writes raw bytes to every connection; with `splitAt`, in several writes cut at those
   * byte offsets, `delayMs` apart (default 5 ms) so they arrive as separate chunks.
   */
  async sendRaw(
    data: string | Buffer,
    options: { splitAt?: number[]; delayMs?: number } = {},
  ): Promise<void> {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const cuts = [...(options.splitAt ?? []), buf.length].sort((a, b) => a - b);
    let start = 0;
    for (const cut of cuts) {
      if (cut > start) this.broadcast(buf.subarray(start, cut));
      start = cut;
      if (cut < buf.length) await sleep(options.delayMs ?? 5);
    }
  }

  /** Resolves with the next received command named `name` (or any command when omitted). */
  nextCommand(name?: string, timeoutMs = 5000): Promise<FakeQmpCommand> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('command', on);
        reject(new Error(`FakeQmpServer: no '${name ?? 'any'}' command within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (cmd: FakeQmpCommand) => {
        if (name !== undefined && cmd.execute !== name) return;
        clearTimeout(timer);
        this.off('command', on);
        resolve(cmd);
      };
      this.on('command', on);
    });
  }

  /** Resets every client connection (the client sees ECONNRESET or EOF). */
  dropConnections(): void {
    for (const s of this.connections) s.destroy();
    this.connections.clear();
  }

  /** Stops listening, drops the clients and removes the socket file. */
  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }

  private broadcast(data: string | Buffer): void {
    for (const s of this.connections) if (!s.destroyed) s.write(data);
  }

  private accept(socket: Socket): void {
    this.connectionCount++;
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => {});
    const g = this.options.greeting ?? 'default';
    if (g === 'default') {
      socket.write(
        `${JSON.stringify({
          QMP: { version: { qemu: { ...this.version }, package: 'fake' }, capabilities: ['oob'] },
        })}\r\n`,
      );
    } else if (typeof g === 'string') {
      if (g !== 'none') socket.write(g);
    } else {
      socket.write(`${JSON.stringify(g)}\r\n`);
    }
    const parser = new QmpInputSplitter();
    socket.on('data', (chunk: Buffer) => {
      let messages: QmpInput[];
      try {
        messages = parser.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const m of messages) {
        if (m.kind === 'parse-error') {
          socket.write(
            `${JSON.stringify({ error: { class: 'GenericError', desc: 'JSON parse error, expecting value' } })}\r\n`,
          );
          continue;
        }
        const raw = m.value;
        if (
          typeof raw !== 'object' ||
          raw === null ||
          typeof (raw as { execute?: unknown }).execute !== 'string'
        )
          continue;
        const r = raw as { execute: string; arguments?: Record<string, unknown>; id?: unknown };
        const cmd: FakeQmpCommand = { execute: r.execute };
        if (r.arguments !== undefined) cmd.arguments = r.arguments;
        if ('id' in r) cmd.id = r.id;
        this.received.push(cmd);
        this.emit('command', cmd);
        void this.answer(cmd, socket);
      }
    });
  }

  private async answer(cmd: FakeQmpCommand, socket: Socket): Promise<void> {
    const handler = this.handlers.get(cmd.execute);
    const reply: FakeQmpReply = handler
      ? await handler(cmd, socket)
      : { error: { class: 'CommandNotFound', desc: `The command ${cmd.execute} has not been found` } };
    if (reply === undefined) return;
    if (this.options.replyDelayMs) await sleep(this.options.replyDelayMs);
    if (socket.destroyed) return;
    socket.write(`${JSON.stringify({ ...reply, ...('id' in cmd ? { id: cmd.id } : {}) })}\r\n`);
  }
}
