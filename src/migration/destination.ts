/**
 * The destination side of a migration: `accept` before the source starts, the incoming
 * status (QEMU's reason when loading fails, where the version reports it), and
 * `finalizeDestination`, which never stops a destination that already holds the VM.
 */

import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import type { FinalizeOutcome } from '../errors.js';
import { isMonitorEvent } from '../monitor/event-types.js';
import type { MonitorEvent } from '../monitor/types.js';
import { findCapability } from '../qemu/capabilities.js';
import { isDeadline, isMonitorGone, type VmChannel, type VmRunState } from './channel.js';
import { readyForRestore } from './cleanup-wait.js';
import { capabilityCommands, resolveCapabilities, simpleCommand } from './dialect.js';
import { isPostcopy, isPostcopyPaused } from './safety.js';
import {
  clearCapabilities,
  destinationSnapshot,
  restoreSettings,
  type SettingsSnapshot,
} from './settings.js';
import { applyTls, removeTls } from './tls.js';
import { incomingCommand, type TlsPlan } from './tls-commands.js';
import type { MigrationProgress } from './types.js';

/** What `accept` changed on the destination, to be put back by `finalizeDestination`. */
export interface AcceptedMigration {
  /** Capabilities turned on, as this QEMU names them. */
  capabilities: string[];
  /** Their states before. */
  snapshot: SettingsSnapshot;
  /** TLS credentials were put in place ({@link startIncoming}); finalize removes them. */
  tls?: boolean;
}

/** Throws `MigrationError` (with the status) unless the VM waits for an incoming migration. */
async function requireIncoming(ch: VmChannel, deadline: Deadline): Promise<void> {
  const vm = await ch.vmStatus(deadline);
  if (vm.status !== 'inmigrate') {
    throw ch.error(
      `the destination is not waiting for an incoming migration (VM status '${vm.status}')`,
      undefined,
      { status: vm.status },
    );
  }
}

/**
 * Destination side, before the source starts: the VM must wait for an incoming
 * migration; the capabilities that must be on at both ends are set. `beforeChange` is
 * called with what will change before the first command that changes the VM.
 */
export async function acceptMigration(
  ch: VmChannel,
  capabilities: readonly string[],
  deadline: Deadline,
  beforeChange?: (accepted: AcceptedMigration) => void,
): Promise<AcceptedMigration> {
  await requireIncoming(ch, deadline);
  const listed = await ch.listCapabilities(deadline);
  const wire = resolveCapabilities(capabilities, ch.monitor.version, listed, ch.instance).filter(
    (n) => findCapability(n)?.scope !== 'source',
  );
  const snapshot = destinationSnapshot(wire, listed);
  // Journaled before anything changes, so that a process dying from here on leaves what
  // is needed to put the capabilities back.
  beforeChange?.({ capabilities: wire, snapshot });
  for (const cmd of capabilityCommands(
    ch.monitor.protocol,
    wire.map((n) => [n, true] as const),
  )) {
    await ch.must(cmd, 'setting destination capabilities', deadline);
  }
  ch.log.info({ capabilities: wire }, 'destination ready for the incoming migration');
  return { capabilities: wire, snapshot };
}

/** Options of {@link finalizeDestination}. */
export interface FinalizeDestinationOptions {
  /** What `migration_caps` asked for (cleared when `accepted` is not known). */
  capabilities: readonly string[];
  /** What `accept` changed, when this object accepted the migration. */
  accepted?: AcceptedMigration | undefined;
  /** How long a finalize waits for the VM to finish loading (ms); on failure, for an active incoming migration to end. */
  incomingGraceMs: number;
  /**
   * Remove the TLS credentials when `accepted` is not known (accepted by another process
   * with TLS); with `accepted`, its `tls` decides.
   */
  tls?: boolean;
  deadline: Deadline;
}

/**
 * Destination side, after the migration. Success: waits until the VM has been loaded,
 * puts the capabilities back and makes sure the VM runs. Failure: quits the incoming
 * QEMU unless it already holds the VM (running, or its incoming migration completed) or
 * may be about to (its incoming migration still active when the deadline comes: a
 * `MigrationError`); a destination QEMU that is already gone is a success (nothing to quit).
 */
