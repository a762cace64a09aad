/**
 * `MockMonitor`: an in-memory `Monitor` that answers the migration-related commands the
 * way a given QEMU version would (QMP or HMP dialect), keeps state (run state,
 * capabilities, parameters, a simulated migration) and records everything sent.
 */
import { HmpError, MonitorClosedError, MonitorError, QmpError } from '../errors.js';
import { ACTIVE_STATUSES } from '../migration/status.js';
import { createEventWaiter, dispatchEvent, MonitorEmitter, rejectedWaiter } from '../monitor/events.js';
import { detectHmpError } from '../monitor/hmp-parser.js';
import type {
  EventWaiter,
  Monitor,
  MonitorEvent,
  MonitorProtocol,
  WaitForEventOptions,
} from '../monitor/types.js';
import {
  canonicalCapabilityName,
  capabilitiesForVersion,
  checkCapabilityCombination,
} from '../qemu/capabilities.js';
import { formatVersion, parseVersion, type QemuVersion, versionAtLeast } from '../qemu/version.js';
import { type MockParamInfo, paramsForVersion, parseHmpSize } from './mock-params.js';

/** A QMP command as recorded in {@link MockMonitor.sent} (`arguments` omitted when none). */
export interface MockQmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

/** One entry of {@link MockMonitor.sent}: an HMP line, or a QMP command object. */
export type MockSent = string | MockQmpCommand;

/** What a failure or reply rule is matched against. */
export interface MockCommandInfo {
  /** Protocol the command came in with. */
  protocol: MonitorProtocol;
  /** QMP command name, or the HMP command word (`info X` for info subcommands). */
  name: string;
  /** QMP arguments. */
  arguments?: Record<string, unknown>;
  /** The HMP command line (also set for `human-monitor-command` over QMP). */
  line?: string;
}

/**
 * How a scripted command fails: a QMP error object, an HMP error text, an `Error` to
 * throw (a `MonitorClosedError` also closes the mock), or `'disconnect'`.
 */
export type MockFailure = { class: string; desc: string } | string | Error | 'disconnect';

/** A command name, or a predicate on the command. */
export type MockMatcher = string | ((cmd: MockCommandInfo) => boolean);

/** A reply value, or a function computing it from the command. */
export type MockReply = unknown | ((cmd: MockCommandInfo) => unknown);

/** QEMU run states the mock uses (any string is accepted). */
export type MockRunState =
  | 'running'
  | 'paused'
  | 'inmigrate'
  | 'postmigrate'
  | 'finish-migrate'
  | (string & {});

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

/** Progress to apply with {@link MockMigration.advance}. */
export interface MockMigrationProgress {
  /** Bytes transferred so far. */
  transferred?: number;
  /** Bytes remaining. */
  remaining?: number;
  /** Any status, known or not (`active`, `postcopy-active`, `device`, `postcopy-device`, …). */
  status?: string;
  /** Dirty pages per second. */
  dirtyPagesRate?: number;
  /** Throughput in Mbit/s. */
  mbps?: number;
  /** Start a new pass (emits `MIGRATION_PASS` when the `events` capability is on). */
  pass?: boolean;
}

const PAGE = 4096;

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof (v as PromiseLike<unknown> | null)?.then === 'function';

/** The simulated migration of a {@link MockMonitor}; drive it from tests. */
export class MockMigration {
  /** Current status; `undefined` before the first `migrate`. */
  status: string | undefined;
  /** The URI given to `migrate`. */
  uri: string | undefined;
  /** Bytes transferred. */
  transferred = 0;
  /** Bytes remaining. */
  remaining = 0;
  /** Total guest RAM in bytes. */
  total: number;
  /** Dirty pages per second. */
  dirtyPagesRate = 0;
  /** Throughput in Mbit/s. */
  mbps = 0;
  /** Dirty-bitmap sync count (the pass number). */
  passes = 0;
  /** Milliseconds of simulated run time. */
  totalTime = 0;
  /** Downtime in ms, set on completion. */
  downtime: number | undefined;
  /** QEMU's `error-desc`, set on failure. */
  errorDesc: string | undefined;
  /** `query-migrate` calls answered while the migration was running. */
  polls = 0;
  private readonly onAdvance: (progress: MockMigrationProgress) => void;

