/**
 * The KVM hvparam registry: all 65 parameters of Ganeti's KVM hypervisor with type, default,
 * required and global flags, description, TypeBox schema and checks. The TypeBox schemas are
 * the single source of the static type {@link KvmHvParams}.
 */
import type { Static, TBoolean, TInteger, TNull, TString, TUnion } from 'typebox';
// The builders from typebox's `type` module, not its `Type` namespace: the namespace pulls
// all of typebox (~200 kB more) into the bundle.
import * as Type from 'typebox/type';
import {
  IS_DIR_CHECK,
  IS_FILE_CHECK,
  IS_FILE_OR_URL_CHECK,
  inSetCheck,
  MIGRATION_CAPS_CHECK,
  MIGRATION_MODE_CHECK,
  MULTI_CPU_MASK_CHECK,
  NET_PORT_CHECK,
  NONNEGATIVE_INT_CHECK,
  NORM_ABS_PATH_CHECK,
  NORM_ABS_PATH_OR_URL_CHECK,
  PCI_RESERVATIONS_CHECK,
  SPICE_IP_VERSION_CHECK,
  VIRTIO_NET_QUEUES_CHECK,
} from './key-checks.js';
import type { HvParamDefinition, NodeCheck, SyntaxCheck } from './types.js';
import {
  BOOT_ORDERS,
  DISK_AIO_TYPES,
  DISK_CACHE_TYPES,
  DISK_DISCARD_TYPES,
  DISK_TYPES,
  KVM_FLAG_VALUES,
  MAX_VIRTIO_NET_QUEUES,
  MIGRATION_MODES,
  MOUSE_TYPES,
  NIC_TYPES,
  OPENSSL_CIPHERS,
  QEMU_PCI_SLOTS,
  REBOOT_BEHAVIORS,
  SCSI_CONTROLLER_TYPES,
  SECURITY_MODELS,
  SPICE_IP_VERSIONS,
  SPICE_LOSSLESS_IMAGE_COMPRESSIONS,
  SPICE_LOSSY_IMAGE_COMPRESSIONS,
  SPICE_VIDEO_STREAM_DETECTIONS,
} from './value-sets.js';

/** What every builder below takes besides the default. */
interface ParamSpec<V> {
  description: string;
  required?: boolean;
  global?: boolean;
  syntax?: SyntaxCheck<V>;
  node?: NodeCheck<V>;
}

/** A registry row whose `type` is a literal, so code can narrow on it. */
type Definition<
  T extends HvParamDefinition['type'],
  S extends HvParamDefinition['schema'],
> = HvParamDefinition<S> & {
  readonly type: T;
};

function flags<V>(spec: ParamSpec<V>) {
  return {
    required: spec.required ?? false,
    global: spec.global ?? false,
    description: spec.description,
    ...(spec.syntax ? { syntax: spec.syntax } : {}),
    ...(spec.node ? { node: spec.node } : {}),
  };
}

function stringParam(defaultValue: string, spec: ParamSpec<string>): Definition<'string', TString> {
  const schema = Type.String({ description: spec.description, default: defaultValue });
  return { type: 'string', default: defaultValue, schema, ...flags(spec) };
}

/**
 * A string restricted to `values` (Ganeti's `ParamInSet` unless `spec.syntax` says otherwise);
 * `""` stays allowed unless required.
 */
function choiceParam(
  defaultValue: string,
  values: readonly string[],
  spec: ParamSpec<string>,
): Definition<'string', TString> {
  const allowed = spec.required ? [...values] : ['', ...values];
  const schema = Type.String({ description: spec.description, default: defaultValue, enum: allowed });
  const syntax = spec.syntax ?? inSetCheck(values);
  return { type: 'string', default: defaultValue, schema, ...flags({ ...spec, syntax }) };
}

