/**
 * `kvm-hv step migrate|finalize-source|finalize-destination`: one step of a migration per
 * process, the way a cluster manager calls a hypervisor (Ganeti's node daemon forks a child
 * per RPC: `MigrateInstance`, then `GetMigrationStatus` polled, then each finalize). The
 * migration journal carries what a later process needs, so `step migrate` returns as soon
 * as QEMU migrates in the background and `kvm-hv status` / the finalizes come from other
 * processes.
 */
import type { Command } from 'commander';
import { UsageError } from './errors.js';
import { commandInstance, hvOption, monitorOptions, type VmOptions, withHypervisor } from './target.js';
import { loggerFor, numberArg, print, printJson } from './util.js';

interface StepOptions extends VmOptions {
  hvparams?: string[];
  target?: string;
  nonLive?: boolean;
  live?: boolean;
  success?: boolean;
  failure?: boolean;
  timeout?: number;
}

const stepOptions = (opts: StepOptions) =>
  opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 };

/** `--success` or `--failure`, exactly one of them. */
function outcome(opts: StepOptions): boolean {
  if (opts.success === opts.failure) throw new UsageError('give exactly one of --success and --failure');
  return opts.success === true;
}

export function registerStepCommand(program: Command): void {
  const step = program
    .command('step')
    .description(
      'one step of a migration per process (a cluster manager calling per RPC): start it, finalize the source, finalize the destination',
    )
    .addHelpText(
      'after',
      '\nOrder: `accept --runtime FILE --listen ADDR` on the destination, `step migrate --target HOST` on the\n' +
        'source (returns once QEMU migrates), `kvm-hv status` until completed/failed, then\n' +
        '`step finalize-destination` and `step finalize-source` with --success or --failure.\n' +
        'Each works from a new process: the migration journal holds what the next one needs.',
    );
  const common = (c: Command) =>
    monitorOptions(c)
      .addOption(hvOption())
      .option('--timeout <seconds>', 'give up after this many seconds (default 30)', numberArg('--timeout'))
      .option('--json', 'print one JSON document on stdout');

  common(step.command('migrate'))
    .description('start migrating to --target and return once QEMU migrates in the background')
    .requiredOption('--target <host>', 'destination host (name, IPv4 or IPv6); the port is migration_port')
    .option('--non-live', 'pause the VM first (stop-and-copy)')
    .option('--live', 'migrate live (default: the migration_mode hvparam)')
    .action(async (opts: StepOptions, cmd: Command) => {
      if (opts.live && opts.nonLive) throw new UsageError('give at most one of --live and --non-live');
      const live = opts.live ? true : opts.nonLive ? false : undefined;
      await withHypervisor(opts, loggerFor(cmd), async (hv, name) => {
        const instance = commandInstance(opts, opts.hvparams ?? []);
        await hv.migrateInstance(instance, opts.target as string, live, stepOptions(opts));
        if (opts.json) printJson({ instance: name, target: opts.target, started: true, live: live ?? null });
        else print(`migration of '${name}' to ${opts.target} started`);
      });
    });

  common(step.command('finalize-source'))
    .description(
      'finalize the source: after --success stop a migrated-away copy this node started; after --failure resume it where safe',
    )
    .option('--success', 'the migration completed and the destination runs the VM')
    .option('--failure', 'the migration failed: the source keeps the VM')
    .action(async (opts: StepOptions, cmd: Command) => {
      const success = outcome(opts);
      await withHypervisor(opts, loggerFor(cmd), async (hv) => {
        const instance = commandInstance(opts, opts.hvparams ?? []);
        const r = await hv.finalizeMigrationSource(instance, success, stepOptions(opts));
        if (opts.json) printJson(r);
        else print(`source finalized: ${r.action} (${r.status ?? 'no status'})`);
      });
    });

  common(step.command('finalize-destination'))
    .description(
      'finalize the destination: after --success resume the VM and keep it; after --failure quit a QEMU that holds nothing',
    )
    .option('--success', 'the migration completed: this node runs the VM from now on')
    .option('--failure', 'the migration failed: drop this incoming copy unless it holds the VM')
    .action(async (opts: StepOptions, cmd: Command) => {
      const success = outcome(opts);
      await withHypervisor(opts, loggerFor(cmd), async (hv) => {
        const instance = commandInstance(opts, opts.hvparams ?? []);
        const r = await hv.finalizeMigrationDst(instance, success, stepOptions(opts));
        if (opts.json) printJson(r);
        else print(`destination finalized: ${r.action} (${r.status ?? 'no status'})`);
      });
    });
}
