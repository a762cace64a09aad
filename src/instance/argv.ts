/**
 * Renders the QEMU command line of an instance from its typed runtime, for one QEMU
 * release on one node. Pure: the same runtime, features and context give the same argv.
 * `ctx.paused: false` leaves `-S` out (a migration destination that runs once loaded).
 * Current spellings only (`-accel`, `-run-with` where QEMU has it, long-form booleans,
 * `-audio` instead of `-soundhw`, `acpi=off` instead of `-no-acpi` from 8.0); QEMU always
 * starts paused (`-S`): the life cycle sets passwords, pinning and the balloon, then `cont`.
 */
import { Buffer } from 'node:buffer';
import { InstanceSpecError } from '../errors.js';
import { versionAtLeast } from '../qemu/version.js';
import {
  cannotHonour,
  effectiveHvParams,
  type LaunchContext,
  opts,
  type RenderState,
} from './argv-common.js';
import { renderNics, renderStorage } from './argv-devices.js';
import { renderDisplay, renderGuestAgent, renderSound, renderUsb } from './argv-vnc-spice.js';
import { describeQemu, hasDevice, hasOption, type QemuFeatures } from './features.js';
import type { InstanceRuntime } from './runtime-schema.js';
import { ShellSplitError, shellSplit } from './shell-split.js';

export {
  type InterfaceAddress,
  type LaunchContext,
  NODE_HV_PARAMS,
  type NodeHvParamName,
} from './argv-common.js';

/**
 * The accelerator `kvm_flag` asks for on a node where KVM is (`kvmUsable`) or is not
 * usable: `enabled` → KVM (refused without it), `disabled` → TCG, empty → KVM when usable.
 * @throws HvParamError naming `kvm_flag` when it is `enabled` and KVM is not usable.
 */
export function chooseAccelerator(hvparams: { kvm_flag: string }, kvmUsable: boolean): 'kvm' | 'tcg' {
  if (hvparams.kvm_flag === 'enabled') {
    if (!kvmUsable) {
      throw cannotHonour([
        {
          param: 'kvm_flag',
          message: "'enabled' but KVM is not usable on this node (/dev/kvm cannot be opened read-write)",
        },
      ]);
    }
    return 'kvm';
  }
  if (hvparams.kvm_flag === 'disabled') return 'tcg';
  return kvmUsable ? 'kvm' : 'tcg';
}

/** Longest UNIX socket path Linux accepts (`sun_path` is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/** `unix:<path>,server=on,wait=off`. */
function unixServer(path: string): string {
  return `unix:${path.replaceAll(',', ',,')},server=on,wait=off`;
}

function renderCore(state: RenderState): void {
  const { runtime, features, ctx, argv, problems, hv } = state;
  if (!features.machines.some((m) => m.name === runtime.machine.type)) {
    problems.push({
      param: 'machine_version',
      message: `${describeQemu(features)} has no machine type '${runtime.machine.type}' (the instance's pinned machine)`,
    });
  }
  // acpi=off as a machine property from 8.0 (where -no-acpi became deprecated; 9.0 removed it).
  const noAcpiOption = !hv.acpi && hasOption(features, 'no-acpi') && !versionAtLeast(features.version, 8, 0);
  const machineOpts = [runtime.machine.type, ...(!hv.acpi && !noAcpiOption ? ['acpi=off'] : [])].join(',');

  if (!features.accelerators.includes(ctx.accel)) {
    problems.push({
      param: 'kvm_flag',
      message: `${describeQemu(features)} has no '${ctx.accel}' accelerator`,
    });
  }
  if (hv.kvm_flag === 'enabled' && ctx.accel !== 'kvm') {
    problems.push({ param: 'kvm_flag', message: "'enabled' but the instance is to run without KVM" });
  }
  if (hv.kvm_flag === 'disabled' && ctx.accel === 'kvm') {
    problems.push({ param: 'kvm_flag', message: "'disabled' but the instance is to run with KVM" });
  }

  argv.push(features.binary, '-name', runtime.instance.name, '-uuid', runtime.instance.uuid);
  argv.push('-machine', machineOpts, '-accel', ctx.accel);
  if (noAcpiOption) argv.push('-no-acpi');
  argv.push('-nodefaults', '-no-user-config');
  if (ctx.paused !== false) argv.push('-S');
  argv.push('-m', String(runtime.memory.maxMiB));
  const { cpus, sockets, cores, threads } = runtime.smp;
  argv.push(
    '-smp',
    [
      String(cpus),
      opts([
        ['sockets', sockets],
        ['cores', cores],
        ['threads', threads],
      ]),
    ]
      .filter(Boolean)
      .join(','),
  );
  if (hv.cpu_type) {
    if (hv.cpu_type.split(',')[0] === 'host' && ctx.accel !== 'kvm') {
      problems.push({ param: 'cpu_type', message: "CPU model 'host' needs KVM" });
    }
    argv.push('-cpu', hv.cpu_type);
  }
  argv.push('-pidfile', ctx.paths.pidfile);
  argv.push('-qmp', unixServer(ctx.paths.qmp), '-monitor', unixServer(ctx.paths.hmp));
  argv.push('-serial', hv.serial_console ? unixServer(ctx.paths.serial) : 'none');
  if (hv.reboot_behavior === 'exit') argv.push('-no-reboot');
  if (ctx.noShutdown) argv.push('-no-shutdown');
  if (hv.mem_path) argv.push('-mem-path', hv.mem_path, '-mem-prealloc');
  if (hv.use_localtime) argv.push('-rtc', 'base=localtime');
  if (hv.keymap) argv.push('-k', hv.keymap);
  state.drivers.set('virtio-balloon-pci', 'memory');
  argv.push('-device', 'virtio-balloon-pci,id=balloon0');
  if (runtime.kernel) {
    argv.push('-kernel', runtime.kernel.path);
    if (runtime.kernel.initrd) argv.push('-initrd', runtime.kernel.initrd);
    if (runtime.kernel.append) argv.push('-append', runtime.kernel.append);
  }
}

