/**
 * The source side of a migration as `kvm-hv migrate` and `kvm-hv demo` run it: start,
 * wait with progress, finalize, and on failure or Ctrl-C cancel and leave the source
 * running.
 */
import type { Logger } from 'pino';
import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { PostcopyStalledError } from '../errors.js';
import type { KVMHypervisor } from '../kvm.js';
import { type PostcopyRecoveryEvent, recoverPostcopyStream } from '../migration/postcopy-recovery.js';
import { postcopySourceSteps } from '../migration/run.js';
import { isPostcopy } from '../migration/safety.js';
import type { ConvergenceAction, Instance, MigrationResult } from '../migration/types.js';
import { migrationUri } from '../migration/uri.js';
import { InterruptedError } from './errors.js';
import type { ProgressSink } from './progress.js';
import { describeAction } from './render.js';

/** Options of {@link migrateSource}. */
export interface MigrateSourceOptions {
  /** Overall limit, ms (default: the library's, scaled by guest memory). */
  timeoutMs?: number;
  /** Receives progress snapshots and convergence notes. */
  sink: ProgressSink;
  /** Aborting it cancels the migration; the command then fails with `InterruptedError`. */
  signal: AbortSignal;
  /** Logger for what happens on the way. */
  logger: Logger;
  /** Post-copy stall window, ms (default: the library's, 5 s). */
  postcopyStallMs?: number;
  /**
   * Recovery of a broken post-copy stream from the source alone: how long it is retried
   * (ms; `false`: off), and the destination's port to resume to. The destination must
   * listen there: its original `-incoming` port stays open through post-copy from QEMU 7.2
   * (the default port is `migration_port`); otherwise `kvm-hv postcopy accept-recovery` on
   * the destination opens one.
   */
  postcopyRecovery?: { timeoutMs: number | false; port: number };
}

/** Recoveries in one migration before it is reported as split (as runMigration). */
const MAX_RECOVERIES = 10;

/** What {@link migrateSource} returns once the migration completed and the source is finalized. */
export interface MigrateSourceOutcome {
  result: MigrationResult;
  /** Convergence actions taken, in order. */
  actions: ConvergenceAction[];
  /** Wall-clock time from the `migrate` command to the end of finalization, ms. */
  wallTimeMs: number;
}

/**
 * Runs `migrateInstance`, `waitForMigration` and `finalizeMigrationSource`. When the wait
 * fails (QEMU error, timeout, abort), the source is finalized as failed, which leaves it
 * running, and the error is rethrown; an abort becomes an {@link InterruptedError}.
 */
export async function migrateSource(
  hv: KVMHypervisor,
  instance: Instance,
  target: string,
  live: boolean,
  opts: MigrateSourceOptions,
): Promise<MigrateSourceOutcome> {
  const { sink, signal, logger } = opts;
  const interrupted = () =>
    new InterruptedError('interrupted: the migration was cancelled and the source VM keeps running');
  if (signal.aborted) throw interrupted();
  const t0 = performance.now();
  const actions: ConvergenceAction[] = [];
  logger.info({ instance: instance.name, target, live }, 'starting migration');
  await hv.migrateInstance(instance, target, live);
  let result: MigrationResult;
  let recoveries = 0;
  try {
    for (;;) {
      try {
        result = await hv.waitForMigration(instance, {
          ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
          ...(opts.postcopyStallMs === undefined ? {} : { postcopyStallMs: opts.postcopyStallMs }),
          signal,
          onProgress: (p) => sink.update(p),
          onAction: (a) => {
            actions.push(a);
            logger.info({ instance: instance.name, action: a }, 'convergence action');
            sink.note(describeAction(a));
          },
        });
        break;
      } catch (e) {
        const recovery = opts.postcopyRecovery;
        if (!(e instanceof PostcopyStalledError) || !recovery || recovery.timeoutMs === false) throw e;
        if (signal.aborted || recoveries >= MAX_RECOVERIES) throw e;
        await recoverFromSource(hv, instance, target, e, recoveries + 1, {
          ...opts,
          postcopyRecovery: recovery as { timeoutMs: number; port: number },
        });
        recoveries++;
      }
    }
  } catch (error) {
    sink.stop();
    // In post-copy there is nothing to undo on the source (QEMU refuses both a cancel and
    // a resume): the error says what to do.
    if (error instanceof PostcopyStalledError || (error instanceof Error && isPostcopy(statusOf(error)))) {
      if (signal.aborted) throw interrupted();
      throw error;
    }
    try {
      await hv.finalizeMigrationSource(instance, false, live);
    } catch (finalizeError) {
      logger.error({ err: finalizeError, instance: instance.name }, 'finalizing the failed migration failed');
    }
    if (signal.aborted) throw interrupted();
    throw error;
  }
  if (recoveries > 0) logger.info({ instance: instance.name, recoveries }, 'post-copy stream recovered');
  sink.update(result.final);
  sink.stop();
  await hv.finalizeMigrationSource(instance, true, live);
  return { result, actions, wallTimeMs: performance.now() - t0 };
}

