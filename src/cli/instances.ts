/**
 * `kvm-hv start`, `stop`, `reboot`, `list`, `info`, `runtime` and `cleanup`: the instance
 * life cycle on this node's run directory (`--run-dir`, default Ganeti's
 * `/var/run/ganeti/kvm-hypervisor`). `accept --runtime` and `migrate --name` in
 * program.ts reach the same instances.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { HypervisorError } from '../errors.js';
import { DEFAULT_INSTANCE_RUN_DIR, instancePaths, runLayout } from '../instance/layout.js';
import type { InstanceInfo } from '../instance/lifecycle.js';
import { KVMHypervisor } from '../kvm.js';
import { UsageError } from './errors.js';
import { renderTable } from './render.js';
import { loggerFor, numberArg, print, printJson } from './util.js';

/** `--run-dir`, shared by every command that reaches library-started instances. */
export const RUN_DIR_OPTION = [
  '--run-dir <dir>',
  "the instances' run directory (default /var/run/ganeti/kvm-hypervisor)",
] as const;

/** `--run-dir` and `--json`. */
export interface RunDirOptions {
  runDir?: string;
  json?: boolean;
}

/** A hypervisor on the run directory (`--run-dir`), closed after `fn`. */
export async function withNode<T>(
  opts: RunDirOptions,
  logger: Logger,
  fn: (hv: KVMHypervisor) => Promise<T>,
): Promise<T> {
  const hv = new KVMHypervisor({ logger, ...(opts.runDir ? { instanceDir: opts.runDir } : {}) });
  try {
    return await fn(hv);
  } finally {
    await hv.close().catch((e: unknown) => logger.debug({ err: e }, 'closing the hypervisor'));
  }
}