  /** Made by {@link MockMonitor}; `onAdvance` applies {@link advance} to it. */
  constructor(total: number, onAdvance: (progress: MockMigrationProgress) => void) {
    this.total = total;
    this.onAdvance = onAdvance;
  }

  /** True while the status is not terminal (`completed`, `failed`, `cancelled`) nor unset. */
  get running(): boolean {
    return this.status !== undefined && ACTIVE_STATUSES.has(this.status);
  }

  /**
   * Moves the migration on: sets counters and, with `status`, any status (emitting a
   * `MIGRATION` event when the `events` capability is on). Terminal statuses are better
   * reached with {@link MockMonitor.completeMigration} / {@link MockMonitor.failMigration}.
   */
  advance(progress: MockMigrationProgress = {}): void {
    this.onAdvance(progress);
  }
}

/**
 * An in-memory {@link Monitor} for unit tests. Answers as QEMU `version` would, in the
 * QMP or HMP dialect, records every command in {@link sent}, and lets tests script
 * failures ({@link failCommand}), replies ({@link setReply}), the migration
 * ({@link migration}, {@link completeMigration}, {@link failMigration}) and events.
 */
export class MockMonitor extends MonitorEmitter implements Monitor {
  /** `qmp` or `hmp`. */
  readonly protocol: MonitorProtocol;
  /** The QEMU version imitated. */
  readonly version: QemuVersion;
  /** Package string reported with the version. */
  readonly package: string;
  /** Everything sent, in order: HMP lines as strings, QMP commands as `{ execute, arguments? }`. */
  readonly sent: MockSent[] = [];
  /** Every event emitted, in order. */
  readonly emitted: MonitorEvent[] = [];
  /** The simulated migration. */
  readonly migration: MockMigration;
  /** Current run state (`query-status` / `info status`). */
  runState: MockRunState;
  /** When set, `query-migrate` reports `completed` at the N-th poll of an active migration. */
  autoCompleteAfterPolls: number | undefined;
  private readonly caps = new Map<string, boolean>();
  private readonly params = new Map<string, number | boolean | string>();
  private bandwidth: number;
  private downtimeMs: number;
  private isClosed = false;
  private readonly failures: { match: MockMatcher; failure: MockFailure; times: number }[] = [];
  private readonly replies: { match: MockMatcher; reply: MockReply }[] = [];
  /** Bumped on every status change, so a deferred transition of an older one is dropped. */
  private migrationToken = 0;

  constructor(options: MockMonitorOptions = {}) {
    super();
    this.protocol = options.protocol ?? 'qmp';
    const v = options.version ?? { major: 7, minor: 2, micro: 22 };
    const parsed = typeof v === 'string' ? parseVersion(v) : v;
    if (!parsed) throw new MonitorError(`MockMonitor: cannot parse version '${String(v)}'`);
    this.version = { ...parsed };
    this.package = options.package ?? '';
    this.runState = options.runState ?? 'running';
    this.autoCompleteAfterPolls = options.autoCompleteAfterPolls;
    this.migration = new MockMigration(options.ramBytes ?? 67_641_344, (p) => this.advanceMigration(p));
    for (const name of capabilitiesForVersion(this.version))
      this.caps.set(name, options.capabilities?.[name] ?? false);
    for (const p of paramsForVersion(this.version)) this.params.set(p.name, p.def(this.version));
    this.bandwidth = versionAtLeast(this.version, 5, 2) ? 134217728 : 33554432;
    this.downtimeMs = versionAtLeast(this.version, 2, 1) ? 300 : 30;
  }

  /** True once {@link close} or a scripted disconnect happened. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Capability states by wire name (a copy). */
  get capabilities(): Record<string, boolean> {
    return Object.fromEntries(this.caps);
  }

  /** Current migration parameters, as `query-migrate-parameters` would return them (a copy). */
  get parameters(): Record<string, number | boolean | string> {
    return this.paramsObject();
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
    if (command === 'human-monitor-command' && typeof args?.['command-line'] === 'string') {
      info.line = args['command-line'];
    }
    this.applyFailure(info, () => {
      throw new QmpError('GenericError', 'scripted failure', cmd);
    });
    const reply = this.findReply(info);
    if (reply.found) return reply.value as T;
    return this.runQmp(cmd) as T;
  }

