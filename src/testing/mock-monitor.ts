/**
 * `MockMonitor`: an in-memory `Monitor` over a {@link FakeQemu}: it answers the
 * migration-related commands the way a given QEMU version would (QMP or HMP dialect),
 * records everything sent, and lets tests script failures and replies. It calls the
 * fake QEMU directly, without a wire protocol; to test through the real clients, serve
 * a `FakeQemu` with `serveQmp` / `serveHmp` or use `createFakeMigrationPair`.
 */
import { HmpError, MonitorClosedError, MonitorError } from '../errors.js';
import { createEventWaiter, dispatchEvent, MonitorEmitter, rejectedWaiter } from '../monitor/events.js';
import { detectHmpError } from '../monitor/hmp-parser.js';
import { HUMAN_MONITOR_COMMAND, humanCommandOverQmp } from '../monitor/human-command.js';
import type {
  EventWaiter,
  Monitor,
  MonitorEvent,
  MonitorProtocol,
  WaitForEventOptions,
} from '../monitor/types.js';
import { formatVersion, type QemuVersion } from '../qemu/version.js';
import { hmpCommandName, isHmpQuit, runHmpCommand } from './fake-qemu/hmp-commands.js';
import { FakeQemu, type FakeRunState } from './fake-qemu/machine.js';
import type { FakeMigration, FakeMigrationProgress } from './fake-qemu/migration-state.js';
import { isQuitCommand, runQmpCommand } from './fake-qemu/qmp-commands.js';
import {
  type MockCommandInfo,
  type MockFailure,
  type MockMatcher,
  type MockReply,
  MockScripts,
} from './mock-scripts.js';

export type { MockCommandInfo, MockFailure, MockMatcher, MockReply } from './mock-scripts.js';

/** A QMP command as recorded in {@link MockMonitor.sent} (`arguments` omitted when none). */
export interface MockQmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

/** One entry of {@link MockMonitor.sent}: an HMP line, or a QMP command object. */
export type MockSent = string | MockQmpCommand;

/** QEMU run states the mock uses (any string is accepted). */
export type MockRunState = FakeRunState;

/** The simulated migration of a {@link MockMonitor} (`monitor.migration`): a {@link FakeMigration}. */
export type MockMigration = FakeMigration;

/** Progress to apply with `MockMigration.advance`. */
export type MockMigrationProgress = FakeMigrationProgress;

/** Options for {@link MockMonitor}. */
export interface MockMonitorOptions {
  /** `qmp` (default) or `hmp`. */
  protocol?: MonitorProtocol;
  /** QEMU version to imitate, `'1.7.0'` or `{ major, minor, micro }` (default 7.2.22). */
  version?: string | QemuVersion;
  /** Package string for `query-version` / `info version` (default `''`). */
  package?: string;
  /** Initial run state (default `running`). */
  runState?: MockRunState;
  /** Guest RAM reported by `query-migrate` in bytes (default 67 641 344, QEMU 7.2 with `-m 64`). */
  ramBytes?: number;
  /** When set, `query-migrate` reports `completed` at the N-th poll of an active migration. */
  autoCompleteAfterPolls?: number;
  /** Initial capability states by wire name. */
  capabilities?: Record<string, boolean>;
}

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof (v as PromiseLike<unknown> | null)?.then === 'function';

/**
 * An in-memory {@link Monitor} for unit tests. Answers as QEMU `version` would, in the
 * QMP or HMP dialect, records every command in {@link sent}, and lets tests script
 * failures ({@link failCommand}), replies ({@link setReply}), the migration
 * ({@link migration}, {@link completeMigration}, {@link failMigration}) and events.
 * The QEMU behind it is {@link qemu}, the same state machine the protocol servers use.
 */
export class MockMonitor extends MonitorEmitter implements Monitor {
  /** `qmp` or `hmp`. */
  readonly protocol: MonitorProtocol;
  /** The fake QEMU this monitor talks to. */
  readonly qemu: FakeQemu;
  /** Everything sent, in order: HMP lines as strings, QMP commands as `{ execute, arguments? }`. */
  readonly sent: MockSent[] = [];
  /** Every event emitted, in order. */
  readonly emitted: MonitorEvent[] = [];
  private isClosed = false;
  private readonly scripts = new MockScripts();

