/**
 * The one monitor interface the hypervisor uses for both protocols, plus the shapes
 * shared by the QMP and HMP clients and the mock.
 */
import type { QemuVersion } from '../qemu/version.js';

/** Which monitor protocol a {@link Monitor} speaks. */
export type MonitorProtocol = 'qmp' | 'hmp';

/** Where a monitor listens: a UNIX socket path, or a TCP host and port. */
export type MonitorAddress = { path: string } | { host: string; port: number };

/** A QMP event as QEMU sends it. HMP monitors never emit events. */
export interface MonitorEvent {
  /** Event name, e.g. `MIGRATION`, `STOP`, `RESUME`. */
  event: string;
  /** Event data (`{}` when QEMU sent none). */
  data: Record<string, unknown>;
  /** QEMU's timestamp (`-1` members when the host clock could not be read). */
  timestamp: { seconds: number; microseconds: number };
}

/** Options for {@link Monitor.executeOutOfBand}. */
export interface OutOfBandOptions {
  /** Timeout for this command only, in milliseconds (default: the monitor's). */
  timeoutMs?: number;
  /**
   * Where `oob` was not negotiated, run the command in band instead of rejecting with
   * `OutOfBandUnavailableError` (default false). In band it waits behind every command
   * QEMU has not answered yet, and for QEMU's main loop.
   */
  fallbackInBand?: boolean;
}

/** Options for {@link Monitor.waitForEvent}. */
export interface WaitForEventOptions {
  /** Give up after this many milliseconds with a `MonitorTimeoutError`. */
  timeoutMs?: number;
  /** Only resolve for events this returns true for. */
  filter?: (ev: MonitorEvent) => boolean;
  /** Abort the wait (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** A pending wait for an event, created before the command that causes it. */
export interface EventWaiter {
  /** Resolves with the first matching event. */
  readonly promise: Promise<MonitorEvent>;
  /** Stops waiting; the promise is left pending and no longer holds a listener. */
  cancel(): void;
}

/**
 * A connected QEMU monitor, whatever its protocol. `KVMHypervisor` is written against
 * this interface only, so any object that implements it (the real clients, `MockMonitor`,
 * a user's own proxy) can be injected.
 */
export interface Monitor {
  /** `qmp` or `hmp`: the migration code chooses its dialect from this and {@link version}. */
  readonly protocol: MonitorProtocol;
  /** The QEMU version behind the monitor. */
  readonly version: QemuVersion;
  /** True once the connection is closed (by either side). */
  readonly closed: boolean;
  /**
   * Runs a QMP command and resolves with its `return` value; rejects with `QmpError` when
   * QEMU answers with an error. HMP monitors reject with `MonitorError` (no QMP there).
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T>;
  /**
   * True when QMP's `oob` capability was negotiated, so {@link executeOutOfBand} sends
   * `exec-oob`. Optional: absent means false.
   */
  readonly outOfBand?: boolean;
  /**
   * Runs a QMP command out of band (`exec-oob`, with an `id`): QEMU runs it in its monitor
   * I/O thread, ahead of queued in-band commands and while its main loop is busy. Only
   * for commands QEMU marks `allow-oob` (`migrate-pause`, `migrate-recover`, …).
   * Optional: a monitor without it can send nothing out of band.
   */
  executeOutOfBand?<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options?: OutOfBandOptions,
  ): Promise<T>;
  /**
   * Runs one HMP command line and resolves with its text output; rejects with `HmpError`
   * when the text is an HMP error. Over QMP this goes through `human-monitor-command`.
   */
  humanCommand(commandLine: string): Promise<string>;
  /**
   * Starts waiting for an event before the command that causes it is sent, so an event
   * that arrives before the command's reply is not missed.
   */
  waitForEvent(name: string | readonly string[], options?: WaitForEventOptions): EventWaiter;
  /** Subscribes to every event. */
  on(event: 'event', listener: (ev: MonitorEvent) => void): this;
  /** Called once when the connection closes; `error` is set when it was not closed by us. */
  on(event: 'close', listener: (error?: Error) => void): this;
  off(event: 'event', listener: (ev: MonitorEvent) => void): this;
  off(event: 'close', listener: (error?: Error) => void): this;
  /** Closes the connection. Idempotent. Pending commands reject with `MonitorClosedError`. */
  close(): Promise<void>;
}