export async function finalizeDestination(
  ch: VmChannel,
  success: boolean,
  options: FinalizeDestinationOptions,
): Promise<FinalizeOutcome> {
  const tls = options.accepted ? options.accepted.tls === true : options.tls === true;
  if (!tls) return finalizeIncoming(ch, success, options);
  // The TLS objects go whatever happens, unless QEMU itself is gone (or was quit).
  const cleanUp = async () => {
    if (ch.monitor.closed) return;
    const grace = options.deadline.over() ? Deadline.grace(1000) : options.deadline;
    await removeTls(ch, grace).catch((e: unknown) =>
      ch.log.error({ err: errorText(e) }, 'removing the TLS credentials failed'),
    );
  };
  let outcome: FinalizeOutcome;
  try {
    outcome = await finalizeIncoming(ch, success, options);
  } catch (e) {
    // A destination left loading keeps its credentials: its TLS session may be using them.
    if (!isMonitorGone(e, ch.monitor) && !(e instanceof Error && leftLoading.has(e))) await cleanUp();
    throw e;
  }
  // A paused post-copy keeps its credentials too: its recovery reconnects with them.
  if (
    outcome.action !== 'quit' &&
    outcome.action !== 'already-gone' &&
    outcome.action !== 'postcopy-paused'
  ) {
    await cleanUp();
  }
  return outcome;
}

async function finalizeIncoming(
  ch: VmChannel,
  success: boolean,
  options: FinalizeDestinationOptions,
): Promise<FinalizeOutcome> {
  const { deadline } = options;
  const protocol = ch.monitor.protocol;
  if (success) {
    // The source reports `completed` once it has sent everything; the destination may
    // still be loading the device state for a moment.
    let vm = await ch.vmStatus(deadline);
    const until = Math.min(deadline.at, Date.now() + options.incomingGraceMs);
    while (vm.status === 'inmigrate' && Date.now() < until) {
      // A load that failed (QEMU 11 keeps such a QEMU in `inmigrate`) is reported at once,
      // with QEMU's reason, instead of after the whole wait.
      const incoming = await ch.migrationStatus(deadline).catch(() => undefined);
      if (incoming?.status === 'failed') {
        throw ch.error(
          `the destination's incoming migration failed${incoming.errorDesc ? `: ${incoming.errorDesc}` : ''}`,
          undefined,
          { status: 'failed', ...(incoming.errorDesc ? { reason: incoming.errorDesc } : {}) },
        );
      }
      await deadline.sleep(Math.min(50, Math.max(0, until - Date.now())));
      vm = await ch.vmStatus(deadline);
    }
    if (vm.status === 'inmigrate') {
      throw ch.error(
        `the destination has not finished receiving the VM after ${options.incomingGraceMs} ms`,
        undefined,
        { status: vm.status },
      );
    }
    // In post-copy the VM left `inmigrate` long before it arrived: wait for `completed`.
    const ended = await untilPostcopyEnds(ch, vm, options);
    if ('action' in ended) return ended;
    await restore(ch, options, ended);
    if (!vm.running) {
      // After a non-live migration the destination inherits the paused state.
      ch.log.info({ status: vm.status }, 'resuming the destination VM');
      await ch.must(simpleCommand(protocol, 'cont'), 'resuming the destination VM', deadline);
      ch.log.info({}, 'destination finalized; the VM runs here');
      return { side: 'destination', action: 'resumed', status: 'running' };
    }
    ch.log.info({}, 'destination finalized; the VM runs here');
    return { side: 'destination', action: 'running', status: vm.status };
  }

  return finalizeAfterFailure(ch, options);
}

/** First and longest poll interval while a finalize waits for a post-copy migration to end (ms). */
const POSTCOPY_POLL_FIRST_MS = 10;
const POSTCOPY_POLL_MAX_MS = 200;

/**
 * The outcome of a destination whose incoming post-copy migration is paused or
 * reconnecting (`postcopy-paused`, `postcopy-recover*`): the guest is frozen on the pages
 * still on the source. Nothing is done to it: neither QEMU may be stopped.
 */
function postcopyPaused(ch: VmChannel, vm: VmRunState, incoming: string): FinalizeOutcome {
  ch.log.error(
    { status: vm.status, incoming },
    'the incoming post-copy migration is paused: the VM is split between the two hosts and its guest waits for the pages on the source; leaving both QEMUs as they are',
  );
  return { side: 'destination', action: 'postcopy-paused', status: vm.status, migrationStatus: incoming };
}

