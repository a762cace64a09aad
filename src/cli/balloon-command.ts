/**
 * `kvm-hv balloon NAME MIB`: sets the guest memory of an instance of this node's run
 * directory through its balloon (Ganeti's `BalloonInstanceMemory`, which its node daemon
 * calls before a start or migration that needs the memory).
 */
import type { Command } from 'commander';
import { UsageError } from './errors.js';
import { RUN_DIR_OPTION, type RunDirOptions, withNode } from './instances.js';
import { loggerFor, numberArg, print, printJson } from './util.js';

interface BalloonOptions extends RunDirOptions {
  timeout?: number;
}

export function registerBalloonCommand(program: Command): void {
  program
    .command('balloon')
    .argument('<name>', 'the instance')
    .argument('<mib>', 'the guest memory to reach, MiB (at most the memory it started with)')
    .description("set an instance's guest memory through its balloon (QMP balloon)")
    .option(...RUN_DIR_OPTION)
    .option('--timeout <seconds>', 'give up after this many seconds (default 30)', numberArg('--timeout'))
    .option('--json', 'print one JSON document on stdout')
    .action(async (name: string, mibText: string, opts: BalloonOptions, cmd: Command) => {
      const mib = Number(mibText);
      if (!Number.isInteger(mib) || mib <= 0)
        throw new UsageError(`<mib> must be a positive integer, not '${mibText}'`);
      await withNode(opts, loggerFor(cmd), async (hv) => {
        await hv.balloonInstanceMemory(
          name,
          mib,
          opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 },
        );
        if (opts.json) printJson({ instance: name, memoryMiB: mib });
        else print(`balloon of '${name}' set to ${mib} MiB`);
      });
    });
}
