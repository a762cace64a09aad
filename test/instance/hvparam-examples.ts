/**
 * One example per hvparam with a QEMU effect: a value that differs from the default, the
 * spec and context it needs, and what must then be in the argv. Used by the effect test
 * and by the golden files.
 */

import type { HvParameterName } from '../../src/hvparams/registry.js';
import { chooseAccelerator, type LaunchContext, renderArgv } from '../../src/instance/argv.js';
import { resolveRuntime } from '../../src/instance/runtime.js';
import type { InstanceSpec } from '../../src/instance/spec.js';
import { FIXTURE_PATHS, recordedFeatures } from './fixtures.js';
import { baseSpec } from './specs.js';

export interface HvParamExample {
  /** The hvparam values under test (the parameter itself, maybe with a companion). */
  set: Record<string, unknown>;
  /** hvparams both renderings share (what the parameter needs to matter). */
  base?: Record<string, unknown>;
  spec?: Partial<InstanceSpec>;
  ctx?: Partial<LaunchContext>;
  /** Release whose recorded features render it (default 11.1). */
  release?: string;
  /** Substrings of the space-joined argv with `set` applied. */
  expect: string[];
}

const TAP_NIC: InstanceSpec['nics'] = [
  {
    uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
    mac: 'aa:00:00:12:34:56',
    network: { type: 'tap', ifname: 'tap0' },
  },
];
const VNC = { vnc_bind_address: '192.0.2.10' };
const SPICE = { spice_bind: '192.0.2.10' };
const PORT = { networkPort: 5901 };
const SPICE_TLS = {
  spiceTls: { caCert: '/etc/ssl/spice-ca.pem', cert: '/etc/ssl/spice.pem', key: '/etc/ssl/spice.pem' },
};

