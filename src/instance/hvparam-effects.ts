/**
 * What each hvparam does to a started instance: its effect on the QEMU command line, or why
 * it has none (node-side or QMP-only). The source of the hvparam → QEMU table in
 * docs/instances.md (scripts/gen-hvparams-doc.ts); test/instance/hvparam-effects.test.ts
 * proves each listed argv effect.
 */
import type { HvParameterName } from '../hvparams/registry.js';

/** One hvparam's effect. */
export type HvParamEffect =
  /** Changes the argv as `argv` says (`qmp` notes what is done over QMP too). */
  | { kind: 'argv'; argv: string; qmp?: string }
  /** No QEMU argument; `reason` says where it acts. */
  | { kind: 'node-only'; reason: string };

const argv = (text: string, qmp?: string): HvParamEffect => ({
  kind: 'argv',
  argv: text,
  ...(qmp ? { qmp } : {}),
});
const nodeOnly = (reason: string): HvParamEffect => ({ kind: 'node-only', reason });

/** Every hvparam's effect, in registry order. */
export const HV_PARAM_EFFECTS: Readonly<Record<HvParameterName, HvParamEffect>> = {
  kvm_path: argv(
    "argv[0]: the binary `probeQemuFeatures` probed (`features.binary`); on a migration target, the instance's `kvm_path` when given, else the runtime's",
  ),
  kernel_path: argv('`-kernel <path>`; when set no device gets a `bootindex`'),
  initrd_path: argv('`-initrd <path>` (with `kernel_path` only)'),
  kernel_args: argv('`-append` text after `root=` (with `kernel_path` only)'),
  root_path: argv('`-append root=<path> …` (with `kernel_path` only)'),
  acpi: argv('false: `-machine …,acpi=off` (QEMU ≥ 8.0 or without `-no-acpi`), else `-no-acpi`'),
  serial_console: argv(
    'true: `-serial unix:<ctrl>/<n>.serial,server=on,wait=off` and `console=ttyS0,<speed>` in `-append`; false: `-serial none`',
  ),
  serial_speed: argv('`console=ttyS0,<speed>` in `-append` (kernel boot with `serial_console`)'),
  vnc_bind_address: argv(
    'IP → `-vnc <ip>:<networkPort − 5900>` (`0.0.0.0` → `:<d>`, IPv6 → `[ip]:<d>`); interface → its IPv4 address on the node running QEMU; absolute folder → `-vnc unix:<dir>/<n>.vnc`; adds a USB tablet',
  ),
  vnc_tls: argv(
    '`-object tls-creds-anon|tls-creds-x509,id=vnctls0,endpoint=server` and `,tls-creds=vnctls0` on `-vnc`',
  ),
  vnc_x509_path: argv('with `vnc_tls`: `-object tls-creds-x509,…,dir=<path>`'),
  vnc_x509_verify: argv('with `vnc_tls` and `vnc_x509_path`: `verify-peer=on` (else `off`)'),
  vnc_password_file: argv(
    '`,password=on` on `-vnc` (IP binds)',
    '`set_password {protocol: vnc}` with the first line, before `cont`',
  ),
  scsi_controller_type: argv(
    '`-device <lsi53c895a|virtio-scsi-pci|megasas|dc390>,id=scsi` when a disk or CD-ROM is SCSI',
  ),
  kvm_pci_reservations: argv('first PCI slot handed out: `addr=0x<slot>` of disks, then NICs'),
  spice_bind: argv(
    '`-spice addr=<ip>,port=<networkPort>,…` (interface → its address on the node); `-vga qxl` when `vga` is empty',
  ),
  spice_ip_version: argv('with an interface `spice_bind`: its IPv4/IPv6 address and `,ipv4=on`/`,ipv6=on`'),
  spice_password_file: argv(
    'empty: `,disable-ticketing=on`; set: ticketing on',
    '`set_password {protocol: spice}` with the first line, before `cont`',
  ),
  spice_image_compression: argv('`,image-compression=<v>` on `-spice`'),
  spice_jpeg_wan_compression: argv('`,jpeg-wan-compression=<v>` on `-spice`'),
  spice_zlib_glz_wan_compression: argv('`,zlib-glz-wan-compression=<v>` on `-spice`'),
  spice_streaming_video: argv('`,streaming-video=<v>` on `-spice`'),
  spice_playback_compression: argv('false: `,playback-compression=off` on `-spice`'),
  spice_use_tls: argv(
    '`,tls-port=<port>,x509-cacert-file=…,x509-key-file=…,x509-cert-file=…` instead of `,port=` (files from the launch context)',
  ),
  spice_tls_ciphers: argv('`,tls-ciphers=<v>` (with `spice_use_tls`)'),
  spice_use_vdagent: argv(
    'true: `-device virtio-serial-pci,id=spice -device virtserialport,…,name=com.redhat.spice.0 -chardev spicevmc,…`; false: `,agent-mouse=off`',
  ),
  floppy_image_path: argv(
    '`-blockdev …,node-name=floppy1,… -device floppy,id=floppy1,unit=0,drive=floppy1` (i440fx only)',
  ),
  cdrom_image_path: argv(
    '`-blockdev driver=raw,node-name=cdrom1,read-only=on,…,file.filename=<path>` (URL: `file.driver=<scheme>,file.url=`) and `-device <ide-cd|scsi-cd|virtio-blk-pci>,id=cdrom1,drive=cdrom1`',
  ),
  cdrom2_image_path: argv('same as `cdrom_image_path` with `cdrom2`, never bootable'),
  boot_order: argv(
    '`bootindex=1` on the first disk, the first CD-ROM, the floppy or the first NIC (not with `kernel_path`)',
  ),
  nic_type: argv('NIC `-device` driver (`paravirtual` → `virtio-net-pci`); PCI slot for all but `ne2k_isa`'),
  disk_type: argv(
    'disk `-device` driver (`paravirtual` → `virtio-blk-pci`, `ide` → `ide-hd`, `scsi-*` on `scsi.0`); `mtd`, `pflash`, `sd`, `scsi` are refused',
  ),
  cdrom_disk_type: argv(
    'CD-ROM `-device` driver (empty: follows `disk_type`): `ide-cd`, `scsi-cd` or `virtio-blk-pci`',
  ),
  disk_aio: argv('`file.aio=<threads|native|io_uring>` on each disk `-blockdev`'),
  usb_mouse: argv('`-usb -device usb-<mouse|tablet>`'),
  keymap: argv('`-k <keymap>`'),
  migration_port: nodeOnly(
    'migration only: the target listens on it (`-incoming` from the launch context, `migrate-incoming`), the source sends to it',
  ),
  migration_bandwidth: nodeOnly('migration only: QMP `migrate-set-parameters max-bandwidth`'),
  migration_downtime: nodeOnly('migration only: QMP `migrate-set-parameters downtime-limit`'),
  migration_mode: nodeOnly('migration only: `non-live` stops the guest before `migrate`'),
  use_guest_agent: argv(
    '`-chardev socket,id=qga0,path=<ctrl>/<n>.qga,server=on,wait=off -device virtio-serial-pci,id=qga0-serial -device virtserialport,…,name=org.qemu.guest_agent.0`',
  ),
  use_localtime: argv('`-rtc base=localtime`'),
  disk_cache: argv(
    '`(write-cache, cache.direct, cache.no-flush)`: `none` → (on, on, off); `default`/`writeback` → (on, off, off); `writethrough` → (off, off, off)',
  ),
  disk_discard: argv('`discard=<ignore|unmap>` on each disk `-blockdev`'),
  security_model: argv(
    '`user`: `-run-with user=<security_domain>` (or `-runas`); `pool`: the same with the pool user from the launch context',
  ),
  security_domain: argv('the user of `-run-with user=` / `-runas` (with `security_model=user`)'),
  kvm_flag: argv(
    "`-accel kvm|tcg` is the life cycle's choice; `enabled` with `tcg` or `disabled` with `kvm` is refused",
  ),
  vhost_net: argv('`,vhost=on|off` on paravirtual tap `-netdev`s'),
  virtio_net_queues: argv(
    'N > 1: `,queues=N` on paravirtual tap `-netdev`s and `,mq=on,vectors=2N+2` on their `-device`',
  ),
  use_chroot: argv('`-run-with chroot=<chroot>/<n>` (or `-chroot`)'),
  user_shutdown: nodeOnly(
    'no QEMU argument: the life cycle tells a guest poweroff from QMP `SHUTDOWN` events',
  ),
  mem_path: argv('`-mem-path <dir> -mem-prealloc`'),
  reboot_behavior: argv('`exit`: `-no-reboot`'),
  cpu_mask: nodeOnly(
    'after the paused start: CPU affinity of the process or of each vCPU thread (`postStartActions().cpuMask`)',
  ),
  cpu_type: argv('`-cpu <model>` (checked against the probed CPU models; `host` needs KVM)'),
  cpu_cores: argv('`,cores=N` on `-smp`'),
  cpu_threads: argv('`,threads=N` on `-smp`'),
  cpu_sockets: argv('`,sockets=N` on `-smp`'),
  soundhw: argv(
    '`-audio driver=none|spice,model=<v>,id=soundhw` where QEMU has `-audio` (7.1+), else `-soundhw <v>`',
  ),
  usb_devices: argv(
    '`-usb` and one `-device` per entry: `host:VVVV:PPPP` → `usb-host,vendorid=,productid=`, `host:B.A` → `usb-host,hostbus=,hostaddr=`, `tablet`/`mouse`/`keyboard`',
  ),
  vga: argv('`-vga <v>` (empty: `std`, or `qxl` with SPICE)'),
  kvm_extra: argv('split like a POSIX shell (no expansion) and appended last'),
  machine_version: argv(
    '`-machine <type>`: resolved once (alias or empty → the versioned type) and pinned in the runtime; an i440FX or Q35 PC of any build (`pc-i440fx-9.2`, `pc-q35-impish`, `pc-q35-rhel9.4.0`)',
  ),
  migration_caps: nodeOnly('migration only: QMP `migrate-set-capabilities`'),
  vnet_hdr: argv('`,vnet_hdr=on|off` on paravirtual tap `-netdev`s (other models: `off`)'),
};
