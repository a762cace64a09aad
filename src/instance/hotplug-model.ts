/**
 * The pure half of device hotplug (Ganeti's `HotAddDevice`, `HotDelDevice`,
 * `HotModDevice`, `VerifyHotplugSupport`): which devices a running instance can take or
 * give up (Ganeti's rules plus what QEMU's device model allows), the bus slot a new
 * device gets (rebuilt from the runtime, as Ganeti rebuilds its allocators from the
 * runtime file), the runtime entry of the new device, and the QMP commands that add and
 * remove it. No I/O: src/instance/hotplug.ts sends the commands and saves the runtime.
 */
import { HvParamError, HypervisorError, InstanceSpecError } from '../errors.js';
import { QEMU_PCI_SLOTS } from '../hvparams/value-sets.js';
import { checkInstanceSpec } from './check.js';
import {
  deviceId,
  diskCacheFlags,
  diskDriver,
  nicDriver,
  Q35_RESERVED_SLOT,
  SCSI_TARGETS,
} from './device-model.js';
import type { DeviceBus, InstanceRuntime, RuntimeDisk, RuntimeNic } from './runtime-schema.js';
import type { InstanceDisk, InstanceNic, InstanceSpec } from './spec.js';
import { diskProtocolOptions, diskSource } from './userspace-disk.js';

/** What is hot-plugged: a disk or a NIC (Ganeti's `HOTPLUG_TARGET_DISK` / `_NIC`). */
export type HotplugTarget = 'disk' | 'nic';
/** What is done (Ganeti's `HOTPLUG_ACTION_ADD` / `_REMOVE` / `_MODIFY`). */
export type HotplugAction = 'add' | 'remove' | 'modify';

/** Every hotplug action and target, in the order the CLI lists them. */
export const HOTPLUG_ACTIONS: readonly HotplugAction[] = ['add', 'remove', 'modify'];
/** Every hotplug target. */
export const HOTPLUG_TARGETS: readonly HotplugTarget[] = ['disk', 'nic'];

/**
 * A hotplug refused or failed (Ganeti's `HotplugError`): names the instance, the action,
 * the target and, where there is one, the device; `reasons` lists every reason at once.
 */
export class HotplugError extends HypervisorError {
  override name = 'HotplugError';
  readonly instance: string;
  readonly action: HotplugAction;
  readonly target: HotplugTarget;
  /** The device's QEMU id, when the device is known. */
  readonly device: string | undefined;
  readonly reasons: string[];
  constructor(
    where: { instance: string; action: HotplugAction; target: HotplugTarget; device?: string },
    reasons: string[],
    options?: ErrorOptions,
  ) {
    const dev = where.device === undefined ? where.target : `${where.target} ${where.device}`;
    super(
      `instance '${where.instance}': cannot hot-${verb(where.action)} ${dev}: ${reasons.join('; ')}`,
      options,
    );
    this.instance = where.instance;
    this.action = where.action;
    this.target = where.target;
    this.device = where.device;
    this.reasons = reasons;
  }
}

function verb(action: HotplugAction): string {
  return action === 'add' ? 'add' : action === 'remove' ? 'remove' : 'modify';
}

/**
 * Disk types that can be hot-plugged (Ganeti's `_HOTPLUGGABLE_DEVICE_TYPES`): virtio-blk
 * and the SCSI devices. IDE cannot (QEMU's IDE bus has no hotplug handler).
 */
export const HOTPLUGGABLE_DISK_TYPES = [
  'paravirtual',
  'scsi-block',
  'scsi-generic',
  'scsi-hd',
  'scsi-cd',
] as const;
/** NIC models that can be hot-plugged: every one but `ne2k_isa` (an ISA card). */
export const HOTPLUGGABLE_NIC_TYPES = [
  'e1000',
  'i82551',
  'i82559er',
  'i82557b',
  'ne2k_pci',
  'paravirtual',
  'pcnet',
  'rtl8139',
] as const;

