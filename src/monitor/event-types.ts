/**
 * Typed payloads of the QMP events the library relies on (`MIGRATION`, `MIGRATION_PASS`,
 * `STOP`, `RESUME`, `SHUTDOWN`), and a guard that checks an event's payload before
 * handing it out with its type: events come off the wire, so the type is earned by a
 * check, never assumed.
 */
import type { MonitorEvent } from './types.js';

/**
 * QEMU's migration statuses (`MigrationStatus` in qapi/migration.json, 1.2 … 11.x), plus
 * any string: a future QEMU's new status is passed through, never rejected.
 */
export type MigrationStatus =
  | 'none'
  | 'setup'
  | 'cancelling'
  | 'cancelled'
  | 'active'
  | 'postcopy-active'
  | 'postcopy-paused'
  | 'postcopy-recover-setup'
  | 'postcopy-recover'
  | 'postcopy-device'
  | 'completed'
  | 'failing'
  | 'failed'
  | 'colo'
  | 'pre-switchover'
  | 'device'
  | 'wait-unplug'
  | (string & {});

/** The payload of each event this library types, by event name. */
export interface MonitorEventPayloads {
  /** The migration changed status (needs the `events` capability). */
  MIGRATION: { status: MigrationStatus };
  /**
   * A dirty-bitmap sync; `pass` is the sync count. One per precopy pass up to QEMU 10.x;
   * QEMU 11 with `postcopy-ram` syncs at every iteration (`MigrationProgress.firstPassDone`).
   */
  MIGRATION_PASS: { pass: number };
  /** The VM stopped. */
  STOP: Record<string, never>;
  /** The VM resumed. */
  RESUME: Record<string, never>;
  /** QEMU is shutting down; `guest` when the guest asked for it, `reason` QEMU's cause. */
  SHUTDOWN: { guest: boolean; reason: string };
}

/** The name of an event with a typed payload. */
export type KnownEventName = keyof MonitorEventPayloads;

/** A {@link MonitorEvent} whose `data` has the typed payload of `N`. */
export type TypedMonitorEvent<N extends KnownEventName> = Omit<MonitorEvent, 'event' | 'data'> & {
  event: N;
  data: MonitorEventPayloads[N];
};

/** Any of the typed events: `switch (ev.event)` on it narrows `ev.data`. */
export type KnownMonitorEvent = { [N in KnownEventName]: TypedMonitorEvent<N> }[KnownEventName];

const PAYLOAD_CHECKS: { [N in KnownEventName]: (d: Record<string, unknown>) => boolean } = {
  MIGRATION: (d) => typeof d.status === 'string',
  MIGRATION_PASS: (d) => typeof d.pass === 'number',
  STOP: () => true,
  RESUME: () => true,
  // QEMU < 4.0 sends SHUTDOWN without data.
  SHUTDOWN: (d) => typeof d.guest === 'boolean' && typeof d.reason === 'string',
};

/**
 * True when `ev` is the event `name` (or one of `names`) and its payload has the typed
 * shape; narrows `ev.data`:
 * `if (isMonitorEvent(ev, 'MIGRATION')) ev.data.status` is a {@link MigrationStatus}.
 * An event of that name whose payload does not fit (e.g. `SHUTDOWN` from QEMU < 4.0,
 * which has no data) gives false.
 */
export function isMonitorEvent<N extends KnownEventName>(
  ev: MonitorEvent,
  name: N | readonly N[],
): ev is MonitorEvent & TypedMonitorEvent<N> {
  const names: readonly string[] = typeof name === 'string' ? [name] : name;
  if (!names.includes(ev.event)) return false;
  return PAYLOAD_CHECKS[ev.event as N](ev.data);
}

/** `ev` as a {@link KnownMonitorEvent} when its name is typed and its payload fits, else undefined. */
export function asKnownEvent(ev: MonitorEvent): KnownMonitorEvent | undefined {
  const check = (PAYLOAD_CHECKS as Record<string, ((d: Record<string, unknown>) => boolean) | undefined>)[
    ev.event
  ];
  return check?.(ev.data) ? (ev as KnownMonitorEvent) : undefined;
}
