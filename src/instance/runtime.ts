/**
 * Resolving an instance spec into its typed runtime against one QEMU, and the runtime's
 * JSON form. Resolution happens once, on the node that first starts the instance; a
 * migration target renders its argv from the same runtime, so both ends have the same
 * device model (machine type, ids, slots, models).
 */
import { isIP } from 'node:net';
import type { HvParamProblem } from '../errors.js';
import { type CpuMaskEntry, parseMultiCpuMask } from '../hvparams/cpu-mask.js';
import { isUrl } from '../hvparams/paths.js';
import type { KvmHvParams } from '../hvparams/registry.js';
import { QEMU_PCI_SLOTS } from '../hvparams/value-sets.js';
import { formatVersion } from '../qemu/version.js';
import { cannotHonour } from './argv-common.js';
import { checkInstanceSpec } from './check.js';
import {
  cdromDriver,
  deviceId,
  diskCacheFlags,
  diskDriver,
  nicDriver,
  PciAllocator,
  SCSI_TARGETS,
  scsiControllerDriver,
  VNC_BASE_PORT,
} from './device-model.js';
import { describeQemu, hasDevice, type QemuFeatures } from './features.js';
import { FAMILY_PCI_BUS, machineFamily, pcMachineSuggestions } from './machine-types.js';
import {
  type DeviceBus,
  type InstanceRuntime,
  RUNTIME_FORMAT_VERSION,
  type RuntimeCdrom,
  type RuntimeDisk,
  type RuntimeDisplay,
  type RuntimeNic,
} from './runtime-schema.js';
import type { InstanceSpec } from './spec.js';
import { diskSource } from './userspace-disk.js';

export { deviceId } from './device-model.js';
export { parseRuntime, RuntimeFormatError, serializeRuntime } from './runtime-json.js';
export * from './runtime-schema.js';

function problem(param: string, message: string): HvParamProblem {
  return { param, message };
}

/**
 * Picks the machine type: `machine_version` (a name or an alias, as QEMU reports them) or
 * QEMU's default, and pins its name, never the alias. It must be an i440FX or Q35 PC
 * ({@link machineFamily}): the device model's buses and slots assume one.
 */
function resolveMachine(hv: KvmHvParams, features: QemuFeatures, problems: HvParamProblem[]) {
  const wanted = hv.machine_version;
  const found = wanted
    ? features.machines.find((m) => m.name === wanted || m.alias === wanted)
    : features.machines.find((m) => m.isDefault);
  if (!found) {
    problems.push(
      problem(
        'machine_version',
        wanted
          ? `${describeQemu(features)} has no machine type '${wanted}'`
          : `${describeQemu(features)} names no default machine type; set machine_version`,
      ),
    );
    return undefined;
  }
  const family = machineFamily(found);
  if (!family) {
    const named = wanted && wanted !== found.name ? ` ('${wanted}')` : wanted ? '' : ' (the default)';
    const described = found.description === undefined ? '' : ` (QEMU describes it as '${found.description}')`;
    const others = pcMachineSuggestions(features.machines);
    problems.push(
      problem(
        'machine_version',
        `machine type '${found.name}'${named} of ${describeQemu(features)} is not an i440FX or Q35 PC${described}: the device model needs one${others.length > 0 ? `; this QEMU has ${others.join(', ')}` : ''}`,
      ),
    );
  }
  return { type: found.name, pciBus: FAMILY_PCI_BUS[family ?? 'i440fx'] };
}

/** Splits a root path and kernel args into `-append`'s text (Ganeti's order). */
function kernelAppend(hv: KvmHvParams): string {
  const parts: string[] = [];
  if (hv.root_path) parts.push(`root=${hv.root_path}`);
  if (hv.kernel_args) parts.push(hv.kernel_args);
  if (hv.serial_console) parts.push(`console=ttyS0,${hv.serial_speed}`);
  return parts.join(' ');
}

