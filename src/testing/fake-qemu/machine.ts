/**
 * `FakeQemu`: one QEMU's state as the monitor sees it (run state, migration, incoming
 * side, capabilities and parameters of its version, events), with the transitions QEMU
 * makes. No protocol here: the QMP and HMP command tables and servers drive it.
 */
import { MonitorError } from '../../errors.js';
import type { MonitorEventPayloads } from '../../monitor/event-types.js';
import type { MonitorEvent } from '../../monitor/types.js';
import { parseVersion, type QemuVersion, versionAtLeast } from '../../qemu/version.js';
import type { MockParamInfo } from '../mock-params.js';
import { type FakeIncoming, FakeMigration, type FakeMigrationProgress } from './migration-state.js';
import { FakeObjects } from './objects.js';
import { FakeMigrationSettings } from './settings.js';

/** QEMU run states (any string is accepted). */
export type FakeRunState =
  | 'running'
  | 'paused'
  | 'inmigrate'
  | 'postmigrate'
  | 'finish-migrate'
  | 'shutdown'
  | (string & {});

/** Options for {@link FakeQemu}. */
export interface FakeQemuOptions {
  /** QEMU version to imitate, `'1.7.0'` or `{ major, minor, micro }` (default 7.2.22). */
  version?: string | QemuVersion;
  /** Package string for `query-version` / `info version` (default `''`). */
  package?: string;
  /** Initial run state (default `running`, or `inmigrate` with {@link incoming}). */
  runState?: FakeRunState;
  /** Guest RAM in bytes (default 67 641 344, QEMU 7.2 with `-m 64`). */
  ramBytes?: number;
  /** Initial capability states by wire name. */
  capabilities?: Record<string, boolean>;
  /** Started with `-incoming <uri>`: a destination waiting for the VM. */
  incoming?: string;
  /** How fast the guest dirties memory while migrating, bytes per second (default 0). */
  dirtyRateBytesPerSec?: number;
  /**
   * Runs QEMU's short asynchronous transitions (`setup` → `active`, `cancelling` →
   * `cancelled`); default `setImmediate`.
   */
  defer?: (fn: () => void) => void;
}

const PAGE = 4096;

/** A typed event as {@link FakeQemu} emits it. */
export type FakeQemuEvent = {
  [N in keyof MonitorEventPayloads]: { event: N; data: MonitorEventPayloads[N] };
}[keyof MonitorEventPayloads];

/**
 * The state machine of one QEMU. Transitions follow QEMU: `migrate` → `setup` → `active`
 * (passes, `MIGRATION_PASS`) → switch-over (`STOP`, `finish-migrate`) → `completed` with
 * the source `postmigrate`; `migrate_cancel` → `cancelling` → `cancelled`; `quit` →
 * `shutdown`. `MIGRATION` / `MIGRATION_PASS` are emitted only with the `events`
 * capability on, as QEMU does.
 */
export class FakeQemu {
  /** The QEMU version imitated. */
  readonly version: QemuVersion;
  /** Package string reported with the version. */
  readonly package: string;
  /** The outgoing migration. */
  readonly migration: FakeMigration;
  /** The incoming side, for a QEMU started with `-incoming`. */
  incoming: FakeIncoming | undefined;
  /** Current run state (`query-status` / `info status`). */
  runState: FakeRunState;
  /** When set, `query-migrate` reports `completed` at the N-th poll of an active migration. */
  autoCompleteAfterPolls: number | undefined;
  /** Bytes the guest dirties per second while migrating. */
  dirtyRateBytesPerSec: number;
  /** Run state when `migrate` was sent: the destination inherits it. */
  runStateAtMigrate: FakeRunState | undefined;
  /**
   * Decides whether a post-copy resume to `uri` reaches a destination that listens there
   * (set by `FakeMigrationPair`). Without it nobody listens: the source stays paused.
   */
  resumeReaches: ((uri: string) => boolean) | undefined;
  /** The user-creatable objects (TLS credentials, authorization). */
  readonly objects: FakeObjects;
  /** Capabilities and parameters. */
  private readonly settings: FakeMigrationSettings;
  private readonly eventListeners = new Set<(ev: MonitorEvent) => void>();
  private readonly statusListeners = new Set<(status: string) => void>();
  private readonly incomingListeners = new Set<(status: FakeIncoming['status']) => void>();
  private readonly quitListeners = new Set<() => void>();
  private readonly defer: (fn: () => void) => void;
  private exited = false;
  /** Bumped on every status change, so a deferred transition of an older one is dropped. */
  private migrationToken = 0;
  /** Bytes dirtied during the current pass, to be sent by the next one. */
  private dirtied = 0;

