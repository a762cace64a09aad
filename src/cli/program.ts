/**
 * The `kvm-hv` command line: commander program, the `params`, `accept`, `migrate`,
 * `status` and `cancel` commands, and {@link runCli}, which turns every outcome into an
 * exit code and a one-line reason on stderr.
 */
import { Command, CommanderError, Option } from 'commander';
import type { Logger } from 'pino';
import { HvParamError, InstanceSpecError, MigrationError } from '../errors.js';
import { parseRuntime } from '../instance/runtime.js';
import { KVMHypervisor } from '../kvm.js';
import type { Instance } from '../migration/types.js';
import type { Monitor } from '../monitor/types.js';
import { registerDemoCommand } from './demo.js';
import { EXIT, exitCodeFor, formatError, InterruptedError, UsageError } from './errors.js';
import { coercedHvParams, rawHvParams } from './hvparams.js';
import { RUN_DIR_OPTION, readInput, registerInstanceCommands } from './instances.js';
import { LOG_LEVELS } from './logger.js';
import { migrateSource } from './migrate-flow.js';
import { instanceName, type MonitorCliOptions, monitorTarget, openMonitor } from './monitor.js';
import { createProgressSink, progressModeFor } from './progress.js';
import { renderParams, renderStatus, renderSummary, statusJson, summaryJson } from './render.js';
import { onInterrupt } from './signals.js';
import { destinationTlsOptions, sourceTlsOptions, type TlsCliOptions, tlsFromCli } from './tls.js';
import { collect, loggerFor, numberArg, print, printJson } from './util.js';

/** The version printed by `--version`. */
export const CLI_VERSION = '0.1.0';

/** Adds `--qmp`, `--hmp`, `--name` and `--run-dir` to a command. */
function monitorOptions(cmd: Command): Command {
  return cmd
    .option('--qmp <socket>', 'QMP UNIX socket of the QEMU process')
    .option('--hmp <socket>', 'HMP UNIX socket (-monitor unix:…) instead of QMP')
    .option(
      '--name <instance>',
      'instance name (default: the socket file name); alone: an instance started by `kvm-hv start`',
    )
    .option(...RUN_DIR_OPTION);
}

/** The monitor options plus the run directory of library-started instances. */
interface TargetOptions extends MonitorCliOptions {
  runDir?: string;
}

/** True when the command names a library-started instance (`--name` without a socket). */
const byName = (opts: TargetOptions): boolean => !opts.qmp && !opts.hmp && opts.name !== undefined;

/** The instance name: `--name`, else the socket's file name. */
function targetName(opts: TargetOptions): string {
  return byName(opts) ? (opts.name as string) : instanceName(opts);
}

const hvOption = () =>
  new Option('-H, --hvparams <spec>', 'hypervisor parameters, kvm:key=value,… (repeatable)').argParser(
    collect,
  );

/**
 * Opens the monitor, makes a `KVMHypervisor` on it and runs `fn`; closes both afterwards.
 * The monitor is opened before the hypervisor exists so a bad socket fails fast.
 */
async function withHypervisor<T>(
  opts: TargetOptions & TlsCliOptions,
  logger: Logger,
  fn: (hv: KVMHypervisor, name: string, monitor?: Monitor) => Promise<T>,
): Promise<T> {
  if (byName(opts)) {
    // An instance of the run directory: its state file names its QMP socket.
    const tls = tlsFromCli(opts);
    const hv = new KVMHypervisor({
      logger,
      ...(opts.runDir ? { instanceDir: opts.runDir } : {}),
      ...(tls ? { tls } : {}),
    });
    try {
      return await fn(hv, opts.name as string);
    } finally {
      await hv.close().catch((e: unknown) => logger.debug({ err: e }, 'closing the hypervisor'));
    }
  }
  monitorTarget(opts);
  const name = instanceName(opts);
  const tls = tlsFromCli(opts);
  const monitor = await openMonitor(opts, logger);
  const hv = new KVMHypervisor({ monitor: () => monitor, logger, ...(tls ? { tls } : {}) });
  try {
    return await fn(hv, name, monitor);
  } finally {
    await hv.close().catch((e: unknown) => logger.debug({ err: e }, 'closing the hypervisor'));
    await monitor.close().catch((e: unknown) => logger.debug({ err: e }, 'closing the monitor'));
  }
}

/** The instance a runtime belongs to. */
function runtimeInstanceName(info: string): string {
  return parseRuntime(info).instance.name;
}

