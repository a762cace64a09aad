/**
 * The source side of a migration: checks and set-up (`start`), rollback of a failed
 * set-up, cancel, restoring the settings, and `finalizeSource` under the fail-safe rule
 * of `safety.ts`.
 */
import { type FinalizeOutcome, MigrationError, UnrecognizedOutputError } from '../errors.js';
import { findCapability } from '../qemu/capabilities.js';
import { formatVersion, versionAtLeast } from '../qemu/version.js';
import { errorText, isDeadline, isMonitorGone, type VmChannel, type VmRunState } from './channel.js';
import { QEMU_MAX_DOWNTIME_MS } from './convergence.js';
import { Deadline } from './deadline.js';
import {
  capabilityCommands,
  describeCommand,
  dialectFor,
  migrateCommand,
  parameterCommands,
  resolveCapabilities,
  simpleCommand,
} from './dialect.js';
import {
  type MigrationParameterValues,
  parametersReadable,
  parseInfoMigrateParameters,
  parseQueryMigrateParameters,
  readParametersCommand,
  restoreCommands,
  type SettingsSnapshot,
} from './parameters.js';
import { isPostcopy, type SourceObservation, sourceVerdict } from './safety.js';
import { type MigrationPlan, type MigrationSession, openSession } from './session.js';
import { TERMINAL_STATUSES } from './status.js';
import { migrationUri } from './target.js';
import { applyTls, removeTls } from './tls.js';
import { tlsUnsupported } from './tls-commands.js';
import type { MigrationProgress } from './types.js';