function resolveDisplay(spec: InstanceSpec, hv: KvmHvParams, problems: HvParamProblem[]): RuntimeDisplay {
  if (hv.vnc_bind_address) {
    const address = hv.vnc_bind_address;
    const tls = hv.vnc_tls
      ? { verifyPeer: hv.vnc_x509_verify, ...(hv.vnc_x509_path ? { x509Dir: hv.vnc_x509_path } : {}) }
      : undefined;
    if (address.startsWith('/')) {
      return {
        type: 'vnc',
        bind: { type: 'socket', path: `${address.replace(/\/+$/, '')}/${spec.name}.vnc` },
        ...(tls ? { tls } : {}),
        password: false,
      };
    }
    const port = spec.networkPort ?? 0;
    if (port <= VNC_BASE_PORT) {
      problems.push(
        problem(
          'vnc_bind_address',
          `VNC on '${address}' needs the instance's networkPort above ${VNC_BASE_PORT} (got ${spec.networkPort ?? 'none'})`,
        ),
      );
    }
    return {
      type: 'vnc',
      bind: isIP(address) ? { type: 'ip', address } : { type: 'interface', name: address },
      display: Math.max(0, port - VNC_BASE_PORT),
      ...(tls ? { tls } : {}),
      password: hv.vnc_password_file !== '',
    };
  }
  if (hv.spice_bind) {
    const port = spec.networkPort ?? 0;
    if (port < 1) problems.push(problem('spice_bind', 'SPICE needs the instance networkPort (1 to 65535)'));
    return {
      type: 'spice',
      bind: isIP(hv.spice_bind)
        ? { type: 'ip', address: hv.spice_bind }
        : { type: 'interface', name: hv.spice_bind, ipVersion: hv.spice_ip_version },
      port: Math.max(1, port),
      password: hv.spice_password_file !== '',
    };
  }
  return { type: 'none' };
}

/**
 * Resolves a spec into the runtime for `features`' QEMU: pins the machine type, allocates
 * ids, PCI slots and SCSI targets (disks first, then NICs), picks device models and cache
 * flags, the display and the boot device. `clusterHvParams` fill what `spec.hvparams`
 * leaves out (before the registry defaults), as in {@link checkInstanceSpec}.
 * @throws InstanceSpecError / HvParamError from {@link checkInstanceSpec}.
 * @throws HvParamError naming each hvparam this QEMU cannot honour (all at once).
 */