  constructor(options: MockMonitorOptions = {}) {
    super();
    this.protocol = options.protocol ?? 'qmp';
    this.qemu = new FakeQemu({
      ...(options.version === undefined ? {} : { version: options.version }),
      ...(options.package === undefined ? {} : { package: options.package }),
      runState: options.runState ?? 'running',
      ...(options.ramBytes === undefined ? {} : { ramBytes: options.ramBytes }),
      ...(options.capabilities === undefined ? {} : { capabilities: options.capabilities }),
      // A closed mock makes no more transitions (QEMU's are invisible to it anyway).
      defer: (fn) =>
        setImmediate(() => {
          if (!this.isClosed) fn();
        }),
    });
    this.qemu.autoCompleteAfterPolls = options.autoCompleteAfterPolls;
    this.qemu.onEvent((ev) => this.emitEvent(ev.event, ev.data));
  }

  /** The QEMU version imitated. */
  get version(): QemuVersion {
    return this.qemu.version;
  }

  /** Package string reported with the version. */
  get package(): string {
    return this.qemu.package;
  }

  /** The simulated migration. */
  get migration(): MockMigration {
    return this.qemu.migration;
  }

  /** Current run state (`query-status` / `info status`). */
  get runState(): MockRunState {
    return this.qemu.runState;
  }

  set runState(state: MockRunState) {
    this.qemu.runState = state;
  }

  /** When set, `query-migrate` reports `completed` at the N-th poll of an active migration. */
  get autoCompleteAfterPolls(): number | undefined {
    return this.qemu.autoCompleteAfterPolls;
  }

  set autoCompleteAfterPolls(n: number | undefined) {
    this.qemu.autoCompleteAfterPolls = n;
  }

  /** True once {@link close} or a scripted disconnect happened. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Capability states by wire name (a copy). */
  get capabilities(): Record<string, boolean> {
    return this.qemu.capabilities;
  }

  /** Current migration parameters, as `query-migrate-parameters` would return them (a copy). */
  get parameters(): Record<string, number | boolean | string> {
    return this.qemu.parameters;
  }

  /** The QMP commands sent (HMP lines are skipped), for compact assertions. */
  get sentCommands(): string[] {
    return this.sent.map((s) => (typeof s === 'string' ? s : s.execute));
  }

  // ---------------------------------------------------------------- Monitor API

  /** Runs a QMP command against the simulated QEMU. HMP mocks reject with `MonitorError`. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.protocol === 'hmp') {
      throw new MonitorError(
        `QMP command '${command}' cannot run over an HMP monitor (mock, QEMU ${formatVersion(this.version)})`,
      );
    }
    const cmd: MockQmpCommand =
      args === undefined ? { execute: command } : { execute: command, arguments: args };
    this.checkOpen(command);
    this.sent.push(cmd);
    await Promise.resolve();
    this.checkOpen(command);
    const info: MockCommandInfo = { protocol: 'qmp', name: command, ...(args ? { arguments: args } : {}) };
    if (command === HUMAN_MONITOR_COMMAND && typeof args?.['command-line'] === 'string') {
      info.line = args['command-line'];
    }
    this.scripts.applyFailure(info, (e) => this.disconnect(e));
    const reply = this.scripts.findReply(info);
    if (reply.found) return reply.value as T;
    const value = runQmpCommand(this.qemu, cmd);
    if (isQuitCommand(cmd)) this.quitSoon();
    return value as T;
  }

  /** Runs an HMP command line (over QMP: `human-monitor-command`); error text rejects with `HmpError`. */
  async humanCommand(commandLine: string): Promise<string> {
    if (this.protocol === 'qmp') {
      return humanCommandOverQmp((command, args) => this.execute(command, args), commandLine);
    }
    if (/[\r\n]/.test(commandLine)) {
      throw new HmpError(commandLine, 'an HMP command line must not contain \\r or \\n');
    }
    this.checkOpen(commandLine);
    this.sent.push(commandLine);
    await Promise.resolve();
    this.checkOpen(commandLine);
    const info: MockCommandInfo = { protocol: 'hmp', name: hmpCommandName(commandLine), line: commandLine };
    const scripted = this.hmpText(info);
    const text = typeof scripted === 'string' ? scripted : String((await scripted) ?? '');
    const err = detectHmpError(text);
    if (err !== undefined) throw new HmpError(commandLine, err);
    return text;
  }

