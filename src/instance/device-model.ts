/**
 * The device model's vocabulary: QEMU ids derived from UUIDs, the `-device` driver each
 * hvparam value selects, `disk_cache` flags, and Ganeti's PCI slot allocator.
 */
import { QEMU_PCI_SLOTS } from '../hvparams/value-sets.js';
import type { RuntimeDisk } from './runtime-schema.js';

/** VNC displays start at this TCP port (`network_port` − 5900 is the display number). */
export const VNC_BASE_PORT = 5900;
/** SCSI targets the allocator hands out (Ganeti's 16). */
export const SCSI_TARGETS = 16;
/** q35's ISA bridge / SATA / SMBus live in slot 0x1f of `pcie.0`. */
export const Q35_RESERVED_SLOT = 0x1f;

/** `disk-932df160-7a22-4067`: the type, then the UUID cut before its third hyphen (QEMU ids are short). */
export function deviceId(type: 'disk' | 'nic', uuid: string): string {
  return `${type}-${uuid.toLowerCase().split('-').slice(0, 3).join('-')}`;
}

/** The `-device` driver of a `disk_type` value for disks (`paravirtual` → `virtio-blk-pci`). */
export function diskDriver(diskType: string): string | undefined {
  switch (diskType) {
    case 'paravirtual':
      return 'virtio-blk-pci';
    case 'ide':
      return 'ide-hd';
    case 'scsi-hd':
    case 'scsi-block':
    case 'scsi-generic':
      return diskType;
    // `scsi-cd` as a disk type is a read-only SCSI CD drive of a disk image.
    case 'scsi-cd':
      return 'scsi-cd';
    default:
      // `mtd`, `pflash`, `sd`, `scsi`: Ganeti names, no QEMU device of that name.
      return undefined;
  }
}

/** The `-device` driver of a CD-ROM attached as `type` (`cdrom_disk_type`, else `disk_type`). */
export function cdromDriver(type: string): string | undefined {
  if (type === 'paravirtual') return 'virtio-blk-pci';
  if (type === 'ide') return 'ide-cd';
  if (type.startsWith('scsi')) return 'scsi-cd';
  return undefined;
}

/** The `-device` driver of a NIC model (`paravirtual` → `virtio-net-pci`). */
export function nicDriver(model: string): string {
  return model === 'paravirtual' ? 'virtio-net-pci' : model;
}

/** QEMU's name of a SCSI controller model (`lsi` is an alias of `lsi53c895a`). */
export function scsiControllerDriver(model: string): string {
  return model === 'lsi' ? 'lsi53c895a' : model;
}

/** `(write-cache, cache.direct, cache.no-flush)` of a `disk_cache` value (Ganeti's table). */
export function diskCacheFlags(mode: string): RuntimeDisk['cache'] {
  switch (mode) {
    case 'none':
      return { writeCache: true, direct: true, noFlush: false };
    case 'writethrough':
      return { writeCache: false, direct: false, noFlush: false };
    default:
      return { writeCache: true, direct: false, noFlush: false };
  }
}

/** Ganeti's PCI allocator: slots `reservations` to 31 (q35: not 0x1f), first free wins. */
export class PciAllocator {
  private next: number;
  constructor(
    reservations: number,
    private readonly q35: boolean,
  ) {
    this.next = reservations;
  }
  take(): number | undefined {
    while (this.next < QEMU_PCI_SLOTS && this.q35 && this.next === Q35_RESERVED_SLOT) this.next += 1;
    if (this.next >= QEMU_PCI_SLOTS) return undefined;
    return this.next++;
  }
}
