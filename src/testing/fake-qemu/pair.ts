/**
 * `createFakeMigrationPair`: a source and a destination fake QEMU linked like two hosts
 * of a live migration, on a {@link FakeClock} the test controls. Each end serves the real
 * `QmpMonitor` / `HmpMonitor`, so `KVMHypervisor` runs unchanged against it.
 *
 * Time design (deterministic, cannot hang): the migration moves only when fake time
 * passes, and fake time passes only by `clock.advance(ms)` and, by default, by
 * `advancePerQueryMs` (1 s) on every migration status query (`query-migrate` /
 * `info migrate`) either end receives. So a `waitForMigration` that polls drives the
 * migration to its end by itself, in a number of polls that depends only on the
 * settings (bandwidth, RAM, dirty rate), never on the machine's speed. With
 * `advancePerQueryMs: 0`, only the test moves time; give every wait a `timeoutMs` then.
 */
import type { Monitor, MonitorProtocol } from '../../monitor/types.js';
import type { QemuVersion } from '../../qemu/version.js';
import { FakeClock } from './clock.js';
import { FakeQemuHost } from './host.js';
import type { FakeRunState } from './machine.js';

/** One end's own settings in {@link FakeMigrationPairOptions}. */
export interface FakeEndOptions {
  /** QEMU version of this end (default: the pair's). */
  version?: string | QemuVersion;
  /** Monitor protocol of this end (default: the pair's). */
  protocol?: MonitorProtocol;
  /** Package string (`query-version`). */
  package?: string;
  /** Initial capability states by wire name. */
  capabilities?: Record<string, boolean>;
}

/** Options for {@link createFakeMigrationPair}. */
export interface FakeMigrationPairOptions {
  /** QEMU version of both ends (default 7.2.22). */
  version?: string | QemuVersion;
  /** Monitor protocol of both ends: `qmp` (default) or `hmp`. */
  protocol?: MonitorProtocol;
  /** Overrides for the source. */
  source?: FakeEndOptions;
  /** Overrides for the destination. */
  destination?: FakeEndOptions;
  /** Guest RAM in bytes (default 128 MiB). */
  ramBytes?: number;
  /** How fast the guest dirties memory while migrating, bytes/s (default 0). */
  dirtyRateBytesPerSec?: number;
  /** Port the destination listens on (`-incoming tcp:0.0.0.0:PORT`; default 8102, Ganeti's `migration_port`). */
  migrationPort?: number;
  /** Fake time that passes on each migration status query, in ms (default 1000; 0: only `clock.advance`). */
  advancePerQueryMs?: number;
  /** Run state of the source VM (default `running`; `paused` imitates a non-live migration's start). */
  sourceRunState?: FakeRunState;
  /** The destination was started with `-S`: it stays paused after the migration arrives. */
  destinationStartsPaused?: boolean;
  /**
   * Fake time the destination takes to load the VM's state after the source reports
   * `completed` (default 0): meanwhile it stays `inmigrate` with its incoming status
   * `active`, as a real QEMU does for a moment (longer under load).
   */
  destinationLoadMs?: number;
  /**
   * The destination was started with `-incoming defer`: it listens once `migrate-incoming`
   * names a URI on {@link migrationPort} (as `acceptInstance(…, { listen })` sends, and a
   * TLS destination needs).
   */
  deferIncoming?: boolean;
}

/** What the destination QEMU does when the migration fails after the source connected. */
export type FakeDestinationOnFailure =
  /** Exits, as QEMU does when loading an incoming migration fails (the default). */
  | 'exits'
  /** Stays up reporting `failed` as its incoming status. */
  | 'reports'
  /**
   * Stays up waiting (`inmigrate`) with nothing loaded, as when the source never reached
   * it: its incoming status reads `setup` again.
   */
  | 'waits';

/** A linked source/destination pair; see {@link createFakeMigrationPair}. */
export class FakeMigrationPair {
  /** The fake time both ends run on. */
  readonly clock = new FakeClock();
  /** The source QEMU (running the VM). */
  readonly source: FakeQemuHost;
  /** The destination QEMU (`-incoming tcp:0.0.0.0:<migrationPort>`). */
  readonly destination: FakeQemuHost;
  /** The port the destination listens on. */
  readonly migrationPort: number;
  private readonly advancePerQueryMs: number;
  private readonly destinationStartsPaused: boolean;
  private readonly destinationLoadMs: number;
  private connected = false;
  private onFailure: FakeDestinationOnFailure = 'exits';