/** `security_model`/`security_domain` and `use_chroot`: `-run-with` where QEMU has the keys, else `-runas`/`-chroot`. */
function renderProcessOptions(state: RenderState): void {
  const { features, ctx, argv, problems, hv } = state;
  let user: string | undefined;
  if (hv.security_model === 'user') {
    user = hv.security_domain;
    if (!user) problems.push({ param: 'security_domain', message: "empty, but security_model is 'user'" });
  } else if (hv.security_model === 'pool') {
    user = ctx.poolUser;
    if (!user)
      problems.push({
        param: 'security_model',
        message: "'pool' needs a user from the uid pool (LaunchContext.poolUser)",
      });
  }
  const chroot = hv.use_chroot ? ctx.paths.chroot : undefined;
  const withRunWith: Array<readonly [string, string | undefined]> = [];
  for (const [key, value, legacy, param] of [
    ['user', user, 'runas', 'security_model'],
    ['chroot', chroot, 'chroot', 'use_chroot'],
  ] as const) {
    if (value === undefined) continue;
    if (features.runWith.includes(key)) withRunWith.push([key, value]);
    else if (hasOption(features, legacy)) argv.push(`-${legacy}`, value);
    else
      problems.push({
        param,
        message: `${describeQemu(features)} has neither -run-with ${key}= nor -${legacy}`,
      });
  }
  if (withRunWith.length > 0) argv.push('-run-with', opts(withRunWith));
}

function checkSockets(runtime: InstanceRuntime, ctx: LaunchContext): void {
  const sockets = [ctx.paths.qmp, ctx.paths.hmp];
  if (runtime.hvparams.serial_console) sockets.push(ctx.paths.serial);
  if (runtime.hvparams.use_guest_agent) sockets.push(ctx.paths.qga);
  if (runtime.display.type === 'vnc' && runtime.display.bind.type === 'socket')
    sockets.push(runtime.display.bind.path);
  const long = sockets.filter((p) => Buffer.byteLength(p) > MAX_SOCKET_PATH_BYTES);
  if (long.length > 0) {
    throw new InstanceSpecError(
      long.map((p) => ({
        field: 'name',
        message: `socket path '${p}' is ${Buffer.byteLength(p)} bytes; UNIX sockets allow ${MAX_SOCKET_PATH_BYTES}: use a shorter run directory or instance name`,
      })),
    );
  }
}

/**
 * The argv (argv[0] = `features.binary`) that starts `runtime` paused on this node.
 * @throws HvParamError naming every hvparam this QEMU or node cannot honour (a machine type
 *   or device the target QEMU lacks, an accelerator that contradicts `kvm_flag`, …).
 * @throws InstanceSpecError when a socket path is too long for a UNIX socket.
 */
export function renderArgv(runtime: InstanceRuntime, features: QemuFeatures, ctx: LaunchContext): string[] {
  checkSockets(runtime, ctx);
  const state: RenderState = {
    runtime,
    hv: effectiveHvParams(runtime, ctx),
    features,
    ctx,
    argv: [],
    problems: [],
    drivers: new Map(),
  };
  renderCore(state);
  renderDisplay(state);
  renderUsb(state);
  renderSound(state);
  renderGuestAgent(state);
  renderStorage(state);
  renderNics(state);
  renderProcessOptions(state);
  if (ctx.incoming) state.argv.push('-incoming', ctx.incoming);
  if (runtime.hvparams.kvm_extra) {
    try {
      state.argv.push(...shellSplit(runtime.hvparams.kvm_extra));
    } catch (err) {
      if (!(err instanceof ShellSplitError)) throw err;
      state.problems.push({
        param: 'kvm_extra',
        message: `cannot split '${runtime.hvparams.kvm_extra}': ${err.message}`,
      });
    }
  }
  for (const [driver, param] of state.drivers) {
    if (!hasDevice(features, driver)) {
      state.problems.push({ param, message: `${describeQemu(features)} has no device '${driver}'` });
    }
  }
  if (state.problems.length > 0) throw cannotHonour(state.problems);
  return state.argv;
}