function maybeStringParam(
  defaultValue: string | null,
  spec: ParamSpec<string>,
): Definition<'maybe-string', TUnion<[TString, TNull]>> {
  const schema = Type.Union([Type.String(), Type.Null()], {
    description: spec.description,
    default: defaultValue,
  });
  return { type: 'maybe-string', default: defaultValue, schema, ...flags(spec) };
}

function boolParam(defaultValue: boolean, spec: ParamSpec<boolean>): Definition<'bool', TBoolean> {
  const schema = Type.Boolean({ description: spec.description, default: defaultValue });
  return { type: 'bool', default: defaultValue, schema, ...flags(spec) };
}

/** `range` mirrors the syntax check in the JSON Schema (`minimum`/`maximum` or `enum`). */
function intParam(
  defaultValue: number,
  spec: ParamSpec<number>,
  range: { minimum?: number; maximum?: number; enum?: readonly number[] } = {},
): Definition<'int', TInteger> {
  const schema = Type.Integer({
    description: spec.description,
    default: defaultValue,
    ...range,
    ...(range.enum ? { enum: [...range.enum] } : {}),
  });
  return { type: 'int', default: defaultValue, schema, ...flags(spec) };
}

const FILE = { syntax: NORM_ABS_PATH_CHECK, node: IS_FILE_CHECK } as const;
const FILE_OR_URL = { syntax: NORM_ABS_PATH_OR_URL_CHECK, node: IS_FILE_OR_URL_CHECK } as const;
const DIR = { syntax: NORM_ABS_PATH_CHECK, node: IS_DIR_CHECK } as const;
const NONNEGATIVE = { minimum: 0 } as const;

/**
 * Every KVM hvparam, keyed by name, in Ganeti's order. Defaults are those of Ganeti master
 * (`disk_discard` `ignore`, `vhost_net` true). See docs/hvparams.md for the generated table.
 */
