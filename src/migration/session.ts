/**
 * A migration started on a source VM: what was changed (so it can be put back), what QEMU
 * was told, and the MIGRATION events seen so far (so waits wake at once on a change).
 */
import { isMonitorEvent } from '../monitor/event-types.js';
import type { MonitorEvent } from '../monitor/types.js';
import type { VmChannel } from './channel.js';
import type { MigrationDialect } from './dialect.js';
import type { SettingsSnapshot } from './settings.js';
import type { TlsPlan } from './tls-commands.js';

/** What the source side needs to know to start a migration (from the filled hvparams). */
export interface MigrationPlan {
  /** `migration_bandwidth`, MiB/s. */
  bandwidthMiBps: number;
  /** `migration_downtime`, ms. */
  downtimeMs: number;
  /** `migration_port`. */
  port: number;
  /** `migration_caps`, split. */
  capabilities: string[];
  /** Live (true) or stop-and-copy (false). */
  live: boolean;
  /** Migrate over TLS with these credentials (client end). */
  tls?: TlsPlan;
  /**
   * Where QEMU migrates to instead of `tcp:target:port`: the `unix:` socket of the
   * library's migration guard (src/guard/), which relays to the target.
   */
  uri?: string;
}

/** A migration started by `MigrationController.start`; pass it to `wait`/`finalizeSource`. */
export interface MigrationSession {
  readonly instance: string;
  /** The monitor channel in use; replaced by {@link rebind} after a reconnect. */
  readonly channel: VmChannel;
  readonly dialect: MigrationDialect;
  /** Capabilities turned on, as this QEMU names them. */
  readonly capabilities: string[];
  /** True when MIGRATION events report the status. */
  readonly eventsEnabled: boolean;
  /** True when `postcopy-ram` is on. */
  readonly postcopy: boolean;
  readonly live: boolean;
  /** The VM ran before the migration started. */
  readonly wasRunning: boolean;
  /** The VM was stopped by us for a non-live migration. */
  stoppedByUs: boolean;
  /** `migrate` was sent: from here on an unreadable status means "maybe migrated". */
  migrateSent: boolean;
  /** TLS credentials were put in place; finalize and rollback remove them. */
  tls: boolean;
  /** Settings before the migration, restored when it ends. */
  readonly snapshot: SettingsSnapshot;
  readonly downtimeMs: number;
  readonly uri: string;
  readonly startedAt: number;
  /** How many MIGRATION/MIGRATION_PASS events (and closes) arrived so far. */
  readonly eventCount: number;
  /**
   * Calls `wake` once as soon as {@link eventCount} differs from `seen` (at once if it
   * already does). Returns a function that cancels the call.
   */
  onEventAfter(seen: number, wake: () => void): () => void;
  /** Moves the session to a new connection to the same QEMU (after the old one was lost). */
  rebind(channel: VmChannel): void;
  /** Stops listening to the monitor. Idempotent. */
  detach(): void;
}

/** What a session started by an earlier process carries over from its journal. */
export interface RestoredSessionState {
  startedAt: number;
  stoppedByUs: boolean;
  migrateSent: boolean;
  tls: boolean;
}

/**
 * Creates a session and subscribes it to the monitor's MIGRATION events and close.
 * `restored` re-creates one that an earlier process started (from its journal).
 */
export function openSession(
  fields: Omit<
    MigrationSession,
    'eventCount' | 'onEventAfter' | 'detach' | 'rebind' | 'stoppedByUs' | 'migrateSent' | 'startedAt' | 'tls'
  >,
  restored?: RestoredSessionState,
): MigrationSession {
  let channel = fields.channel;
  const wakers = new Set<() => void>();
  let eventCount = 0;
  let attached = true;
  const fire = () => {
    eventCount++;
    const all = [...wakers];
    wakers.clear();
    for (const w of all) w();
  };
  const onEvent = (ev: MonitorEvent) => {
    if (ev.event !== 'MIGRATION' && ev.event !== 'MIGRATION_PASS') return;
    if (isMonitorEvent(ev, 'MIGRATION')) {
      channel.log.info({ status: ev.data.status }, 'migration status changed');
    }
    fire();
  };
  const onClose = () => fire();
  const attach = () => {
    if (fields.eventsEnabled) channel.monitor.on('event', onEvent);
    channel.monitor.on('close', onClose);
  };
  const release = () => {
    channel.monitor.off('event', onEvent);
    channel.monitor.off('close', onClose);
  };
  const session: MigrationSession = {
    ...fields,
    get channel() {
      return channel;
    },
    stoppedByUs: restored?.stoppedByUs ?? false,
    migrateSent: restored?.migrateSent ?? false,
    tls: restored?.tls ?? false,
    startedAt: restored?.startedAt ?? Date.now(),
    get eventCount() {
      return eventCount;
    },
    onEventAfter: (seen, wake) => {
      if (eventCount !== seen) {
        wake();
        return () => {};
      }
      wakers.add(wake);
      return () => wakers.delete(wake);
    },
    rebind: (next) => {
      if (attached) release();
      channel = next;
      if (attached) attach();
    },
    detach: () => {
      if (!attached) return;
      attached = false;
      release();
      wakers.clear();
    },
  };
  attach();
  return session;
}
