/**
 * The source side of a migration as `kvm-hv migrate` and `kvm-hv demo` run it: start,
 * wait with progress, finalize, and on failure or Ctrl-C cancel and leave the source
 * running.
 */
import type { Logger } from 'pino';
import type { KVMHypervisor } from '../kvm.js';
import type { ConvergenceAction, Instance, MigrationResult } from '../migration/types.js';
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
}

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
  try {
    result = await hv.waitForMigration(instance, {
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
      signal,
      onProgress: (p) => sink.update(p),
      onAction: (a) => {
        actions.push(a);
        logger.info({ instance: instance.name, action: a }, 'convergence action');
        sink.note(describeAction(a));
      },
    });
  } catch (error) {
    sink.stop();
    try {
      await hv.finalizeMigrationSource(instance, false, live);
    } catch (finalizeError) {
      logger.error({ err: finalizeError, instance: instance.name }, 'finalizing the failed migration failed');
    }
    if (signal.aborted) throw interrupted();
    throw error;
  }
  sink.update(result.final);
  sink.stop();
  await hv.finalizeMigrationSource(instance, true, live);
  return { result, actions, wallTimeMs: performance.now() - t0 };
}