/** Coerces and syntax-checks the `-H` options; exits 2 (HvParamError) before any VM is touched. */
function checkedInstance(name: string, specs: string[]): Instance {
  const hvparams = coercedHvParams(specs);
  KVMHypervisor.checkParameterSyntax(KVMHypervisor.fillDefaults(hvparams));
  return { name, hvparams };
}

interface ParamsOptions {
  hvparams?: string[];
  check?: boolean;
  schema?: boolean;
  json?: boolean;
}

function registerParamsCommand(program: Command): void {
  program
    .command('params')
    .description('show the effective hvparams (defaults filled in), check them, or print their JSON Schema')
    .addOption(hvOption())
    .option('--check', 'run the syntax check and list warnings about doubtful values')
    .option('--schema', 'print the JSON Schema of the hvparams (always JSON)')
    .option('--json', 'print one JSON document on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n  kvm-hv params -H kvm:migration_bandwidth=64 --check\n  kvm-hv params --schema > hvparams.schema.json',
    )
    .action((opts: ParamsOptions) => {
      if (opts.schema) {
        if (opts.check || opts.hvparams) throw new UsageError('--schema takes no -H and no --check');
        printJson(KVMHypervisor.jsonSchema());
        return;
      }
      const specs = opts.hvparams ?? [];
      const given = new Set(Object.keys(rawHvParams(specs)));
      const filled = KVMHypervisor.fillDefaults(coercedHvParams(specs));
      if (!opts.check) {
        if (opts.json) printJson(filled);
        else print(renderParams(filled, given));
        return;
      }
      KVMHypervisor.checkParameterSyntax(filled);
      const warnings = KVMHypervisor.assessParameters(filled);
      if (opts.json) {
        printJson({ ok: true, warnings, hvparams: filled });
        return;
      }
      print(`hvparams OK: ${Object.keys(filled).length} parameters checked`);
      for (const w of warnings) print(`warning: ${w}`);
    });
}

interface VmOptions extends TargetOptions {
  json?: boolean;
}

function registerStatusCommand(program: Command): void {
  monitorOptions(program.command('status'))
    .description("show the migration status of a VM (QEMU's query-migrate / info migrate)")
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: VmOptions, cmd: Command) => {
      const logger = loggerFor(cmd);
      await withHypervisor(opts, logger, async (hv, name) => {
        const p = await hv.getMigrationStatus({ name });
        if (opts.json) printJson(statusJson(name, p));
        else print(renderStatus(name, p));
      });
    });
}

function registerCancelCommand(program: Command): void {
  monitorOptions(program.command('cancel'))
    .description('cancel the migration running on a VM (the source keeps running)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: VmOptions, cmd: Command) => {
      const logger = loggerFor(cmd);
      await withHypervisor(opts, logger, async (hv, name) => {
        await hv.cancelMigration({ name });
        // QEMU goes through 'cancelling' for a moment; report where it settles (≤ 3 s).
        let p = await hv.getMigrationStatus({ name });
        for (let i = 0; i < 30 && p.status === 'cancelling'; i++) {
          await new Promise((r) => setTimeout(r, 100));
          p = await hv.getMigrationStatus({ name });
        }
        if (opts.json) printJson({ instance: name, cancelled: true, status: p.status });
        else print(`migration of '${name}' cancelled (status: ${p.status})`);
      });
    });
}

interface ResumeOptions extends VmOptions {
  hvparams?: string[];
  forceResume?: boolean;
  timeout?: number;
}

/** Printed on stderr before an operator override resumes a source. */
export const FORCE_RESUME_WARNING =
  'kvm-hv: WARNING: --force-resume resumes the source even if the migration may have completed. ' +
  'If the VM also runs on the destination, it now runs twice and its disks will be corrupted. ' +
  'Use it only after checking that the destination QEMU does not run the VM.';

function registerResumeCommand(program: Command): void {
  monitorOptions(program.command('resume'))
    .description(
      'finalize the source of a failed migration: cancel what still runs, resume the VM when that is safe, restore the migration settings',
    )
    .addOption(hvOption())
    .option(
      '--force-resume',
      'operator override: resume even when the VM may run on the destination (postmigrate, completed, or state unreadable)',
    )
    .option('--timeout <seconds>', 'give up after this many seconds (default 30)', numberArg('--timeout'))
    .option('--json', 'print one JSON document on stdout')
    .addHelpText(
      'after',
      '\nWithout --force-resume a source whose migration completed (or whose state cannot be read)\n' +
        'is never resumed: the command fails with exit 1 and says why.',
    )
    .action(async (opts: ResumeOptions, cmd: Command) => {
      const logger = loggerFor(cmd);
      const instance = checkedInstance(targetName(opts), opts.hvparams ?? []);
      if (opts.forceResume) process.stderr.write(`${FORCE_RESUME_WARNING}\n`);
      await withHypervisor(opts, logger, async (hv) => {
        const outcome = await hv.finalizeMigrationSource(instance, false, {
          ...(opts.forceResume ? { forceResume: true } : {}),
          ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
        });
        if (opts.json) printJson({ instance: instance.name, ...outcome });
        else
          print(
            `source '${instance.name}': ${outcome.action}${outcome.status ? ` (VM status ${outcome.status})` : ''}`,
          );
      });
    });
}

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