/** Reads a file, or stdin for `-`. */
export function readInput(path: string, what: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${what} '${path}': ${(e as Error).message}`);
  }
}

function formatUptime(s: number): string {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

/** The human form of one instance's info. */
function renderInfo(i: InstanceInfo): string {
  const rows: [string, string][] = [
    ['instance', i.name],
    ['uuid', i.uuid],
    ['state', i.runState && i.runState !== i.state ? `${i.state} (QEMU: ${i.runState})` : i.state],
    ['pid', String(i.pid)],
    ['memory', i.memoryMiB === undefined ? '-' : `${i.memoryMiB} MiB`],
    ['vCPUs', i.vcpus === undefined ? '-' : String(i.vcpus)],
    ['uptime', formatUptime(i.uptimeSeconds)],
    ['QEMU', `${i.qemuVersion} (${i.accel})`],
    ['QMP', i.qmp],
  ];
  if (i.error) rows.push(['error', i.error]);
  return renderTable(rows);
}

function registerStart(program: Command): void {
  program
    .command('start')
    .description('start an instance from a JSON instance spec (file, or - for stdin)')
    .argument('<spec>', 'instance spec: name, uuid, memory, vcpus, disks, nics, hvparams')
    .option(...RUN_DIR_OPTION)
    .option('--paused', 'leave the vCPUs paused (no cont)')
    .option(
      '--timeout <seconds>',
      'give up (and kill what was started) after this long',
      numberArg('--timeout'),
    )
    .option('--json', 'print one JSON document on stdout')
    .action(
      async (
        specPath: string,
        opts: RunDirOptions & { paused?: boolean; timeout?: number },
        cmd: Command,
      ) => {
        let spec: unknown;
        try {
          spec = JSON.parse(readInput(specPath, 'the instance spec'));
        } catch (e) {
          if (e instanceof UsageError) throw e;
          throw new UsageError(`the instance spec '${specPath}' is not JSON: ${(e as Error).message}`);
        }
        await withNode(opts, loggerFor(cmd), async (hv) => {
          const info = await hv.startInstance(spec as Parameters<KVMHypervisor['startInstance']>[0], {
            ...(opts.paused ? { paused: true } : {}),
            ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
          });
          if (opts.json) printJson(info);
          else print(renderInfo(info));
        });
      },
    );
}

function registerStop(program: Command): void {
  program
    .command('stop')
    .description('stop an instance: ACPI power button, then quit, SIGTERM, SIGKILL; then remove its files')
    .argument('<name>', 'instance name')
    .option(...RUN_DIR_OPTION)
    .option(
      '--force',
      'skip the power button; also stop an unfinalized destination holding the VM, or a postmigrate source',
    )
    .option(
      '--timeout <seconds>',
      'how long the guest gets to power off (default 60)',
      numberArg('--timeout'),
    )
    .option('--json', 'print one JSON document on stdout')
    .action(
      async (name: string, opts: RunDirOptions & { force?: boolean; timeout?: number }, cmd: Command) => {
        await withNode(opts, loggerFor(cmd), async (hv) => {
          const out = await hv.stopInstance(name, {
            ...(opts.force ? { force: true } : {}),
            ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
          });
          if (out.how === 'not-found') {
            // The API stays idempotent for cluster managers; an operator must not read "stopped".
            const stateFile = instancePaths(runLayout(opts.runDir ?? DEFAULT_INSTANCE_RUN_DIR), name).state;
            throw new HypervisorError(`instance '${name}' is not known here (no ${stateFile})`);
          }
          if (opts.json) printJson(out);
          else print(`'${name}' stopped (${out.how})`);
        });
      },
    );
}

function registerSimple(program: Command): void {
  program
    .command('reboot')
    .description('reset an instance (system_reset); a powered-off or paused one is resumed')
    .argument('<name>', 'instance name')
    .option(...RUN_DIR_OPTION)
    .action(async (name: string, opts: RunDirOptions, cmd: Command) => {
      await withNode(opts, loggerFor(cmd), async (hv) => {
        await hv.rebootInstance(name);
        print(`'${name}' reset`);
      });
    });
  program
    .command('cleanup')
    .description('remove the files of an instance whose QEMU is gone (refuses a live one)')
    .argument('<name>', 'instance name')
    .option(...RUN_DIR_OPTION)
    .action(async (name: string, opts: RunDirOptions, cmd: Command) => {
      await withNode(opts, loggerFor(cmd), async (hv) => {
        await hv.cleanupInstance(name);
        print(`'${name}' cleaned up`);
      });
    });
  program
    .command('runtime')
    .description("print an instance's runtime (the migration info the target's `accept --runtime` needs)")
    .argument('<name>', 'instance name')
    .option(...RUN_DIR_OPTION)
    .action(async (name: string, opts: RunDirOptions, cmd: Command) => {
      await withNode(opts, loggerFor(cmd), async (hv) => {
        process.stdout.write(hv.getMigrationInfo(name));
      });
    });
}

function registerInfo(program: Command): void {
  program
    .command('info')
    .description('state, pid, memory (query-balloon), vCPUs and uptime of an instance')
    .argument('<name>', 'instance name')
    .option(...RUN_DIR_OPTION)
    .option('--json', 'print one JSON document on stdout')
    .action(async (name: string, opts: RunDirOptions, cmd: Command) => {
      await withNode(opts, loggerFor(cmd), async (hv) => {
        const info = await hv.getInstanceInfo(name);
        if (opts.json) printJson(info);
        else print(renderInfo(info));
      });
    });
  program
    .command('list')
    .description('the instances whose QEMU runs, with their state')
    .option(...RUN_DIR_OPTION)
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: RunDirOptions, cmd: Command) => {
      await withNode(opts, loggerFor(cmd), async (hv) => {
        const infos: InstanceInfo[] = [];
        for (const name of hv.listInstances()) infos.push(await hv.getInstanceInfo(name));
        if (opts.json) {
          printJson(infos);
          return;
        }
        if (infos.length === 0) {
          print('no instances run here');
          return;
        }
        const head = ['NAME', 'STATE', 'PID', 'MEMORY', 'VCPUS', 'UPTIME'];
        const rows = infos.map((i) => [
          i.name,
          i.state,
          String(i.pid),
          i.memoryMiB === undefined ? '-' : `${i.memoryMiB} MiB`,
          i.vcpus === undefined ? '-' : String(i.vcpus),
          formatUptime(i.uptimeSeconds),
        ]);
        const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
        for (const r of [head, ...rows])
          print(
            r
              .map((v, c) => v.padEnd(widths[c]!))
              .join('  ')
              .trimEnd(),
          );
      });
    });
}

/** Adds the life-cycle commands to the program. */
export function registerInstanceCommands(program: Command): void {
  registerStart(program);
  registerStop(program);
  registerSimple(program);
  registerInfo(program);
}
