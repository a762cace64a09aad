/**
 * Recovery of a migration whose control plane died: from the journal and QEMU's own
 * state, one node finishes or undoes its end of the migration, idempotently. What one
 * node can decide alone it does; where only the other node can tell whether a QEMU here
 * may hold the only copy of the VM, it does nothing destructive, says what to check and
 * reports `settled: false`. {@link recoverMigrationPair} sees both nodes and decides alone.
 */

import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import type { FinalizeOutcome } from '../errors.js';
import type { LoggerLike } from '../logger.js';
import { isMonitorGone, type VmChannel, type VmRunState } from './channel.js';
import { settledRunState } from './cleanup-wait.js';
import { simpleCommand } from './dialect.js';
import { waitForIncoming } from './incoming.js';
import {
  type MigrationJournal,
  type MigrationJournalEntry,
  type MigrationRole,
  startedFromJournal,
} from './journal.js';
import { isPostcopy } from './safety.js';
import { cancelAndSettle, finalizeSource, type StartedMigration } from './source.js';
import { TERMINAL_STATUSES } from './status.js';
import type {
  FinalizeMigrationDstOptions,
  FinalizeMigrationSourceOptions,
  Instance,
  MigrationProgress,
  MigrationResult,
  WaitForMigrationOptions,
} from './types.js';

/** Default limit of one node's recovery, ms (it may wait for a migration still running). */
export const DEFAULT_RECOVER_TIMEOUT_MS = 60_000;

/** Options of `KVMHypervisor.recoverMigration`. */
export interface RecoverMigrationOptions {
  /** Limit of the whole recovery in ms (default 60 000), including a wait for a migration still running. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * A migration that is still running: `wait` (default) for it to end within `timeoutMs`
   * (a source's is cancelled at the limit), or `cancel` it now (source; pre-copy only).
   */
  active?: 'wait' | 'cancel';
  /**
   * Source: the caller has checked that the destination runs the VM (its own recovery
   * said `vm: 'here'`). Only then is a source whose migration completed finalized as
   * after a success, which stops a QEMU this node started.
   */
  destinationRuns?: boolean;
  /** Source: the operator override of `finalizeMigrationSource` (resume whatever the rule says). */
  forceResume?: boolean;
  /**
   * Destination: the caller saw the source's migration complete (the source's own
   * recovery said so): the destination is finalized as after a success, waiting within
   * `timeoutMs` for a VM still loading, and never quit.
   */
  sourceCompleted?: boolean;
}

/** Where the VM is, as far as one node can tell after its recovery. */
export type RecoveryVmPlace =
  /** This node's QEMU runs the VM. */
  | 'here'
  /** This node holds no copy of it (quit, gone, or migrated away and confirmed). */
  | 'not-here'
  /** This node cannot tell (unreadable state, or a paused copy waiting for the other node's answer). */
  | 'unknown'
  /** Post-copy: its memory is split between the two hosts; neither QEMU may be stopped. */
  | 'split';

/** What `recoverMigration` found and did on one node. */
export interface MigrationRecoveryReport {
  instance: string;
  /** The end this node played (`none`: nothing journaled and no migration seen). */
  role: MigrationRole | 'none';
  /**
   * What was done: `nothing`; a finalize outcome (`resumed`, `already-running`,
   * `left-paused`, `force-resumed`, `paused`, `stopped`, `running`, `quit`,
   * `already-gone`, …); `awaiting-destination` (source: completed, settings put back,
   * its paused copy kept until the destination is confirmed to run the VM); `split`
   * (post-copy); `unreadable` (QEMU's state could not be read; nothing changed);
   * `still-migrating` (the migration had not ended at the limit).
   */
  action: string;
  vm: RecoveryVmPlace;
  /** False when an operator (or the other node's recovery) must act; `message` says what. */
  settled: boolean;
  message: string;
  /** The migration status seen last. */
  status?: string;
  /** The VM run state seen last. */
  runState?: string;
  /** The journal that was kept (unsettled) or removed. */
  journal?: string;
}

