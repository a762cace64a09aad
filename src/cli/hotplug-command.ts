/**
 * `kvm-hv hotplug add|remove|modify|check disk|nic NAME …`: device hotplug on an instance
 * of this node's run directory (`--run-dir`), through `KVMHypervisor.hotAddDevice`,
 * `hotDelDevice`, `hotModDevice` and `verifyHotplugSupport`.
 */
import type { Command } from 'commander';
import type { HotplugTarget } from '../instance/hotplug-model.js';
import type { RuntimeDisk, RuntimeNic } from '../instance/runtime-schema.js';
import type { InstanceDisk, InstanceNic, InstanceNicNetwork } from '../instance/spec.js';
import { UsageError } from './errors.js';
import { RUN_DIR_OPTION, type RunDirOptions, withNode } from './instances.js';
import { loggerFor, numberArg, print, printJson } from './util.js';

interface HotplugCliOptions extends RunDirOptions {
  uuid?: string;
  path?: string;
  uri?: string;
  kind?: string;
  format?: string;
  readOnly?: boolean;
  mac?: string;
  model?: string;
  tap?: string;
  user?: boolean;
  timeout?: number;
  unplugTimeout?: number;
}

/** `disk` or `nic`, else a usage error naming the argument and the value. */
function hotplugTarget(value: string): HotplugTarget {
  if (value === 'disk' || value === 'nic') return value;
  throw new UsageError(`TARGET must be 'disk' or 'nic', got '${value}'`);
}

/** The network of `--tap IFNAME` / `--user` (undefined when neither is given). */
function networkOption(opts: Pick<HotplugCliOptions, 'tap' | 'user'>): InstanceNicNetwork | undefined {
  if (opts.tap !== undefined && opts.user) throw new UsageError('give --tap IFNAME or --user, not both');
  if (opts.tap !== undefined) return { type: 'tap', ifname: opts.tap };
  return opts.user ? { type: 'user' } : undefined;
}

/** The disk or NIC `hotplug add` describes with its options. */
function deviceFromOptions(target: HotplugTarget, opts: HotplugCliOptions): InstanceDisk | InstanceNic {
  if (opts.uuid === undefined) throw new UsageError(`hotplug add ${target} needs --uuid`);
  const refuse = (flags: Array<keyof HotplugCliOptions>, what: string) => {
    const given = flags.filter((f) => opts[f] !== undefined);
    if (given.length > 0)
      throw new UsageError(`${given.map((f) => `--${kebab(f)}`).join(', ')}: not for a ${what}`);
  };
  if (target === 'disk') {
    refuse(['mac', 'model', 'tap', 'user'], 'disk');
    if ((opts.path === undefined) === (opts.uri === undefined)) {
      throw new UsageError(
        'hotplug add disk needs --path (a file or block device) or --uri (rbd:, gluster://), not both',
      );
    }
    const kind = opts.kind ?? (opts.uri === undefined ? 'file' : 'userspace');
    if (kind !== 'file' && kind !== 'block' && kind !== 'userspace')
      throw new UsageError(`--kind must be 'file', 'block' or 'userspace', got '${kind}'`);
    if ((kind === 'userspace') !== (opts.uri !== undefined)) {
      throw new UsageError(`--kind ${kind} goes with ${kind === 'userspace' ? '--uri' : '--path'}`);
    }
    const format = opts.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') {
      throw new UsageError(`--format must be 'raw' or 'qcow2', got '${format}'`);
    }
    const common = {
      uuid: opts.uuid,
      format: format as 'raw' | 'qcow2',
      ...(opts.readOnly ? { access: 'ro' as const } : {}),
    };
    return kind === 'userspace' ? { ...common, kind, uri: opts.uri! } : { ...common, kind, path: opts.path! };
  }
  refuse(['path', 'uri', 'kind', 'format', 'readOnly'], 'NIC');
  if (opts.mac === undefined) throw new UsageError('hotplug add nic needs --mac');
  const network = networkOption(opts);
  if (!network) throw new UsageError('hotplug add nic needs --tap IFNAME or --user');
  return {
    uuid: opts.uuid,
    mac: opts.mac,
    ...(opts.model === undefined ? {} : { model: opts.model }),
    network,
  };
}

function kebab(flag: string): string {
  return flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** One line about a device: its id and where it sits. */
function describeDevice(dev: RuntimeDisk | RuntimeNic): string {
  const where =
    dev.bus.type === 'pci'
      ? `PCI slot 0x${dev.bus.slot.toString(16)}`
      : dev.bus.type === 'scsi'
        ? `SCSI target ${dev.bus.target}`
        : dev.bus.type;
  const what =
    'path' in dev
      ? dev.path
      : 'uri' in dev
        ? dev.uri
        : `${dev.mac}, ${dev.network.type === 'tap' ? `tap ${dev.network.ifname}` : 'user network'}`;
  return `${dev.id} (${dev.driver}, ${where}): ${what}`;
}

const stepOptions = (opts: HotplugCliOptions) => ({
  ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 }),
  ...(opts.unplugTimeout === undefined ? {} : { unplugTimeoutMs: opts.unplugTimeout * 1000 }),
});

