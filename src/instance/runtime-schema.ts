/**
 * The typed runtime of an instance: its resolved device model (pinned machine type,
 * device ids and PCI slots, models, cache flags, display, boot device) plus the QEMU
 * version it was resolved against and the filled hvparams. Saved as JSON next to the
 * running instance and carried to a migration target, which renders its own argv from it.
 */
import type { Static } from 'typebox';
import * as Type from 'typebox/type';
import { KvmHvParamsSchema } from '../hvparams/registry.js';
import { InstanceNicNetworkSchema } from './spec.js';

/** The runtime format this library writes; {@link parseRuntime} refuses any other. */
export const RUNTIME_FORMAT_VERSION = 1;

const OnOff = Type.Boolean();

/** Where a device sits: a slot on the root PCI bus, a target on the SCSI bus, or an IDE unit QEMU picks. */
const DeviceBusSchema = Type.Union([
  Type.Object(
    { type: Type.Literal('pci'), slot: Type.Integer({ minimum: 0, maximum: 31 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    { type: Type.Literal('scsi'), target: Type.Integer({ minimum: 0, maximum: 15 }) },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal('ide') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('auto') }, { additionalProperties: false }),
]);
/** Where a device sits. */
export type DeviceBus = Static<typeof DeviceBusSchema>;

/** Fields of a runtime disk, whatever opens it. */
const runtimeDiskCommon = {
  uuid: Type.String(),
  /** QEMU id, blockdev node name and hot-plug handle: `disk-<uuid up to its 3rd hyphen>`. */
  id: Type.String(),
  format: Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]),
  readOnly: Type.Boolean(),
  /** `-device` driver: `virtio-blk-pci`, `ide-hd`, `scsi-hd`, … */
  driver: Type.String(),
  bus: DeviceBusSchema,
  /** From `disk_cache`: the guest-visible write cache, `cache.direct` (O_DIRECT), `cache.no-flush`. */
  cache: Type.Object({ writeCache: OnOff, direct: OnOff, noFlush: OnOff }, { additionalProperties: false }),
  /** `disk_aio`; applies to `file`/`block` disks only (the rbd and gluster drivers have no such option). */
  aio: Type.Union([Type.Literal('threads'), Type.Literal('native'), Type.Literal('io_uring')]),
  discard: Type.Union([Type.Literal('ignore'), Type.Literal('unmap')]),
  bootIndex: Type.Optional(Type.Integer({ minimum: 0 })),
};

/** A disk as QEMU sees it. */
const RuntimeDiskSchema = Type.Union([
  Type.Object(
    {
      ...runtimeDiskCommon,
      path: Type.String(),
      kind: Type.Union([Type.Literal('file'), Type.Literal('block')]),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      ...runtimeDiskCommon,
      kind: Type.Literal('userspace'),
      /** The URI of the instance spec; parsed into `-blockdev` options each time it is rendered. */
      uri: Type.String(),
    },
    { additionalProperties: false },
  ),
]);
/** A disk as QEMU sees it. */
export type RuntimeDisk = Static<typeof RuntimeDiskSchema>;