  /** Runs an HMP command line (over QMP: `human-monitor-command`); error text rejects with `HmpError`. */
  async humanCommand(commandLine: string): Promise<string> {
    if (this.protocol === 'qmp') {
      const text = await this.execute<string>('human-monitor-command', { 'command-line': commandLine });
      const clean = String(text).replace(/\r/g, '');
      const err = detectHmpError(clean);
      if (err !== undefined) throw new HmpError(commandLine, err);
      return clean;
    }
    if (/[\r\n]/.test(commandLine)) {
      throw new HmpError(commandLine, 'an HMP command line must not contain \\r or \\n');
    }
    this.checkOpen(commandLine);
    this.sent.push(commandLine);
    await Promise.resolve();
    this.checkOpen(commandLine);
    const info: MockCommandInfo = { protocol: 'hmp', name: hmpName(commandLine), line: commandLine };
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
    this.failures.push({ match, failure, times: options.times ?? Number.POSITIVE_INFINITY });
    return this;
  }

  /**
   * Answers matching commands with `reply` (a value, or a function of the command)
   * instead of the simulation: the QMP `return` value, or the HMP text. State is unchanged.
   */
  setReply(match: MockMatcher, reply: MockReply): this {
    this.replies.unshift({ match, reply });
    return this;
  }

  /** Removes every scripted failure and reply. */
  clearScripts(): void {
    this.failures.length = 0;
    this.replies.length = 0;
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
    const m = this.migration;
    if (m.status === undefined)
      throw new MonitorError('MockMonitor.completeMigration: no migration was started');
    this.activateIfSetup();
    this.switchover();
    m.transferred += m.remaining;
    m.remaining = 0;
    m.downtime = options.downtime ?? 10;
    m.totalTime += 100;
    this.newPass();
    this.setStatus('completed');
    if (this.runState === 'finish-migrate') this.runState = 'postmigrate';
  }

  /** Fails the running migration with QEMU's `error-desc` (e.g. `Failed to connect to …`). */
  failMigration(errorDesc = 'mock migration failure'): void {
    const m = this.migration;
    if (m.status === undefined) throw new MonitorError('MockMonitor.failMigration: no migration was started');
    m.errorDesc = errorDesc;
    if (this.runState === 'finish-migrate') this.runState = 'paused';
    this.setStatus('failed');
  }

  // ---------------------------------------------------------------- internals

  /** {@link MockMigration.advance}. */
  private advanceMigration(p: MockMigrationProgress): void {
    const m = this.migration;
    if (m.status === undefined) throw new MonitorError('MockMigration.advance: no migration was started');
    if (p.status === undefined) this.activateIfSetup();
    if (p.transferred !== undefined) m.transferred = p.transferred;
    if (p.remaining !== undefined) m.remaining = p.remaining;
    if (p.dirtyPagesRate !== undefined) m.dirtyPagesRate = p.dirtyPagesRate;
    if (p.mbps !== undefined) m.mbps = p.mbps;
    m.totalTime += 100;
    if (p.pass) this.newPass();
    if (p.status !== undefined && p.status !== m.status) {
      this.migrationToken++;
      if (p.status === 'completed') this.completeMigration();
      else if (p.status === 'failed') this.failMigration(m.errorDesc);
      else this.setStatus(p.status);
    }
  }