  constructor(options: FakeQemuOptions = {}) {
    const v = options.version ?? { major: 7, minor: 2, micro: 22 };
    const parsed = typeof v === 'string' ? parseVersion(v) : v;
    if (!parsed) throw new MonitorError(`FakeQemu: cannot parse version '${String(v)}'`);
    this.version = { ...parsed };
    this.package = options.package ?? '';
    this.incoming = options.incoming === undefined ? undefined : { uri: options.incoming, status: 'setup' };
    this.runState = options.runState ?? (options.incoming === undefined ? 'running' : 'inmigrate');
    this.dirtyRateBytesPerSec = options.dirtyRateBytesPerSec ?? 0;
    this.defer = options.defer ?? ((fn) => setImmediate(fn));
    this.migration = new FakeMigration(options.ramBytes ?? 67_641_344, (p) => this.advanceMigration(p));
    this.settings = new FakeMigrationSettings(this.version, options.capabilities);
    this.objects = new FakeObjects(this.version);
  }

  /** True once `quit` ran (or {@link exit}): the process is gone. */
  get hasExited(): boolean {
    return this.exited;
  }

  /** Capability states by wire name (a copy). */
  get capabilities(): Record<string, boolean> {
    return this.settings.capabilities;
  }

  /** True when capability `name` (wire name) exists on this version. */
  hasCapability(name: string): boolean {
    return this.settings.hasCapability(name);
  }

  /** Current migration parameters, as `query-migrate-parameters` returns them (a copy). */
  get parameters(): Record<string, number | boolean | string> {
    return this.settings.parameters;
  }

  /** Bandwidth limit in bytes/s (`max-bandwidth`, `migrate_set_speed`). */
  get bandwidth(): number {
    return this.settings.bandwidth;
  }

  set bandwidth(bytesPerSec: number) {
    this.settings.bandwidth = bytesPerSec;
  }

  /** Downtime limit in ms (`downtime-limit`, `migrate_set_downtime`). */
  get downtimeMs(): number {
    return this.settings.downtimeMs;
  }

  set downtimeMs(ms: number) {
    this.settings.downtimeMs = ms;
  }

  /** True when this QEMU is at least `major.minor`. */
  has(major: number, minor = 0): boolean {
    return versionAtLeast(this.version, major, minor);
  }

