/**
 * `kvm-hv recover NAME`: finishes or undoes this node's end of a migration whose control
 * plane died, from the migration journal and QEMU's own state (`recoverMigration`).
 * Exits 0 when this node is settled, 1 when someone must act (the report says what).
 */
import { type Command, Option } from 'commander';
import { HypervisorError } from '../errors.js';
import type { MigrationRecoveryReport } from '../migration/recover.js';
import { ReportedError } from './errors.js';
import { monitorOptions, type VmOptions, withHypervisor } from './target.js';
import { FORCE_RESUME_WARNING, loggerFor, numberArg, print, printJson } from './util.js';

interface RecoverOptions extends VmOptions {
  active?: 'wait' | 'cancel';
  destinationRuns?: boolean;
  forceResume?: boolean;
  timeout?: number;
}

/** The human form of a recovery report. */
function renderRecovery(r: MigrationRecoveryReport): string {
  const place = {
    here: 'runs here',
    'not-here': 'not on this node',
    unknown: 'unknown from this node',
    split: 'split between the two hosts (post-copy)',
  }[r.vm];
  const lines = [
    `instance: ${r.instance}`,
    `role:     ${r.role}`,
    `action:   ${r.action}`,
    `VM:       ${place}`,
  ];
  if (r.status !== undefined) lines.push(`status:   ${r.status}`);
  if (r.runState !== undefined) lines.push(`run state: ${r.runState}`);
  lines.push(`settled:  ${r.settled ? 'yes' : 'no: action needed'}`, r.message);
  return lines.join('\n');
}

export function registerRecoverCommand(program: Command): void {
  monitorOptions(program.command('recover'))
    .argument('[name]', 'the instance (default: --name, or the socket file name)')
    .description(
      "finish or undo this node's end of a migration whose control plane died (from its journal and QEMU's state)",
    )
    .addOption(
      new Option('--active <what>', 'a migration still running: wait for it (within --timeout) or cancel it')
        .choices(['wait', 'cancel'])
        .default('wait'),
    )
    .option(
      '--destination-runs',
      'source: the destination was checked to run the VM (its recover said "runs here"): stop this migrated-away copy',
    )
    .option(
      '--force-resume',
      'source: resume it even where the fail-safe rule forbids it (operator override)',
    )
    .option('--timeout <seconds>', 'give up after this many seconds (default 60)', numberArg('--timeout'))
    .option('--json', 'print the report as one JSON document on stdout')
    .addHelpText(
      'after',
      '\nRun it on both nodes (destination and source, in either order). Exit 0: this node is settled;\n' +
        'exit 1: someone must act, e.g. after a completed migration the source keeps its paused copy until\n' +
        '`recover --destination-runs` is run there once the destination reports that the VM runs.',
    )
    .action(async (name: string | undefined, opts: RecoverOptions, cmd: Command) => {
      const logger = loggerFor(cmd);
      if (name !== undefined) opts.name = name;
      if (opts.forceResume) process.stderr.write(`${FORCE_RESUME_WARNING}\n`);
      await withHypervisor(opts, logger, async (hv, target) => {
        const report = await hv.recoverMigration(target, {
          ...(opts.active ? { active: opts.active } : {}),
          ...(opts.destinationRuns ? { destinationRuns: true } : {}),
          ...(opts.forceResume ? { forceResume: true } : {}),
          ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
        });
        if (opts.json) printJson(report);
        else print(renderRecovery(report));
        if (!report.settled) {
          // With --json the report is the document: no second (error) document after it.
          const error = `instance '${report.instance}': not settled: ${report.message}`;
          throw opts.json ? new ReportedError(error) : new HypervisorError(error);
        }
      });
    });
}
