/**
 * One call for a whole migration between two hypervisor objects (source and destination
 * node), with the recovery that keeps the VM in exactly one place: accept, migrate, wait,
 * finalize both; on any failure, finalize the destination and then the source as failed,
 * each even when the other fails, and report what each end did and why QEMU failed.
 */

import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import {
  type FinalizeOutcome,
  MigrationError,
  type MigrationRecovery,
  PostcopyStalledError,
} from '../errors.js';
import { checkedHvParams } from '../hvparams/checked.js';
import type { Monitor } from '../monitor/types.js';
import { isMonitorGone, VmChannel } from './channel.js';
import { simpleCommand } from './dialect.js';
import type { PostcopyPauseResult, PostcopyRecoveryResult, PostcopyResumeResult } from './postcopy.js';
import {
  countConnectFailures,
  type PostcopyDestinationSteps,
  type PostcopyRecoveryEvent,
  type PostcopySourceSteps,
  recoverPostcopyStream,
} from './postcopy-recovery.js';
import { isPostcopy, isPostcopyPaused } from './safety.js';
import { TERMINAL_STATUSES } from './status.js';
import type {
  AcceptInstanceOptions,
  ConvergenceAction,
  FinalizeMigrationDstOptions,
  FinalizeMigrationSourceOptions,
  Instance,
  MigrationProgress,
  MigrationResult,
  MigrationStepOptions,
  WaitForMigrationOptions,
} from './types.js';
import { migrationUri } from './uri.js';

/**
 * The calls {@link runMigration} makes on one node's hypervisor object (`KVMHypervisor`
 * has them all, with their contracts in its TSDoc). An interface, so that src/migration/
 * names nothing of the layers above it.
 */
export interface MigrationHypervisor {
  monitorFor(instanceName: string, deadline?: Deadline): Promise<Monitor>;
  acceptInstance(instance: Instance, options?: AcceptInstanceOptions): Promise<string[]>;
  migrateInstance(
    instance: Instance,
    target: string,
    live?: boolean,
    options?: MigrationStepOptions,
  ): Promise<void>;
  waitForMigration(instance: Instance, options?: WaitForMigrationOptions): Promise<MigrationResult>;
  getMigrationStatus(instance: Instance, options?: MigrationStepOptions): Promise<MigrationProgress>;
  getIncomingMigrationStatus(instance: Instance, options?: MigrationStepOptions): Promise<MigrationProgress>;
  cancelMigration(instance: Instance, options?: MigrationStepOptions): Promise<void>;
  pausePostcopy(instance: Instance, options?: MigrationStepOptions): Promise<PostcopyPauseResult>;
  acceptPostcopyRecovery(
    instance: Instance,
    uri: string,
    options?: MigrationStepOptions,
  ): Promise<PostcopyRecoveryResult>;
  resumePostcopy(
    instance: Instance,
    uri: string,
    options?: MigrationStepOptions,
  ): Promise<PostcopyResumeResult>;
  finalizeMigrationSource(
    instance: Instance,
    success: boolean,
    options?: FinalizeMigrationSourceOptions,
  ): Promise<FinalizeOutcome>;
  finalizeMigrationDst(
    instance: Instance,
    success: boolean,
    options?: FinalizeMigrationDstOptions,
  ): Promise<FinalizeOutcome>;
}

/** One end of a {@link runMigration}: the hypervisor object of that node and the instance there. */
export interface MigrationEnd {
  hypervisor: MigrationHypervisor;
  instance: Instance;
  /**
   * QEMU's own words when its monitor cannot give them, e.g. the last lines the QEMU
   * process wrote to stderr: a destination started with `-incoming tcp:…` exits on a load
   * error ("Size mismatch", "error while loading state …") and says why only there.
   */
  diagnostics?: () => string | undefined;
}

