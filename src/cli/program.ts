/**
 * The `kvm-hv` command line: commander program, the `params`, `status`, `cancel` and
 * `resume` commands, and {@link runCli}, which turns every outcome into an exit code and a
 * one-line reason on stderr. `accept`/`migrate` are in migration-commands.ts, the instance
 * commands in instances.ts, `demo` in demo.ts.
 */
import { Command, CommanderError, Option } from 'commander';
import { HvParamError, InstanceSpecError } from '../errors.js';
import { KVMHypervisor } from '../kvm.js';
import { registerBalloonCommand } from './balloon-command.js';
import { registerDemoCommand } from './demo.js';
import { EXIT, exitCodeFor, formatError, ReportedError, UsageError } from './errors.js';
import { registerHotplugCommand } from './hotplug-command.js';
import { coercedHvParams, rawHvParams } from './hvparams.js';
import { registerInstanceCommands } from './instances.js';
import { LOG_LEVELS } from './logger.js';
import { registerAcceptCommand, registerMigrateCommand } from './migration-commands.js';
import { registerNodeCommands } from './node-commands.js';
import { registerPostcopyCommand } from './postcopy-command.js';
import { registerRecoverCommand } from './recover-command.js';
import { renderParams, renderStatus, statusJson } from './render.js';
import { registerStepCommand } from './step-command.js';
import { commandInstance, hvOption, monitorOptions, type VmOptions, withHypervisor } from './target.js';
import { registerTlsCommand } from './tls.js';
import { FORCE_RESUME_WARNING, loggerFor, numberArg, print, printJson } from './util.js';

/** The version printed by `--version`. */
export const CLI_VERSION = '0.1.0';

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
      const instance = commandInstance(opts, opts.hvparams ?? []);
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

/** Commander's output: its usage errors become one line, `kvm-hv: <reason> (see --help)`. */
const OUTPUT = {
  writeOut: (s: string) => process.stdout.write(s),
  writeErr: (s: string) => process.stderr.write(s),
  outputError: (s: string, write: (s: string) => void) =>
    write(`kvm-hv: ${s.replace(/^error: /, '').trimEnd()} (see --help)\n`),
};

/** Builds the commander program (no side effects until parsed). */
function buildProgram(): Command {
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
  registerRecoverCommand(program);
  registerPostcopyCommand(program);
  registerStepCommand(program);
  registerBalloonCommand(program);
  registerTlsCommand(program);
  registerInstanceCommands(program);
  registerHotplugCommand(program);
  registerNodeCommands(program);
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
 * printed on stdout, unless the command printed its own (a {@link ReportedError}).
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
    if (wantsJson && !(error instanceof ReportedError)) printJson(errorJson(error));
    return exitCodeFor(error);
  }
}