  /** `quit`: QEMU exits, so the monitor closes (as by the peer) just after the reply. */
  private quitSoon(): void {
    this.runState = 'shutdown';
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

  private matches(match: MockMatcher, info: MockCommandInfo): boolean {
    if (typeof match === 'function') return match(info);
    return (
      match === info.name ||
      (info.line !== undefined && (match === info.line || match === hmpName(info.line)))
    );
  }

  private applyFailure(info: MockCommandInfo, qmpFallback: () => never): void {
    const rule = this.failures.find((f) => f.times > 0 && this.matches(f.match, info));
    if (!rule) return;
    rule.times--;
    const f = rule.failure;
    const what = info.line ?? info.name;
    if (f === 'disconnect') {
      this.disconnect();
      throw new MonitorClosedError(`mock monitor closed before '${what}' got its reply`);
    }
    if (f instanceof Error) {
      if (f instanceof MonitorClosedError) this.disconnect(f);
      throw f;
    }
    if (info.protocol === 'hmp') {
      throw new HmpError(what, typeof f === 'string' ? f : `Error: ${f.desc}`);
    }
    const cmd = info.arguments ? { execute: info.name, arguments: info.arguments } : { execute: info.name };
    if (typeof f === 'string') {
      if (info.name === 'human-monitor-command') throw new HmpError(what, f);
      throw new QmpError('GenericError', f, cmd);
    }
    if (typeof f === 'object' && f !== null) throw new QmpError(f.class, f.desc, cmd);
    qmpFallback();
  }

  private findReply(info: MockCommandInfo): { found: boolean; value?: unknown } {
    const rule = this.replies.find((r) => this.matches(r.match, info));
    if (!rule) return { found: false };
    return { found: true, value: typeof rule.reply === 'function' ? rule.reply(info) : rule.reply };
  }

  private has(major: number, minor = 0): boolean {
    return versionAtLeast(this.version, major, minor);
  }

  private capOn(canonical: string): boolean {
    for (const [name, on] of this.caps) if (canonicalCapabilityName(name) === canonical) return on;
    return false;
  }

  private paramsObject(): Record<string, number | boolean | string> {
    const out: Record<string, number | boolean | string> = {};
    for (const [k, v] of this.params) out[k] = v;
    if (this.params.has('max-bandwidth')) out['max-bandwidth'] = this.bandwidth;
    if (this.params.has('downtime-limit')) out['downtime-limit'] = this.downtimeMs;
    return out;
  }

  private emitMigrationEvent(event: string, data: Record<string, unknown>): void {
    if (this.caps.get('events') === true) this.emitEvent(event, data);
  }

  private setStatus(status: string): void {
    this.migration.status = status;
    this.emitMigrationEvent('MIGRATION', { status });
  }

  private newPass(): void {
    this.migration.passes++;
    this.emitMigrationEvent('MIGRATION_PASS', { pass: this.migration.passes });
  }

  private activateIfSetup(): void {
    if (this.migration.status !== 'setup') return;
    this.migrationToken++;
    this.newPass();
    this.setStatus('active');
  }

  private switchover(): void {
    if (this.runState === 'running') {
      this.runState = 'finish-migrate';
      this.emitEvent('STOP');
    } else if (this.runState === 'paused') {
      this.runState = 'finish-migrate';
    }
  }

  private qmpError(desc: string, cmd: MockQmpCommand, cls = 'GenericError'): never {
    throw new QmpError(cls, desc, cmd);
  }

  /** Starts a migration; returns an error text or undefined. */
  private startMigration(uri: string): string | undefined {
    if (!/^(tcp:.+:\d+|unix:.+|exec:.+|fd:.+|rdma:.+:\d+|file:.+)$/.test(uri)) {
      return "Parameter 'uri' expects a valid migration protocol";
    }
    if (this.migration.running) return "There's a migration process in progress";
    if (this.runState === 'inmigrate') return 'Guest is waiting for an incoming migration';
    if (this.runState === 'postmigrate')
      return "Can't migrate the vm that was paused due to previous migration";
    const m = this.migration;
    m.uri = uri;
    m.transferred = 0;
    m.remaining = m.total;
    m.passes = 0;
    m.polls = 0;
    m.totalTime = 0;
    m.downtime = undefined;
    m.errorDesc = undefined;
    m.mbps = 0;
    this.migrationToken++;
    this.setStatus('setup');
    const token = this.migrationToken;
    setImmediate(() => {
      if (this.migrationToken === token && !this.isClosed) this.activateIfSetup();
    });
    return undefined;
  }

  private cancelMigration(): void {
    const m = this.migration;
    if (!m.running || m.status === 'cancelling') return;
    this.migrationToken++;
    this.setStatus('cancelling');
    const token = this.migrationToken;
    setImmediate(() => {
      if (this.migrationToken !== token || this.isClosed) return;
      if (this.runState === 'finish-migrate') this.runState = 'running';
      this.setStatus('cancelled');
    });
  }

  private startPostcopy(): string | undefined {
    if (!this.capOn('postcopy-ram'))
      return 'Enable postcopy with migrate_set_capability before the start of migration';
    const m = this.migration;
    if (m.status !== 'active' && m.status !== 'setup')
      return 'Postcopy must be started after migration has been started';
    this.switchover();
    this.migrationToken++;
    this.setStatus('postcopy-active');
    return undefined;
  }

  private pollMigration(): void {
    const m = this.migration;
    if (!m.running) return;
    m.polls++;
    m.totalTime += 100;
    const n = this.autoCompleteAfterPolls;
    if (n !== undefined && m.status !== 'cancelling') {
      this.activateIfSetup();
      if (m.polls >= n) {
        this.completeMigration();
        return;
      }
      const step = Math.ceil(m.total / n);
      m.transferred += Math.min(step, m.remaining);
      m.remaining = Math.max(0, m.remaining - step);
      m.mbps = 100;
    }
  }

  private ramStats(): Record<string, number> {
    const m = this.migration;
    const normal = Math.floor(m.transferred / PAGE);
    const ram: Record<string, number> = {
      transferred: m.transferred,
      remaining: m.remaining,
      total: m.total,
      duplicate: 0,
      normal,
      'normal-bytes': normal * PAGE,
    };
    if (!this.has(9, 1)) ram.skipped = 0;
    if (this.has(1, 3)) ram['dirty-pages-rate'] = m.dirtyPagesRate;
    if (this.has(1, 6)) ram.mbps = m.mbps;
    if (this.has(2, 1)) ram['dirty-sync-count'] = m.passes;
    if (this.has(2, 7)) ram['postcopy-requests'] = 0;
    if (this.has(2, 10)) ram['page-size'] = PAGE;
    if (this.has(3, 0)) ram['multifd-bytes'] = 0;
    if (this.has(4, 0)) ram['pages-per-second'] = 0;
    if (this.has(7, 0)) {
      ram['precopy-bytes'] = m.transferred;
      ram['downtime-bytes'] = 0;
      ram['postcopy-bytes'] = 0;
    }
    return ram;
  }

  private queryMigrate(): Record<string, unknown> {
    const m = this.migration;
    if (m.status === undefined) return {};
    const out: Record<string, unknown> = { status: m.status };
    if (m.status === 'cancelled' || m.status === 'cancelling') return out;
    if (m.status === 'failed') {
      if (this.has(2, 7) && m.errorDesc !== undefined) out['error-desc'] = m.errorDesc;
      return out;
    }
    if (this.has(1, 2)) out['total-time'] = m.totalTime;
    if (m.status === 'completed') {
      if (this.has(1, 3)) out.downtime = m.downtime ?? 0;
    } else if (this.has(1, 3)) {
      out['expected-downtime'] = this.downtimeMs;
    }
    if (this.has(1, 6)) out['setup-time'] = 1;
    if (m.status !== 'setup') out.ram = this.ramStats();
    if (this.caps.get('xbzrle') === true && m.status !== 'setup') {
      out['xbzrle-cache'] = { 'cache-size': 67108864, bytes: 0, pages: 0, 'cache-miss': 0, overflow: 0 };
    }
    return out;
  }

  private setCapabilities(list: Array<{ capability: string; state: boolean }>): string | undefined {
    const next = new Map(this.caps);
    for (const item of list) {
      if (!this.caps.has(item.capability)) {
        return this.has(2, 3)
          ? `Parameter 'capability' does not accept value '${item.capability}'`
          : `Invalid parameter '${item.capability}'`;
      }
      next.set(item.capability, item.state);
    }
    if (this.migration.running) return "There's a migration process in progress";
    if (this.has(2, 12)) {
      const on = [...next].filter(([, s]) => s).map(([n]) => n);
      const violation = checkCapabilityCombination(on, this.version)[0];
      if (violation) return violation.rule.qemuMessage;
    }
    for (const [k, s] of next) this.caps.set(k, s);
    return undefined;
  }

  private setParameter(p: MockParamInfo, value: unknown): string | undefined {
    const field = p.name;
    if (p.kind === 'bool' && typeof value !== 'boolean')
      return `Invalid parameter type for '${field}', expected: boolean`;
    if (p.kind === 'string' && typeof value !== 'string')
      return `Invalid parameter type for '${field}', expected: string`;
    if (p.kind === 'int') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
        return `Parameter '${field}' expects uint64`;
      if (p.range && (value < p.range.min || value > p.range.max)) return p.range.message;
    }
    if (field === 'max-bandwidth') this.bandwidth = value as number;
    else if (field === 'downtime-limit') this.downtimeMs = value as number;
    else this.params.set(field, value as number | boolean | string);
    return undefined;
  }