/** Options of {@link runMigration}. */
export interface RunMigrationOptions {
  source: MigrationEnd;
  destination: MigrationEnd;
  /** Host name or address of the destination node (the port is `migration_port`). */
  target: string;
  /**
   * For a destination started with `-incoming defer`: the address it listens on, passed
   * to `acceptInstance` (required when the destination's hypervisor has `tls`).
   */
  listen?: string;
  /** Live (default: `migration_mode`) or stop-and-copy. */
  live?: boolean;
  /** Limit of the migration itself, ms (default: scaled by guest memory). */
  timeoutMs?: number;
  /** Aborting cancels the migration; recovery still runs. */
  signal?: AbortSignal;
  /** Limit of each accept/finalize step, ms (default 30 000). */
  stepTimeoutMs?: number;
  /** As `WaitForMigrationOptions.onProgress`: each changed snapshot, and the completed one. */
  onProgress?: (progress: MigrationProgress) => void;
  onAction?: (action: ConvergenceAction) => void;
  pollIntervalMs?: number;
  /**
   * In post-copy, how long no byte may move before the stream counts as broken, ms
   * (default 5000; see `WaitForMigrationOptions.postcopyStallMs`). QEMU's own
   * `postcopy-paused` counts at once.
   */
  postcopyStallMs?: number;
  /**
   * How long one recovery of a broken post-copy stream is retried, ms (default 300 000;
   * the caller's `timeoutMs` and `signal` end it earlier). Both ends are paused, the
   * destination listens on `postcopyRecoveryPort` and the source resumes there, until the
   * stream runs again; then the wait goes on. `false` turns the recovery off (a stall then
   * rejects at once, as a split VM).
   */
  postcopyRecoveryMs?: number | false;
  /**
   * The destination's port for a post-copy recovery (default `migration_port + 1`; the
   * next two are tried when QEMU finds it in use). The original port may still be held by
   * the destination's first listener, so a different one is used; open it in firewalls.
   */
  postcopyRecoveryPort?: number;
  /** Called with each step of a post-copy recovery. */
  onPostcopyRecovery?: (event: PostcopyRecoveryEvent) => void;
}

/** A completed {@link runMigration}: the result and what each end did when finalized. */
export interface RunMigrationResult extends MigrationResult {
  source: FinalizeOutcome;
  destination: FinalizeOutcome;
  /** How many times a broken post-copy stream was recovered on the way (0 without one). */
  postcopyRecoveries: number;
}

/** Default of `RunMigrationOptions.postcopyRecoveryMs`. */
const DEFAULT_POSTCOPY_RECOVERY_MS = 300_000;
/** Recoveries in one migration before it is reported as split (a link that keeps flapping). */
const MAX_POSTCOPY_RECOVERIES = 10;

/** A logger that drops everything: recovery reports through its return value. */
const SILENT = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  fatal: () => {},
};

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));

/**
 * Runs a whole migration. Resolves when the VM runs on the destination and the source is
 * paused after switchover. Throws `MigrationError` otherwise, after recovery: `recovery`
 * says what each end did (or the error it raised), `reason` and `destinationReason` carry
 * QEMU's reasons from both ends, and the message says where the VM runs.
 */