/** What the recovery needs from the hypervisor object of its node. */
export interface RecoveryNode {
  log: LoggerLike;
  /** The node's journal folder, when it keeps one for this instance. */
  journal: MigrationJournal | undefined;
  /** Opens the instance's monitor (a `MigrationError` when it cannot). */
  channel(deadline: Deadline): Promise<VmChannel>;
  /** For a QEMU this node started: whether its process is gone; undefined otherwise. */
  processGone(): boolean | undefined;
  /** Removes the files of a library-started QEMU whose process is gone. */
  cleanupGone(): Promise<void>;
  /** The instance as the finalize steps take it. */
  instance: Instance;
  /**
   * A migration this very object started or accepted (kept in memory, with or without a
   * journal): its role, and for a source when it started (epoch ms).
   */
  inMemory?: { role: MigrationRole; startedAt?: number } | undefined;
  /** What a source's migration changed (its session or its journal), to put it back. */
  started?: StartedMigration | undefined;
  finalizeSource(success: boolean, options: FinalizeMigrationSourceOptions): Promise<FinalizeOutcome>;
  finalizeDestination(success: boolean, options: FinalizeMigrationDstOptions): Promise<FinalizeOutcome>;
  waitForMigration(options: WaitForMigrationOptions): Promise<MigrationResult>;
}

const SWITCHED_OVER = new Set(['postmigrate', 'finish-migrate']);
type Seen<T> = T | { error: unknown };
const ok = <T extends object>(v: Seen<T>): v is T => !('error' in v);

async function look(ch: VmChannel, deadline: Deadline) {
  const migration: Seen<MigrationProgress> = await ch.migrationStatus(deadline).catch((error: unknown) => ({
    error,
  }));
  const read: Seen<VmRunState> = await ch.vmStatus(deadline).catch((error: unknown) => ({ error }));
  // An ended migration leaves `finish-migrate` a moment later (cleanup-wait.ts).
  const run = await settledRunState(ch, deadline, ok(migration) ? migration.status : undefined, read);
  return { migration, run };
}

/**
 * Recovers one node's end of a migration of `node.instance`. Never throws for what it
 * finds: the report says what was done and whether someone must act.
 */
export async function recoverNode(
  node: RecoveryNode,
  options: RecoverMigrationOptions = {},
): Promise<MigrationRecoveryReport> {
  const name = node.instance.name;
  const journal = node.journal;
  // A damaged journal throws here (MigrationJournalError): nothing is guessed.
  const source = journal?.read(name, 'source');
  const destination = journal?.read(name, 'destination');
  const deadline = Deadline.after(options.timeoutMs ?? DEFAULT_RECOVER_TIMEOUT_MS, options.signal);
  const base = { instance: name };
  let ch: VmChannel;
  try {
    ch = await node.channel(deadline);
  } catch (e) {
    const role = destination ? 'destination' : source ? 'source' : (node.inMemory?.role ?? 'none');
    const gone = node.processGone() ?? isMonitorGone(e);
    if (!gone) {
      return {
        ...base,
        role,
        action: 'unreadable',
        vm: 'unknown',
        settled: false,
        message: `cannot reach the QEMU of '${name}' (${errorText(e)}); nothing was changed: check that it is not frozen, then run the recovery again`,
      };
    }
    if (node.processGone() === true) await node.cleanupGone();
    if (journal) {
      journal.remove(name, 'source');
      journal.remove(name, 'destination');
    }
    return {
      ...base,
      role,
      action: role === 'none' ? 'nothing' : 'already-gone',
      vm: 'not-here',
      settled: true,
      message: `no QEMU of '${name}' runs on this node; the VM does not run here${role === 'none' ? '' : ' (journal removed)'}`,
    };
  }
  if (destination || node.inMemory?.role === 'destination') {
    return recoverDestination(node, ch, destination, deadline, options);
  }
  if (source || node.inMemory?.role === 'source') return recoverSource(node, ch, source, deadline, options);
  // Nothing journaled: QEMU's own state may still show a migration (journal-less steps,
  // or a process that died before writing one).
  const seen = await look(ch, deadline);
  if (ok(seen.run) && seen.run.status === 'inmigrate') {
    return recoverDestination(node, ch, undefined, deadline, options);
  }
  const status = ok(seen.migration) ? seen.migration.status : undefined;
  if (status !== undefined && status !== 'none' && !TERMINAL_STATUSES.has(status)) {
    return recoverSource(node, ch, undefined, deadline, options);
  }
  if (ok(seen.run) && SWITCHED_OVER.has(seen.run.status)) {
    // Migrated away and finalized (the journal goes last): what a finalized source of a
    // QEMU started elsewhere looks like. Stopping it is its owner's call.
    return {
      ...base,
      role: 'none',
      action: 'nothing',
      vm: 'not-here',
      settled: true,
      message: `no migration of '${name}' to recover on this node: its VM was migrated away ('${seen.run.status}') and the migration was finalized`,
      runState: seen.run.status,
      ...(status === undefined ? {} : { status }),
    };
  }
  if (!ok(seen.run)) {
    return {
      ...base,
      role: 'none',
      action: 'unreadable',
      vm: 'unknown',
      settled: false,
      message: `the run state of '${name}' cannot be read (${errorText(seen.run.error)}); nothing was changed`,
    };
  }
  return {
    ...base,
    role: 'none',
    action: 'nothing',
    vm: seen.run.running ? 'here' : 'unknown',
    settled: true,
    message: `no migration of '${name}' to recover on this node (VM ${seen.run.status})`,
    runState: seen.run.status,
    ...(status === undefined ? {} : { status }),
  };
}