export const HV_PARAM_EXAMPLES: Partial<Record<HvParameterName, HvParamExample>> = {
  kvm_path: {
    set: { kvm_path: '/opt/qemu/bin/qemu-system-x86_64' },
    expect: ['/opt/qemu/bin/qemu-system-x86_64 -name'],
  },
  kernel_path: { set: { kernel_path: '/boot/vmlinuz' }, expect: ['-kernel /boot/vmlinuz'] },
  initrd_path: {
    base: { kernel_path: '/boot/vmlinuz' },
    set: { initrd_path: '/boot/initrd.img' },
    expect: ['-initrd /boot/initrd.img'],
  },
  kernel_args: {
    base: { kernel_path: '/boot/vmlinuz' },
    set: { kernel_args: 'quiet splash' },
    expect: ['root=/dev/vda1 quiet splash console=ttyS0,38400'],
  },
  root_path: {
    base: { kernel_path: '/boot/vmlinuz' },
    set: { root_path: '/dev/sda2' },
    expect: ['-append root=/dev/sda2 ro'],
  },
  acpi: { set: { acpi: false }, expect: ['-machine pc-i440fx-11.1,acpi=off'] },
  serial_console: { set: { serial_console: false }, expect: ['-serial none'] },
  serial_speed: {
    base: { kernel_path: '/boot/vmlinuz' },
    set: { serial_speed: 115200 },
    expect: ['console=ttyS0,115200'],
  },
  vnc_bind_address: { spec: PORT, set: VNC, expect: ['-vnc 192.0.2.10:1', '-device usb-tablet'] },
  vnc_tls: {
    spec: PORT,
    base: VNC,
    set: { vnc_tls: true },
    expect: ['-object tls-creds-anon,id=vnctls0,endpoint=server', '-vnc 192.0.2.10:1,tls-creds=vnctls0'],
  },
  vnc_x509_path: {
    spec: PORT,
    base: { ...VNC, vnc_tls: true },
    set: { vnc_x509_path: '/etc/pki/vnc' },
    expect: ['-object tls-creds-x509,id=vnctls0,endpoint=server,dir=/etc/pki/vnc,verify-peer=off'],
  },
  vnc_x509_verify: {
    spec: PORT,
    base: { ...VNC, vnc_tls: true, vnc_x509_path: '/etc/pki/vnc' },
    set: { vnc_x509_verify: true },
    expect: ['verify-peer=on'],
  },
  vnc_password_file: {
    spec: PORT,
    base: VNC,
    set: { vnc_password_file: '/etc/vnc.pw' },
    expect: ['-vnc 192.0.2.10:1,password=on'],
  },
  scsi_controller_type: {
    base: { disk_type: 'scsi-hd' },
    set: { scsi_controller_type: 'megasas' },
    expect: ['-device megasas,id=scsi'],
  },
  kvm_pci_reservations: {
    set: { kvm_pci_reservations: 16 },
    expect: ['bus=pci.0,addr=0x10', 'bus=pci.0,addr=0x11'],
  },
  spice_bind: {
    release: '7.2',
    spec: PORT,
    set: SPICE,
    expect: ['-vga qxl', '-spice addr=192.0.2.10,port=5901,disable-ticketing=on'],
  },
  spice_ip_version: {
    release: '7.2',
    spec: PORT,
    ctx: {
      interfaces: {
        eth0: [
          { address: '192.0.2.10', family: 'IPv4' },
          { address: '2001:db8::10', family: 'IPv6' },
        ],
      },
    },
    base: { spice_bind: 'eth0' },
    set: { spice_ip_version: 6 },
    expect: ['-spice addr=2001:db8::10,ipv6=on,port=5901'],
  },
  spice_password_file: {
    release: '7.2',
    spec: PORT,
    base: SPICE,
    set: { spice_password_file: '/etc/spice.pw' },
    expect: ['-spice addr=192.0.2.10,port=5901 '],
  },
  spice_image_compression: {
    release: '7.2',
    spec: PORT,
    base: SPICE,
    set: { spice_image_compression: 'quic' },
    expect: ['image-compression=quic'],
  },
  spice_jpeg_wan_compression: {
    release: '7.2',
    spec: PORT,
    base: SPICE,
    set: { spice_jpeg_wan_compression: 'never' },
    expect: ['jpeg-wan-compression=never'],
  },
  spice_zlib_glz_wan_compression: {
    release: '7.2',
    spec: PORT,
    base: SPICE,
    set: { spice_zlib_glz_wan_compression: 'always' },
    expect: ['zlib-glz-wan-compression=always'],
  },
  spice_streaming_video: {
    release: '7.2',
    spec: PORT,
    base: SPICE,
    set: { spice_streaming_video: 'filter' },
    expect: ['streaming-video=filter'],
  },
  spice_playback_compression: {
    release: '7.2',
    spec: PORT,
    base: SPICE,
    set: { spice_playback_compression: false },
    expect: ['playback-compression=off'],
  },
  spice_use_tls: {
    release: '7.2',
    spec: PORT,
    ctx: SPICE_TLS,
    base: SPICE,
    set: { spice_use_tls: true },
    expect: [
      'tls-port=5901,x509-cacert-file=/etc/ssl/spice-ca.pem,x509-key-file=/etc/ssl/spice.pem,x509-cert-file=/etc/ssl/spice.pem',
    ],
  },
  spice_tls_ciphers: {
    release: '7.2',
    spec: PORT,
    ctx: SPICE_TLS,
    base: { ...SPICE, spice_use_tls: true },
    set: { spice_tls_ciphers: 'ECDHE-RSA-AES256-GCM-SHA384' },
    expect: ['tls-ciphers=ECDHE-RSA-AES256-GCM-SHA384'],
  },
  spice_use_vdagent: {
    release: '7.2',
    spec: PORT,
    base: SPICE,
    set: { spice_use_vdagent: false },
    expect: ['agent-mouse=off'],
  },
  floppy_image_path: {
    set: { floppy_image_path: '/srv/boot.img' },
    expect: [
      '-blockdev driver=raw,node-name=floppy1,file.driver=file,file.filename=/srv/boot.img',
      '-device floppy,id=floppy1,unit=0,drive=floppy1',
    ],
  },
  cdrom_image_path: {
    base: { disk_type: 'ide' },
    set: { cdrom_image_path: '/srv/install.iso' },
    expect: [
      'node-name=cdrom1,read-only=on,cache.direct=off,cache.no-flush=on,file.driver=file,file.filename=/srv/install.iso',
      '-device ide-cd,id=cdrom1,drive=cdrom1',
    ],
  },
  cdrom2_image_path: {
    base: { disk_type: 'ide', cdrom_image_path: '/srv/install.iso' },
    set: { cdrom2_image_path: 'https://example.org/tools.iso' },
    expect: [
      'node-name=cdrom2,read-only=on,cache.direct=off,cache.no-flush=on,file.driver=https,file.url=https://example.org/tools.iso',
    ],
  },
  boot_order: {
    base: { cdrom_image_path: '/srv/install.iso', cdrom_disk_type: 'ide' },
    set: { boot_order: 'cdrom' },
    expect: ['-device ide-cd,id=cdrom1,drive=cdrom1,bootindex=1'],
  },
  nic_type: {
    set: { nic_type: 'e1000' },
    expect: ['-device e1000,id=nic-003fc157-66a8-4e6d,bus=pci.0,addr=0xd'],
  },
  disk_type: {
    set: { disk_type: 'ide' },
    expect: ['-device ide-hd,id=disk-932df160-7a22-4067,drive=disk-932df160-7a22-4067,write-cache=on'],
  },
  cdrom_disk_type: {
    base: { cdrom_image_path: '/srv/install.iso' },
    set: { cdrom_disk_type: 'scsi-cd' },
    expect: ['-device scsi-cd,id=cdrom1,bus=scsi.0'],
  },
  disk_aio: { base: { disk_cache: 'none' }, set: { disk_aio: 'native' }, expect: ['file.aio=native'] },
  usb_mouse: { set: { usb_mouse: 'mouse' }, expect: ['-usb -device usb-mouse'] },
  keymap: { set: { keymap: 'de' }, expect: ['-k de'] },
  use_guest_agent: {
    set: { use_guest_agent: true },
    expect: [
      '-chardev socket,id=qga0,path=/var/run/ganeti/kvm-hypervisor/ctrl/web1.qga,server=on,wait=off',
      'name=org.qemu.guest_agent.0',
    ],
  },
  use_localtime: { set: { use_localtime: true }, expect: ['-rtc base=localtime'] },
  disk_cache: { set: { disk_cache: 'none' }, expect: ['cache.direct=on,cache.no-flush=off'] },
  disk_discard: { set: { disk_discard: 'unmap' }, expect: ['discard=unmap'] },
  security_model: {
    set: { security_model: 'user', security_domain: 'qemu' },
    expect: ['-run-with user=qemu'],
  },
  security_domain: {
    base: { security_model: 'user', security_domain: 'qemu' },
    set: { security_domain: 'nobody' },
    expect: ['-run-with user=nobody'],
  },
  kvm_flag: { set: { kvm_flag: 'disabled' }, expect: ['-accel tcg'] },
  vhost_net: {
    spec: { nics: TAP_NIC },
    set: { vhost_net: false },
    expect: ['-netdev tap,id=nic-003fc157-66a8-4e6d,ifname=tap0,script=no,downscript=no,vhost=off'],
  },
  virtio_net_queues: {
    spec: { nics: TAP_NIC },
    set: { virtio_net_queues: 4 },
    expect: ['vhost=on,queues=4', 'mq=on,vectors=10'],
  },
  use_chroot: {
    set: { use_chroot: true },
    expect: ['-run-with chroot=/var/run/ganeti/kvm-hypervisor/chroot/web1'],
  },
  mem_path: { set: { mem_path: '/dev/hugepages' }, expect: ['-mem-path /dev/hugepages -mem-prealloc'] },
  reboot_behavior: { set: { reboot_behavior: 'exit' }, expect: ['-no-reboot'] },
  cpu_type: { set: { cpu_type: 'Skylake-Server' }, expect: ['-cpu Skylake-Server'] },
  cpu_cores: { set: { cpu_cores: 2 }, expect: ['-smp 2,cores=2'] },
  cpu_threads: { set: { cpu_threads: 2 }, expect: ['-smp 2,threads=2'] },
  cpu_sockets: { set: { cpu_sockets: 2 }, expect: ['-smp 2,sockets=2'] },
  soundhw: { set: { soundhw: 'hda' }, expect: ['-audio driver=none,model=hda,id=soundhw'] },
  usb_devices: {
    set: { usb_devices: 'host:046d:c52b,host:1.4' },
    expect: ['-usb -device usb-host,vendorid=0x046d,productid=0xc52b -device usb-host,hostbus=1,hostaddr=4'],
  },
  vga: { set: { vga: 'cirrus' }, expect: ['-vga cirrus'] },
  kvm_extra: {
    set: { kvm_extra: `-global kvm-pit.lost_tick_policy=delay -msg 'timestamp=on'` },
    expect: ['-global kvm-pit.lost_tick_policy=delay -msg timestamp=on'],
  },
  machine_version: {
    set: { machine_version: 'q35' },
    expect: ['-machine pc-q35-11.1', 'bus=pcie.0,addr=0xc'],
  },
  vnet_hdr: { spec: { nics: TAP_NIC }, set: { vnet_hdr: false }, expect: ['vnet_hdr=off'] },
};

/**
 * The argv of `example` with its `set` values (`withSet`) or without them, on a node where
 * KVM is usable (so the accelerator follows `kvm_flag` through `chooseAccelerator`).
 */
export function exampleArgv(name: string, example: HvParamExample, withSet: boolean): string[] {
  const features = recordedFeatures(example.release ?? '11.1');
  const hvparams = { kernel_path: '', ...example.base, ...(withSet ? example.set : {}) };
  // kvm_path's effect is the binary the life cycle probed: features.binary.
  const f = name === 'kvm_path' && withSet ? { ...features, binary: String(example.set.kvm_path) } : features;
  const spec = baseSpec({ ...example.spec, hvparams });
  const runtime = resolveRuntime(spec, f);
  const accel = chooseAccelerator(runtime.hvparams, true);
  return renderArgv(runtime, f, { paths: FIXTURE_PATHS(spec.name), accel, ...example.ctx });
}