export async function runMigration(options: RunMigrationOptions): Promise<RunMigrationResult> {
  const { source, destination } = options;
  const step: MigrationStepOptions =
    options.stepTimeoutMs === undefined ? {} : { timeoutMs: options.stepTimeoutMs };
  let result: MigrationResult;
  let sourceTouched = false;
  let recoveries = 0;
  const startedAt = Date.now();
  try {
    await destination.hypervisor.acceptInstance(destination.instance, {
      ...step,
      ...(options.listen === undefined ? {} : { listen: options.listen }),
    });
    try {
      await source.hypervisor.migrateInstance(source.instance, options.target, options.live, step);
    } catch (e) {
      // Refused before anything changed on the source: only the destination needs undoing.
      sourceTouched = !(e instanceof MigrationError && e.changedVm === false);
      throw e;
    }
    sourceTouched = true;
    for (;;) {
      try {
        result = await source.hypervisor.waitForMigration(source.instance, {
          ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
          ...(options.signal ? { signal: options.signal } : {}),
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
          ...(options.onAction ? { onAction: options.onAction } : {}),
          ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
          ...(options.postcopyStallMs === undefined ? {} : { postcopyStallMs: options.postcopyStallMs }),
        });
        break;
      } catch (e) {
        if (!(e instanceof PostcopyStalledError) || options.postcopyRecoveryMs === false) throw e;
        if (recoveries >= MAX_POSTCOPY_RECOVERIES) {
          const summary = `${e.summary}; recovered ${recoveries} times in this migration already, so runMigration stops trying`;
          throw new PostcopyStalledError(`instance '${source.instance.name}': ${summary}`, {
            ...details(e),
            stalledMs: e.stalledMs,
            transferredBytes: e.transferredBytes,
            summary,
          });
        }
        if (await recoverStream(options, e, recoveries + 1, startedAt)) recoveries++;
      }
    }
  } catch (e) {
    throw await recover(options, step, e, sourceTouched);
  }
  // Completed: the source stays paused, the destination runs the VM.
  const finalize = await Promise.allSettled([
    source.hypervisor.finalizeMigrationSource(source.instance, true, step),
    destination.hypervisor.finalizeMigrationDst(destination.instance, true, step),
  ]);
  const [src, dst] = finalize;
  if (src.status === 'fulfilled' && dst.status === 'fulfilled' && !splitOutcome(dst.value)) {
    return { ...result, source: src.value, destination: dst.value, postcopyRecoveries: recoveries };
  }
  const recovery: MigrationRecovery = {
    source: src.status === 'fulfilled' ? src.value : { error: asError(src.reason) },
    destination: dst.status === 'fulfilled' ? dst.value : { error: asError(dst.reason) },
  };
  const name = source.instance.name;
  if (splitOutcome(recovery.destination)) {
    // The source completed; the destination has not caught up (or its stream broke).
    throw new MigrationError(
      `instance '${name}': the source reports the migration completed, but the destination's incoming migration is still in post-copy: the VM is not reported as migrated; stop neither QEMU and finalize the destination again (${describe(recovery)})`,
      { instance: name, status: 'completed', recovery, changedVm: true },
    );
  }
  throw new MigrationError(
    `instance '${name}': the migration completed, but finalizing failed (${describe(recovery)}). ` +
      'The source stays paused after switchover; if the destination VM is lost, an operator may resume the source with finalizeMigrationSource(instance, false, { forceResume: true })',
    { instance: name, status: 'completed', recovery, changedVm: true },
  );
}

/** A `MigrationError`'s details, to build another one from it. */
function details(e: MigrationError) {
  return {
    ...(e.instance === undefined ? {} : { instance: e.instance }),
    ...(e.status === undefined ? {} : { status: e.status }),
    ...(e.reason === undefined ? {} : { reason: e.reason }),
    changedVm: true,
    cause: e,
  };
}

const stepOptions = (d: Deadline): MigrationStepOptions => ({
  timeoutMs: Math.max(1, Math.ceil(d.remaining())),
  ...(d.signal ? { signal: d.signal } : {}),
});

/**
 * One recovery of a stalled post-copy stream between the two ends. Resolves true when the
 * stream runs again (and false when the migration completed meanwhile): the caller waits
 * again. Throws when the recovery ends otherwise: a `PostcopyStalledError` saying it gave up
 * (the VM split, both ends paused) or that an end is gone; `recover` then reports the ends
 * as they are and stops nothing.
 */