/** The QMP commands each hot action needs (Ganeti checks `blockdev-add` and `netdev_add`; QEMU opens the files here, so no `add-fd`/`getfd`). */
export const HOTPLUG_COMMANDS: Record<HotplugTarget, Record<HotplugAction, readonly string[]>> = {
  disk: {
    add: ['blockdev-add', 'device_add', 'blockdev-del', 'device_del'],
    remove: ['device_del', 'blockdev-del'],
    modify: [],
  },
  nic: {
    add: ['netdev_add', 'device_add', 'netdev_del', 'device_del'],
    remove: ['device_del', 'netdev_del'],
    modify: ['netdev_add', 'device_add', 'netdev_del', 'device_del'],
  },
};

/** Facts about the running QEMU that decide whether it can hot-plug (from QMP). */
export interface HotplugQemuFacts {
  /** `query-commands` names. */
  commands: ReadonlySet<string>;
}

/** The model a new device of `target` gets: the NIC's own `model`, else `nic_type`; `disk_type` for disks. */
export function hotplugModel(runtime: InstanceRuntime, target: HotplugTarget, nicModel?: string): string {
  return target === 'disk' ? runtime.hvparams.disk_type : (nicModel ?? runtime.hvparams.nic_type);
}

/**
 * Why `action` of a `target` cannot be done on `runtime`'s instance: `[]` when it can.
 * Ganeti's rules (hot-pluggable device types; disks cannot be modified) and what this
 * device model needs: a PCI device needs a hot-pluggable root bus (i440FX's `pci.0` with
 * ACPI; Q35's `pcie.0` is not hot-pluggable), a SCSI disk the instance's SCSI controller,
 * a chrooted QEMU cannot open a new disk or tap by name. `model` is the device model for
 * `add`/`modify` ({@link hotplugModel}); `device` the existing device for
 * `remove`/`modify`. With `facts`, also the QMP commands this QEMU lacks.
 */
export function hotplugRefusals(
  runtime: InstanceRuntime,
  action: HotplugAction,
  target: HotplugTarget,
  options: { model?: string; device?: RuntimeDisk | RuntimeNic; facts?: HotplugQemuFacts } = {},
): string[] {
  const out: string[] = [];
  const hv = runtime.hvparams;
  if (target === 'disk' && action === 'modify') {
    out.push(
      'disks cannot be modified while the instance runs (Ganeti hot-modifies NICs only): remove and add it',
    );
    return out;
  }
  const model = options.model ?? hotplugModel(runtime, target);
  if (action !== 'remove') {
    const allowed: readonly string[] = target === 'disk' ? HOTPLUGGABLE_DISK_TYPES : HOTPLUGGABLE_NIC_TYPES;
    if (!allowed.includes(model)) {
      const param = target === 'disk' ? 'disk_type' : 'nic_type';
      out.push(`${param} '${model}' cannot be hot-plugged (hot-pluggable: ${allowed.join(', ')})`);
    }
  }
  const bus: DeviceBus['type'] | undefined = options.device
    ? options.device.bus.type
    : target === 'disk'
      ? diskDriver(model)?.startsWith('scsi-')
        ? 'scsi'
        : model === 'ide'
          ? 'ide'
          : 'pci'
      : model === 'ne2k_isa'
        ? 'auto'
        : 'pci';
  if (options.device && (bus === 'ide' || bus === 'auto')) {
    out.push(`${options.device.id} (${options.device.driver}) is not on a hot-pluggable bus`);
  }
  if (bus === 'pci') {
    if (runtime.machine.pciBus === 'pcie.0') {
      out.push(
        `machine type '${runtime.machine.type}' is a Q35 PC: its root bus pcie.0 is not hot-pluggable (no PCIe root ports in this device model)`,
      );
    } else if (!hv.acpi) {
      out.push("acpi is off: i440FX's PCI hotplug is ACPI's (PIIX4), so pci.0 is not hot-pluggable");
    }
  }
  if (bus === 'scsi' && action === 'add' && !runtime.scsiController) {
    out.push(
      `the instance has no SCSI controller (it started without SCSI devices) and one cannot be hot-added at a slot a migration target reproduces`,
    );
  }
  if (action !== 'remove' && hv.use_chroot) {
    out.push(
      `QEMU runs chrooted (use_chroot) and cannot open a new ${target === 'disk' ? 'disk image' : 'tap device'} by path (file descriptor passing is not supported)`,
    );
  }
  if (options.facts) {
    const missing = HOTPLUG_COMMANDS[target][action].filter((c) => !options.facts?.commands.has(c));
    if (missing.length > 0) out.push(`this QEMU lacks the QMP command(s) ${missing.join(', ')}`);
  }
  return out;
}

