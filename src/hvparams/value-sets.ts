/**
 * Value sets the hvparam checks use (Ganeti's `Constants.hs`), in Ganeti's order.
 */

/** `boot_order` values. */
export const BOOT_ORDERS = ['cdrom', 'disk', 'floppy', 'network'] as const;
/** `nic_type` values. */
export const NIC_TYPES = [
  'e1000',
  'i82551',
  'i82559er',
  'i82557b',
  'ne2k_isa',
  'ne2k_pci',
  'paravirtual',
  'pcnet',
  'rtl8139',
] as const;
/** `disk_type` and `cdrom_disk_type` values. */
export const DISK_TYPES = [
  'ide',
  'mtd',
  'paravirtual',
  'pflash',
  'scsi',
  'sd',
  'scsi-generic',
  'scsi-block',
  'scsi-hd',
  'scsi-cd',
] as const;
/** `scsi_controller_type` values. */
export const SCSI_CONTROLLER_TYPES = ['lsi', 'virtio-scsi-pci', 'megasas', 'dc390'] as const;
/** `disk_cache` values. */
export const DISK_CACHE_TYPES = ['default', 'none', 'writeback', 'writethrough'] as const;
/** `disk_discard` values. */
export const DISK_DISCARD_TYPES = ['ignore', 'unmap'] as const;
/** `disk_aio` values. */
export const DISK_AIO_TYPES = ['threads', 'native', 'io_uring'] as const;
/** `usb_mouse` values. */
export const MOUSE_TYPES = ['mouse', 'tablet'] as const;
/** `security_model` values. */
export const SECURITY_MODELS = ['none', 'pool', 'user'] as const;
/** `kvm_flag` values. */
export const KVM_FLAG_VALUES = ['enabled', 'disabled'] as const;
/** `reboot_behavior` values. */
export const REBOOT_BEHAVIORS = ['reboot', 'exit'] as const;
/** `migration_mode` values. */
export const MIGRATION_MODES = ['live', 'non-live'] as const;
/** `spice_image_compression` values (lossless). */
export const SPICE_LOSSLESS_IMAGE_COMPRESSIONS = ['auto_glz', 'auto_lz', 'glz', 'lz', 'off', 'quic'] as const;
/** `spice_jpeg_wan_compression` and `spice_zlib_glz_wan_compression` values (lossy). */
export const SPICE_LOSSY_IMAGE_COMPRESSIONS = ['always', 'auto', 'never'] as const;
/** `spice_streaming_video` values. */
export const SPICE_VIDEO_STREAM_DETECTIONS = ['all', 'filter', 'off'] as const;
/** `spice_ip_version` values; 0 means "not specified". */
export const SPICE_IP_VERSIONS = [0, 4, 6] as const;
/** Serial console speeds `serial_speed` accepts when `serial_console` is on. */
export const VALID_SERIAL_SPEEDS = [
  75, 110, 300, 600, 1200, 1800, 2400, 4800, 9600, 14400, 19200, 28800, 38400, 57600, 115200, 230400, 345600,
  460800,
] as const;
/** PCI slots QEMU manages; the upper bound of `kvm_pci_reservations`. */
export const QEMU_PCI_SLOTS = 32;
/** Upper bound of `virtio_net_queues`. */
export const MAX_VIRTIO_NET_QUEUES = 32;
/** `cpu_mask` value meaning "every physical CPU". */
export const CPU_PINNING_ALL = 'all';
/** Separator between the per-vCPU masks of a multiple CPU mask. */
export const CPU_PINNING_SEP = ':';
/** Default `spice_tls_ciphers`. */
export const OPENSSL_CIPHERS = 'HIGH:-DES:-3DES:-EXPORT:-DH';
/** Cluster default of `migration_bandwidth` in MiB/s; still using it earns a warning. */
export const DEFAULT_MIGRATION_BANDWIDTH = 32;