export const HV_PARAMETERS = {
  kvm_path: stringParam('/usr/bin/kvm', {
    description: 'Absolute path of the KVM/QEMU binary used to start the instance.',
    required: true,
    ...FILE,
  }),
  kernel_path: stringParam('/boot/vmlinuz-3-kvmU', {
    description: 'Absolute path of a kernel to boot directly; empty boots from the disks instead.',
    ...FILE,
  }),
  initrd_path: stringParam('', {
    description: 'Absolute path of the initial ramdisk loaded with kernel_path; empty for none.',
    ...FILE,
  }),
  kernel_args: stringParam('ro', {
    description: 'Kernel command line arguments, used only together with kernel_path.',
  }),
  root_path: maybeStringParam('/dev/vda1', {
    description: 'Root device passed to a directly booted kernel as root=; null or empty for none.',
  }),
  acpi: boolParam(true, { description: 'Whether the guest gets ACPI support.' }),
  serial_console: boolParam(true, {
    description: 'Whether the guest gets a serial console, reachable through the console socket.',
  }),
  serial_speed: intParam(38400, {
    description: 'Serial console speed in bit/s, used when serial_console is on.',
  }),
  vnc_bind_address: stringParam('', {
    description:
      'Address, network interface or absolute socket path the VNC server binds to; empty disables VNC.',
  }),
  vnc_tls: boolParam(false, { description: 'Whether the VNC server uses TLS.' }),
  vnc_x509_path: stringParam('', {
    description: 'Directory holding the X.509 certificates for VNC TLS; empty for none.',
    ...DIR,
  }),
  vnc_x509_verify: boolParam(false, {
    description: 'Whether the VNC server verifies client certificates (needs vnc_x509_path).',
  }),
  vnc_password_file: stringParam('', {
    description: 'File whose first line is the VNC password; empty for no password.',
    ...FILE,
  }),
  scsi_controller_type: choiceParam('lsi', SCSI_CONTROLLER_TYPES, {
    description: 'Model of the emulated SCSI controller used by SCSI disks.',
    required: true,
  }),
  kvm_pci_reservations: intParam(
    12,
    {
      description: `Number of PCI slots (0 to ${QEMU_PCI_SLOTS}) reserved for devices QEMU adds itself; hotplugged devices use the rest.`,
      syntax: PCI_RESERVATIONS_CHECK,
    },
    { minimum: 0, maximum: QEMU_PCI_SLOTS },
  ),
  spice_bind: stringParam('', {
    description: 'IP address or network interface the SPICE server binds to; empty disables SPICE.',
  }),
  spice_ip_version: intParam(
    0,
    {
      description: 'IP version (4 or 6) of the SPICE bind address; 0 leaves it unspecified.',
      syntax: SPICE_IP_VERSION_CHECK,
    },
    { enum: SPICE_IP_VERSIONS },
  ),
  spice_password_file: stringParam('', {
    description: 'File whose first line is the SPICE password; empty for no password.',
    ...FILE,
  }),
  spice_image_compression: choiceParam('', SPICE_LOSSLESS_IMAGE_COMPRESSIONS, {
    description: 'SPICE lossless image compression; empty leaves the SPICE default.',
  }),
  spice_jpeg_wan_compression: choiceParam('', SPICE_LOSSY_IMAGE_COMPRESSIONS, {
    description: 'When SPICE uses JPEG compression on WAN links; empty leaves the SPICE default.',
  }),
  spice_zlib_glz_wan_compression: choiceParam('', SPICE_LOSSY_IMAGE_COMPRESSIONS, {
    description: 'When SPICE uses zlib-glz compression on WAN links; empty leaves the SPICE default.',
  }),
  spice_streaming_video: choiceParam('', SPICE_VIDEO_STREAM_DETECTIONS, {
    description: 'SPICE video stream detection mode; empty leaves the SPICE default.',
  }),
  spice_playback_compression: boolParam(true, {
    description: 'Whether SPICE compresses audio playback.',
  }),
  spice_use_tls: boolParam(false, { description: 'Whether the SPICE server uses TLS.' }),
  spice_tls_ciphers: stringParam(OPENSSL_CIPHERS, {
    description: 'OpenSSL cipher list the SPICE server accepts with TLS.',
  }),
  spice_use_vdagent: boolParam(true, {
    description: 'Whether the guest gets the SPICE agent channel (copy and paste, resolution changes).',
  }),
  floppy_image_path: stringParam('', {
    description: 'Absolute path of a floppy disk image; empty for no floppy.',
    ...FILE,
  }),
  cdrom_image_path: stringParam('', {
    description: 'Absolute path or http(s)/ftp(s) URL of the first CD-ROM image; empty for none.',
    ...FILE_OR_URL,
  }),
  cdrom2_image_path: stringParam('', {
    description: 'Absolute path or http(s)/ftp(s) URL of the second CD-ROM image; empty for none.',
    ...FILE_OR_URL,
  }),
  boot_order: choiceParam('disk', BOOT_ORDERS, {
    description: 'Device the guest boots from first.',
    required: true,
  }),
  nic_type: choiceParam('paravirtual', NIC_TYPES, {
    description: 'Model of the emulated network cards; paravirtual means virtio.',
    required: true,
  }),
  disk_type: choiceParam('paravirtual', DISK_TYPES, {
    description: 'Interface the disks are attached to; paravirtual means virtio.',
    required: true,
  }),
  cdrom_disk_type: choiceParam('', DISK_TYPES, {
    description: 'Interface the CD-ROM drives are attached to; empty uses the QEMU default.',
  }),
  disk_aio: choiceParam('threads', DISK_AIO_TYPES, {
    description:
      'Asynchronous I/O method for disks; native needs disk_cache none, io_uring needs QEMU 5 or later.',
  }),
  usb_mouse: choiceParam('', MOUSE_TYPES, {
    description: 'USB pointing device given to the guest; empty for none.',
  }),
  keymap: stringParam('', {
    description: 'Keyboard layout of the VNC console (for example en-us); empty for the QEMU default.',
  }),
  migration_port: intParam(
    8102,
    {
      description: 'TCP port (1 to 65534) the destination QEMU listens on for incoming migrations.',
      required: true,
      global: true,
      syntax: NET_PORT_CHECK,
    },
    { minimum: 1, maximum: 65534 },
  ),
  migration_bandwidth: intParam(
    32,
    {
      description:
        'Maximum migration bandwidth in MiB/s (sent to QEMU as bytes per second); 0 means no limit.',
      required: true,
      global: true,
      syntax: NONNEGATIVE_INT_CHECK,
    },
    NONNEGATIVE,
  ),
  migration_downtime: intParam(
    30,
    {
      description: 'Maximum tolerated downtime in ms while QEMU switches the instance over.',
      required: true,
      syntax: NONNEGATIVE_INT_CHECK,
    },
    NONNEGATIVE,
  ),
  migration_mode: choiceParam('live', MIGRATION_MODES, {
    description: 'Default migration mode: live keeps the instance running, non-live pauses it first.',
    required: true,
    global: true,
    syntax: MIGRATION_MODE_CHECK,
  }),
  use_guest_agent: boolParam(false, {
    description: 'Whether the guest gets a virtio channel for the QEMU guest agent.',
  }),
  use_localtime: boolParam(false, {
    description: 'Whether the guest clock runs in local time instead of UTC.',
  }),
  disk_cache: choiceParam('default', DISK_CACHE_TYPES, {
    description: 'Host cache mode for disks; default leaves the choice to QEMU.',
    required: true,
  }),
  disk_discard: choiceParam('ignore', DISK_DISCARD_TYPES, {
    description:
      'Whether discard (TRIM) requests from the guest are passed to the storage (unmap) or dropped.',
  }),
  security_model: choiceParam('none', SECURITY_MODELS, {
    description:
      'User the QEMU process runs as: none (root), pool (one user per instance) or user (security_domain).',
    required: true,
  }),
  security_domain: stringParam('', {
    description: 'User QEMU runs as when security_model is user; must be empty otherwise.',
  }),
  kvm_flag: choiceParam('', KVM_FLAG_VALUES, {
    description: 'Whether KVM acceleration is forced on or off; empty leaves the QEMU default.',
  }),
  vhost_net: boolParam(true, {
    description: 'Whether paravirtual NICs use the in-kernel vhost-net backend.',
  }),
  virtio_net_queues: intParam(
    1,
    {
      description: `Number of queues (1 to ${MAX_VIRTIO_NET_QUEUES}) of each paravirtual NIC.`,
      syntax: VIRTIO_NET_QUEUES_CHECK,
    },
    { minimum: 1, maximum: MAX_VIRTIO_NET_QUEUES },
  ),
  use_chroot: boolParam(false, { description: 'Whether QEMU runs chrooted into an empty directory.' }),
  user_shutdown: boolParam(false, {
    description: 'Whether a shutdown from inside the guest counts as a user-requested shutdown.',
  }),
  mem_path: stringParam('', {
    description: 'Directory on a hugetlbfs mount used for guest memory; empty for normal memory.',
    ...DIR,
  }),
  reboot_behavior: choiceParam('reboot', REBOOT_BEHAVIORS, {
    description: 'What a reboot inside the guest does: reboot the instance or stop it (exit).',
    required: true,
  }),
  cpu_mask: stringParam('all', {
    description:
      "Physical CPUs the vCPUs may run on: 'all', a mask such as 0-2,5, or one mask per vCPU separated by ':'.",
    syntax: MULTI_CPU_MASK_CHECK,
  }),
  cpu_type: stringParam('', {
    description: 'CPU model given to the guest (QEMU -cpu); empty for the QEMU default.',
  }),
  cpu_cores: intParam(
    0,
    {
      description: 'CPU cores per socket in the guest topology; 0 lets QEMU choose.',
      syntax: NONNEGATIVE_INT_CHECK,
    },
    NONNEGATIVE,
  ),
  cpu_threads: intParam(
    0,
    {
      description: 'Threads per core in the guest topology; 0 lets QEMU choose.',
      syntax: NONNEGATIVE_INT_CHECK,
    },
    NONNEGATIVE,
  ),
  cpu_sockets: intParam(
    0,
    { description: 'CPU sockets in the guest topology; 0 lets QEMU choose.', syntax: NONNEGATIVE_INT_CHECK },
    NONNEGATIVE,
  ),
  soundhw: stringParam('', { description: 'Sound hardware emulated for the guest; empty for none.' }),
  usb_devices: stringParam('', {
    description: 'Host USB devices passed through to the guest, separated by commas; empty for none.',
  }),
  vga: stringParam('', { description: 'Emulated graphics card (QEMU -vga); empty for the QEMU default.' }),
  kvm_extra: stringParam('', {
    description: 'Extra arguments appended verbatim to the QEMU command line; empty for none.',
  }),
  machine_version: stringParam('', {
    description: 'QEMU machine type (for example pc-i440fx-9.2); empty uses the QEMU default.',
  }),
  migration_caps: stringParam('', {
    description:
      "QEMU migration capabilities turned on for migrations, as a ':'-separated list of names (for example xbzrle:auto-converge); empty for none.",
    syntax: MIGRATION_CAPS_CHECK,
  }),
  vnet_hdr: boolParam(true, {
    description: 'Whether tap devices use the virtio-net header (IFF_VNET_HDR) for offloads.',
  }),
} as const;

