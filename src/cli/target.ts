/**
 * What every monitor-facing `kvm-hv` command shares: the target options (`--qmp`, `--hmp`,
 * `--name`, `--run-dir`), `-H`, and the hypervisor opened on the target.
 */
import { type Command, Option } from 'commander';
import type { Logger } from 'pino';
import { parseRuntime } from '../instance/runtime.js';
import { KVMHypervisor } from '../kvm.js';
import type { Instance } from '../migration/types.js';
import type { Monitor } from '../monitor/types.js';
import { coercedHvParams } from './hvparams.js';
import { RUN_DIR_OPTION } from './instances.js';
import { instanceName, type MonitorCliOptions, monitorTarget, openMonitor } from './monitor.js';
import { type TlsCliOptions, tlsFromCli } from './tls.js';
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
    .option(...RUN_DIR_OPTION);
}

/** The monitor options plus the run directory of library-started instances. */
export interface TargetOptions extends MonitorCliOptions {
  runDir?: string;
}

/** True when the command names a library-started instance (`--name` without a socket). */
export const byName = (opts: TargetOptions): boolean => !opts.qmp && !opts.hmp && opts.name !== undefined;

/** The instance name: `--name`, else the socket's file name. */
export function targetName(opts: TargetOptions): string {
  return byName(opts) ? (opts.name as string) : instanceName(opts);
}

export const hvOption = () =>
  new Option('-H, --hvparams <spec>', 'hypervisor parameters, kvm:key=value,… (repeatable)').argParser(
    collect,
  );

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
export function runtimeInstanceName(info: string): string {
  return parseRuntime(info).instance.name;
}

/** Coerces and syntax-checks the `-H` options; exits 2 (HvParamError) before any VM is touched. */
export function checkedInstance(name: string, specs: string[]): Instance {
  const hvparams = coercedHvParams(specs);
  KVMHypervisor.checkParameterSyntax(KVMHypervisor.fillDefaults(hvparams));
  return { name, hvparams };
}

/** The target options plus `--json`. */
export interface VmOptions extends TargetOptions {
  json?: boolean;
}
