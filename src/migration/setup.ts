/**
 * The set-up of a migration on the source: the checks that need no I/O (`precheck`), the
 * read-only checks and settings snapshot sent together, the settings, `migrate`, and the
 * rollback of a set-up that failed part-way.
 */

import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { MigrationError } from '../errors.js';
import { findCapability } from '../qemu/capabilities.js';
import { formatVersion, versionAtLeast } from '../qemu/version.js';
import { isDeadline, isMonitorGone, type VmChannel } from './channel.js';
import { QEMU_MAX_DOWNTIME_MS } from './convergence.js';
import {
  capabilityCommands,
  dialectFor,
  migrateCommand,
  parameterCommands,
  resolveCapabilities,
  simpleCommand,
} from './dialect.js';
import { type MigrationPlan, type MigrationSession, openSession } from './session.js';
import { readParameters, restoreSettings, sourceSnapshot } from './settings.js';
import { TERMINAL_STATUSES } from './status.js';
import { applyTls, removeTls } from './tls.js';
import { tlsUnsupported } from './tls-commands.js';
import { migrationUri } from './uri.js';

/** Checks everything that needs no I/O; throws `MigrationError` naming the bad value. Returns the URI. */
export function precheck(instance: string, plan: MigrationPlan, target: string): string {
  let uri: string;
  try {
    uri = migrationUri(target, plan.port);
  } catch (e) {
    throw new MigrationError(`instance '${instance}': ${errorText(e)}`, { instance, changedVm: false });
  }
  // The target is checked above even then: the guard relays to it.
  if (plan.uri !== undefined) uri = plan.uri;
  if (!Number.isInteger(plan.downtimeMs) || plan.downtimeMs < 0 || plan.downtimeMs > QEMU_MAX_DOWNTIME_MS) {
    throw new MigrationError(
      `instance '${instance}': migration_downtime ${plan.downtimeMs} ms is outside QEMU's range 0 to ${QEMU_MAX_DOWNTIME_MS} ms`,
      { instance, changedVm: false },
    );
  }
  if (!Number.isSafeInteger(plan.bandwidthMiBps * 1024 * 1024) || plan.bandwidthMiBps < 0) {
    throw new MigrationError(
      `instance '${instance}': migration_bandwidth ${plan.bandwidthMiBps} MiB/s is not a usable bandwidth`,
      { instance, changedVm: false },
    );
  }
  return uri;
}

const refused = (ch: VmChannel, message: string, status?: string) =>
  new MigrationError(`instance '${ch.instance}' ${message}`, {
    instance: ch.instance,
    changedVm: false,
    ...(status === undefined ? {} : { status }),
  });

/** Where {@link startMigration} tells its caller what it is about to do (to journal it). */
export interface StartMigrationHooks {
  /**
   * Called once every check passed and the snapshot is taken, before the first command
   * that changes the VM; a throw refuses the migration with nothing changed.
   */
  beforeChange?: (session: MigrationSession) => void;
  /** Called with the session just before `migrate` goes out (from then on it must be kept). */
  onMigrateSent: (session: MigrationSession) => void;
  /** Called after a set-up that failed before `migrate` was rolled back. */
  afterRollback?: () => void;
}

/**
 * Source side: checks the VM and the request, snapshots the settings, then sets
 * bandwidth, downtime and capabilities and starts the migration. `hooks.onMigrateSent` is
 * called with the session just before `migrate` goes out (from then on the session must be
 * kept for the fail-safe finalize). A failure before `migrate` rolls back and throws
 * `MigrationError`; a `migrate` that may have been received is never rolled back.
 */