  /** Same as {@link humanCommand} (the `HmpMonitor.command` spelling). */
  command(commandLine: string): Promise<string> {
    return this.humanCommand(commandLine);
  }

  /** Waits for an event; HMP mocks have none and reject at once, like `HmpMonitor`. */
  waitForEvent(name: string | readonly string[], options?: WaitForEventOptions): EventWaiter {
    if (this.protocol === 'hmp') {
      return rejectedWaiter(
        new MonitorError('HMP monitors have no events; poll `info status` / `info migrate` instead'),
      );
    }
    return createEventWaiter(this, name, options, 'mock QMP monitor');
  }

  /** Closes the mock: later commands reject with `MonitorClosedError`; `'close'` is emitted once. */
  async close(): Promise<void> {
    this.shutdown(undefined);
  }

  /** Simulates the peer going away: `'close'` is emitted with `error` (default a `MonitorClosedError`). */
  disconnect(error: Error = new MonitorClosedError('mock monitor: connection reset by peer')): void {
    this.shutdown(error);
  }

  // ---------------------------------------------------------------- scripting

  /**
   * Makes the next `times` (default: every) matching commands fail with `failure`:
   * a QMP error object (`{ class, desc }`), an HMP error text, an `Error` to throw, or
   * `'disconnect'` (closes the mock; the command rejects with `MonitorClosedError`).
   * `match` is a QMP command name, an HMP command word or full line, or a predicate.
   */
  failCommand(match: MockMatcher, failure: MockFailure, options: { times?: number } = {}): this {
    this.scripts.addFailure(match, failure, options.times ?? Number.POSITIVE_INFINITY);
    return this;
  }

  /**
   * Answers matching commands with `reply` (a value, or a function of the command)
   * instead of the simulation: the QMP `return` value, or the HMP text. State is unchanged.
   */
  setReply(match: MockMatcher, reply: MockReply): this {
    this.scripts.addReply(match, reply);
    return this;
  }

  /** Removes every scripted failure and reply. */
  clearScripts(): void {
    this.scripts.clear();
  }

  /** Emits an event to listeners (QMP mocks only; it is recorded in {@link emitted}). */
  emitEvent(event: string, data: Record<string, unknown> = {}): void {
    if (this.protocol === 'hmp' || this.isClosed) return;
    const now = Date.now();
    const ev: MonitorEvent = {
      event,
      data,
      timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 },
    };
    this.emitted.push(ev);
    dispatchEvent(this, ev);
  }

  /** Completes the running migration: `STOP` (if running), then `completed`. */
  completeMigration(options: { downtime?: number } = {}): void {
    if (this.migration.status === undefined)
      throw new MonitorError('MockMonitor.completeMigration: no migration was started');
    this.qemu.completeMigration(options);
  }

  /** Fails the running migration with QEMU's `error-desc` (e.g. `Failed to connect to …`). */
  failMigration(errorDesc = 'mock migration failure'): void {
    if (this.migration.status === undefined)
      throw new MonitorError('MockMonitor.failMigration: no migration was started');
    this.qemu.failMigration(errorDesc);
  }

  // ---------------------------------------------------------------- internals

  /** `quit`: QEMU exits (`SHUTDOWN`), so the monitor closes (as by the peer) just after the reply. */
  private quitSoon(): void {
    this.qemu.quit();
    // Closed for every later command at once; listeners hear 'close' after the reply.
    this.isClosed = true;
    setImmediate(() => this.emit('close', new MonitorClosedError('mock monitor: QEMU quit')));
  }

  private shutdown(error: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.emit('close', error);
  }

  private checkOpen(what: string): void {
    if (this.isClosed)
      throw new MonitorClosedError(
        `mock ${this.protocol.toUpperCase()} monitor is closed; cannot run '${what}'`,
      );
  }

  /** Runs an HMP line (failures and replies applied) and returns its text. */
  private hmpText(info: MockCommandInfo): string | PromiseLike<unknown> {
    const line = info.line ?? '';
    this.scripts.applyFailure(info, (e) => this.disconnect(e));
    const reply = this.scripts.findReply(info);
    // A promise (e.g. one that never settles, to imitate a frozen QEMU) is awaited.
    if (reply.found) return isThenable(reply.value) ? reply.value : String(reply.value ?? '');
    const text = runHmpCommand(this.qemu, line);
    if (isHmpQuit(line)) this.quitSoon();
    return text;
  }
}