  /** Subscribes to every event QEMU sends; returns the unsubscribe function. */
  onEvent(listener: (ev: MonitorEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Subscribes to the outgoing migration's status changes (with or without `events`). */
  onMigrationStatus(listener: (status: string) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Subscribes to the incoming side's status changes made by post-copy pause and recovery. */
  onIncomingStatus(listener: (status: FakeIncoming['status']) => void): () => void {
    this.incomingListeners.add(listener);
    return () => this.incomingListeners.delete(listener);
  }

  /** Called once when QEMU exits (`quit`, {@link exit}). */
  onExit(listener: () => void): () => void {
    this.quitListeners.add(listener);
    return () => this.quitListeners.delete(listener);
  }

  /** Sends an event to every listener (a typed one, or any name with any data). */
  emit(event: FakeQemuEvent['event'] | (string & {}), data: Record<string, unknown> = {}): void {
    if (this.exited) return;
    const now = Date.now();
    const ev: MonitorEvent = {
      event,
      data,
      timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 },
    };
    for (const l of [...this.eventListeners]) l(ev);
  }

  /** `stop`: a running VM pauses (`STOP`). */
  stop(): void {
    if (this.runState === 'running') {
      this.runState = 'paused';
      this.emit('STOP');
    }
  }

  /**
   * `cont`: resumes the VM (`RESUME`); a no-op while it runs or waits for an incoming
   * migration. Refused in `finish-migrate` (a post-copy source: "Migration is not
   * finalized yet", measured on 7.2 and 11.1). Returns QEMU's error text, or undefined.
   */
  cont(): string | undefined {
    if (this.runState === 'finish-migrate') return 'Migration is not finalized yet';
    if (this.runState === 'inmigrate' || this.runState === 'running') return undefined;
    this.runState = 'running';
    this.emit('RESUME');
    return undefined;
  }

  /** `quit`: `SHUTDOWN` (with its reason from 4.0), then QEMU exits. */
  quit(): void {
    if (this.exited) return;
    this.emit('SHUTDOWN', this.has(4, 0) ? { guest: false, reason: 'host-qmp-quit' } : {});
    this.exit();
  }

  /** The process ends without a word (killed, crashed, or a failed incoming load). */
  exit(): void {
    if (this.exited) return;
    this.runState = 'shutdown';
    this.exited = true;
    this.migrationToken++;
    for (const l of [...this.quitListeners]) l();
  }

  /** Turns capabilities on or off, all or nothing; returns QEMU's error text, or undefined. */
  setCapabilities(list: ReadonlyArray<{ capability: string; state: boolean }>): string | undefined {
    return this.settings.setCapabilities(list, this.migration.running);
  }

  /** Sets one migration parameter; returns QEMU's error text, or undefined. */
  setParameter(p: MockParamInfo, value: unknown): string | undefined {
    return this.settings.setParameter(p, value);
  }

  /** Sets several parameters at once, all or nothing; returns QEMU's error text, or undefined. */
  setParameters(values: Record<string, unknown>): string | undefined {
    return this.settings.setParameters(values);
  }

  /** `migrate <uri>`: starts the outgoing migration; returns QEMU's error text, or undefined. */
  startMigration(uri: string): string | undefined {
    if (!/^(tcp:.+:\d+|unix:.+|exec:.+|fd:.+|rdma:.+:\d+|file:.+)$/.test(uri)) {
      return "Parameter 'uri' expects a valid migration protocol";
    }
    if (this.migration.running) return "There's a migration process in progress";
    if (this.runState === 'inmigrate') return 'Guest is waiting for an incoming migration';
    if (this.runState === 'postmigrate')
      return "Can't migrate the vm that was paused due to previous migration";
    this.migration.reset(uri);
    this.dirtied = 0;
    this.runStateAtMigrate = this.runState;
    this.migrationToken++;
    this.setStatus('setup');
    const token = this.migrationToken;
    this.defer(() => {
      if (this.migrationToken === token && !this.exited) this.activateIfSetup();
    });
    return undefined;
  }

  /** `migrate_cancel`: `cancelling`, then `cancelled`; the source runs again. */
  cancelMigration(): void {
    const m = this.migration;
    if (!m.running || m.status === 'cancelling') return;
    this.migrationToken++;
    this.setStatus('cancelling');
    const token = this.migrationToken;
    this.defer(() => {
      if (this.migrationToken !== token || this.exited) return;
      if (this.runState === 'finish-migrate') this.runState = 'running';
      this.setStatus('cancelled');
    });
  }

  /** `migrate-start-postcopy`; returns QEMU's error text, or undefined. */
  startPostcopy(): string | undefined {
    if (this.capabilities['postcopy-ram'] !== true && this.capabilities['x-postcopy-ram'] !== true)
      return 'Enable postcopy with migrate_set_capability before the start of migration';
    const m = this.migration;
    if (m.status !== 'active' && m.status !== 'setup')
      return 'Postcopy must be started after migration has been started';
    this.switchover();
    this.migrationToken++;
    this.setStatus('postcopy-active');
    return undefined;
  }

  /**
   * `migrate-pause`: breaks the stream of a post-copy migration on this end (outgoing,
   * else incoming), which goes to `postcopy-paused`. Accepted in `postcopy-active`, from
   * 8.2 also in `postcopy-recover` (measured: 5.2/7.2 refuse it there, 10.0/11.1 take it);
   * from 10.0 the source keeps "Postcopy migration is paused by the user" as `error-desc`.
   * Returns QEMU's error text, or undefined.
   */
  pausePostcopy(): string | undefined {
    if (!this.has(3, 0)) return 'The command migrate-pause has not been found';
    const allowed = this.has(8, 2) ? ['postcopy-active', 'postcopy-recover'] : ['postcopy-active'];
    const refused = `migrate-pause is currently only supported during ${this.has(8, 2) ? 'postcopy-active or postcopy-recover' : 'postcopy-active'} state`;
    const m = this.migration;
    if (m.status !== undefined && allowed.includes(m.status)) {
      if (this.has(10, 0)) m.errorDesc = 'Postcopy migration is paused by the user';
      this.migrationToken++;
      this.setStatus('postcopy-paused');
      return undefined;
    }
    const inc = this.incoming;
    if (inc && allowed.includes(inc.status)) {
      inc.recoverUri = undefined;
      this.setIncomingStatus('postcopy-paused');
      return undefined;
    }
    return refused;
  }

  /**
   * `migrate-recover <uri>` on a destination whose post-copy is paused: it listens on
   * `uri` for the source's resume and stays `postcopy-paused` until the source connects.
   * 5.2 and 7.2 send a `MIGRATION` event `setup` for it; before 7.2 a second one is
   * refused ("Migrate recovery is triggered already"). Returns QEMU's error text, or undefined.
   */
  recoverPostcopy(uri: string): string | undefined {
    if (!this.has(3, 0)) return 'The command migrate-recover has not been found';
    const inc = this.incoming;
    if (inc?.status !== 'postcopy-paused') return 'Migrate recover can only be run when postcopy is paused.';
    if (inc.recoverUri !== undefined && !this.has(7, 0)) return 'Migrate recovery is triggered already';
    if (!/^(tcp:.+:\d+|unix:.+)$/.test(uri)) return "Parameter 'uri' expects a valid migration protocol";
    inc.recoverUri = uri;
    if (!this.has(10, 0) && this.settings.capabilityOn('events')) this.emit('MIGRATION', { status: 'setup' });
    return undefined;
  }

  /**
   * `migrate {uri, resume: true}` / `migrate -r`: a source in `postcopy-paused` reconnects
   * to `uri`. QEMU answers at once; reached ({@link resumeReaches}), it goes through
   * `postcopy-recover-setup` (9.1+) and `postcopy-recover` to `postcopy-active`; not
   * reached, it stays (or falls back to) `postcopy-paused`. Returns QEMU's error text, or undefined.
   */
  resumePostcopy(uri: string): string | undefined {
    const m = this.migration;
    if (m.status !== 'postcopy-paused') return 'Cannot resume if there is no paused migration';
    if (!/^(tcp:.+:\d+|unix:.+|exec:.+|fd:.+|rdma:.+:\d+|file:.+)$/.test(uri)) {
      return "Parameter 'uri' expects a valid migration protocol";
    }
    this.migrationToken++;
    const reached = this.resumeReaches?.(uri) === true;
    if (this.has(9, 1)) this.setStatus('postcopy-recover-setup');
    const token = this.migrationToken;
    this.defer(() => {
      if (this.migrationToken !== token || this.exited) return;
      if (!reached) {
        if (m.status !== 'postcopy-paused') this.setStatus('postcopy-paused');
        return;
      }
      m.errorDesc = undefined;
      this.setStatus('postcopy-recover');
      this.defer(() => {
        if (this.migrationToken !== token || this.exited) return;
        this.setStatus('postcopy-active');
      });
    });
    return undefined;
  }

  /**
   * The post-copy stream broke (a reset, a peer that paused): a post-copy migration on
   * either side of this QEMU goes to `postcopy-paused`, the outgoing one with
   * `errorDesc` as QEMU's `error-desc`. A no-op outside post-copy.
   */
  breakPostcopyStream(errorDesc = 'Detected IO failure for postcopy. Migration paused.'): void {
    const m = this.migration;
    if (
      m.status === 'postcopy-active' ||
      m.status === 'postcopy-recover' ||
      m.status === 'postcopy-recover-setup'
    ) {
      m.errorDesc = errorDesc;
      this.migrationToken++;
      this.setStatus('postcopy-paused');
    }
    const inc = this.incoming;
    if (inc && (inc.status === 'postcopy-active' || inc.status === 'postcopy-recover')) {
      inc.recoverUri = undefined;
      this.setIncomingStatus('postcopy-paused');
    }
  }

  /** Sets the incoming side's status and tells {@link onIncomingStatus} listeners. */
  setIncomingStatus(status: FakeIncoming['status']): void {
    const inc = this.incoming;
    if (!inc || inc.status === status) return;
    inc.status = status;
    if (this.settings.capabilityOn('events')) this.emit('MIGRATION', { status });
    for (const l of [...this.incomingListeners]) l(status);
  }

  /** Completes the running migration: `STOP` (if running), then `completed`, source `postmigrate`. */
  completeMigration(options: { downtime?: number } = {}): void {
    const m = this.migration;
    if (m.status === undefined) throw new MonitorError('completeMigration: no migration was started');
    this.activateIfSetup();
    this.switchover();
    m.transferred += m.remaining + this.dirtied;
    m.remaining = 0;
    this.dirtied = 0;
    m.downtime = options.downtime ?? 10;
    m.totalTime += 100;
    this.newPass();
    this.migrationToken++;
    this.setStatus('completed');
    if (this.runState === 'finish-migrate') this.runState = 'postmigrate';
  }

  /** Fails the running migration with QEMU's `error-desc` (e.g. `Failed to connect to …`). */
  failMigration(errorDesc = 'fake migration failure'): void {
    const m = this.migration;
    if (m.status === undefined) throw new MonitorError('failMigration: no migration was started');
    m.errorDesc = errorDesc;
    if (this.runState === 'finish-migrate') this.runState = 'paused';
    this.migrationToken++;
    this.setStatus('failed');
  }

  /** Applies {@link FakeMigration.advance}. */
  advanceMigration(p: FakeMigrationProgress): void {
    const m = this.migration;
    if (m.status === undefined) throw new MonitorError('FakeMigration.advance: no migration was started');
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

  /** Counts a status query of a running migration (and applies `autoCompleteAfterPolls`). */
  pollMigration(): void {
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

  /**
   * Lets `ms` of (fake) time pass for an active precopy migration: `max-bandwidth` bytes
   * per second are sent, the guest dirties `dirtyRateBytesPerSec`; a pass ends when its
   * bytes are sent, and QEMU switches over once what is left fits in `downtime-limit`.
   * In post-copy the rest is sent and the migration completes. Returns true when this
   * completed the migration.
   */
  tick(ms: number): boolean {
    const m = this.migration;
    if (this.exited || ms <= 0) return false;
    if (m.status === 'setup') this.activateIfSetup();
    if (m.status !== 'active' && m.status !== 'postcopy-active') return false;
    m.totalTime += ms;
    // `max-bandwidth` 0 means no limit: 10 GiB/s here.
    const bandwidth = this.bandwidth > 0 ? this.bandwidth : 10 * 2 ** 30;
    m.mbps = (bandwidth * 8) / 1e6;
    if (m.status === 'postcopy-active') {
      // The destination runs the VM: nothing is dirtied here, the rest is sent and done.
      const send = Math.floor(Math.min((bandwidth * ms) / 1000, m.remaining + this.dirtied));
      m.transferred += send;
      const left = m.remaining + this.dirtied - send;
      m.remaining = left;
      this.dirtied = 0;
      if (left > 0) return false;
      this.completeMigration({ downtime: m.downtime ?? 0 });
      return true;
    }
    m.dirtyPagesRate = Math.round(this.dirtyRateBytesPerSec / PAGE);
    let budget = (bandwidth * ms) / 1000;
    this.dirtied = Math.min(m.total, this.dirtied + (this.dirtyRateBytesPerSec * ms) / 1000);
    for (let guard = 0; guard < 1000; guard++) {
      const send = Math.floor(Math.min(budget, m.remaining));
      m.remaining -= send;
      m.transferred += send;
      budget -= send;
      const left = m.remaining + this.dirtied;
      if ((left * 1000) / bandwidth <= this.downtimeMs) {
        this.completeMigration({ downtime: Math.max(1, Math.ceil((left * 1000) / bandwidth)) });
        return true;
      }
      if (m.remaining > 0) return false;
      // The pass is done: the next one sends what was dirtied meanwhile.
      m.remaining = Math.floor(this.dirtied);
      this.dirtied = 0;
      this.newPass();
      if (budget < 1) return false;
    }
    return false;
  }

  private setStatus(status: string): void {
    this.migration.status = status;
    if (this.settings.capabilityOn('events')) this.emit('MIGRATION', { status });
    for (const l of [...this.statusListeners]) l(status);
  }

  private newPass(): void {
    this.migration.passes++;
    if (this.settings.capabilityOn('events')) this.emit('MIGRATION_PASS', { pass: this.migration.passes });
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
      this.emit('STOP');
    } else if (this.runState === 'paused') {
      this.runState = 'finish-migrate';
    }
  }
}