/**
 * A successful finalize on a destination that left `inmigrate`: when its incoming
 * migration is still in post-copy, waits (polling every 10 ms at first, backing off to
 * 200 ms, woken by `MIGRATION` events) within the deadline less a reserve for the restore,
 * and within `incomingGraceMs`, until it completes. Resolves with the status once it is
 * no longer in post-copy (undefined when it cannot be read: the restore decides then), a
 * `postcopy-paused` outcome when the stream is broken; throws a `MigrationError` saying
 * the VM is split when it is still in post-copy at the end of the wait (its TLS objects
 * stay: the migration may still use them).
 */
async function untilPostcopyEnds(
  ch: VmChannel,
  vm: VmRunState,
  options: FinalizeDestinationOptions,
): Promise<FinalizeOutcome | { status: string | undefined }> {
  const { deadline } = options;
  const started = Date.now();
  const until = Math.min(
    deadline.at - Math.min(ACTION_RESERVE_MS, deadline.remaining() / 4),
    started + options.incomingGraceMs,
  );
  let interval = POSTCOPY_POLL_FIRST_MS;
  let wake: (() => void) | undefined;
  const onEvent = (ev: MonitorEvent) => {
    if (isMonitorEvent(ev, 'MIGRATION')) wake?.();
  };
  ch.monitor.on('event', onEvent);
  try {
    for (let logged = false; ; logged = true) {
      const incoming = await ch.migrationStatus(deadline).catch((e: unknown) => {
        if (isDeadline(e))
          throw ch.error(`cannot read the destination's incoming status: ${errorText(e)}`, e);
        return undefined;
      });
      if (!incoming || !isPostcopy(incoming.status)) return { status: incoming?.status };
      if (isPostcopyPaused(incoming.status)) return postcopyPaused(ch, vm, incoming.status);
      if (Date.now() >= until) {
        const err = ch.error(
          `the incoming migration is still in post-copy ('${incoming.status}') after ${Date.now() - started} ms: the VM is split between the two hosts (it runs here, part of its memory is still on the source), so it is not finalized as migrated. Stop neither QEMU; finalize again once the source reports 'completed' (waitForMigration on the source)`,
          undefined,
          { status: incoming.status },
        );
        leftLoading.add(err);
        throw err;
      }
      if (!logged) {
        ch.log.info(
          { incoming: incoming.status },
          'the incoming migration is in post-copy; waiting for it to complete',
        );
      }
      await deadline.sleep(Math.min(interval, Math.max(0, until - Date.now())), (done) => {
        wake = done;
        return () => {
          wake = undefined;
        };
      });
      interval = Math.min(POSTCOPY_POLL_MAX_MS, interval * 2);
    }
  } finally {
    ch.monitor.off('event', onEvent);
  }
}

/** Poll interval while a failure finalize waits for an incoming migration to end (ms). */
const LOADING_POLL_MS = 100;
/** Kept back from the step's deadline for what follows that wait (quit, or restore and `cont`). */
const ACTION_RESERVE_MS = 2000;

/** Errors of a failure finalize that left the destination loading: its TLS objects stay. */
const leftLoading = new WeakSet<object>();

/** The incoming status as far as it can be read: `gone` when QEMU has exited. */
type IncomingRead = { progress: MigrationProgress } | { unreadable: unknown } | 'gone';

async function readIncoming(ch: VmChannel, deadline: Deadline): Promise<IncomingRead> {
  try {
    return { progress: await ch.migrationStatus(deadline) };
  } catch (e) {
    if (isMonitorGone(e, ch.monitor)) return 'gone';
    if (isDeadline(e)) throw ch.error(`cannot read the destination's incoming status: ${errorText(e)}`, e);
    return { unreadable: e };
  }
}

/**
 * Failure: quits the incoming QEMU unless it holds the VM or may be about to. While its
 * incoming migration is still active (any status but none/setup/failed/cancelled; unknown
 * and unreadable ones too) it is waited for within the step's deadline: the source may
 * report `completed` while the destination still loads the state, and quitting it then
 * leaves the VM nowhere. Past the deadline it is left alone and a `MigrationError` says so.
 */