  constructor(options: FakeMigrationPairOptions = {}) {
    this.migrationPort = options.migrationPort ?? 8102;
    this.advancePerQueryMs = options.advancePerQueryMs ?? 1000;
    this.destinationStartsPaused = options.destinationStartsPaused ?? false;
    this.destinationLoadMs = options.destinationLoadMs ?? 0;
    const end = (o: FakeEndOptions | undefined, name: string) => ({
      version: o?.version ?? options.version ?? '7.2.22',
      protocol: o?.protocol ?? options.protocol ?? 'qmp',
      ...(o?.package === undefined ? {} : { package: o.package }),
      ...(o?.capabilities === undefined ? {} : { capabilities: o.capabilities }),
      ramBytes: options.ramBytes ?? 128 * 2 ** 20,
      name,
      onCommand: (c: string) => this.onQuery(c),
    });
    this.source = new FakeQemuHost({
      ...end(options.source, 'fake-source'),
      runState: options.sourceRunState ?? 'running',
      dirtyRateBytesPerSec: options.dirtyRateBytesPerSec ?? 0,
    });
    this.destination = new FakeQemuHost({
      ...end(options.destination, 'fake-destination'),
      incoming: options.deferIncoming ? 'defer' : `tcp:0.0.0.0:${this.migrationPort}`,
    });
    this.clock.onAdvance((ms) => {
      // A frozen QEMU (SIGSTOPped) migrates nothing.
      if (!this.source.faults.isFrozen) this.source.qemu.tick(ms);
    });
    this.source.qemu.onMigrationStatus((status) => this.linkStatus(status));
    this.destination.qemu.onIncomingStatus((status) => this.linkIncoming(status));
    this.source.qemu.resumeReaches = (uri) => this.resumeReaches(uri);
    // A QEMU that dies in post-copy resets the stream: the other end pauses (measured).
    this.source.qemu.onExit(() => {
      if (this.connected) this.destination.qemu.breakPostcopyStream();
    });
    this.destination.qemu.onExit(() => {
      if (this.connected && !this.source.qemu.hasExited) {
        this.source.qemu.breakPostcopyStream('Detected IO failure for postcopy. Migration paused.');
      }
    });
  }

  /** A `KVMHypervisor` `monitor` factory for the source node: a new real client per call. */
  readonly sourceMonitor = (): Promise<Monitor> => this.source.connect();

  /** A `KVMHypervisor` `monitor` factory for the destination node. */
  readonly destinationMonitor = (): Promise<Monitor> => this.destination.connect();

  /** Completes the source's running migration now (switch-over, `completed`; the destination runs). */
  completeNow(options: { downtimeMs?: number } = {}): void {
    if (!this.source.qemu.migration.running)
      throw new Error('FakeMigrationPair.completeNow: no migration is running');
    this.source.qemu.completeMigration(
      options.downtimeMs === undefined ? {} : { downtime: options.downtimeMs },
    );
  }

  /**
   * Fails the source's running migration with QEMU's `error-desc` `reason` (what
   * `query-migrate` / `info migrate` then report). The destination, if the source had
   * reached it, does what `destination` says (default: exits, as QEMU does).
   */
  fail(reason: string, options: { destination?: FakeDestinationOnFailure } = {}): void {
    if (!this.source.qemu.migration.running)
      throw new Error('FakeMigrationPair.fail: no migration is running');
    this.onFailure = options.destination ?? 'exits';
    try {
      this.source.qemu.failMigration(reason);
    } finally {
      this.onFailure = 'exits';
    }
  }

  /**
   * The post-copy migration stream breaks (a connection reset): both ends go to
   * `postcopy-paused` at once, as measured on QEMU 5.2 … 11.1. Recover with
   * `migrate-recover` on the destination and a resume on the source.
   */
  breakPostcopyStream(): void {
    this.source.qemu.breakPostcopyStream();
    this.destination.qemu.breakPostcopyStream();
  }

  /** Resets every monitor connection of both ends (QEMU goes on). */
  dropConnections(): void {
    this.source.dropConnections();
    this.destination.dropConnections();
  }

  private onQuery(command: string): void {
    if (this.advancePerQueryMs > 0 && (command === 'query-migrate' || command.trim() === 'info migrate')) {
      this.clock.advance(this.advancePerQueryMs);
    }
  }