/** Name of a KVM hvparam. */
export type HvParameterName = keyof typeof HV_PARAMETERS;

/** The names of every KVM hvparam, in registry order. */
export const HV_PARAMETER_NAMES = Object.keys(HV_PARAMETERS) as HvParameterName[];

type PropertySchemas = { [K in HvParameterName]: (typeof HV_PARAMETERS)[K]['schema'] };

const propertySchemas = Object.fromEntries(
  HV_PARAMETER_NAMES.map((name) => [name, HV_PARAMETERS[name].schema]),
) as PropertySchemas;

/**
 * TypeBox schema of a filled set of KVM hvparams: every key present, no other key. It is also
 * a JSON Schema (see `KVMHypervisor.jsonSchema()` for a plain serializable copy).
 */
export const KvmHvParamsSchema = Type.Object(propertySchemas, {
  additionalProperties: false,
  title: 'KVM hypervisor parameters',
  description: "Ganeti's KVM hvparams, filled with defaults.",
});

/** A filled set of KVM hvparams: every key, with its coerced type. */
export type KvmHvParams = Static<typeof KvmHvParamsSchema>;

/**
 * KVM hvparams as a user or a config gives them: any subset of the keys, each value either
 * already of its type or still raw as `-H` delivers it (a string, or `null` for `-key`).
 * `coerceHvParams` (coerce.ts) turns it into `Partial<KvmHvParams>`.
 */
export type KvmHvParamsInput = { [K in HvParameterName]?: KvmHvParams[K] | string | null };

/** Cluster-level-only parameters (Ganeti's `HVC_GLOBALS`). */
export const GLOBAL_HV_PARAMETERS: readonly HvParameterName[] = HV_PARAMETER_NAMES.filter(
  (name) => HV_PARAMETERS[name].global,
);

/** Parameters whose value may not be `null` or `""`. */
export const REQUIRED_HV_PARAMETERS: readonly HvParameterName[] = HV_PARAMETER_NAMES.filter(
  (name) => HV_PARAMETERS[name].required,
);

/** Every parameter's default, as a fresh object each call. */
export function defaultHvParams(): KvmHvParams {
  return Object.fromEntries(
    HV_PARAMETER_NAMES.map((name) => [name, HV_PARAMETERS[name].default]),
  ) as KvmHvParams;
}

/** The registry row of `name`, or `undefined` for an unknown (or inherited, like `toString`) key. */
export function findHvParameter(name: string): HvParamDefinition | undefined {
  return Object.hasOwn(HV_PARAMETERS, name)
    ? (HV_PARAMETERS[name as HvParameterName] as HvParamDefinition)
    : undefined;
}