async function recoverStream(
  options: RunMigrationOptions,
  stalled: PostcopyStalledError,
  episode: number,
  startedAt: number,
): Promise<boolean> {
  const { source, destination } = options;
  const emit = (e: PostcopyRecoveryEvent) => options.onPostcopyRecovery?.(e);
  emit({
    kind: 'stalled',
    episode,
    status: stalled.status ?? 'postcopy-active',
    stalledMs: stalled.stalledMs,
  });
  const limitMs =
    options.postcopyRecoveryMs === false ? 0 : (options.postcopyRecoveryMs ?? DEFAULT_POSTCOPY_RECOVERY_MS);
  const callerAt = options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : startedAt + options.timeoutMs;
  const at = Math.min(Date.now() + limitMs, callerAt);
  const deadline = Deadline.at(at, options.signal);
  const srcSteps = await postcopySourceSteps(source.hypervisor, source.instance, deadline);
  if (source.diagnostics) {
    const read = source.diagnostics;
    srcSteps.connectFailures = () => countConnectFailures(read());
  }
  const dstSteps = postcopyDestinationSteps(destination.hypervisor, destination.instance);
  const port =
    options.postcopyRecoveryPort ?? checkedHvParams(destination.instance.hvparams).migration_port + 1;
  // The destination listens on the address it was told to (`listen`), else on the target's.
  const listenHost = options.listen === undefined ? options.target : hostOf(options.listen);
  const outcome = await recoverPostcopyStream({
    source: srcSteps,
    destination: dstSteps,
    port,
    listenUri: (p) => migrationUri(listenHost, p),
    targetUri: (p) => migrationUri(options.target, p),
    deadline,
    episode,
    onEvent: emit,
  });
  if (outcome.outcome === 'resumed') return true;
  if (outcome.outcome === 'completed') return false;
  const name = source.instance.name;
  const fail = (summary: string, status?: string) =>
    new PostcopyStalledError(`instance '${name}': ${summary}`, {
      ...details(stalled),
      ...(status === undefined ? {} : { status }),
      stalledMs: stalled.stalledMs,
      transferredBytes: stalled.transferredBytes,
      summary,
    });
  if (outcome.outcome === 'lost') {
    throw fail(
      `${stalled.summary}; recovering it failed: the ${outcome.side} QEMU is gone (${errorText(outcome.error)})`,
    );
  }
  if (outcome.outcome === 'source-ended') {
    throw fail(
      `${stalled.summary}; while recovering it, the source QEMU ended the migration by itself ('${outcome.status}'${outcome.reason ? `: ${outcome.reason}` : ''})`,
      outcome.status,
    );
  }
  const last = `${outcome.attempts} resume attempt${outcome.attempts === 1 ? '' : 's'}; last error: ${errorText(outcome.error)}`;
  const why = options.signal?.aborted
    ? `the caller aborted (${last})`
    : /is not resumed again$/.test(outcome.error.message)
      ? `it stopped after ${last}`
      : at === callerAt
        ? `the migration's timeoutMs passed (${last})`
        : `it did not succeed within ${Math.round(limitMs / 1000)} s (${last})`;
  throw fail(`${stalled.summary}; runMigration tried to recover it and gave up: ${why}`, 'postcopy-paused');
}

/** The post-copy recovery steps of a source node, bound to its instance. */
export async function postcopySourceSteps(
  hv: MigrationHypervisor,
  instance: Instance,
  deadline: Deadline,
): Promise<PostcopySourceSteps> {
  const version = (await hv.monitorFor(instance.name, deadline)).version;
  return {
    version,
    pause: (d) => hv.pausePostcopy(instance, stepOptions(d)),
    status: (d) => hv.getMigrationStatus(instance, stepOptions(d)),
    resume: (uri, d) => hv.resumePostcopy(instance, uri, stepOptions(d)),
  };
}