/** Slots and targets the runtime's devices hold, as Ganeti rebuilds them from its runtime file. */
export function occupiedSlots(runtime: InstanceRuntime): { pci: Set<number>; scsi: Set<number> } {
  const pci = new Set<number>();
  const scsi = new Set<number>();
  for (const d of [...runtime.disks, ...runtime.nics, ...runtime.cdroms]) {
    if (d.bus.type === 'pci') pci.add(d.bus.slot);
    if (d.bus.type === 'scsi') scsi.add(d.bus.target);
  }
  return { pci, scsi };
}

/**
 * The bus a new device with `driver` gets: the first free PCI slot from
 * `kvm_pci_reservations` to 31 (q35: never 0x1f), or the first free SCSI target (0 to 15).
 * A removed device's slot is free again. Undefined when the bus is full.
 */
export function allocateBus(runtime: InstanceRuntime, driver: string): DeviceBus | undefined {
  const used = occupiedSlots(runtime);
  if (driver.startsWith('scsi-')) {
    for (let t = 0; t < SCSI_TARGETS; t++) if (!used.scsi.has(t)) return { type: 'scsi', target: t };
    return undefined;
  }
  const q35 = runtime.machine.pciBus === 'pcie.0';
  for (let s = runtime.hvparams.kvm_pci_reservations; s < QEMU_PCI_SLOTS; s++) {
    if (q35 && s === Q35_RESERVED_SLOT) continue;
    if (!used.pci.has(s)) return { type: 'pci', slot: s };
  }
  return undefined;
}

/** The instance spec a runtime stands for (for re-checking it with a new device). */
function specOf(runtime: InstanceRuntime): InstanceSpec {
  return {
    name: runtime.instance.name,
    uuid: runtime.instance.uuid,
    memory: { maxMiB: runtime.memory.maxMiB, startupMiB: runtime.memory.startupMiB },
    vcpus: runtime.smp.cpus,
    disks: runtime.disks.map((d) => ({
      uuid: d.uuid,
      ...diskSource(d),
      format: d.format,
      access: d.readOnly && d.driver !== 'scsi-cd' ? 'ro' : 'rw',
    })),
    nics: runtime.nics.map((n) => ({
      uuid: n.uuid,
      mac: n.mac,
      model: modelOfDriver(n.driver),
      network: n.network,
    })),
    hvparams: runtime.hvparams,
  };
}

function modelOfDriver(driver: string): string {
  return driver === 'virtio-net-pci' ? 'paravirtual' : driver;
}

/**
 * Checks a new device against the instance's own (unique UUID, path, MAC; well-formed
 * values), with the instance spec's rules; returns the problems, each naming the field
 * of the device (`disk.path`, `nic.mac`).
 */