const remaining = (d: Deadline) => Math.max(1000, d.remaining());

async function recoverSource(
  node: RecoveryNode,
  ch: VmChannel,
  entry: MigrationJournalEntry | undefined,
  deadline: Deadline,
  options: RecoverMigrationOptions,
): Promise<MigrationRecoveryReport> {
  const name = node.instance.name;
  const journalPath = node.journal?.path(name, 'source');
  const base = { instance: name, role: 'source' as const, ...(journalPath ? { journal: journalPath } : {}) };
  let seen = await look(ch, deadline);
  const unreadable = (what: Seen<unknown>): MigrationRecoveryReport => ({
    ...base,
    action: 'unreadable',
    vm: 'unknown',
    settled: false,
    message: `the source's state cannot be read (${errorText((what as { error: unknown }).error)}); it was not resumed (it may have handed the VM over): check the destination, then run the recovery again`,
  });
  if (!ok(seen.run)) return unreadable(seen.run);
  if (!ok(seen.migration)) {
    // The status cannot be read (output no parser knows, a failing query): the run state
    // still tells a switchover apart.
    const settledByRunState = await byRunState(ch, seen.run, deadline, options);
    if (settledByRunState === undefined) return unreadable(seen.migration);
    seen = { migration: { status: settledByRunState }, run: seen.run };
  }
  if (!ok(seen.migration)) return unreadable(seen.migration);
  let status = seen.migration.status;
  if (!isPostcopy(status) && status !== 'none' && !TERMINAL_STATUSES.has(status)) {
    // Still migrating: QEMU carried on without its client.
    if (options.active === 'cancel') {
      ch.log.warn({ status }, 'recovery: cancelling the migration still running');
      await cancelAndSettle(ch, 'recovery: cancel requested', deadline);
    } else if (entry || node.inMemory?.startedAt !== undefined) {
      ch.log.info({ status }, 'recovery: waiting for the migration still running');
      // Cancelled at the limit, like any wait (whose limit counts from the start); the
      // outcome is read again below.
      const startedAt = entry?.startedAt ?? node.inMemory?.startedAt ?? Date.now();
      await node
        .waitForMigration({ timeoutMs: Date.now() - startedAt + remaining(deadline) })
        .catch((e: unknown) => ch.log.warn({ err: errorText(e) }, 'recovery: the wait ended'));
    } else {
      ch.log.info({ status }, 'recovery: waiting for the migration still running (no journal)');
      while (!deadline.over()) {
        const p = await ch.migrationStatus(deadline).catch(() => undefined);
        if (!p || TERMINAL_STATUSES.has(p.status) || isPostcopy(p.status) || p.status === 'none') break;
        await deadline.sleep(250);
      }
    }
    seen = await look(ch, Deadline.after(Math.max(3000, deadline.remaining())));
    if (!ok(seen.run)) return unreadable(seen.run);
    if (!ok(seen.migration)) return unreadable(seen.migration);
    status = seen.migration.status;
  }
  if (!ok(seen.run)) return unreadable(seen.run);
  const runState = seen.run.status;
  const observed = { status, runState };
  if (isPostcopy(status)) {
    node.journal?.advance(name, 'source', 'postcopy');
    return {
      ...base,
      ...observed,
      action: 'split',
      vm: 'split',
      settled: false,
      message: `the migration of '${name}' is in post-copy ('${status}'): the VM's memory is split between this node and the destination; stop neither QEMU`,
    };
  }
  if (!TERMINAL_STATUSES.has(status) && status !== 'none') {
    return {
      ...base,
      ...observed,
      action: 'still-migrating',
      vm: 'unknown',
      settled: false,
      message: `the migration of '${name}' is still '${status}' at the limit; run the recovery again (or with active: 'cancel')`,
    };
  }
  if (status === 'completed' || SWITCHED_OVER.has(runState)) {
    node.journal?.advance(name, 'source', 'completed');
    if (options.destinationRuns) {
      // A QEMU this node started is stopped by the finalize (Ganeti's rule after a success).
      const stopped = node.processGone() !== undefined;
      const outcome = await node.finalizeSource(true, { timeoutMs: remaining(deadline) });
      return {
        ...base,
        ...observed,
        action: stopped ? 'stopped' : outcome.action,
        vm: 'not-here',
        settled: true,
        message: `the migration of '${name}' completed and the destination runs the VM: the source was finalized${stopped ? ' and its QEMU stopped' : ' (left paused)'}, its settings put back`,
      };
    }
    // Settings back now; the paused copy stays until the destination is confirmed.
    try {
      await finalizeSource(ch, true, {
        capabilities: [],
        session: node.started ?? (entry ? startedFromJournal(entry) : undefined),
        deadline: Deadline.after(remaining(deadline)),
      });
    } catch (e) {
      return {
        ...base,
        ...observed,
        action: 'unreadable',
        vm: 'unknown',
        settled: false,
        message: errorText(e),
      };
    }
    return {
      ...base,
      ...observed,
      action: 'awaiting-destination',
      vm: 'unknown',
      settled: false,
      message: `the migration of '${name}' completed: the VM belongs on the destination. Its settings were put back; its paused copy here is kept because it is the only one left if the destination lost the VM. Recover the destination; once it reports the VM runs there, recover this node again with destinationRuns (kvm-hv recover --destination-runs) to stop this copy`,
    };
  }
  // Failed, cancelled or never started: the fail-safe finalize resumes what it may.
  try {
    const outcome = await node.finalizeSource(false, {
      timeoutMs: remaining(deadline),
      ...(options.forceResume ? { forceResume: true } : {}),
    });
    return {
      ...base,
      ...observed,
      action: outcome.action,
      vm: 'here',
      settled: true,
      ...(outcome.status ? { runState: outcome.status } : {}),
      message: `the migration of '${name}' did not complete (${status}): the VM runs here${outcome.action === 'left-paused' ? ' (paused, as it was before the migration)' : ''}; settings put back`,
    };
  } catch (e) {
    return {
      ...base,
      ...observed,
      action: 'refused',
      vm: 'unknown',
      settled: false,
      message: errorText(e),
    };
  }
}

