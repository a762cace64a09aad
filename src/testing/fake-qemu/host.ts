/**
 * `FakeQemuHost`: a fake QEMU process with its monitor socket. `connect()` hands out the
 * real `QmpMonitor` / `HmpMonitor` over an in-memory stream pair, so the code under test
 * runs the same client code as in production; the test switches faults on the host.
 */
import type { Duplex } from 'node:stream';
import { MonitorError } from '../../errors.js';
import { HmpMonitor, type HmpMonitorOptions } from '../../monitor/hmp.js';
import { QmpMonitor, type QmpMonitorOptions } from '../../monitor/qmp.js';
import type { MonitorProtocol } from '../../monitor/types.js';
import { createStreamPair } from '../stream-pair.js';
import { FakeMonitorFaults, type FakeQmpErrorReply } from './faults.js';
import { serveHmp } from './hmp-server.js';
import { FakeQemu, type FakeQemuOptions } from './machine.js';
import { serveQmp } from './qmp-server.js';

/** Options for {@link FakeQemuHost}. */
export interface FakeQemuHostOptions extends FakeQemuOptions {
  /** The monitor protocol of the socket: `qmp` (default) or `hmp`. */
  protocol?: MonitorProtocol;
  /** How the host is named in the clients' messages (default `fake-qemu`). */
  name?: string;
  /** Called with each command (QMP name or HMP line) before it is answered. */
  onCommand?: (command: string) => void;
}

/** Options for {@link FakeQemuHost.connect}: those of the real client. */
export type FakeConnectOptions = QmpMonitorOptions & HmpMonitorOptions;

/**
 * A fake QEMU process and its monitor socket. Every {@link connect} opens a new
 * connection (QEMU's `-qmp`/`-monitor` socket serves them one by one in reality; here
 * they may overlap). Faults: {@link freeze}, {@link dropConnections} (the monitor is
 * lost, QEMU goes on), {@link exit} (the process is gone), {@link refuse}.
 */
export class FakeQemuHost {
  /** The QEMU state machine. */
  readonly qemu: FakeQemu;
  /** The monitor protocol served. */
  readonly protocol: MonitorProtocol;
  /** How the host is named in messages. */
  readonly name: string;
  /** Every command received, in order: QMP command names, HMP lines (handshake excluded). */
  readonly received: string[] = [];
  /** Fault switches shared by all connections. */
  readonly faults = new FakeMonitorFaults();
  private readonly closers = new Set<(abrupt?: boolean) => void>();
  private readonly onCommand: ((command: string) => void) | undefined;

  constructor(options: FakeQemuHostOptions = {}) {
    const { protocol, name, onCommand, ...qemuOptions } = options;
    this.qemu = new FakeQemu(qemuOptions);
    this.protocol = protocol ?? 'qmp';
    this.name = name ?? 'fake-qemu';
    this.onCommand = onCommand;
    // QEMU exiting closes every monitor connection, after the replies already written.
    this.qemu.onExit(() => {
      this.faults.dropHeld();
      for (const close of [...this.closers]) close(false);
    });
  }

  /** Number of open monitor connections. */
  get connectionCount(): number {
    return this.closers.size;
  }

  /**
   * Opens a connection and returns the client's end of it: raw bytes of the protocol.
   * Throws `MonitorError` (code `ECONNREFUSED`) once QEMU has exited.
   */
  openStream(): Duplex {
    if (this.qemu.hasExited) {
      const cause = Object.assign(new Error(`connect ECONNREFUSED ${this.name}`), { code: 'ECONNREFUSED' });
      throw new MonitorError(`cannot connect to monitor socket ${this.name}: ECONNREFUSED: QEMU has exited`, {
        cause,
      });
    }
    const [client, server] = createStreamPair();
    const hooks = {
      faults: this.faults,
      onCommand: (c: string) => {
        this.received.push(c);
        this.onCommand?.(c);
      },
    };
    const close =
      this.protocol === 'qmp' ? serveQmp(this.qemu, server, hooks) : serveHmp(this.qemu, server, hooks);
    this.closers.add(close);
    server.once('close', () => this.closers.delete(close));
    return client;
  }

  /**
   * Connects the real client of the protocol (`QmpMonitor` or `HmpMonitor`) and runs its
   * handshake. Rejects like a refused socket once QEMU has exited.
   */
  async connect(options: FakeConnectOptions = {}): Promise<QmpMonitor | HmpMonitor> {
    const stream = this.openStream();
    const opts = { description: this.name, ...options };
    return this.protocol === 'qmp'
      ? QmpMonitor.fromStream(stream, opts)
      : HmpMonitor.fromStream(stream, opts);
  }

  /** QEMU stops answering (a SIGSTOPped or hung process): commands wait until {@link thaw}. */
  freeze(): void {
    this.faults.freeze();
  }

  /** QEMU answers again, the held commands first. */
  thaw(): void {
    this.faults.thaw();
  }

  /** Resets every monitor connection; QEMU itself goes on (a new {@link connect} works). */
  dropConnections(): void {
    this.faults.dropHeld();
    for (const close of [...this.closers]) close(true);
  }

  /** The QEMU process ends: connections close, later connects are refused. */
  exit(): void {
    this.qemu.exit();
  }

  /**
   * Refuses the next `times` (default: every) `command` with `error` (QMP: that error
   * reply; HMP: `Error: <desc>` output). `command` is a QMP name or an HMP command word.
   */
  refuse(command: string, error: FakeQmpErrorReply, options: { times?: number } = {}): this {
    this.faults.refuse(command, error, options.times);
    return this;
  }
}