  private runQmp(cmd: MockQmpCommand): unknown {
    const args = cmd.arguments ?? {};
    const notFound = () =>
      this.qmpError(`The command ${cmd.execute} has not been found`, cmd, 'CommandNotFound');
    switch (cmd.execute) {
      case 'qmp_capabilities':
        return this.qmpError(
          'Capabilities negotiation is already complete, command ignored',
          cmd,
          'CommandNotFound',
        );
      case 'query-version':
        return {
          qemu: { major: this.version.major, minor: this.version.minor, micro: this.version.micro },
          package: this.package,
        };
      case 'query-status': {
        const st: Record<string, unknown> = { status: this.runState, running: this.runState === 'running' };
        if (!this.has(8, 1)) st.singlestep = false;
        return st;
      }
      case 'stop':
        this.doStop();
        return {};
      case 'cont':
        this.doCont();
        return {};
      case 'quit':
        // QEMU answers, then exits: the connection closes right after the reply.
        this.quitSoon();
        return {};
      case 'query-migrate-capabilities':
        return [...this.caps].map(([capability, state]) => ({ capability, state }));
      case 'migrate-set-capabilities': {
        const list = args.capabilities;
        if (!Array.isArray(list)) return this.qmpError("Parameter 'capabilities' is missing", cmd);
        for (const item of list) {
          if (typeof item?.capability !== 'string')
            return this.qmpError("Parameter 'capability' is missing", cmd);
          if (typeof item.state !== 'boolean') {
            return this.qmpError("Invalid parameter type for 'state', expected: boolean", cmd);
          }
        }
        const err = this.setCapabilities(list);
        if (err) return this.qmpError(err, cmd);
        return {};
      }
      case 'query-migrate-parameters':
        if (!this.has(2, 4)) return notFound();
        return this.paramsObject();
      case 'migrate-set-parameters': {
        if (!this.has(2, 4)) return notFound();
        const known = new Map(paramsForVersion(this.version).map((p) => [p.name, p]));
        for (const key of Object.keys(args)) {
          if (!known.has(key)) return this.qmpError(`Parameter '${key}' is unexpected`, cmd);
        }
        const savedParams = new Map(this.params);
        const saved = [this.bandwidth, this.downtimeMs] as const;
        for (const [key, value] of Object.entries(args)) {
          const err = this.setParameter(known.get(key)!, value);
          if (err) {
            for (const [k, v] of savedParams) this.params.set(k, v);
            [this.bandwidth, this.downtimeMs] = saved;
            return this.qmpError(err, cmd);
          }
        }
        return {};
      }
      case 'migrate_set_speed': {
        if (this.has(6, 0)) return notFound();
        const v = args.value;
        if (typeof v !== 'number' || v < 0)
          return this.qmpError("Invalid parameter type for 'value', expected: integer", cmd);
        this.bandwidth = Math.floor(v);
        return {};
      }
      case 'migrate_set_downtime': {
        if (this.has(6, 0)) return notFound();
        const v = args.value;
        if (typeof v !== 'number' || v < 0)
          return this.qmpError("Invalid parameter type for 'value', expected: number", cmd);
        if (this.has(2, 8) && v > 2000) {
          return this.qmpError(
            "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms",
            cmd,
          );
        }
        this.downtimeMs = Math.round(v * 1000);
        return {};
      }
      case 'migrate': {
        if (typeof args.uri !== 'string') return this.qmpError("Parameter 'uri' is missing", cmd);
        const err = this.startMigration(args.uri);
        if (err) return this.qmpError(err, cmd);
        return {};
      }
      case 'query-migrate':
        this.pollMigration();
        return this.queryMigrate();
      case 'migrate_cancel':
        this.cancelMigration();
        return {};
      case 'migrate-start-postcopy': {
        if (!this.has(2, 5)) return notFound();
        const err = this.startPostcopy();
        if (err) return this.qmpError(err, cmd);
        return {};
      }
      case 'human-monitor-command': {
        if (typeof args['command-line'] !== 'string')
          return this.qmpError("Parameter 'command-line' is missing", cmd);
        const text = this.runHmp(args['command-line']);
        return text === '' ? '' : `${text.replace(/\n/g, '\r\n')}`;
      }
      default:
        return notFound();
    }
  }