/** A NIC as QEMU sees it. */
const RuntimeNicSchema = Type.Object(
  {
    uuid: Type.String(),
    /** QEMU device and netdev id: `nic-<uuid up to its 3rd hyphen>`. */
    id: Type.String(),
    mac: Type.String(),
    /** `-device` driver: `virtio-net-pci`, `e1000`, … */
    driver: Type.String(),
    bus: DeviceBusSchema,
    network: InstanceNicNetworkSchema,
    /** vhost-net (paravirtual tap NICs with `vhost_net`). */
    vhost: Type.Boolean(),
    /** Tap queues (`virtio_net_queues`, paravirtual tap NICs; 1 otherwise). */
    queues: Type.Integer({ minimum: 1 }),
    /** `vnet_hdr` on the tap (paravirtual tap NICs). */
    vnetHdr: Type.Boolean(),
    bootIndex: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
/** A NIC as QEMU sees it. */
export type RuntimeNic = Static<typeof RuntimeNicSchema>;

/** A CD-ROM (`cdrom_image_path`, `cdrom2_image_path`), read-only. */
const RuntimeCdromSchema = Type.Object(
  {
    /** `cdrom1` or `cdrom2`: device id and blockdev node name. */
    id: Type.String(),
    /** Absolute path, or an http(s)/ftp(s) URL QEMU's curl driver reads. */
    source: Type.Union([
      Type.Object({ path: Type.String() }, { additionalProperties: false }),
      Type.Object({ url: Type.String() }, { additionalProperties: false }),
    ]),
    /** `ide-cd`, `scsi-cd` or `virtio-blk-pci`. */
    driver: Type.String(),
    bus: DeviceBusSchema,
    bootIndex: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
/** A CD-ROM. */
export type RuntimeCdrom = Static<typeof RuntimeCdromSchema>;

/** Where the VNC server listens (`vnc_bind_address`); interfaces are resolved on the node that runs QEMU. */
const VncBindSchema = Type.Union([
  Type.Object({ type: Type.Literal('ip'), address: Type.String() }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('interface'), name: Type.String() }, { additionalProperties: false }),
  /** A UNIX socket `<dir>/<name>.vnc`. */
  Type.Object({ type: Type.Literal('socket'), path: Type.String() }, { additionalProperties: false }),
]);
/** Where the VNC server listens. */
export type VncBind = Static<typeof VncBindSchema>;

/** The display: none, VNC or SPICE. */
const RuntimeDisplaySchema = Type.Union([
  Type.Object({ type: Type.Literal('none') }, { additionalProperties: false }),
  Type.Object(
    {
      type: Type.Literal('vnc'),
      bind: VncBindSchema,
      /** VNC display number (`network_port` − 5900); absent for a socket. */
      display: Type.Optional(Type.Integer({ minimum: 0 })),
      /** TLS credentials (`vnc_tls`, `vnc_x509_path`, `vnc_x509_verify`). */
      tls: Type.Optional(
        Type.Object(
          { x509Dir: Type.Optional(Type.String()), verifyPeer: Type.Boolean() },
          { additionalProperties: false },
        ),
      ),
      /** `vnc_password_file` set: `password=on`, the password itself is set over QMP. */
      password: Type.Boolean(),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('spice'),
      /** An IP address, or an interface resolved on the node that runs QEMU. */
      bind: Type.Union([
        Type.Object({ type: Type.Literal('ip'), address: Type.String() }, { additionalProperties: false }),
        Type.Object(
          { type: Type.Literal('interface'), name: Type.String(), ipVersion: Type.Integer() },
          { additionalProperties: false },
        ),
      ]),
      port: Type.Integer({ minimum: 1, maximum: 65535 }),
      password: Type.Boolean(),
    },
    { additionalProperties: false },
  ),
]);
/** The display. */
export type RuntimeDisplay = Static<typeof RuntimeDisplaySchema>;

/** The typed runtime, format 1. */
export const InstanceRuntimeSchema = Type.Object(
  {
    formatVersion: Type.Literal(RUNTIME_FORMAT_VERSION),
    instance: Type.Object({ name: Type.String(), uuid: Type.String() }, { additionalProperties: false }),
    /** The QEMU the runtime was resolved against (the source of a migration). */
    qemu: Type.Object({ version: Type.String() }, { additionalProperties: false }),
    /** The pinned, versioned machine type (`pc-i440fx-7.2`), never an alias. */
    machine: Type.Object(
      {
        type: Type.String(),
        /** `pci.0` (i440fx) or `pcie.0` (q35): the bus PCI slots refer to. */
        pciBus: Type.Union([Type.Literal('pci.0'), Type.Literal('pcie.0')]),
      },
      { additionalProperties: false },
    ),
    memory: Type.Object(
      { maxMiB: Type.Integer({ minimum: 1 }), startupMiB: Type.Integer({ minimum: 1 }) },
      { additionalProperties: false },
    ),
    smp: Type.Object(
      {
        cpus: Type.Integer({ minimum: 1 }),
        sockets: Type.Optional(Type.Integer({ minimum: 1 })),
        cores: Type.Optional(Type.Integer({ minimum: 1 })),
        threads: Type.Optional(Type.Integer({ minimum: 1 })),
      },
      { additionalProperties: false },
    ),
    /** SCSI controller driver when any disk or CD-ROM sits on the SCSI bus. */
    scsiController: Type.Optional(Type.String()),
    disks: Type.Array(RuntimeDiskSchema),
    nics: Type.Array(RuntimeNicSchema),
    cdroms: Type.Array(RuntimeCdromSchema),
    floppy: Type.Optional(
      Type.Object(
        { path: Type.String(), bootIndex: Type.Optional(Type.Integer({ minimum: 0 })) },
        { additionalProperties: false },
      ),
    ),
    /** Direct kernel boot: `-kernel`, `-initrd`, `-append`. */
    kernel: Type.Optional(
      Type.Object(
        { path: Type.String(), initrd: Type.Optional(Type.String()), append: Type.String() },
        { additionalProperties: false },
      ),
    ),
    display: RuntimeDisplaySchema,
    /** The filled hvparams (the rest of the device model is rendered from them). */
    hvparams: KvmHvParamsSchema,
  },
  { additionalProperties: false },
);
/** The typed runtime, format 1. */
export type InstanceRuntime = Static<typeof InstanceRuntimeSchema>;