const statusOf = (e: Error): string => (e as { status?: unknown }).status?.toString() ?? '';

/**
 * One recovery of a stalled post-copy stream from the source alone: pause it, resume it to
 * `target` on the recovery port, retried until the deadline. Resolves once the stream runs
 * again (or the migration completed); throws a `PostcopyStalledError` that says the VM is
 * split (or lost) and what to run otherwise.
 */
async function recoverFromSource(
  hv: KVMHypervisor,
  instance: Instance,
  target: string,
  stalled: PostcopyStalledError,
  episode: number,
  opts: MigrateSourceOptions & { postcopyRecovery: { timeoutMs: number; port: number } },
): Promise<void> {
  const { sink, logger, signal } = opts;
  const { timeoutMs, port } = opts.postcopyRecovery;
  const note = (e: PostcopyRecoveryEvent) => {
    logger.info({ instance: instance.name, event: e }, 'post-copy recovery');
    if (e.kind === 'resume') sink.note(`post-copy: resuming to ${e.uri} (attempt ${e.attempt})`);
    if (e.kind === 'resumed') sink.note(`post-copy: the stream runs again (${e.status})`);
  };
  sink.note(`post-copy: ${stalled.summary}; recovering (up to ${Math.round(timeoutMs / 1000)} s)`);
  const deadline = Deadline.after(timeoutMs, signal);
  const outcome = await recoverPostcopyStream({
    source: await postcopySourceSteps(hv, instance, deadline),
    port,
    listenUri: (p) => migrationUri(target, p),
    targetUri: (p) => migrationUri(target, p),
    deadline,
    episode,
    onEvent: note,
  });
  if (outcome.outcome === 'resumed' || outcome.outcome === 'completed') return;
  if (outcome.outcome === 'source-ended') {
    const summary = `${stalled.summary}; while recovering it, the source QEMU ended the migration by itself ('${outcome.status}'${outcome.reason ? `: ${outcome.reason}` : ''}): if it runs the VM again while the destination holds it in post-copy, TWO COPIES exist: quit the destination QEMU (it cannot go on) and check the source's guest against its disks`;
    throw new PostcopyStalledError(`instance '${instance.name}': ${summary}`, {
      instance: instance.name,
      status: outcome.status,
      changedVm: true,
      stalledMs: stalled.stalledMs,
      transferredBytes: stalled.transferredBytes,
      summary,
      cause: stalled,
    });
  }
  const summary =
    outcome.outcome === 'lost'
      ? `${stalled.summary}; the source QEMU is gone (${errorText(outcome.error)}): the VM is lost (part of its memory was only on the source); quit the destination QEMU and restart the VM from its disks`
      : `${stalled.summary}; kvm-hv migrate tried to recover it from the source for ${Math.round(timeoutMs / 1000)} s and gave up (${outcome.attempts} resume attempts to ${migrationUri(target, port)}; last error: ${errorText(outcome.error)})`;
  throw new PostcopyStalledError(
    `instance '${instance.name}': ${summary}. ${
      outcome.outcome === 'lost'
        ? ''
        : 'The VM is split between the two hosts (lost, if the destination QEMU is gone): stop neither QEMU. Once the network works: kvm-hv postcopy pause on both nodes, kvm-hv postcopy accept-recovery --listen ADDR on the destination, kvm-hv postcopy resume --target HOST on the source, then kvm-hv status until completed and finalize both ends'
    }`.trim(),
    {
      instance: instance.name,
      status: outcome.outcome === 'lost' ? (stalled.status ?? 'postcopy-paused') : 'postcopy-paused',
      changedVm: true,
      stalledMs: stalled.stalledMs,
      transferredBytes: stalled.transferredBytes,
      summary,
      cause: stalled,
    },
  );
}