  private doStop(): void {
    if (this.runState === 'running') {
      this.runState = 'paused';
      this.emitEvent('STOP');
    }
  }

  private doCont(): void {
    if (this.runState === 'inmigrate' || this.runState === 'running') return;
    this.runState = 'running';
    this.emitEvent('RESUME');
  }

  /** Runs an HMP line (failures and replies applied) and returns its text. */
  private hmpText(info: MockCommandInfo, viaQmp = false): string | PromiseLike<unknown> {
    const line = info.line ?? '';
    if (!viaQmp) {
      this.applyFailure(info, () => {
        throw new HmpError(line, 'scripted failure');
      });
      const reply = this.findReply(info);
      // A promise (e.g. one that never settles, to imitate a frozen QEMU) is awaited.
      if (reply.found) return isThenable(reply.value) ? reply.value : String(reply.value ?? '');
    }
    return this.runHmp(line);
  }

  private runHmp(line: string): string {
    const words = line
      .trim()
      .split(/\s+/)
      .filter((w) => w !== '');
    const [cmd = '', ...rest] = words;
    const unknown = `unknown command: '${cmd === 'info' ? `info ${rest[0] ?? ''}`.trim() : cmd}'\n`;
    const expected = (what: string) => `${cmd}: ${what} expected\nTry "help ${cmd}" for more information\n`;
    switch (cmd) {
      case '':
        return '';
      case 'info':
        return this.runHmpInfo(rest[0] ?? '', unknown);
      case 'stop':
        this.doStop();
        return '';
      case 'cont':
      case 'c':
        this.doCont();
        return '';
      case 'quit':
      case 'q':
        this.quitSoon();
        return '';
      case 'migrate_set_speed': {
        if (this.has(6, 0)) return unknown;
        if (rest[0] === undefined) return expected('size');
        const bytes = parseHmpSize(rest[0], 1024 * 1024);
        if (bytes === undefined) return 'invalid size\n';
        this.bandwidth = bytes;
        return '';
      }
      case 'migrate_set_downtime': {
        if (this.has(6, 0)) return unknown;
        if (rest[0] === undefined) return expected('number');
        const m = /^(\d+(?:\.\d+)?)(s|ms|us|ns)?$/.exec(rest[0]);
        if (!m) return "Error: Parameter 'value' expects a number\n";
        const div = { s: 1, ms: 1e3, us: 1e6, ns: 1e9 }[(m[2] ?? 's') as 's' | 'ms' | 'us' | 'ns'];
        const ms = Math.round((Number(m[1]) / div) * 1000);
        if (this.has(2, 8) && ms > 2_000_000) {
          return "Error: Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms\n";
        }
        this.downtimeMs = ms;
        return '';
      }
      case 'migrate_set_parameter': {
        if (!this.has(2, 4)) return unknown;
        const [name, value] = rest;
        if (name === undefined || value === undefined) return expected('string');
        const p = paramsForVersion(this.version).find((x) => x.name === name);
        if (!p) return `Error: invalid parameter value: ${name}\n`;
        let v: number | boolean | string;
        if (p.kind === 'bool') {
          if (value !== 'on' && value !== 'off') return `Error: Parameter '${name}' expects 'on' or 'off'\n`;
          v = value === 'on';
        } else if (p.kind === 'string') {
          // HMP unquotes `""` up to 10.0 (observed on 5.2, 7.2, 10.0); 11.1 stores it literally.
          v = value === '""' && !this.has(10, 1) ? '' : value;
        } else {
          const parsed = parseHmpSize(
            value,
            name === 'max-bandwidth' || name === 'max-postcopy-bandwidth' ? 1024 * 1024 : 1,
          );
          if (parsed === undefined) {
            return `Error: Parameter '${name}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n`;
          }
          v = parsed;
        }
        const err = this.setParameter(p, v);
        return err ? `Error: ${err}\n` : '';
      }
      case 'migrate_set_capability': {
        const [name, value] = rest;
        if (name === undefined) return expected('string');
        if (value !== 'on' && value !== 'off') {
          return `Expected 'on' or 'off'\nTry "help migrate_set_capability" for more information\n`;
        }
        if (!this.caps.has(name)) {
          return this.has(2, 3)
            ? `Error: invalid parameter value: ${name}\n`
            : `Invalid parameter '${name}'\n`;
        }
        const err = this.setCapabilities([{ capability: name, state: value === 'on' }]);
        return err ? `Error: ${err}\n` : '';
      }
      case 'migrate': {
        const uri = rest.find((w) => !w.startsWith('-'));
        if (uri === undefined) return expected('string');
        const err = this.startMigration(uri);
        return err ? `Error: ${err}\n` : '';
      }
      case 'migrate_cancel':
        this.cancelMigration();
        return '';
      case 'migrate_start_postcopy': {
        if (!this.has(2, 5)) return unknown;
        const err = this.startPostcopy();
        return err ? `Error: ${err}\n` : '';
      }
      default:
        return unknown;
    }
  }