export function newDeviceProblems(
  runtime: InstanceRuntime,
  target: HotplugTarget,
  device: InstanceDisk | InstanceNic,
): string[] {
  const spec = specOf(runtime);
  const index = target === 'disk' ? spec.disks.length : spec.nics.length;
  if (target === 'disk') spec.disks.push(device as InstanceDisk);
  else spec.nics.push(device as InstanceNic);
  try {
    checkInstanceSpec(spec);
    return [];
  } catch (e) {
    if (e instanceof InstanceSpecError) {
      const prefix = `${target}s[${index}]`;
      const mine = e.problems.filter(
        (p) => p.field === prefix || p.field.startsWith(`${prefix}.`) || p.field.startsWith(`${prefix}[`),
      );
      const others = e.problems.filter((p) => !mine.includes(p));
      return [
        ...mine.map((p) => `${target}${p.field.slice(prefix.length)}: ${p.message}`),
        // A problem elsewhere names the new device when it clashes with it (a UUID, a path).
        ...others.map((p) => `${p.field || 'instance'}: ${p.message}`),
      ];
    }
    if (e instanceof HvParamError) return e.problems.map((p) => p.message);
    throw e;
  }
}

/** The runtime entry of a new disk (the fields {@link resolveRuntime} gives a disk at start; never a boot device). */
export function hotplugDisk(runtime: InstanceRuntime, disk: InstanceDisk, bus: DeviceBus): RuntimeDisk {
  const hv = runtime.hvparams;
  const driver = diskDriver(hv.disk_type) ?? 'virtio-blk-pci';
  return {
    uuid: disk.uuid.toLowerCase(),
    id: deviceId('disk', disk.uuid),
    ...diskSource(disk),
    format: disk.format ?? 'raw',
    readOnly: disk.access === 'ro' || driver === 'scsi-cd',
    driver,
    bus,
    cache: diskCacheFlags(hv.disk_cache),
    aio: hv.disk_aio as RuntimeDisk['aio'],
    discard: hv.disk_discard as RuntimeDisk['discard'],
  };
}

/** The runtime entry of a new NIC (as {@link resolveRuntime} makes one; never a boot device). */
export function hotplugNic(runtime: InstanceRuntime, nic: InstanceNic, bus: DeviceBus): RuntimeNic {
  const hv = runtime.hvparams;
  const driver = nicDriver(nic.model ?? hv.nic_type);
  const paravirtualTap = driver === 'virtio-net-pci' && nic.network.type === 'tap';
  return {
    uuid: nic.uuid.toLowerCase(),
    id: deviceId('nic', nic.uuid),
    mac: nic.mac.toLowerCase(),
    driver,
    bus,
    network: nic.network,
    vhost: paravirtualTap && hv.vhost_net,
    queues: paravirtualTap ? hv.virtio_net_queues : 1,
    vnetHdr: paravirtualTap && hv.vnet_hdr,
  };
}

/** One QMP command. */
export interface QmpCommand {
  execute: string;
  arguments: Record<string, unknown>;
}

/** `bus`/`addr` or the SCSI address of a device, as `device_add` arguments (Ganeti's hvinfo). */
export function busArguments(runtime: InstanceRuntime, bus: DeviceBus): Record<string, unknown> {
  switch (bus.type) {
    case 'pci':
      return { bus: runtime.machine.pciBus, addr: `0x${bus.slot.toString(16)}` };
    case 'scsi':
      return { bus: 'scsi.0', channel: 0, 'scsi-id': bus.target, lun: 0 };
    default:
      return {};
  }
}

/**
 * `blockdev-add` then `device_add` of a disk: the same node and device the argv renders
 * at start (`-blockdev`, `-device`), so a migration target started from the runtime has
 * the same device. `writeCacheProperty`: the driver has `write-cache` (QMP
 * `device-list-properties`).
 */