export function resolveRuntime(
  spec: InstanceSpec,
  features: QemuFeatures,
  clusterHvParams: Partial<KvmHvParams> = {},
): InstanceRuntime {
  const checked = checkInstanceSpec(spec, clusterHvParams);
  const hv = checked.hvparams;
  const problems: HvParamProblem[] = [];
  const machine = resolveMachine(hv, features, problems);
  const q35 = machine?.pciBus === 'pcie.0';
  const pci = new PciAllocator(hv.kvm_pci_reservations, q35);
  let scsiTarget = 0;
  let usesScsi = false;
  const kernelBoot = hv.kernel_path !== '';
  const boot = kernelBoot ? undefined : hv.boot_order;

  const needDevice = (param: string, driver: string, what: string) => {
    if (!hasDevice(features, driver)) {
      problems.push(problem(param, `${describeQemu(features)} has no ${what} device '${driver}'`));
    }
  };
  const busFor = (param: string, driver: string): DeviceBus => {
    if (driver.startsWith('scsi-')) {
      usesScsi = true;
      if (scsiTarget >= SCSI_TARGETS) {
        problems.push(problem(param, `more than ${SCSI_TARGETS} SCSI devices`));
        return { type: 'scsi', target: SCSI_TARGETS - 1 };
      }
      return { type: 'scsi', target: scsiTarget++ };
    }
    if (driver === 'ide-hd' || driver === 'ide-cd') return { type: 'ide' };
    const slot = pci.take();
    if (slot === undefined) {
      problems.push(
        problem(
          'kvm_pci_reservations',
          `no free PCI slot left for ${driver} (${hv.kvm_pci_reservations} reserved)`,
        ),
      );
      return { type: 'pci', slot: QEMU_PCI_SLOTS - 1 };
    }
    return { type: 'pci', slot };
  };

  const disks = checked.disks.map((disk, i): RuntimeDisk => {
    const driver = diskDriver(hv.disk_type);
    if (!driver) problems.push(problem('disk_type', `'${hv.disk_type}' is not a disk device QEMU has`));
    else needDevice('disk_type', driver, 'disk');
    const d = driver ?? 'virtio-blk-pci';
    return {
      uuid: disk.uuid,
      id: deviceId('disk', disk.uuid),
      ...diskSource(disk),
      format: disk.format ?? 'raw',
      readOnly: disk.access === 'ro' || d === 'scsi-cd',
      driver: d,
      bus: busFor('disk_type', d),
      cache: diskCacheFlags(hv.disk_cache),
      aio: hv.disk_aio as RuntimeDisk['aio'],
      discard: hv.disk_discard as RuntimeDisk['discard'],
      ...(boot === 'disk' && i === 0 ? { bootIndex: 1 } : {}),
    };
  });

  const nics = checked.nics.map((nic, i): RuntimeNic => {
    const model = nic.model ?? hv.nic_type;
    const driver = nicDriver(model);
    needDevice(nic.model ? `nics[${i}].model` : 'nic_type', driver, 'NIC');
    const paravirtualTap = driver === 'virtio-net-pci' && nic.network.type === 'tap';
    return {
      uuid: nic.uuid,
      id: deviceId('nic', nic.uuid),
      mac: nic.mac.toLowerCase(),
      driver,
      bus: driver === 'ne2k_isa' ? { type: 'auto' } : busFor('nic_type', driver),
      network: nic.network,
      vhost: paravirtualTap && hv.vhost_net,
      queues: paravirtualTap ? hv.virtio_net_queues : 1,
      vnetHdr: paravirtualTap && hv.vnet_hdr,
      ...(boot === 'network' && i === 0 ? { bootIndex: 1 } : {}),
    };
  });

  const cdroms: RuntimeCdrom[] = [];
  const cdromType = hv.cdrom_disk_type || hv.disk_type;
  (['cdrom_image_path', 'cdrom2_image_path'] as const).forEach((param, i) => {
    const value = hv[param];
    if (!value) return;
    const driver = cdromDriver(cdromType);
    if (!driver) {
      problems.push(
        problem('cdrom_disk_type', `'${cdromType}' cannot attach a CD-ROM (ide, paravirtual or scsi-*)`),
      );
      return;
    }
    needDevice(hv.cdrom_disk_type ? 'cdrom_disk_type' : 'disk_type', driver, 'CD-ROM');
    const bus: DeviceBus = driver === 'virtio-blk-pci' ? { type: 'auto' } : busFor('cdrom_disk_type', driver);
    cdroms.push({
      id: `cdrom${i + 1}`,
      source: isUrl(value) ? { url: value } : { path: value },
      driver,
      bus,
      ...(boot === 'cdrom' && i === 0 ? { bootIndex: 1 } : {}),
    });
  });
  if (boot === 'cdrom' && cdroms.length === 0) {
    problems.push(problem('boot_order', "'cdrom' needs cdrom_image_path"));
  }

  let floppy: InstanceRuntime['floppy'];
  if (hv.floppy_image_path) {
    needDevice('floppy_image_path', 'floppy', 'floppy');
    if (q35) problems.push(problem('floppy_image_path', 'q35 machines have no floppy controller'));
    floppy = { path: hv.floppy_image_path, ...(boot === 'floppy' ? { bootIndex: 1 } : {}) };
  } else if (boot === 'floppy') {
    problems.push(problem('boot_order', "'floppy' needs floppy_image_path"));
  }

  let scsiController: string | undefined;
  if (usesScsi) {
    scsiController = scsiControllerDriver(hv.scsi_controller_type);
    needDevice('scsi_controller_type', scsiController, 'SCSI controller');
  }

  const smp: InstanceRuntime['smp'] = { cpus: checked.vcpus };
  const topology = { sockets: hv.cpu_sockets, cores: hv.cpu_cores, threads: hv.cpu_threads };
  let product = 1;
  for (const [key, value] of Object.entries(topology)) {
    if (value > 0) {
      smp[key as 'sockets'] = value;
      product *= value;
    }
  }
  const all = hv.cpu_sockets > 0 && hv.cpu_cores > 0 && hv.cpu_threads > 0;
  if ((all && product !== checked.vcpus) || checked.vcpus % product !== 0) {
    problems.push(
      problem(
        'cpu_sockets',
        `CPU topology sockets=${hv.cpu_sockets} cores=${hv.cpu_cores} threads=${hv.cpu_threads} does not fit ${checked.vcpus} vCPUs`,
      ),
    );
  }
  if (hv.cpu_type && !features.cpuModels.includes(hv.cpu_type.split(',')[0]!)) {
    problems.push(
      problem('cpu_type', `${describeQemu(features)} has no CPU model '${hv.cpu_type.split(',')[0]}'`),
    );
  }

  const display = resolveDisplay(checked, hv, problems);
  if (problems.length > 0) throw cannotHonour(problems);

  return {
    formatVersion: RUNTIME_FORMAT_VERSION,
    instance: { name: checked.name, uuid: checked.uuid.toLowerCase() },
    qemu: { version: formatVersion(features.version) },
    machine: machine!,
    memory: { maxMiB: checked.memory.maxMiB, startupMiB: checked.memory.startupMiB ?? checked.memory.maxMiB },
    smp,
    ...(scsiController ? { scsiController } : {}),
    disks,
    nics,
    cdroms,
    ...(floppy ? { floppy } : {}),
    ...(kernelBoot
      ? {
          kernel: {
            path: hv.kernel_path,
            ...(hv.initrd_path ? { initrd: hv.initrd_path } : {}),
            append: kernelAppend(hv),
          },
        }
      : {}),
    display,
    hvparams: hv,
  };
}