  private runHmpInfo(what: string, unknown: string): string {
    switch (what) {
      case 'version':
        return `${formatVersion(this.version)}${this.package}\n`;
      case 'status': {
        const s = this.runState;
        if (s === 'running') return 'VM status: running\n';
        if (s === 'paused') return 'VM status: paused\n';
        return `VM status: paused (${s})\n`;
      }
      case 'migrate_capabilities':
        return [...this.caps].map(([n, s]) => `${n}: ${s ? 'on' : 'off'}\n`).join('');
      case 'migrate_parameters': {
        if (!this.has(2, 4)) return unknown;
        return Object.entries(this.paramsObject())
          .map(([k, v]) => {
            const val =
              typeof v === 'boolean' ? (v ? 'on' : 'off') : typeof v === 'string' ? `'${v}'` : String(v);
            if (k === 'max-bandwidth') return `${k}: ${v} bytes/second\n`;
            if (k === 'downtime-limit' || (k.startsWith('announce-') && k !== 'announce-rounds'))
              return `${k}: ${v} ms\n`;
            if (k === 'xbzrle-cache-size') return `${k}: ${v} bytes\n`;
            return `${k}: ${val}\n`;
          })
          .join('');
      }
      case 'migrate':
        this.pollMigration();
        return this.infoMigrate();
      default:
        return unknown;
    }
  }