  /** Mirrors the source's migration status on the destination. */
  private linkStatus(status: string): void {
    const dst = this.destination.qemu;
    const src = this.source.qemu;
    switch (status) {
      case 'setup': {
        // QEMU connects right after `migrate` and fails the migration when nobody listens.
        const refused = this.refusedBecause(src.migration.uri ?? '');
        this.connected = refused === undefined;
        if (refused) src.failMigration(refused);
        return;
      }
      case 'active':
        if (this.connected && dst.incoming) dst.incoming.status = 'active';
        return;
      case 'postcopy-active':
        // In post-copy the destination runs the VM and pulls the rest.
        if (!this.connected || dst.hasExited) return;
        dst.setIncomingStatus('postcopy-active');
        if (dst.runState === 'inmigrate') {
          dst.runState = 'running';
          dst.emit('RESUME');
        }
        return;
      case 'postcopy-paused':
        // One stream: the source pausing breaks it for the destination too.
        if (this.connected && !dst.hasExited) dst.breakPostcopyStream();
        return;
      case 'postcopy-recover':
        if (this.connected && !dst.hasExited && dst.incoming) {
          dst.incoming.recoverUri = undefined;
          dst.setIncomingStatus('postcopy-recover');
        }
        return;
      case 'completed': {
        if (!this.connected || dst.hasExited) return;
        if (this.destinationLoadMs <= 0) {
          this.arrive();
          return;
        }
        // Still loading the device state: arrives once enough fake time has passed.
        let left = this.destinationLoadMs;
        const stop = this.clock.onAdvance((ms) => {
          left -= ms;
          if (left > 0) return;
          stop();
          if (!dst.hasExited) this.arrive();
        });
        return;
      }
      case 'failed':
      case 'cancelled': {
        if (!this.connected || dst.hasExited) return;
        this.connected = false;
        // A destination in post-copy runs the VM: it stays, waiting for pages (measured on
        // 11.1, whose source fails a post-copy paused with nothing left to send).
        if (dst.incoming?.status.startsWith('postcopy')) return;
        const what = status === 'cancelled' ? 'exits' : this.onFailure;
        if (what === 'exits') dst.exit();
        else if (what === 'reports' && dst.incoming) dst.incoming.status = 'failed';
        else if (what === 'waits' && dst.incoming) dst.incoming.status = 'setup';
        return;
      }
      default:
    }
  }

  /** The VM has been loaded on the destination: it runs (live) or stays paused. */
  private arrive(): void {
    const dst = this.destination.qemu;
    if (dst.incoming) dst.incoming.status = 'completed';
    if (dst.runState !== 'inmigrate') return;
    const live = this.source.qemu.runStateAtMigrate === 'running' && !this.destinationStartsPaused;
    dst.runState = live ? 'running' : 'paused';
    if (live) dst.emit('RESUME');
  }

  /** The destination paused or recovered on its own side: the source follows. */
  private linkIncoming(status: string): void {
    if (status === 'postcopy-paused' && this.connected) this.source.qemu.breakPostcopyStream();
  }

  /**
   * Whether a post-copy resume to `uri` reaches the destination: it is paused and listens
   * there after `migrate-recover`, or (7.0+, measured from 7.2) its original `-incoming`
   * listener, which stays open through post-copy, is on that port.
   */
  private resumeReaches(uri: string): boolean {
    const dst = this.destination.qemu;
    const inc = dst.incoming;
    if (!this.connected || dst.hasExited || inc?.status !== 'postcopy-paused') return false;
    const port = (u: string | undefined) => (u === undefined ? undefined : /^tcp:.+:(\d+)$/.exec(u)?.[1]);
    const asked = port(uri) ?? uri;
    if (inc.recoverUri !== undefined && (port(inc.recoverUri) ?? inc.recoverUri) === asked) return true;
    return dst.has(7, 0) && asked === String(this.migrationPort);
  }

  /** QEMU's `error-desc` when `uri` does not reach the listening destination. */
  private refusedBecause(uri: string): string | undefined {
    const dst = this.destination.qemu;
    const tcp = /^tcp:(.+):(\d+)$/.exec(uri);
    const where = tcp ? `${tcp[1]}:${tcp[2]}` : uri;
    const listening =
      !dst.hasExited &&
      dst.runState === 'inmigrate' &&
      dst.incoming !== undefined &&
      dst.incoming.uri !== 'defer' &&
      dst.incoming.status === 'setup' &&
      tcp !== null &&
      Number(tcp[2]) === this.migrationPort;
    return listening ? undefined : `Failed to connect to '${where}': Connection refused`;
  }
}

/**
 * A linked source/destination pair of fake QEMUs: migrate with `KVMHypervisor` objects
 * built with `{ monitor: pair.sourceMonitor }` and `{ monitor: pair.destinationMonitor }`.
 * See {@link FakeMigrationPair} for the time design and the faults.
 */
export function createFakeMigrationPair(options: FakeMigrationPairOptions = {}): FakeMigrationPair {
  return new FakeMigrationPair(options);
}
