/**
 * `kvm-hv accept` and `kvm-hv migrate`: the two ends of a migration on the command line.
 */
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { MigrationError } from '../errors.js';
import type { InstanceRuntime } from '../instance/runtime.js';
import { KVMHypervisor } from '../kvm.js';
import type { Instance } from '../migration/types.js';
import { InterruptedError, UsageError } from './errors.js';
import { readInput } from './instances.js';
import { migrateSource } from './migrate-flow.js';
import { createProgressSink, progressModeFor } from './progress.js';
import { renderSummary, summaryJson } from './render.js';
import { onInterrupt } from './signals.js';
import {
  commandInstance,
  hvOption,
  monitorOptions,
  parseRuntimeInput,
  type VmOptions,
  withHypervisor,
} from './target.js';
import { destinationTlsOptions, sourceTlsOptions, type TlsCliOptions } from './tls.js';
import { loggerFor, numberArg, print, printJson } from './util.js';

interface AcceptOptions extends VmOptions, TlsCliOptions {
  listen?: string;
  hvparams?: string[];
  wait?: boolean;
  timeout?: number;
  runtime?: string;
}

/**
 * `accept --wait`: the library's destination-side wait, then the destination's finalize
 * (capabilities off, resumed after a non-live migration). Returns its run state. A failed
 * or cancelled incoming migration finalizes the destination as failed and rethrows;
 * aborting (Ctrl-C) or the timeout leaves the VM as it is.
 */
async function acceptWait(
  hv: KVMHypervisor,
  instance: Instance,
  opts: { timeoutMs?: number; signal: AbortSignal; logger: Logger },
): Promise<string> {
  let arrived: Awaited<ReturnType<KVMHypervisor['waitForIncomingMigration']>>;
  try {
    arrived = await hv.waitForIncomingMigration(instance, {
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
      signal: opts.signal,
    });
  } catch (error) {
    if (opts.signal.aborted) {
      throw new InterruptedError('interrupted: stopped waiting; the destination VM was left as it is');
    }
    if (error instanceof MigrationError && (error.status === 'failed' || error.status === 'cancelled')) {
      await hv
        .finalizeMigrationDst(instance, false)
        .catch((e: unknown) => opts.logger.error({ err: e }, 'finalizing the destination failed'));
    }
    throw error;
  }
  const outcome = await hv.finalizeMigrationDst(instance, true);
  return outcome.status ?? arrived.runState;
}

export function registerAcceptCommand(program: Command): void {
  destinationTlsOptions(monitorOptions(program.command('accept')))
    .option(
      '--listen <address>',
      'listen on address:migration_port once everything is set up: for a destination started with -incoming defer, or with --runtime',
    )
    .description('prepare a destination VM (started with -incoming) to receive a migration')
    .addOption(hvOption())
    .option(
      '--wait',
      'then wait until the migration has arrived and finalize the destination (capabilities off, resumed if paused)',
    )
    .option(
      '--timeout <seconds>',
      'with --wait: give up waiting after this many seconds',
      numberArg('--timeout'),
    )
    .option('--json', 'print one JSON document on stdout')
    .addHelpText(
      'after',
      '\nWithout --wait the command returns at once; run `kvm-hv migrate` on the source next.\n' +
        'With --wait, Ctrl-C stops waiting (exit 130) and leaves the destination VM as it is.',
    )
    .option(
      '--runtime <file>',
      'start the destination QEMU from this runtime (`kvm-hv runtime` on the source; - for stdin)',
    )
    .action(async (opts: AcceptOptions, cmd: Command) => {
      const logger = loggerFor(cmd);
      if (opts.timeout !== undefined && !opts.wait) throw new UsageError('--timeout needs --wait');
      let info: string | undefined;
      let runtime: InstanceRuntime | undefined;
      if (opts.runtime !== undefined) {
        if (opts.qmp || opts.hmp)
          throw new UsageError('--runtime starts the destination: give no --qmp/--hmp');
        if (!opts.listen) throw new UsageError('--runtime needs --listen <address>');
        info = readInput(opts.runtime, 'the runtime');
        runtime = parseRuntimeInput(info, opts.runtime);
        opts.name ??= runtime.instance.name;
      }
      if (opts.tlsDir !== undefined && opts.listen === undefined) {
        throw new UsageError(
          '--tls-dir needs --listen (a destination started with -incoming defer, or --runtime)',
        );
      }
      // The migration settings start from the runtime's hvparams (the instance's own).
      const instance = commandInstance(opts, opts.hvparams ?? [], runtime);
      await withHypervisor(opts, logger, async (hv) => {
        if (info !== undefined) await hv.acceptInstance(instance, info, opts.listen as string);
        else await hv.acceptInstance(instance, opts.listen === undefined ? {} : { listen: opts.listen });
        if (!opts.wait) {
          if (opts.json) printJson({ instance: instance.name, accepted: true });
          else print(`'${instance.name}' is ready to receive the migration`);
          return;
        }
        if (!opts.json) process.stderr.write(`'${instance.name}' is ready; waiting for the migration…\n`);
        const abort = new AbortController();
        const removeSignals = onInterrupt(() => abort.abort());
        try {
          const state = await acceptWait(hv, instance, {
            ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
            signal: abort.signal,
            logger,
          });
          if (opts.json)
            printJson({ instance: instance.name, accepted: true, received: true, status: state });
          else print(`'${instance.name}' received: the destination VM is ${state}`);
        } finally {
          removeSignals();
        }
      });
    });
}

