/**
 * What every monitor-facing `kvm-hv` command shares: the target options (`--qmp`, `--hmp`,
 * `--name`, `--run-dir`), `-H`, and the hypervisor opened on the target.
 */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import type { Logger } from 'pino';
import { HypervisorError } from '../errors.js';
import type { MigrationGuardOptions } from '../guard/guard.js';
import {
  assertInstanceFileName,
  DEFAULT_INSTANCE_RUN_DIR,
  instancePaths,
  runLayout,
} from '../instance/layout.js';
import { type InstanceRuntime, parseRuntime } from '../instance/runtime.js';
import { KVMHypervisor } from '../kvm.js';
import type { Instance } from '../migration/types.js';
import type { Monitor } from '../monitor/types.js';
import { UsageError } from './errors.js';
import { coercedHvParams } from './hvparams.js';
import { RUN_DIR_OPTION } from './instances.js';
import { instanceName, type MonitorCliOptions, monitorTarget, openMonitor } from './monitor.js';
import { guardFromCli, type TlsCliOptions, tlsFromCli } from './tls.js';
import { collect } from './util.js';

/** Adds `--qmp`, `--hmp`, `--name` and `--run-dir` to a command. */
export function monitorOptions(cmd: Command): Command {
  return cmd
    .option('--qmp <socket>', 'QMP UNIX socket of the QEMU process')
    .option('--hmp <socket>', 'HMP UNIX socket (-monitor unix:…) instead of QMP')
    .option(
      '--name <instance>',
      'instance name (default: the socket file name); alone: an instance started by `kvm-hv start`',
    )
    .option(...RUN_DIR_OPTION)
    .option(
      '--state-dir <dir>',
      'with --qmp/--hmp: folder of the migration journals, so that each step (and recover) works from a new process',
    );
}

/** The monitor options plus the run directory of library-started instances. */
export interface TargetOptions extends MonitorCliOptions {
  runDir?: string;
  stateDir?: string;
}

/** True when the command names a library-started instance (`--name` without a socket). */
const byName = (opts: TargetOptions): boolean => !opts.qmp && !opts.hmp && opts.name !== undefined;

/** The instance name: `--name`, else the socket's file name. */
function targetName(opts: TargetOptions): string {
  return byName(opts) ? (opts.name as string) : instanceName(opts);
}

export const hvOption = () =>
  new Option('-H, --hvparams <spec>', 'hypervisor parameters, kvm:key=value,… (repeatable)').argParser(
    collect,
  );

/** `{ migrationGuard }` when the command's flags set it, else nothing (the library's default). */
function guardOption(opts: TlsCliOptions): { migrationGuard?: MigrationGuardOptions | false } {
  const g = guardFromCli(opts);
  return g === undefined ? {} : { migrationGuard: g };
}

/**
 * Opens the monitor, makes a `KVMHypervisor` on it and runs `fn`; closes both afterwards.
 * The monitor is opened before the hypervisor exists so a bad socket fails fast.
 */
export async function withHypervisor<T>(
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
      ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
      ...(tls ? { tls } : {}),
      ...guardOption(opts),
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
  const hv = new KVMHypervisor({
    monitor: () => monitor,
    logger,
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
    ...(tls ? { tls } : {}),
    ...guardOption(opts),
  });
  try {
    return await fn(hv, name, monitor);
  } finally {
    await hv.close().catch((e: unknown) => logger.debug({ err: e }, 'closing the hypervisor'));
    await monitor.close().catch((e: unknown) => logger.debug({ err: e }, 'closing the monitor'));
  }
}

/**
 * Parses the runtime given with `accept --runtime FILE` (`-` for stdin).
 * @throws UsageError naming the file when it is not a runtime this library can read.
 */
export function parseRuntimeInput(text: string, file: string): InstanceRuntime {
  try {
    return parseRuntime(text);
  } catch (e) {
    throw new UsageError(
      `the runtime '${file === '-' ? '- (stdin)' : file}' cannot be used: ${(e as Error).message}`,
    );
  }
}

/**
 * The runtime of an instance of the run directory (`<run-dir>/conf/<name>.runtime`).
 * @throws HypervisorError naming the file when it is missing, unreadable or not a runtime.
 */
function runDirRuntime(name: string, runDir: string | undefined): InstanceRuntime {
  assertInstanceFileName(name);
  const file = instancePaths(runLayout(runDir ?? DEFAULT_INSTANCE_RUN_DIR), name).runtime;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new HypervisorError(
      err.code === 'ENOENT'
        ? `instance '${name}' is not known here (no ${file})`
        : `cannot read the runtime of instance '${name}' (${file}): ${err.message}`,
    );
  }
  try {
    return parseRuntime(text);
  } catch (e) {
    throw new HypervisorError(
      `the runtime of instance '${name}' (${file}) cannot be used: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

/**
 * The instance a migration command acts on, with the hvparams it migrates with. They
 * start from the instance's own: those of `runtime` (`accept --runtime`), or for an
 * instance of the run directory (`--name` without a socket) those of its runtime there; a
 * `--qmp`/`--hmp` target has none. `-H` then overrides them key by key. A bad `-H` exits 2
 * (`HvParamError`) before any file or VM is touched; the merged set is syntax-checked too.
 */
export function commandInstance(opts: TargetOptions, specs: string[], runtime?: InstanceRuntime): Instance {
  const given = coercedHvParams(specs);
  const name = targetName(opts);
  const own = runtime ? runtime.hvparams : byName(opts) ? runDirRuntime(name, opts.runDir).hvparams : {};
  const hvparams: Record<string, unknown> = { ...own, ...given };
  KVMHypervisor.checkParameterSyntax(KVMHypervisor.fillDefaults(hvparams));
  return { name, hvparams };
}

/** The target options plus `--json`. */
export interface VmOptions extends TargetOptions {
  json?: boolean;
}
