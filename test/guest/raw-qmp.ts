/**
 * A minimal QMP client for the guest tests: greeting, `qmp_capabilities`, then one command
 * at a time. Events are ignored. Deliberately independent of src/monitor/, so these tests
 * check the guest and not the library's monitor.
 */
import { connect, type Socket } from 'node:net';

/** A connected QMP session. */
export class RawQmp {
  private buf = '';
  private waiter: { resolve: (msg: Record<string, unknown>) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i).trim();
        this.buf = this.buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) continue;
        const w = this.waiter;
        this.waiter = undefined;
        w?.resolve(msg);
      }
    });
    const fail = (e: Error) => {
      this.failure ??= e;
      const w = this.waiter;
      this.waiter = undefined;
      w?.reject(this.failure);
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('QMP socket closed')));
  }

  /** Connects to a QMP UNIX socket and leaves capabilities negotiation mode. */
  static async connect(path: string): Promise<RawQmp> {
    const sock = connect(path);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const qmp = new RawQmp(sock);
    const greeting = await qmp.next();
    if (!('QMP' in greeting)) throw new Error(`not a QMP greeting: ${JSON.stringify(greeting)}`);
    await qmp.execute('qmp_capabilities');
    return qmp;
  }

  private next(): Promise<Record<string, unknown>> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('QMP reply timeout')), 10_000);
      this.waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Runs a command; resolves with `return`, rejects with QEMU's error description. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    const reply = this.next();
    this.sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) }) + '\n');
    const msg = await reply;
    if ('error' in msg) {
      const err = msg.error as { class: string; desc: string };
      throw new Error(`${command}: ${err.desc} (${err.class})`);
    }
    return msg.return as T;
  }

  /** Runs an HMP command line through `human-monitor-command`. */
  hmp(commandLine: string): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine });
  }

  /** Closes the socket. */
  close(): void {
    this.sock.destroy();
  }
}