async function finalizeAfterFailure(
  ch: VmChannel,
  options: FinalizeDestinationOptions,
): Promise<FinalizeOutcome> {
  const { deadline } = options;
  const started = Date.now();
  const until = Math.min(
    deadline.at - Math.min(ACTION_RESERVE_MS, deadline.remaining() / 4),
    started + options.incomingGraceMs,
  );
  let wake: (() => void) | undefined;
  const onEvent = (ev: MonitorEvent) => {
    if (isMonitorEvent(ev, 'MIGRATION')) wake?.();
  };
  const onClose = () => wake?.();
  ch.monitor.on('event', onEvent);
  ch.monitor.on('close', onClose);
  try {
    for (let waiting = false; ; waiting = true) {
      let vm: VmRunState;
      try {
        vm = await ch.vmStatus(deadline);
      } catch (e) {
        if (isMonitorGone(e, ch.monitor)) return alreadyGone(ch);
        throw ch.error(`cannot read the destination's state: ${errorText(e)}`, e);
      }
      if (vm.status !== 'inmigrate') {
        // A broken post-copy stream leaves the guest frozen whatever its run state says.
        const read = await readIncoming(ch, deadline);
        if (read === 'gone') return alreadyGone(ch);
        if ('progress' in read && isPostcopyPaused(read.progress.status)) {
          return postcopyPaused(ch, vm, read.progress.status);
        }
        if ('progress' in read && isPostcopy(read.progress.status)) {
          // Still in post-copy (a dead source shows here a moment later, as postcopy-paused):
          // the VM is split whatever the source says; it runs here but is not migrated.
          ch.log.error(
            { status: vm.status, incoming: read.progress.status },
            'the destination runs the VM in post-copy: split between the hosts; not stopping it',
          );
          return {
            side: 'destination',
            action: 'split',
            status: vm.status,
            migrationStatus: read.progress.status,
          };
        }
      }
      if (vm.running || vm.status === 'postmigrate') {
        ch.log.error(
          { status: vm.status },
          'the destination runs the VM; not stopping it after a failure report',
        );
        return { side: 'destination', action: 'kept-running', status: vm.status };
      }
      if (vm.status !== 'inmigrate') return finalizePaused(ch, vm, options);
      const incoming = await readIncoming(ch, deadline);
      if (incoming === 'gone') return alreadyGone(ch);
      const status = 'progress' in incoming ? incoming.progress.status : undefined;
      // none (7.2) / setup (10.0, 11.1): listening, nothing loaded; runMigration has settled
      // the source by now, so nothing more arrives.
      if (status === 'none' || status === 'setup' || status === 'failed' || status === 'cancelled') {
        return quit(ch, vm, deadline);
      }
      if (Date.now() >= until) throw stillLoading(ch, incoming, Date.now() - started);
      if (!waiting) {
        ch.log.info(
          { incoming: status ?? 'unreadable' },
          'the incoming migration has not ended; waiting for it before deciding whether to quit',
        );
      }
      await deadline.sleep(Math.min(LOADING_POLL_MS, Math.max(0, until - Date.now())), (done) => {
        wake = done;
        return () => {
          wake = undefined;
        };
      });
    }
  } finally {
    ch.monitor.off('event', onEvent);
    ch.monitor.off('close', onClose);
  }
}

/** The `MigrationError` for a destination left loading at the deadline (never quit). */
function stillLoading(ch: VmChannel, incoming: Exclude<IncomingRead, 'gone'>, ms: number) {
  const advice =
    "check the source: if its migration completed, finalize the destination as successful; if it failed or was cancelled, the destination's load fails or it can be quit";
  const err =
    'unreadable' in incoming
      ? ch.error(
          `the destination waits for the VM (inmigrate) and its incoming status cannot be read (${errorText(incoming.unreadable)}) after ${ms} ms; not quitting it: it may be about to hold the VM (${advice})`,
          incoming.unreadable,
        )
      : incoming.progress.status === 'completed'
        ? ch.error(
            `the incoming migration completed but the VM is still loading after ${ms} ms; not quitting the destination: it is about to hold the VM`,
            undefined,
            { status: 'completed' },
          )
        : ch.error(
            `the destination's incoming migration is still running (status '${incoming.progress.status}') after ${ms} ms; not quitting it: it may be about to hold the VM (${advice})`,
            undefined,
            { status: incoming.progress.status },
          );
  leftLoading.add(err);
  return err;
}

function alreadyGone(ch: VmChannel): FinalizeOutcome {
  ch.log.info({}, 'the incoming QEMU is already gone');
  return { side: 'destination', action: 'already-gone' };
}