interface MigrateOptions extends VmOptions, TlsCliOptions {
  hvparams?: string[];
  target: string;
  nonLive?: boolean;
  timeout?: number;
  postcopyStall?: number;
  postcopyRecoveryTimeout?: number;
  postcopyRecoveryPort?: number;
}

/** Default of `kvm-hv migrate --postcopy-recovery-timeout`, seconds. */
const POSTCOPY_RECOVERY_TIMEOUT_S = 300;

export function registerMigrateCommand(program: Command): void {
  sourceTlsOptions(monitorOptions(program.command('migrate')))
    .description('migrate a running VM to a destination that accepts it, with live progress')
    .requiredOption('--target <host>', 'destination host (name, IPv4 or IPv6); the port is migration_port')
    .addOption(hvOption())
    .option('--non-live', 'pause the VM first (stop-and-copy); default: the migration_mode hvparam')
    .option('--timeout <seconds>', 'give up (and cancel) after this many seconds', numberArg('--timeout'))
    .option('--json', 'print one JSON document on stdout (no progress bar)')
    .option(
      '--postcopy-stall <seconds>',
      'in post-copy: no byte moving for this long counts as a broken stream (default 5)',
      numberArg('--postcopy-stall'),
    )
    .option(
      '--postcopy-recovery-timeout <seconds>',
      `retry resuming a broken post-copy stream for this long (default ${POSTCOPY_RECOVERY_TIMEOUT_S}; 0: do not)`,
      numberArg('--postcopy-recovery-timeout'),
    )
    .option(
      '--postcopy-recovery-port <port>',
      "the destination's port to resume to (default: migration_port, which a QEMU 7.2+ destination keeps open; else run `kvm-hv postcopy accept-recovery` there)",
      numberArg('--postcopy-recovery-port'),
    )
    .addHelpText(
      'after',
      '\nCtrl-C cancels the migration; the source VM keeps running and the command exits with 130.\n' +
        'In post-copy (migration_caps with postcopy-ram) the VM cannot go back: a broken stream is\n' +
        'paused and resumed to the destination until --postcopy-recovery-timeout; if that fails, the\n' +
        'command exits 1 saying the VM is split and which `kvm-hv postcopy` steps bring it back.',
    )
    .action(async (opts: MigrateOptions, cmd: Command) => {
      const logger = loggerFor(cmd);
      const instance = commandInstance(opts, opts.hvparams ?? []);
      const filled = KVMHypervisor.fillDefaults(instance.hvparams ?? {});
      const live = opts.nonLive ? false : filled.migration_mode !== 'non-live';
      await withHypervisor(opts, logger, async (hv) => {
        const abort = new AbortController();
        const removeSignals = onInterrupt((signal) => {
          logger.warn({ signal }, 'interrupted: cancelling the migration');
          abort.abort();
        });
        const sink = createProgressSink(progressModeFor(opts.json === true));
        try {
          const recoveryS = opts.postcopyRecoveryTimeout ?? POSTCOPY_RECOVERY_TIMEOUT_S;
          const outcome = await migrateSource(hv, instance, opts.target, live, {
            ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
            ...(opts.postcopyStall === undefined ? {} : { postcopyStallMs: opts.postcopyStall * 1000 }),
            postcopyRecovery: {
              timeoutMs: recoveryS > 0 ? recoveryS * 1000 : false,
              port: opts.postcopyRecoveryPort ?? KVMHypervisor.instanceParameters(instance).migration_port,
            },
            sink,
            signal: abort.signal,
            logger,
          });
          const summary = summaryJson(
            instance.name,
            outcome.result,
            outcome.wallTimeMs,
            sink.maxThrottlePercent,
          );
          if (opts.json) printJson({ ...summary, target: opts.target, live, actions: outcome.actions });
          else print(renderSummary(summary));
        } finally {
          sink.stop();
          removeSignals();
        }
      });
    });
}
