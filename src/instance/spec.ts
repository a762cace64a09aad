/**
 * The instance model: what a cluster manager knows about a KVM instance before it runs
 * (Ganeti's `objects.Instance` plus its beparams, disks and NICs). TypeBox schemas are the
 * single source of the TypeScript types and of the JSON Schema.
 */
import type { Static } from 'typebox';
import * as Type from 'typebox/type';

/** Fields every disk has, whatever opens it. */
const diskCommon = {
  /** Stable identity; device ids (`disk-<first 3 groups>`) derive from it. */
  uuid: Type.String({ description: 'UUID of the disk; the QEMU device id derives from it' }),
  /** Image format; `raw` unless the file is qcow2. */
  format: Type.Optional(Type.Union([Type.Literal('raw'), Type.Literal('qcow2')])),
  /** `rw` (default) or `ro`. */
  access: Type.Optional(Type.Union([Type.Literal('rw'), Type.Literal('ro')])),
};

/** A disk the node opens: an image file or a block device QEMU opens read-write or read-only. */
export const InstanceLocalDiskSchema = Type.Object(
  {
    ...diskCommon,
    /** Absolute path of the image file or block device on the node that runs QEMU. */
    path: Type.String({ description: 'Absolute path of the image file or block device' }),
    /** `file` for an image file, `block` for a block device (`host_device` in QEMU). */
    kind: Type.Union([Type.Literal('file'), Type.Literal('block')], { description: 'file or block device' }),
  },
  { additionalProperties: false },
);

/**
 * A disk QEMU opens itself over the network (Ganeti's `access=userspace` for RBD and Gluster):
 * `uri` is what Ganeti's `GetUserspaceAccessUri` gives (`rbd:pool/image`,
 * `gluster://host:port/volume/path`); QEMU's `rbd` or `gluster` block driver opens it.
 */
export const InstanceUserspaceDiskSchema = Type.Object(
  {
    ...diskCommon,
    kind: Type.Literal('userspace', { description: 'opened by QEMU itself (rbd, gluster)' }),
    /** `rbd:pool[/namespace]/image[@snap][:id=…][:conf=…][:mon_host=…]` or `gluster[+tcp|+unix]://…`. */
    uri: Type.String({ description: 'rbd: or gluster:// URI of the image' }),
  },
  { additionalProperties: false },
);

/** A disk of an instance: opened by the node (`file`, `block`) or by QEMU itself (`userspace`). */
export const InstanceDiskSchema = Type.Union([InstanceLocalDiskSchema, InstanceUserspaceDiskSchema]);
/** A disk of an instance. */
export type InstanceDisk = Static<typeof InstanceDiskSchema>;

/** How a NIC reaches the network: a tap the node prepared, or QEMU's user-mode network (tests, demos). */
export const InstanceNicNetworkSchema = Type.Union([
  Type.Object(
    {
      type: Type.Literal('tap'),
      /** Name of an existing tap interface (`ip tuntap add … mode tap`). */
      ifname: Type.String(),
    },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal('user') }, { additionalProperties: false }),
]);
/** How a NIC reaches the network. */
export type InstanceNicNetwork = Static<typeof InstanceNicNetworkSchema>;

/** A NIC of an instance. */
export const InstanceNicSchema = Type.Object(
  {
    /** Stable identity; the QEMU id (`nic-<first 3 groups>`) derives from it. */
    uuid: Type.String(),
    /** Unicast MAC address, `aa:00:00:12:34:56`. */
    mac: Type.String(),
    /** Device model; default: the `nic_type` hvparam. */
    model: Type.Optional(Type.String()),
    network: InstanceNicNetworkSchema,
  },
  { additionalProperties: false },
);
/** A NIC of an instance. */
export type InstanceNic = Static<typeof InstanceNicSchema>;

/** Everything needed to start an instance (input of `startInstance`). */
export const InstanceSpecSchema = Type.Object(
  {
    /** Instance name: `-name`, the key of its monitor, and the stem of its files. */
    name: Type.String(),
    /** Instance UUID: `-uuid`, checked through QMP `query-uuid` for liveness. */
    uuid: Type.String(),
    /** Memory in MiB: `maxMiB` is `-m`; `startupMiB` (≤ max) is the balloon target before `cont`. */
    memory: Type.Object(
      { maxMiB: Type.Integer(), startupMiB: Type.Optional(Type.Integer()) },
      { additionalProperties: false },
    ),
    /** vCPUs (`-smp` first field). */
    vcpus: Type.Integer(),
    disks: Type.Array(InstanceDiskSchema),
    nics: Type.Array(InstanceNicSchema),
    /** Ganeti's `network_port`: VNC display / SPICE port. */
    networkPort: Type.Optional(Type.Integer()),
    /** KVM hvparams (as `-H kvm:` or JSON input; missing keys take their defaults). */
    hvparams: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
/** Everything needed to start an instance. */
export type InstanceSpec = Static<typeof InstanceSpecSchema>;