/** A destination paused after a failure report: the VM when its incoming migration completed. */
async function finalizePaused(
  ch: VmChannel,
  vm: VmRunState,
  options: FinalizeDestinationOptions,
): Promise<FinalizeOutcome> {
  const { deadline } = options;
  // Paused: after a non-live migration that completed, this is the VM. Quit only when
  // QEMU says the incoming migration did not complete.
  let incoming: MigrationProgress | undefined;
  try {
    incoming = await ch.migrationStatus(deadline);
  } catch (e) {
    if (isDeadline(e)) throw ch.error(`cannot read the destination's incoming status: ${errorText(e)}`, e);
    ch.log.error({ err: errorText(e) }, 'cannot read the incoming status; keeping the paused destination');
  }
  if (incoming?.status === 'completed') {
    // The VM arrived (a non-live migration leaves it paused): the source is postmigrate
    // and will not be resumed, so this is the one copy. Run it, as a live one would.
    ch.log.error({}, 'the incoming migration completed despite the failure report; resuming the VM here');
    await restore(ch, options, incoming);
    await ch.must(simpleCommand(ch.monitor.protocol, 'cont'), 'resuming the destination VM', deadline);
    return { side: 'destination', action: 'resumed-after-completion', status: 'running' };
  }
  if (!incoming || incoming.status === 'none') {
    ch.log.error(
      { status: vm.status, incoming: incoming?.status },
      'the destination may hold the VM; not quitting it after a failure report',
    );
    return { side: 'destination', action: 'kept-paused', status: vm.status };
  }
  return quit(ch, vm, deadline);
}

async function quit(ch: VmChannel, vm: VmRunState, deadline: Deadline): Promise<FinalizeOutcome> {
  ch.log.info({}, 'quitting the incoming QEMU after a failed migration');
  try {
    await ch.send(simpleCommand(ch.monitor.protocol, 'quit', 'quit'), deadline);
  } catch (e) {
    // `quit` closes the socket; a closed connection is the expected outcome.
    if (!isMonitorGone(e, ch.monitor))
      throw ch.error(`quitting the incoming QEMU failed: ${errorText(e)}`, e);
  }
  return { side: 'destination', action: 'quit', status: vm.status };
}

async function restore(
  ch: VmChannel,
  options: FinalizeDestinationOptions,
  incoming: { status: string | undefined },
): Promise<void> {
  // Settings changed while QEMU still shuts the migration down can crash it (cleanup-wait.ts).
  if (!(await readyForRestore(ch, options.deadline, { status: incoming.status }))) return;
  if (options.accepted) {
    await restoreSettings(ch, options.accepted.snapshot, options.deadline);
    return;
  }
  await clearCapabilities(ch, options.capabilities, options.deadline).catch((e: unknown) =>
    ch.log.error({ err: errorText(e) }, 'clearing migration capabilities failed'),
  );
}

/**
 * Destination side, on a QEMU started with `-incoming defer`: puts the TLS credentials in
 * place (when `tls` is given), then starts listening on `uri` (`migrate-incoming`), so no
 * connection is accepted before the credentials are there. Capabilities that must be set
 * before incoming starts (`multifd`, `postcopy-preempt`) must be on already
 * ({@link acceptMigration}). On QMP from QEMU 9.1 `exit-on-error: false` keeps a QEMU whose
 * incoming migration failed alive, to report why and be quit cleanly.
 *
 * Throws `MigrationError` when the VM is not waiting for an incoming migration, when QEMU
 * refuses (e.g. it already listens: started with `-incoming tcp:…`), or when the
 * credentials cannot be loaded; the TLS objects are removed again in that case.
 */
export async function startIncoming(
  ch: VmChannel,
  uri: string,
  tls: TlsPlan | undefined,
  deadline: Deadline,
): Promise<void> {
  await requireIncoming(ch, deadline);
  if (tls) await applyTls(ch, { ...tls, endpoint: 'server' }, deadline);
  try {
    await ch.must(
      incomingCommand(ch.monitor.protocol, ch.monitor.version, uri),
      `listening for the incoming migration on ${uri} (the destination must be started with -incoming defer)`,
      deadline,
    );
  } catch (e) {
    if (tls) await removeTls(ch, deadline);
    throw e;
  }
  ch.log.info({ uri, tls: tls !== undefined }, 'destination listening for the incoming migration');
}