export async function startMigration(
  ch: VmChannel,
  plan: MigrationPlan,
  target: string,
  deadline: Deadline,
  hooks: StartMigrationHooks,
): Promise<MigrationSession> {
  const uri = precheck(ch.instance, plan, target);
  const { version, protocol } = ch.monitor;
  const dialect = dialectFor(protocol, version);

  // The read-only queries go out together (a QMP server answers in order, an HMP monitor
  // queues them): one round trip instead of four. Each is still checked in turn, and
  // nothing that changes the VM is sent before all of them passed.
  const vmP = ch.vmStatus(deadline);
  const currentP = ch.mustMigrationStatus(deadline);
  const listedP = ch.listCapabilities(deadline);
  const parametersP = readParameters(ch, deadline);
  for (const p of [vmP, currentP, listedP, parametersP]) p.catch(() => {});
  const vm = await vmP;
  if (vm.status === 'postmigrate' || vm.status === 'finish-migrate') {
    throw refused(
      ch,
      `has already been migrated away (VM status '${vm.status}'); refusing to migrate it again`,
    );
  }
  if (vm.status === 'inmigrate') {
    throw refused(ch, 'is waiting for an incoming migration; it cannot be a source');
  }
  const current = await currentP;
  if (current.status !== 'none' && !TERMINAL_STATUSES.has(current.status)) {
    throw refused(ch, `has a migration in progress (status '${current.status}')`, current.status);
  }
  const listed = await listedP;
  let wire: string[];
  try {
    wire = resolveCapabilities(plan.capabilities, version, listed, ch.instance);
  } catch (e) {
    if (e instanceof MigrationError) {
      throw new MigrationError(e.message, { instance: ch.instance, changedVm: false });
    }
    throw e;
  }
  if (plan.tls) {
    const why = tlsUnsupported(protocol, version, plan.tls);
    if (why) throw refused(ch, `cannot migrate over TLS: ${why}`);
    if (wire.some((n) => findCapability(n)?.name === 'zero-copy-send')) {
      throw refused(ch, 'cannot migrate over TLS with zero-copy-send: QEMU sends zero-copy only without TLS');
    }
    if (!versionAtLeast(version, 5, 2) && wire.some((n) => findCapability(n)?.name === 'multifd')) {
      throw refused(
        ch,
        `cannot migrate over TLS with multifd on QEMU ${formatVersion(version)}: multifd channels use TLS from QEMU 5.2`,
      );
    }
  }
  const eventsEnabled = protocol === 'qmp' && (listed ? listed.has('events') : versionAtLeast(version, 2, 4));
  const wanted = new Map<string, boolean>(wire.map((n) => [n, true]));
  if (eventsEnabled) wanted.set('events', true);
  // Clear what an earlier, failed migration left on (Ganeti PR #1525), but never 'events'.
  for (const [name, on] of listed ?? []) {
    if (on && name !== 'events' && !wanted.has(name)) wanted.set(name, false);
  }
  // Only what differs from QEMU's current states goes out (every byte of monitor input
  // costs QEMU a main-loop turn). Without QEMU's list the states are unknown: all go out.
  const states = [...wanted].filter(([name, on]) => listed?.get(name) !== on);
  const parameters = await parametersP;
  const postcopy = wire.some((n) => findCapability(n)?.name === 'postcopy-ram');
  const parameterSettings = { ...plan, postcopy, ...(parameters ? { current: parameters } : {}) };
  const snapshot = sourceSnapshot(states, listed, wanted, parameters);

  // Subscribe before anything can cause an event: MIGRATION 'setup' comes before the reply.
  const session = openSession({
    instance: ch.instance,
    channel: ch,
    dialect,
    capabilities: wire,
    eventsEnabled,
    postcopy,
    live: plan.live,
    wasRunning: vm.running,
    snapshot,
    downtimeMs: plan.downtimeMs,
    uri,
  });
  ch.log.info(
    {
      dialect,
      qemu: formatVersion(version),
      uri,
      live: plan.live,
      bandwidthMiBps: plan.bandwidthMiBps,
      downtimeMs: plan.downtimeMs,
      capabilities: wire,
    },
    'starting migration',
  );
  try {
    hooks.beforeChange?.(session);
  } catch (e) {
    session.detach();
    throw refused(ch, `cannot start the migration: ${errorText(e)}`);
  }
  try {
    if (!plan.live && vm.running) {
      await ch.must(simpleCommand(protocol, 'stop'), 'stopping the VM for a non-live migration', deadline);
      session.stoppedByUs = true;
    }
    if (plan.tls) {
      // In order: QEMU checks zero-copy-send against the TLS parameters, so the
      // credentials go before the capabilities.
      for (const cmd of parameterCommands(dialect, version, parameterSettings)) {
        await ch.must(cmd, 'setting bandwidth and downtime', deadline);
      }
      session.tls = true;
      await applyTls(ch, plan.tls, deadline);
      for (const cmd of capabilityCommands(protocol, states)) {
        await ch.must(cmd, 'setting migration capabilities', deadline);
      }
    } else {
      // Bandwidth, downtime and capabilities go out together (one round trip): none of
      // them starts anything, and a failure of any rolls all of them back below.
      // `migrate` waits for every answer.
      const settings = [
        ...parameterCommands(dialect, version, parameterSettings).map((cmd) =>
          ch.must(cmd, 'setting bandwidth and downtime', deadline),
        ),
        ...capabilityCommands(protocol, states).map((cmd) =>
          ch.must(cmd, 'setting migration capabilities', deadline),
        ),
      ];
      const settled = await Promise.allSettled(settings);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
  } catch (e) {
    session.detach();
    await rollback(session, Deadline.grace(deadline.over() ? 1000 : Math.min(5000, deadline.remaining())));
    hooks.afterRollback?.();
    throw asChanged(e);
  }
  session.migrateSent = true;
  hooks.onMigrateSent(session);
  try {
    await ch.must(migrateCommand(protocol, uri), 'starting the migration', deadline);
  } catch (e) {
    if (isDeadline(e) || isMonitorGone(e, ch.monitor)) {
      // QEMU may have received `migrate`: nothing is undone; finalizeSource decides later.
      throw asChanged(e);
    }
    // QEMU answered with an error: the migration did not start; undo the set-up.
    session.migrateSent = false;
    session.detach();
    await rollback(session, Deadline.grace(Math.min(5000, Math.max(1000, deadline.remaining()))));
    hooks.afterRollback?.();
    throw asChanged(e);
  }
  return session;
}

function asChanged(e: unknown): unknown {
  if (!(e instanceof MigrationError) || e.changedVm !== undefined) return e;
  return new MigrationError(e.message, {
    instance: e.instance,
    status: e.status,
    reason: e.reason,
    cause: e.cause,
    unresponsive: e.unresponsive,
    changedVm: true,
  });
}

/** Undoes a failed set-up: settings back, a VM we stopped resumed. Best effort, logged. */
async function rollback(session: MigrationSession, deadline: Deadline): Promise<void> {
  const ch = session.channel;
  await restoreSettings(ch, session.snapshot, deadline);
  if (session.tls) await removeTls(ch, deadline);
  if (session.stoppedByUs) {
    await ch
      .send(simpleCommand(ch.monitor.protocol, 'cont'), deadline)
      .catch((e: unknown) => ch.log.error({ err: errorText(e) }, 'rollback: resuming the VM failed'));
  }
}