/** Checks everything that needs no I/O; throws `MigrationError` naming the bad value. Returns the URI. */
export function precheck(instance: string, plan: MigrationPlan, target: string): string {
  let uri: string;
  try {
    uri = migrationUri(target, plan.port);
  } catch (e) {
    throw new MigrationError(`instance '${instance}': ${errorText(e)}`, { instance, changedVm: false });
  }
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

/** Reads bandwidth/downtime before the migration; undefined (logged) where they cannot be read. */
async function readParameters(
  ch: VmChannel,
  deadline: Deadline,
): Promise<MigrationParameterValues | undefined> {
  const { version, protocol } = ch.monitor;
  const dialect = dialectFor(protocol, version);
  const cmd = readParametersCommand(dialect);
  if (!cmd || !parametersReadable(version)) return undefined;
  let raw: unknown;
  try {
    raw = await ch.send(cmd, deadline);
  } catch (e) {
    if (isMonitorGone(e, ch.monitor) || isDeadline(e)) throw e;
    ch.log.warn({ err: errorText(e) }, 'cannot read the migration parameters; they will not be restored');
    return undefined;
  }
  try {
    return protocol === 'qmp'
      ? parseQueryMigrateParameters(raw, version)
      : parseInfoMigrateParameters(String(raw), version);
  } catch (e) {
    if (!(e instanceof UnrecognizedOutputError)) throw e;
    ch.log.warn({ err: errorText(e) }, 'cannot read the migration parameters; they will not be restored');
    return undefined;
  }
}

/**
 * Source side: checks the VM and the request, snapshots the settings, then sets
 * bandwidth, downtime and capabilities and starts the migration. `onMigrateSent` is called
 * with the session just before `migrate` goes out (from then on the session must be kept
 * for the fail-safe finalize). A failure before `migrate` rolls back and throws
 * `MigrationError`; a `migrate` that may have been received is never rolled back.
 */
export async function startMigration(
  ch: VmChannel,
  plan: MigrationPlan,
  target: string,
  deadline: Deadline,
  onMigrateSent: (session: MigrationSession) => void,
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
  const states: [string, boolean][] = wire.map((n) => [n, true]);
  if (eventsEnabled && !wire.includes('events')) states.push(['events', true]);
  // Clear what an earlier, failed migration left on (Ganeti PR #1525), but never 'events'.
  for (const [name, on] of listed ?? []) {
    if (on && name !== 'events' && !states.some(([n]) => n === name)) states.push([name, false]);
  }
  const parameters = await parametersP;
  const snapshot: SettingsSnapshot = {
    // Without QEMU's list the previous state is unknown; clearing is the documented fallback.
    capabilities: states
      .map(([name]) => [name, listed?.get(name) ?? false] as [string, boolean])
      .filter(([name, before]) => states.find(([n]) => n === name)?.[1] !== before),
    ...(parameters ? { parameters } : {}),
  };

  // Subscribe before anything can cause an event: MIGRATION 'setup' comes before the reply.
  const session = openSession({
    instance: ch.instance,
    channel: ch,
    dialect,
    capabilities: wire,
    eventsEnabled,
    postcopy: wire.some((n) => findCapability(n)?.name === 'postcopy-ram'),
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
    if (!plan.live && vm.running) {
      await ch.must(simpleCommand(protocol, 'stop'), 'stopping the VM for a non-live migration', deadline);
      session.stoppedByUs = true;
    }
    if (plan.tls) {
      // In order: QEMU checks zero-copy-send against the TLS parameters, so the
      // credentials go before the capabilities.
      for (const cmd of parameterCommands(dialect, version, plan)) {
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
        ...parameterCommands(dialect, version, plan).map((cmd) =>
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
    throw asChanged(e);
  }
  session.migrateSent = true;
  onMigrateSent(session);
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

/**
 * Puts back the parameters and capabilities of the snapshot, each command on its own (one
 * failing does not skip the next). Returns the problems, which are also logged.
 */
export async function restoreSettings(
  ch: VmChannel,
  snapshot: SettingsSnapshot,
  deadline: Deadline,
): Promise<string[]> {
  const problems: string[] = [];
  const dialect = dialectFor(ch.monitor.protocol, ch.monitor.version);
  for (const cmd of restoreCommands(dialect, snapshot)) {
    try {
      await ch.send(cmd, deadline);
    } catch (e) {
      const text = `restoring '${describeCommand(cmd)}' failed: ${errorText(e)}`;
      ch.log.error({ err: errorText(e) }, text);
      problems.push(text);
    }
  }
  return problems;
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

/**
 * `migrate_cancel` (best effort), then polls until QEMU reports a final status or the
 * deadline passes. Returns the last status read (`completed` when the cancel came too late:
 * the caller must then treat the migration as done), or the error that stopped the reading.
 */
export async function cancelAndSettle(
  ch: VmChannel,
  why: string,
  deadline: Deadline,
  onProgress?: (p: MigrationProgress) => void,
): Promise<MigrationProgress | { error: unknown }> {
  ch.log.warn({ reason: why }, 'cancelling migration');
  try {
    await ch.send(simpleCommand(ch.monitor.protocol, 'migrate_cancel'), deadline);
  } catch (e) {
    ch.log.error({ err: errorText(e) }, 'migrate_cancel failed');
    if (isDeadline(e) || isMonitorGone(e, ch.monitor)) return { error: e };
  }
  let last: MigrationProgress | { error: unknown } = { status: 'cancelling' };
  while (!deadline.over()) {
    try {
      last = await ch.migrationStatus(deadline);
    } catch (e) {
      return { error: e };
    }
    onProgress?.(last);
    if (TERMINAL_STATUSES.has(last.status) || last.status === 'none') break;
    await deadline.sleep(50);
  }
  if ('status' in last && last.status === 'completed') {
    ch.log.warn({}, 'the migration completed before the cancel took effect');
  }
  return last;
}

/** Cancels a running migration (`migrate_cancel`); refused during post-copy. */
export async function cancelMigration(ch: VmChannel, deadline: Deadline): Promise<void> {
  const p = await ch.mustMigrationStatus(deadline);
  if (isPostcopy(p.status)) {
    throw ch.error(
      `cannot cancel a migration in post-copy (status '${p.status}'): the destination already runs the VM`,
      undefined,
      { status: p.status },
    );
  }
  await ch.must(simpleCommand(ch.monitor.protocol, 'migrate_cancel'), 'cancelling the migration', deadline);
}

/** Options of {@link finalizeSource}. */
export interface FinalizeSourceOptions {
  /** What `migration_caps` asked for (cleared when no session snapshot exists). */
  capabilities: readonly string[];
  /** The session from `start`, when this object started the migration. */
  session?: MigrationSession | undefined;
  /** Operator override: resume even when the rule says the VM may run on the destination. */
  forceResume?: boolean;
  deadline: Deadline;
}

async function observe(ch: VmChannel, deadline: Deadline): Promise<SourceObservation> {
  const migration: MigrationProgress | { error: unknown } = await ch
    .migrationStatus(deadline)
    .catch((error: unknown) => ({ error }));
  const runState: VmRunState | { error: unknown } = await ch
    .vmStatus(deadline)
    .catch((error: unknown) => ({ error }));
  return { runState, migration };
}

const failure = (o: SourceObservation): unknown =>
  'error' in o.runState ? o.runState.error : 'error' in o.migration ? o.migration.error : undefined;

/**
 * Source side, after the migration. Success: QEMU must report `completed`; a source that
 * runs is stopped. Failure: cancels a migration still running, then resumes the VM only
 * when `safety.ts` allows it (or the operator forces it). Settings are restored either way.
 */
export async function finalizeSource(
  ch: VmChannel,
  success: boolean,
  options: FinalizeSourceOptions,
): Promise<FinalizeOutcome> {
  const { deadline, session } = options;
  const protocol = ch.monitor.protocol;
  if (success) {
    const obs = await observe(ch, deadline);
    if ('error' in obs.runState) {
      throw ch.error(
        `finalizing a successful migration: ${errorText(obs.runState.error)}`,
        obs.runState.error,
      );
    }
    const migStatus = 'error' in obs.migration ? undefined : obs.migration.status;
    // A completed switchover shows in the run state even where the status text is unreadable.
    if (migStatus !== 'completed' && obs.runState.status !== 'postmigrate') {
      throw ch.error(
        migStatus === undefined
          ? `finalizing a successful migration, but the migration status cannot be read: ${errorText((obs.migration as { error: unknown }).error)}`
          : `finalizing a successful migration, but QEMU reports status '${migStatus}'`,
        failure(obs),
        migStatus === undefined ? {} : { status: migStatus },
      );
    }
    let action = 'paused';
    if (obs.runState.running) {
      // Someone resumed the source after switchover: two copies would run.
      ch.log.error({}, 'source runs after a completed migration; stopping it');
      await ch.must(simpleCommand(protocol, 'stop'), 'stopping the migrated source', deadline);
      action = 'stopped-after-completion';
    }
    await restore(ch, options);
    ch.log.info({ status: obs.runState.status }, 'source finalized after a successful migration');
    return { side: 'source', action, status: obs.runState.running ? 'paused' : obs.runState.status };
  }

  let obs = await observe(ch, deadline);
  if ('error' in obs.runState && isMonitorGone(obs.runState.error, ch.monitor)) {
    throw ch.error(
      `the source QEMU is gone (${errorText(obs.runState.error)}): the VM does not run on the source`,
      obs.runState.error,
    );
  }
  let verdict = sourceVerdict(obs);
  if (verdict.kind === 'cancel-first') {
    const settled = await cancelAndSettle(ch, 'finalizing a failed migration', deadline);
    if ('error' in settled) obs = { ...obs, migration: settled };
    else obs = await observe(ch, deadline);
    verdict = sourceVerdict(obs);
    if (verdict.kind === 'cancel-first') {
      verdict = { kind: 'refuse', why: `the migration is still '${verdict.status}' after migrate_cancel` };
    }
  }
  const status = 'error' in obs.runState ? undefined : obs.runState.status;
  if (verdict.kind === 'refuse') {
    if (!options.forceResume) {
      const cause = failure(obs);
      throw ch.error(
        `not resuming the source: ${verdict.why}${cause ? ` (${errorText(cause)})` : ''}; the VM may run on the destination. ` +
          'If you have checked that it does not, resume it with finalizeMigrationSource(instance, false, { forceResume: true }) ' +
          '(kvm-hv resume --force-resume)',
        cause,
        'error' in obs.migration ? {} : { status: obs.migration.status },
      );
    }
    ch.log.warn({ why: verdict.why }, 'operator override: resuming the source although the rule forbids it');
    await ch.must(simpleCommand(protocol, 'cont'), 'resuming the source VM (operator override)', deadline);
    await restore(ch, options);
    return { side: 'source', action: 'force-resumed', status: 'running' };
  }
  if (verdict.kind === 'already-running') {
    await restore(ch, options);
    ch.log.info({}, 'source finalized after a failed migration; the VM runs');
    return { side: 'source', action: 'already-running', ...(status ? { status } : {}) };
  }
  // Paused after a migration that ended without switchover.
  if (session && !session.wasRunning && !session.stoppedByUs) {
    await restore(ch, options);
    ch.log.info({ status }, 'source finalized; it was paused before the migration and stays paused');
    return { side: 'source', action: 'left-paused', ...(status ? { status } : {}) };
  }
  ch.log.info({ status }, 'resuming the source VM');
  await ch.must(simpleCommand(protocol, 'cont'), 'resuming the source VM', deadline);
  await restore(ch, options);
  ch.log.info({}, 'source finalized after a failed migration; the VM runs');
  return { side: 'source', action: 'resumed', status: 'running' };
}

async function restore(ch: VmChannel, options: FinalizeSourceOptions): Promise<void> {
  const grace = options.deadline.over() ? Deadline.grace(1000) : options.deadline;
  if (options.session) {
    await restoreSettings(ch, options.session.snapshot, grace);
    if (options.session.tls) await removeTls(ch, grace);
    return;
  }
  await clearCapabilities(ch, options.capabilities, grace).catch((e: unknown) =>
    ch.log.error({ err: errorText(e) }, 'clearing migration capabilities failed'),
  );
}

/** Turns off the capabilities among `requested` that are on (any spelling). */
export async function clearCapabilities(
  ch: VmChannel,
  requested: readonly string[],
  deadline: Deadline,
): Promise<string[]> {
  if (requested.length === 0) return [];
  const listed = await ch.listCapabilities(deadline);
  const names = new Set(requested.map((n) => findCapability(n)?.name ?? n));
  const off: string[] = [];
  if (listed) {
    for (const [name, on] of listed) if (on && names.has(findCapability(name)?.name ?? name)) off.push(name);
  } else {
    off.push(...resolveCapabilities(requested, ch.monitor.version, undefined, ch.instance));
  }
  for (const cmd of capabilityCommands(
    ch.monitor.protocol,
    off.map((n) => [n, false] as const),
  )) {
    await ch.must(cmd, 'clearing migration capabilities', deadline);
  }
  return off;
}