/** What the life cycle does over QMP after the paused start and before `cont`. */
export interface PostStartActions {
  /** `vnc_password_file`: `set_password {protocol: vnc}` with the file's first line. */
  vncPasswordFile?: string;
  /** `spice_password_file`: `set_password {protocol: spice}` with the file's first line. */
  spicePasswordFile?: string;
  /**
   * `cpu_mask`: one entry → the whole process; one entry per vCPU → each vCPU thread
   * (`query-cpus-fast` thread ids). Absent for `all`.
   */
  cpuMask?: CpuMaskEntry[];
  /** `memory.startupMiB` when below `maxMiB`: balloon target before `cont`. */
  balloonMiB?: number;
}

/**
 * The post-start steps of `runtime`.
 * @throws HvParamError when `cpu_mask` names a different number of vCPUs than the instance has.
 */
export function postStartActions(runtime: InstanceRuntime): PostStartActions {
  const hv = runtime.hvparams;
  const mask = parseMultiCpuMask(hv.cpu_mask);
  if (mask.length > 1 && mask.length !== runtime.smp.cpus) {
    throw cannotHonour([
      problem(
        'cpu_mask',
        `'${hv.cpu_mask}' has ${mask.length} per-vCPU masks but the instance has ${runtime.smp.cpus} vCPUs`,
      ),
    ]);
  }
  const pin = !(mask.length === 1 && mask[0] === 'all') && !mask.every((m) => m === 'all');
  return {
    ...(runtime.display.type === 'vnc' && runtime.display.password
      ? { vncPasswordFile: hv.vnc_password_file }
      : {}),
    ...(runtime.display.type === 'spice' && runtime.display.password
      ? { spicePasswordFile: hv.spice_password_file }
      : {}),
    ...(pin ? { cpuMask: mask } : {}),
    ...(runtime.memory.startupMiB < runtime.memory.maxMiB ? { balloonMiB: runtime.memory.startupMiB } : {}),
  };
}