export function diskAddCommands(
  runtime: InstanceRuntime,
  disk: RuntimeDisk,
  writeCacheProperty: boolean,
): [QmpCommand, QmpCommand] {
  return [
    {
      execute: 'blockdev-add',
      arguments: {
        driver: disk.format,
        'node-name': disk.id,
        discard: disk.discard,
        cache: { direct: disk.cache.direct, 'no-flush': disk.cache.noFlush },
        ...(disk.readOnly ? { 'read-only': true } : {}),
        file: diskProtocolOptions(disk),
      },
    },
    {
      execute: 'device_add',
      arguments: {
        driver: disk.driver,
        id: disk.id,
        ...busArguments(runtime, disk.bus),
        drive: disk.id,
        ...(writeCacheProperty ? { 'write-cache': disk.cache.writeCache ? 'on' : 'off' } : {}),
      },
    },
  ];
}

/** `netdev_add` then `device_add` of a NIC (the argv's `-netdev` and `-device`). */
export function nicAddCommands(runtime: InstanceRuntime, nic: RuntimeNic): [QmpCommand, QmpCommand] {
  const virtio = nic.driver === 'virtio-net-pci';
  const netdev: Record<string, unknown> =
    nic.network.type === 'tap'
      ? {
          type: 'tap',
          id: nic.id,
          ifname: nic.network.ifname,
          script: 'no',
          downscript: 'no',
          ...(virtio ? { vhost: nic.vhost } : {}),
          ...(nic.queues > 1 ? { queues: nic.queues } : {}),
          vnet_hdr: virtio ? nic.vnetHdr : false,
        }
      : { type: 'user', id: nic.id };
  return [
    { execute: 'netdev_add', arguments: netdev },
    {
      execute: 'device_add',
      arguments: {
        driver: nic.driver,
        id: nic.id,
        ...busArguments(runtime, nic.bus),
        netdev: nic.id,
        mac: nic.mac,
        ...(virtio && nic.queues > 1 ? { mq: true, vectors: 2 * nic.queues + 2 } : {}),
      },
    },
  ];
}

/** What removes the back end once the guest let the device go: `blockdev-del` or `netdev_del`. */
export function backendRemoveCommand(target: HotplugTarget, id: string): QmpCommand {
  return target === 'disk'
    ? { execute: 'blockdev-del', arguments: { 'node-name': id } }
    : { execute: 'netdev_del', arguments: { id } };
}

/** The runtime with `device` added (disks and NICs keep their order: new ones last). */
export function withDevice(
  runtime: InstanceRuntime,
  target: HotplugTarget,
  device: RuntimeDisk | RuntimeNic,
): InstanceRuntime {
  return target === 'disk'
    ? { ...runtime, disks: [...runtime.disks, device as RuntimeDisk] }
    : { ...runtime, nics: [...runtime.nics, device as RuntimeNic] };
}

/** The runtime without the device `id` of `target`; its slot or target is free again. */
export function withoutDevice(runtime: InstanceRuntime, target: HotplugTarget, id: string): InstanceRuntime {
  return target === 'disk'
    ? { ...runtime, disks: runtime.disks.filter((d) => d.id !== id) }
    : { ...runtime, nics: runtime.nics.filter((n) => n.id !== id) };
}

/** The runtime with NIC `id` replaced by `nic` (same place in the list). */
export function withNicReplaced(runtime: InstanceRuntime, id: string, nic: RuntimeNic): InstanceRuntime {
  return { ...runtime, nics: runtime.nics.map((n) => (n.id === id ? nic : n)) };
}

/**
 * The runtime device of `target` that `ref` names: its UUID, its QEMU id, or (disks) its
 * path or URI. Undefined when none does.
 */
export function findDevice(
  runtime: InstanceRuntime,
  target: HotplugTarget,
  ref: string,
): RuntimeDisk | RuntimeNic | undefined {
  const key = ref.toLowerCase();
  const list: Array<RuntimeDisk | RuntimeNic> = target === 'disk' ? runtime.disks : runtime.nics;
  return list.find(
    (d) => d.uuid === key || d.id === key || ('path' in d && d.path === ref) || ('uri' in d && d.uri === ref),
  );
}