  private infoMigrate(): string {
    const m = this.migration;
    const lines: string[] = [];
    if (this.has(7, 0)) {
      lines.push(
        'globals:',
        'store-global-state: on',
        'only-migratable: off',
        'send-configuration: on',
        'send-section-footer: on',
        'decompress-error-check: on',
        'clear-bitmap-shift: 18',
      );
    }
    if (m.status !== undefined) {
      if (m.status === 'failed' && m.errorDesc !== undefined) {
        lines.push(`Migration status: failed (${m.errorDesc})`, `total time: ${m.totalTime} ms`);
      } else {
        lines.push(`Migration status: ${m.status}`);
        if (m.status !== 'cancelled' && m.status !== 'cancelling' && m.status !== 'failed') {
          lines.push(`total time: ${m.totalTime} ms`);
          if (m.status === 'completed') lines.push(`downtime: ${m.downtime ?? 0} ms`);
          else lines.push(`expected downtime: ${this.downtimeMs} ms`);
          lines.push('setup: 1 ms');
          if (m.status !== 'setup') {
            const kb = (b: number) => Math.floor(b / 1024);
            lines.push(
              `transferred ram: ${kb(m.transferred)} kbytes`,
              `throughput: ${m.mbps.toFixed(2)} mbps`,
              `remaining ram: ${kb(m.remaining)} kbytes`,
              `total ram: ${kb(m.total)} kbytes`,
              'duplicate: 0 pages',
              'skipped: 0 pages',
              `normal: ${Math.floor(m.transferred / PAGE)} pages`,
              `normal bytes: ${kb(Math.floor(m.transferred / PAGE) * PAGE)} kbytes`,
              `dirty sync count: ${m.passes}`,
            );
            if (this.has(2, 10)) lines.push('page size: 4 kbytes');
          }
        } else {
          lines.push(`total time: ${m.totalTime} ms`);
        }
      }
    }
    return lines.map((l) => `${l}\n`).join('');
  }
}

function hmpName(line: string): string {
  const words = line.trim().split(/\s+/);
  if (words[0] === 'info' && words[1] !== undefined) return `info ${words[1]}`;
  return words[0] ?? '';
}