function registerAcceptCommand(program: Command): void {
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
      if (opts.runtime !== undefined) {
        if (opts.qmp || opts.hmp)
          throw new UsageError('--runtime starts the destination: give no --qmp/--hmp');
        if (!opts.listen) throw new UsageError('--runtime needs --listen <address>');
        info = readInput(opts.runtime, 'the runtime');
        opts.name ??= runtimeInstanceName(info);
      }
      if (opts.tlsDir !== undefined && opts.listen === undefined) {
        throw new UsageError(
          '--tls-dir needs --listen (a destination started with -incoming defer, or --runtime)',
        );
      }
      const instance = checkedInstance(targetName(opts), opts.hvparams ?? []);
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
}

function registerMigrateCommand(program: Command): void {
  sourceTlsOptions(monitorOptions(program.command('migrate')))
    .description('migrate a running VM to a destination that accepts it, with live progress')
    .requiredOption('--target <host>', 'destination host (name, IPv4 or IPv6); the port is migration_port')
    .addOption(hvOption())
    .option('--non-live', 'pause the VM first (stop-and-copy); default: the migration_mode hvparam')
    .option('--timeout <seconds>', 'give up (and cancel) after this many seconds', numberArg('--timeout'))
    .option('--json', 'print one JSON document on stdout (no progress bar)')
    .addHelpText(
      'after',
      '\nCtrl-C cancels the migration; the source VM keeps running and the command exits with 130.',
    )
    .action(async (opts: MigrateOptions, cmd: Command) => {
      const logger = loggerFor(cmd);
      const instance = checkedInstance(targetName(opts), opts.hvparams ?? []);
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
          const outcome = await migrateSource(hv, instance, opts.target, live, {
            ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
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

/** Commander's output: its usage errors become one line, `kvm-hv: <reason> (see --help)`. */
const OUTPUT = {
  writeOut: (s: string) => process.stdout.write(s),
  writeErr: (s: string) => process.stderr.write(s),
  outputError: (s: string, write: (s: string) => void) =>
    write(`kvm-hv: ${s.replace(/^error: /, '').trimEnd()} (see --help)\n`),
};

/** Builds the commander program (no side effects until parsed). */
export function buildProgram(): Command {
  const program = new Command('kvm-hv')
    .description(
      'Ganeti-style KVM hvparams and QEMU live migration over QMP/HMP.\n' +
        'Try `kvm-hv demo` for a complete migration between two local QEMU processes.',
    )
    .version(CLI_VERSION)
    .addOption(new Option('--log-level <level>', 'log level on stderr').choices(LOG_LEVELS).default('warn'))
    .exitOverride()
    .configureOutput(OUTPUT);
  registerParamsCommand(program);
  registerAcceptCommand(program);
  registerMigrateCommand(program);
  registerStatusCommand(program);
  registerCancelCommand(program);
  registerResumeCommand(program);
  registerInstanceCommands(program);
  registerDemoCommand(program);
  for (const cmd of program.commands) cmd.exitOverride().configureOutput(OUTPUT);
  return program;
}

/** The `--json` error document: what failed, and every hvparam problem. */
export function errorJson(error: unknown): Record<string, unknown> {
  const e = error instanceof Error ? error : new Error(String(error));
  return {
    ok: false,
    exitCode: exitCodeFor(error),
    error: {
      name: e.name,
      message: e.message,
      ...(error instanceof HvParamError || error instanceof InstanceSpecError
        ? { problems: error.problems }
        : {}),
    },
  };
}

/**
 * Runs `kvm-hv` with `argv` (as `process.argv`) and resolves with the exit code. Errors
 * are reported on stderr as `kvm-hv: <reason>`; with `--json` an error document is also
 * printed on stdout.
 */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  const wantsJson = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version end in a CommanderError with exit code 0; the message is printed.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    process.stderr.write(`${formatError(error)}\n`);
    if (wantsJson) printJson(errorJson(error));
    return exitCodeFor(error);
  }
}
