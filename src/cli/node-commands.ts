/**
 * `kvm-hv console`, `node-info` and `verify`: Ganeti's `GetInstanceConsole`, `GetNodeInfo`
 * and `Verify` on this node's run directory.
 */
import type { Command } from 'commander';
import { describeConsole } from '../instance/console.js';
import type { NodeInfo } from '../node/info.js';
import { ReportedError } from './errors.js';
import { coercedHvParams } from './hvparams.js';
import { RUN_DIR_OPTION, withNode } from './instances.js';
import { renderTable } from './render.js';
import { hvOption } from './target.js';
import { loggerFor, print, printJson } from './util.js';

interface NodeOptions {
  runDir?: string;
  json?: boolean;
  hvparams?: string[];
}

/** The human form of {@link NodeInfo}. */
function renderNodeInfo(n: NodeInfo): string {
  const rows: [string, string][] = [
    ['memory total', `${n.memoryTotalMiB} MiB`],
    ['memory free', `${n.memoryFreeMiB} MiB (${n.memoryFreeFrom})`],
    ['memory instances', `${n.memoryInstancesMiB} MiB (${n.instances.length} running here)`],
    ['memory node', `${n.memoryNodeMiB} MiB`],
    ['CPUs', String(n.cpuTotal)],
    ['sockets', String(n.cpuSockets)],
    ['NUMA nodes', String(n.numaNodes)],
    ['hypervisor', `QEMU ${n.hypervisor.version} (${n.hypervisor.binary})`],
  ];
  for (const i of n.instances)
    rows.push([`  ${i.name}`, `pid ${i.pid}, ${i.rssMiB} MiB resident of ${i.maxMiB} MiB`]);
  return renderTable(rows);
}

/** Registers `console`, `node-info` and `verify`. */
export function registerNodeCommands(program: Command): void {
  program
    .command('console')
    .description("how to reach an instance's console: the serial console (socat), VNC or SPICE")
    .argument('<name>', 'instance name')
    .option(...RUN_DIR_OPTION)
    .option('--socat <path>', 'the socat binary to name in the command (default: socat)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (name: string, opts: NodeOptions & { socat?: string }, cmd: Command) => {
      await withNode(opts, loggerFor(cmd), async (hv) => {
        const c = hv.getInstanceConsole(name, opts.socat === undefined ? {} : { socat: opts.socat });
        if (opts.json) printJson(c);
        else print(describeConsole(c));
      });
    });

  program
    .command('node-info')
    .description(
      "this node's memory (total, free, used by instances), CPUs, sockets, NUMA nodes and QEMU version",
    )
    .addOption(hvOption())
    .option(...RUN_DIR_OPTION)
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: NodeOptions, cmd: Command) => {
      const hvparams = coercedHvParams(opts.hvparams ?? []);
      await withNode(opts, loggerFor(cmd), async (hv) => {
        const info = await hv.getNodeInfo(hvparams);
        if (opts.json) printJson(info);
        else print(renderNodeInfo(info));
      });
    });

  program
    .command('verify')
    .description(
      'check what this node needs to run instances: the QEMU of kvm_path, socat, the run directory, /dev/kvm',
    )
    .addOption(hvOption())
    .option(...RUN_DIR_OPTION)
    .option('--kvm', 'also require a usable /dev/kvm (implied by kvm_flag=enabled)')
    .option('--socat <path>', 'the socat binary (default: socat on the PATH)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: NodeOptions & { kvm?: boolean; socat?: string }, cmd: Command) => {
      const hvparams = coercedHvParams(opts.hvparams ?? []);
      await withNode(opts, loggerFor(cmd), async (hv) => {
        const v = await hv.verify(hvparams, {
          ...(opts.kvm ? { requireKvm: true } : {}),
          ...(opts.socat === undefined ? {} : { socat: opts.socat }),
        });
        if (opts.json) printJson(v);
        else print(renderTable(v.checks.map((c) => [c.check, `${c.ok ? 'ok' : 'FAILED'}: ${c.detail}`])));
        if (!v.ok) throw new ReportedError(`node verification failed: ${v.problems.join('; ')}`);
      });
    });
}