/**
 * A destination that is receiving the VM. Not one that only listens: its `query-migrate`
 * says `setup` from `migrate-incoming` until the source connects on recent QEMU (seen on
 * 10.0 and 11.1; 5.2 and 7.2 report no status then), and it loads nothing before `active`.
 */
const receiving = (runState: string, status: string): boolean =>
  runState === 'inmigrate' && status !== 'none' && status !== 'setup' && !TERMINAL_STATUSES.has(status);

async function recoverDestination(
  node: RecoveryNode,
  ch: VmChannel,
  entry: MigrationJournalEntry | undefined,
  deadline: Deadline,
  options: RecoverMigrationOptions,
): Promise<MigrationRecoveryReport> {
  const name = node.instance.name;
  const journalPath = node.journal?.path(name, 'destination');
  const base = {
    instance: name,
    role: 'destination' as const,
    ...(journalPath && entry ? { journal: journalPath } : {}),
  };
  let seen = await look(ch, deadline);
  const unreadable = (what: Seen<unknown>): MigrationRecoveryReport => ({
    ...base,
    action: 'unreadable',
    vm: 'unknown',
    settled: false,
    message: `the destination's state cannot be read (${errorText((what as { error: unknown }).error)}); it was left as it is (it may hold the VM)`,
  });
  if (!ok(seen.migration)) return unreadable(seen.migration);
  if (!ok(seen.run)) return unreadable(seen.run);
  let status = seen.migration.status;
  if (isPostcopy(status)) {
    node.journal?.advance(name, 'destination', 'postcopy');
    return {
      ...base,
      status,
      runState: seen.run.status,
      action: 'split',
      vm: 'split',
      settled: false,
      message: `the incoming migration of '${name}' is in post-copy ('${status}'): the VM's memory is split between the source and this node; stop neither QEMU`,
    };
  }
  if (receiving(seen.run.status, status)) {
    // Still receiving: it may be about to hold the VM. Wait, never quit it now.
    try {
      await waitForIncoming(ch, {
        timeoutMs: remaining(deadline),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (e) {
      ch.log.info({ err: errorText(e) }, 'recovery: the incoming wait ended');
    }
    seen = await look(ch, Deadline.after(Math.max(3000, deadline.remaining())));
    if (!ok(seen.migration)) {
      if (isMonitorGone(seen.migration.error, ch.monitor)) return gone(node, base);
      return unreadable(seen.migration);
    }
    if (!ok(seen.run)) return unreadable(seen.run);
    status = seen.migration.status;
    if (receiving(seen.run.status, status)) {
      return {
        ...base,
        status,
        runState: seen.run.status,
        action: 'still-migrating',
        vm: 'unknown',
        settled: false,
        message: `the incoming migration of '${name}' is still '${status}' at the limit; it was left as it is: run the recovery again`,
      };
    }
  }
  const runState = seen.run.status;
  const loaded = runState !== 'inmigrate' && (status === 'completed' || seen.run.running);
  if (loaded || (runState === 'inmigrate' && status === 'completed') || options.sourceCompleted) {
    const outcome = await node.finalizeDestination(true, { timeoutMs: remaining(deadline) });
    return {
      ...base,
      status,
      runState: outcome.status ?? runState,
      action: outcome.action,
      vm: 'here',
      settled: true,
      message: `the VM of '${name}' arrived: it runs here (${outcome.action}); capabilities put back`,
    };
  }
  if (runState === 'inmigrate') {
    // Nothing received, or a failed load: this QEMU holds nothing of the VM.
    const outcome = await node.finalizeDestination(false, { timeoutMs: remaining(deadline) });
    return {
      ...base,
      status,
      runState,
      action: outcome.action,
      vm: outcome.action === 'quit' || outcome.action === 'already-gone' ? 'not-here' : 'unknown',
      settled: outcome.action === 'quit' || outcome.action === 'already-gone',
      message: `the incoming migration of '${name}' did not complete (${status}): this QEMU held nothing of the VM and was ${outcome.action === 'quit' ? 'quit' : outcome.action}`,
    };
  }
  return {
    ...base,
    status,
    runState,
    action: 'kept-paused',
    vm: 'unknown',
    settled: false,
    message: `the destination of '${name}' is '${runState}' and its incoming status is '${status}': it may hold the VM, so it was left as it is. Check the source: if it runs the VM, stop this QEMU with force; otherwise resume this one`,
  };
}

/**
 * A source whose migration status cannot be read: `completed` when its run state shows the
 * switchover (`postmigrate`, `finish-migrate`); with `active: 'cancel'`, a running or
 * paused one gets `migrate_cancel` and is watched for 2 s, so a completion racing the
 * cancel is seen, then counts as `cancelled`. Undefined: nothing can be concluded.
 */
async function byRunState(
  ch: VmChannel,
  run: VmRunState,
  deadline: Deadline,
  options: RecoverMigrationOptions,
): Promise<string | undefined> {
  if (SWITCHED_OVER.has(run.status)) return 'completed';
  if (options.active !== 'cancel' || (!run.running && run.status !== 'paused')) return undefined;
  try {
    await ch.send(simpleCommand(ch.monitor.protocol, 'migrate_cancel'), deadline);
    const watch = Deadline.at(Math.min(deadline.at, Date.now() + 2000));
    while (!watch.over()) {
      await watch.sleep(50);
      const vm = await ch.vmStatus(deadline);
      if (SWITCHED_OVER.has(vm.status)) return 'completed';
    }
    // Not switched over: it never stopped (live) or was paused by the set-up (non-live),
    // and the fail-safe finalize still refuses to resume it while its status is unreadable.
    return undefined;
  } catch {
    return undefined;
  }
}

async function gone(
  node: RecoveryNode,
  base: { instance: string; role: 'destination'; journal?: string },
): Promise<MigrationRecoveryReport> {
  const outcome = await node.finalizeDestination(false, { timeoutMs: 5000 }).catch(() => undefined);
  if (node.processGone() === true) await node.cleanupGone();
  node.journal?.remove(base.instance, 'destination');
  return {
    ...base,
    action: outcome?.action ?? 'already-gone',
    vm: 'not-here',
    settled: true,
    message: `the destination QEMU of '${base.instance}' exited: the VM does not run here`,
  };
}

/** One node of {@link recoverMigrationPair}: its hypervisor object and the instance's name. */
export interface RecoveryEnd {
  hypervisor: {
    recoverMigration(name: string, options?: RecoverMigrationOptions): Promise<MigrationRecoveryReport>;
  };
  instance: { name: string };
}

/** Both nodes of a migration, for {@link recoverMigrationPair}. */
export interface RecoveryPair {
  source: RecoveryEnd;
  destination: RecoveryEnd;
}

/** What {@link recoverMigrationPair} did on each node. */
export interface PairRecoveryReport {
  source: MigrationRecoveryReport;
  destination: MigrationRecoveryReport;
}

/**
 * Recovery seen from both nodes, which decides alone: the source first (a migration still
 * running is waited for, or cancelled, before the destination is touched), then the
 * destination, then, when the migration completed and the destination now runs the VM,
 * the source again to stop its migrated-away copy.
 */
export async function recoverMigrationPair(
  pair: RecoveryPair,
  options: Omit<RecoverMigrationOptions, 'destinationRuns'> = {},
): Promise<PairRecoveryReport> {
  const run = (end: RecoveryEnd, role: 'source' | 'destination', o: RecoverMigrationOptions) =>
    Promise.resolve()
      .then(() => end.hypervisor.recoverMigration(end.instance.name, o))
      .catch(
        (e: unknown): MigrationRecoveryReport => ({
          instance: end.instance.name,
          role,
          action: 'error',
          vm: 'unknown',
          settled: false,
          message: errorText(e),
        }),
      );
  let source = await run(pair.source, 'source', options);
  // Recovery never stops halfway: the destination is recovered whatever the source said;
  // a completed source makes it finish as after a success (it may still be loading).
  const completed = source.status === 'completed' || SWITCHED_OVER.has(source.runState ?? '');
  const destination = await run(pair.destination, 'destination', {
    ...options,
    ...(completed ? { sourceCompleted: true } : {}),
  });
  if (source.action === 'awaiting-destination' && destination.vm === 'here') {
    source = await run(pair.source, 'source', { ...options, destinationRuns: true });
  }
  return { source, destination };
}