/** Registers `hotplug` and its sub-commands. */
export function registerHotplugCommand(program: Command): void {
  const hotplug = program
    .command('hotplug')
    .description('add, remove or modify a disk or NIC of a running instance (QMP device_add / device_del)')
    .addHelpText(
      'after',
      '\nThe runtime is saved after each change, so a migration carries the new devices.\n' +
        'PCI removal needs the guest: it must release the device (ACPI hotplug) within --unplug-timeout.\n' +
        'Refused: IDE disks, ne2k_isa NICs, Q35 machines (pcie.0), acpi off, use_chroot (adds), disk modify.',
    );
  const common = (c: Command) =>
    c
      .option(...RUN_DIR_OPTION)
      .option('--timeout <seconds>', 'give up after this many seconds (default 30)', numberArg('--timeout'))
      .option('--json', 'print one JSON document on stdout');

  common(hotplug.command('add'))
    .description(
      'hot-add a disk (--uuid --path|--uri [--kind --format --read-only]) or a NIC (--uuid --mac --tap|--user [--model])',
    )
    .argument('<target>', 'disk or nic')
    .argument('<name>', 'instance name')
    .option('--uuid <uuid>', "the device's UUID (its QEMU id derives from it)")
    .option('--path <path>', 'disk: absolute path of the image or block device')
    .option(
      '--uri <uri>',
      'disk: rbd:pool/image or gluster://host/volume/path, opened by QEMU itself (userspace access)',
    )
    .option('--kind <kind>', 'disk: file (default with --path), block, or userspace (with --uri)')
    .option('--format <format>', 'disk: raw (default) or qcow2')
    .option('--read-only', 'disk: attach read-only')
    .option('--mac <mac>', 'NIC: unicast MAC address')
    .option('--model <model>', 'NIC: model (default: the instance nic_type)')
    .option('--tap <ifname>', 'NIC: an existing tap interface (QEMU opens it by name)')
    .option('--user', "NIC: QEMU's user-mode network")
    .action(async (targetArg: string, name: string, opts: HotplugCliOptions, cmd: Command) => {
      const target = hotplugTarget(targetArg);
      const device = deviceFromOptions(target, opts);
      await withNode(opts, loggerFor(cmd), async (hv) => {
        const dev =
          target === 'disk'
            ? await hv.hotAddDevice(name, 'disk', device as InstanceDisk, stepOptions(opts))
            : await hv.hotAddDevice(name, 'nic', device as InstanceNic, stepOptions(opts));
        if (opts.json) printJson({ instance: name, action: 'add', target, device: dev });
        else print(`hot-added to '${name}': ${describeDevice(dev)}`);
      });
    });

  common(hotplug.command('remove'))
    .description('hot-remove a disk or NIC named by UUID, QEMU id or (disk) path')
    .argument('<target>', 'disk or nic')
    .argument('<name>', 'instance name')
    .argument('<device>', 'UUID, QEMU id (disk-…, nic-…) or disk path')
    .option(
      '--unplug-timeout <seconds>',
      'how long the guest gets to release the device (default 10)',
      numberArg('--unplug-timeout'),
    )
    .action(async (targetArg: string, name: string, ref: string, opts: HotplugCliOptions, cmd: Command) => {
      const target = hotplugTarget(targetArg);
      await withNode(opts, loggerFor(cmd), async (hv) => {
        const dev = await hv.hotDelDevice(name, target, ref, stepOptions(opts));
        if (opts.json) printJson({ instance: name, action: 'remove', target, device: dev });
        else print(`hot-removed from '${name}': ${describeDevice(dev)}`);
      });
    });

  common(hotplug.command('modify'))
    .description(
      're-plug a NIC at its slot with a new --mac and/or network (--tap IFNAME | --user); NICs only',
    )
    .argument('<target>', 'nic (disks cannot be modified)')
    .argument('<name>', 'instance name')
    .argument('<device>', 'UUID or QEMU id of the NIC')
    .option('--mac <mac>', 'the new MAC address')
    .option('--tap <ifname>', 'the new network: an existing tap interface')
    .option('--user', "the new network: QEMU's user-mode network")
    .option(
      '--unplug-timeout <seconds>',
      'how long the guest gets to release the NIC (default 10)',
      numberArg('--unplug-timeout'),
    )
    .action(async (targetArg: string, name: string, ref: string, opts: HotplugCliOptions, cmd: Command) => {
      const target = hotplugTarget(targetArg);
      const network = networkOption(opts);
      if (target === 'nic' && opts.mac === undefined && network === undefined) {
        throw new UsageError('hotplug modify nic needs --mac and/or --tap IFNAME | --user');
      }
      await withNode(opts, loggerFor(cmd), async (hv) => {
        const dev = await hv.hotModDevice(
          name,
          target,
          ref,
          { ...(opts.mac === undefined ? {} : { mac: opts.mac }), ...(network ? { network } : {}) },
          stepOptions(opts),
        );
        if (opts.json) printJson({ instance: name, action: 'modify', target, device: dev });
        else print(`hot-modified in '${name}': ${describeDevice(dev)}`);
      });
    });

  common(hotplug.command('check'))
    .description('say whether ACTION (add, remove, modify) of TARGET can be done on the running instance')
    .argument('<action>', 'add, remove or modify')
    .argument('<target>', 'disk or nic')
    .argument('<name>', 'instance name')
    .option('--model <model>', 'NIC model to check (default: the instance nic_type)')
    .action(
      async (action: string, targetArg: string, name: string, opts: HotplugCliOptions, cmd: Command) => {
        if (action !== 'add' && action !== 'remove' && action !== 'modify') {
          throw new UsageError(`ACTION must be 'add', 'remove' or 'modify', got '${action}'`);
        }
        const target = hotplugTarget(targetArg);
        await withNode(opts, loggerFor(cmd), async (hv) => {
          await hv.verifyHotplugSupport(name, action, target, {
            ...stepOptions(opts),
            ...(opts.model === undefined ? {} : { model: opts.model }),
          });
          if (opts.json) printJson({ instance: name, action, target, supported: true });
          else print(`'${name}': hot-${action} of a ${target} is supported`);
        });
      },
    );
}