/** The post-copy recovery steps of a destination node, bound to its instance. */
function postcopyDestinationSteps(hv: MigrationHypervisor, instance: Instance): PostcopyDestinationSteps {
  return {
    pause: (d) => hv.pausePostcopy(instance, stepOptions(d)),
    status: (d) => hv.getIncomingMigrationStatus(instance, stepOptions(d)),
    accept: (uri, d) => hv.acceptPostcopyRecovery(instance, uri, stepOptions(d)),
  };
}

/** The host of a `listen` address (`host`, `host:port`, `[v6]:port`). */
function hostOf(listen: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(listen);
  if (v6?.[1]) return v6[1];
  const m = /^([^:]+):\d+$/.exec(listen);
  return m?.[1] ?? listen;
}

/**
 * What the source says after being asked to stop migrating: decides the destination's
 * fate. `postcopy`: the migration cannot be stopped and the VM is split between the hosts.
 */
type SourceEnd = 'completed' | 'ended' | 'unknown' | { postcopy: string };

/** The end a migration status shows, or undefined while it still runs (pre-copy). */
function endOf(status: string): SourceEnd | undefined {
  if (status === 'completed') return 'completed';
  if (isPostcopy(status)) return { postcopy: status };
  if (TERMINAL_STATUSES.has(status) || status === 'none') return 'ended';
  return undefined;
}

/**
 * Makes the source's migration reach an end before the destination is touched (as libvirt
 * does): a destination quit while the source completes would leave the VM nowhere.
 * Post-copy is not an end but is reported as such: it cannot be cancelled, and the VM is
 * split between the two hosts until it completes.
 */
async function settleSource(end: MigrationEnd, step: MigrationStepOptions): Promise<SourceEnd> {
  const hv = end.hypervisor;
  const limit = Date.now() + (step.timeoutMs ?? 30_000);
  try {
    let p = await hv.getMigrationStatus(end.instance, step);
    const first = endOf(p.status);
    if (first) return first;
    await hv.cancelMigration(end.instance, step).catch((e: unknown) => {
      // Switched to post-copy meanwhile (the policy's `migrate-start-postcopy`): read below.
      if (!(e instanceof MigrationError && e.status !== undefined && isPostcopy(e.status))) throw e;
    });
    while (Date.now() < limit) {
      p = await hv.getMigrationStatus(end.instance, step);
      const ended = endOf(p.status);
      if (ended) return ended;
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch {
    // The status cannot be read (frozen, gone, or output the parser does not know):
    // the run state still tells a switchover apart.
    return settleByRunState(end, step, limit);
  }
  return 'unknown';
}

const SWITCHED_OVER = new Set(['postmigrate', 'finish-migrate']);

/**
 * With an unreadable migration status: a source in `postmigrate`/`finish-migrate` has
 * completed; a running or paused one gets `migrate_cancel` and is watched for 2 s, so a
 * completion racing the cancel is seen before the destination is touched.
 */
async function settleByRunState(
  end: MigrationEnd,
  step: MigrationStepOptions,
  limit: number,
): Promise<SourceEnd> {
  try {
    const deadline = Deadline.at(limit, step.signal);
    const ch = new VmChannel(
      end.instance.name,
      await end.hypervisor.monitorFor(end.instance.name, deadline),
      SILENT,
    );
    let vm = await ch.vmStatus(deadline);
    if (SWITCHED_OVER.has(vm.status)) return 'completed';
    // Running (live) or paused (non-live): not in post-copy, which leaves the source in
    // finish-migrate/postmigrate, so a cancel cannot lose the VM.
    if (!vm.running && vm.status !== 'paused') return 'unknown';
    await ch.send(simpleCommand(ch.monitor.protocol, 'migrate_cancel'), deadline);
    const watch = Math.min(limit, Date.now() + 2000);
    while (Date.now() < watch) {
      await new Promise((r) => setTimeout(r, 50));
      vm = await ch.vmStatus(deadline);
      if (SWITCHED_OVER.has(vm.status)) return 'completed';
    }
    return vm.running || vm.status === 'paused' ? 'ended' : 'unknown';
  } catch {
    return 'unknown';
  }
}

const settled = <T>(p: Promise<T>): Promise<T | { error: Error }> =>
  p.catch((e: unknown) => ({ error: asError(e) }));

/** The last non-empty lines of a diagnostics text, bounded. */
function lastLines(text: string | undefined): string | undefined {
  const lines = (text ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const tail = lines.slice(-3).join(' | ');
  return tail ? tail.slice(-1000) : undefined;
}

/** Longest wait for the destination's own reason after the source failed (ms). */
const REASON_WAIT_MS = 5000;
/** How long a diagnostics hook may take to receive what QEMU wrote before it exited (ms). */
const DIAGNOSTICS_GRACE_MS = 1000;

const pause = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * QEMU's reason from the destination: its `errorDesc`, else the last lines of the end's
 * diagnostics. When the source failed, the destination usually fails too, but may still
 * be loading or exiting when first asked (slowly under load), and its stderr may reach
 * the hook only after it exited: so, within a bounded time, wait for an `errorDesc`, a
 * final status or its exit, then give the hook a moment.
 */
async function destinationReasonOf(
  end: MigrationEnd,
  step: MigrationStepOptions,
  sourceFailed: boolean,
): Promise<string | undefined> {
  const until = Date.now() + Math.min(step.timeoutMs ?? REASON_WAIT_MS, REASON_WAIT_MS);
  let askError: unknown;
  let ended = false;
  for (;;) {
    let incoming: MigrationProgress;
    try {
      incoming = await end.hypervisor.getIncomingMigrationStatus(end.instance, {
        timeoutMs: Math.max(1, until - Date.now()),
      });
    } catch (e) {
      askError = e;
      break;
    }
    // A refused TLS handshake leaves no error-desc: QEMU only prints why (e.g. "TLS x509
    // authz check for CN=… is denied") on stderr, and keeps waiting or exits.
    if (incoming.errorDesc) return incoming.errorDesc;
    // Final: QEMU wrote why to stderr before setting it (7.2 has no error-desc here, and exits).
    ended = TERMINAL_STATUSES.has(incoming.status);
    // none/setup: it never loaded anything, so it has nothing more to say.
    const loading = !ended && incoming.status !== 'none' && incoming.status !== 'setup';
    if (!sourceFailed || !loading || Date.now() >= until) break;
    await pause(Math.min(100, until - Date.now()));
  }
  let text = lastLines(end.diagnostics?.());
  if (end.diagnostics && !text && (ended || (askError !== undefined && isMonitorGone(askError)))) {
    const grace = Date.now() + DIAGNOSTICS_GRACE_MS;
    while (!text && Date.now() < grace) {
      await pause(Math.min(50, grace - Date.now()));
      text = lastLines(end.diagnostics());
    }
  }
  if (text) return text;
  return askError === undefined ? undefined : `the destination cannot be asked (${errorText(askError)})`;
}

async function recover(
  options: RunMigrationOptions,
  step: MigrationStepOptions,
  error: unknown,
  sourceTouched: boolean,
): Promise<MigrationError> {
  const { source, destination } = options;
  const name = source.instance.name;
  const sourceEnd = sourceTouched ? await settleSource(source, step) : 'ended';
  // The destination's own reason, before it is finalized (where QEMU reports one).
  const sourceFailed = error instanceof MigrationError && error.status === 'failed';
  const destinationReason = await destinationReasonOf(destination, step, sourceFailed);
  let recovery: MigrationRecovery;
  let note = '';
  let postcopy = typeof sourceEnd === 'object' ? sourceEnd.postcopy : undefined;
  let completed = sourceEnd === 'completed';
  let split: PostcopySplit | undefined;
  if (postcopy !== undefined) {
    split = await splitOrLost(destination, step, postcopy);
    // It may have completed in between: then finalized as done below.
    if (split === 'completed') completed = true;
  }
  if (split !== undefined && split !== 'completed') {
    // Nothing is finalized: the VM is split (or lost), and neither QEMU may be stopped.
    recovery = split.recovery;
    note = split.note;
  } else if (completed) {
    // The migration completed after all.
    recovery = {
      destination: await settled(
        destination.hypervisor.finalizeMigrationDst(destination.instance, true, step),
      ),
      source: await settled(source.hypervisor.finalizeMigrationSource(source.instance, true, step)),
    };
    const dst = recovery.destination;
    if (splitOutcome(dst)) {
      postcopy = 'error' in dst ? (dst.error as MigrationError).status : dst.migrationStatus;
      note = `; the migration is in post-copy: ${splitAdvice(postcopy ?? 'postcopy-active')}`;
    } else {
      note =
        'error' in dst
          ? '; the migration completed nevertheless: the source handed the VM over to the destination'
          : '; the migration completed nevertheless: the VM is on the destination';
    }
  } else {
    recovery = {
      destination: await settled(
        destination.hypervisor.finalizeMigrationDst(destination.instance, false, step),
      ),
      source: sourceTouched
        ? await settled(source.hypervisor.finalizeMigrationSource(source.instance, false, step))
        : { side: 'source', action: 'untouched' },
    };
    const dst = recovery.destination;
    const src = recovery.source;
    const sourceRuns = !('error' in src) && (src.action === 'already-running' || src.action === 'resumed');
    if (splitOutcome(dst) && sourceRuns) {
      // QEMU 11.1 fails a post-copy paused with nothing left to send and runs its VM again.
      postcopy = 'error' in dst ? (dst.error as MigrationError).status : dst.migrationStatus;
      note = `; the source QEMU ended the migration and runs the VM again while the destination still holds it in post-copy ('${postcopy ?? 'postcopy-paused'}'): TWO COPIES of the VM exist and both may write its disks. Act now: the destination's copy cannot go on (the pages it lacks are on a source whose migration is over), so quit the destination QEMU; the source's copy runs from memory that lacks what the guest did on the destination since the switch-over (its disks may have been written there meanwhile): consider stopping it too and restarting the VM from its disks`;
    } else if (splitOutcome(dst)) {
      // The source's status could not be read, the destination says post-copy.
      postcopy = 'error' in dst ? (dst.error as MigrationError).status : dst.migrationStatus;
      note =
        'error' in src && isMonitorGone(src.error)
          ? `; the migration is in post-copy ('${postcopy}') and the source QEMU is gone: the VM is lost (part of its memory was only on the source). Quit the destination QEMU and restart the VM from its disks`
          : `; the migration is in post-copy: ${splitAdvice(postcopy ?? 'postcopy-active')}`;
    }
  }
  const cause = error instanceof MigrationError ? error : undefined;
  const askFailed = destinationReason?.startsWith('the destination cannot be asked') === true;
  return new MigrationError(
    `instance '${name}': ${(error instanceof PostcopyStalledError ? error.summary : errorText(error)).replace(/^instance '[^']*': /, '')}` +
      `${destinationReason && !askFailed ? `; destination: ${destinationReason}` : ''}` +
      `${note}. Recovery: ${describe(recovery)}`,
    {
      instance: name,
      ...(postcopy !== undefined
        ? { status: postcopy }
        : cause?.status === undefined
          ? {}
          : { status: cause.status }),
      ...(cause?.reason === undefined ? {} : { reason: cause.reason }),
      ...(destinationReason === undefined ? {} : { destinationReason }),
      unresponsive: cause?.unresponsive === true,
      changedVm: cause?.changedVm ?? true,
      recovery,
      cause: error,
    },
  );
}

function describe(r: MigrationRecovery): string {
  const one = (o: FinalizeOutcome | { error: Error }) => {
    if ('error' in o) return `failed: ${o.error.message}`;
    const seen = [o.status, o.migrationStatus && `migration '${o.migrationStatus}'`].filter(Boolean);
    return `${o.action}${seen.length > 0 ? ` (${seen.join(', ')})` : ''}`;
  };
  return `destination ${one(r.destination)}; source ${one(r.source)}`;
}

/**
 * True when a destination's finalize says the VM is split between the hosts: a paused
 * post-copy (`postcopy-paused`), or a successful finalize refused because the incoming
 * migration is still in post-copy.
 */
function splitOutcome(o: FinalizeOutcome | { error: Error }): boolean {
  if (!('error' in o)) return o.action === 'postcopy-paused' || o.action === 'split';
  return o.error instanceof MigrationError && o.error.status !== undefined && isPostcopy(o.error.status);
}

/** What to tell the caller about a VM split between the two hosts in post-copy `status`. */
function splitAdvice(status: string): string {
  const split = `the VM is split between the two hosts (the destination runs it, part of its memory is only on the source), so the migration is not reported as completed; stop neither QEMU`;
  return isPostcopyPaused(status)
    ? `${split}. The stream between them is broken ('${status}'): once the network between the hosts works, recover it with pausePostcopy on both ends, acceptPostcopyRecovery on the destination and resumePostcopy on the source (KVMHypervisor, or kvm-hv postcopy pause|accept-recovery|resume), then wait again (waitForMigration on the source) and finalize both ends`
    : `${split}. Wait again (waitForMigration on the source) until it completes, then finalize both ends; if the stream breaks, recover it with pausePostcopy, acceptPostcopyRecovery and resumePostcopy (KVMHypervisor, or kvm-hv postcopy pause|accept-recovery|resume)`;
}

/** A post-copy end of `runMigration`: what each end is, and what the error says. */
type PostcopySplit = 'completed' | { recovery: MigrationRecovery; note: string };

/**
 * The source is in post-copy (`status`): asks the destination, and changes nothing on
 * either end. Its incoming migration `completed`: the migration is done after all. Its
 * QEMU gone: the VM is lost (the source cannot run it: part of its memory was only on the
 * destination, and QEMU refuses `cont` until the migration is finalized). Otherwise the
 * VM is split: `split` on both ends (`postcopy-paused` on a destination whose stream is
 * broken).
 */
async function splitOrLost(
  destination: MigrationEnd,
  step: MigrationStepOptions,
  status: string,
): Promise<PostcopySplit> {
  const source: FinalizeOutcome = { side: 'source', action: 'split', migrationStatus: status };
  let incoming: MigrationProgress;
  try {
    incoming = await destination.hypervisor.getIncomingMigrationStatus(destination.instance, step);
  } catch (e) {
    if (isMonitorGone(e)) {
      return {
        recovery: {
          destination: { side: 'destination', action: 'already-gone' },
          source: { ...source, action: 'lost' },
        },
        note: `; the migration was in post-copy ('${status}') and the destination QEMU is gone: the VM is lost (part of its memory was only on the destination; the source cannot run it: QEMU refuses 'cont' until the migration is finalized). Quit the source QEMU and restart the VM from its disks`,
      };
    }
    return {
      recovery: { destination: { error: asError(e) }, source },
      note: `; the migration is in post-copy ('${status}') and the destination cannot be asked (${errorText(e)}): ${splitAdvice(status)}; if the destination QEMU is gone, the VM is lost: quit the source QEMU and restart the VM from its disks`,
    };
  }
  if (incoming.status === 'completed') return 'completed';
  const at = isPostcopy(incoming.status) ? incoming.status : status;
  return {
    recovery: {
      destination: {
        side: 'destination',
        action: isPostcopyPaused(at) ? 'postcopy-paused' : 'split',
        migrationStatus: incoming.status,
      },
      source,
    },
    note: `; the migration is in post-copy ('${status}'): ${splitAdvice(isPostcopyPaused(status) ? status : at)}`,
  };
}
