/**
 * Argv of the storage and network devices: disks and CD-ROMs as `-blockdev` + `-device`,
 * the floppy, the SCSI controller, NICs as `-netdev` + `-device`.
 */
import { busOpts, opts, type RenderState, useDriver } from './argv-common.js';
import { diskProtocolOptions, dottedOptions } from './userspace-disk.js';

/** SCSI controller, disks, CD-ROMs, floppy. */
export function renderStorage(state: RenderState): void {
  const { runtime, features, argv } = state;
  if (runtime.scsiController) {
    useDriver(state, runtime.scsiController, 'scsi_controller_type');
    // QEMU names the controller's bus `scsi.0`.
    argv.push('-device', `${runtime.scsiController},id=scsi`);
  }
  for (const disk of runtime.disks) {
    useDriver(state, disk.driver, 'disk_type');
    argv.push(
      '-blockdev',
      opts([
        ['driver', disk.format],
        ['node-name', disk.id],
        ['discard', disk.discard],
        ['cache.direct', disk.cache.direct],
        ['cache.no-flush', disk.cache.noFlush],
        ['read-only', disk.readOnly ? true : undefined],
        ...dottedOptions('file', diskProtocolOptions(disk)),
      ]),
    );
    const hasWriteCache = features.deviceProperties[disk.driver]?.includes('write-cache') ?? false;
    argv.push(
      '-device',
      `${disk.driver},${opts([
        ['id', disk.id],
        ...busOpts(runtime, disk.bus),
        ['drive', disk.id],
        ['write-cache', hasWriteCache ? disk.cache.writeCache : undefined],
        ['bootindex', disk.bootIndex],
      ])}`,
    );
  }
  for (const cd of runtime.cdroms) {
    useDriver(state, cd.driver, 'cdrom_disk_type');
    const file: Array<readonly [string, string]> =
      'path' in cd.source
        ? [
            ['file.driver', 'file'],
            ['file.filename', cd.source.path],
          ]
        : [
            ['file.driver', new URL(cd.source.url).protocol.slice(0, -1)],
            ['file.url', cd.source.url],
          ];
    argv.push(
      '-blockdev',
      opts([
        ['driver', 'raw'],
        ['node-name', cd.id],
        ['read-only', true],
        ['cache.direct', false],
        ['cache.no-flush', true],
        ...file,
      ]),
    );
    argv.push(
      '-device',
      `${cd.driver},${opts([['id', cd.id], ...busOpts(runtime, cd.bus), ['drive', cd.id], ['bootindex', cd.bootIndex]])}`,
    );
  }
  if (runtime.floppy) {
    useDriver(state, 'floppy', 'floppy_image_path');
    argv.push(
      '-blockdev',
      opts([
        ['driver', 'raw'],
        ['node-name', 'floppy1'],
        ['file.driver', 'file'],
        ['file.filename', runtime.floppy.path],
      ]),
      '-device',
      `floppy,${opts([
        ['id', 'floppy1'],
        ['unit', 0],
        ['drive', 'floppy1'],
        ['bootindex', runtime.floppy.bootIndex],
      ])}`,
    );
  }
}

/** NICs: `-netdev tap|user` + `-device` (`-nodefaults` leaves no default NIC). */
export function renderNics(state: RenderState): void {
  const { runtime, argv } = state;
  for (const nic of runtime.nics) {
    useDriver(state, nic.driver, 'nic_type');
    const virtio = nic.driver === 'virtio-net-pci';
    if (virtio && nic.vhost && state.ctx.vhostNet === false) {
      state.problems.push({
        param: 'vhost_net',
        message: `NIC ${nic.id}: /dev/vhost-net is not usable on this node`,
      });
    }
    if (nic.network.type === 'tap') {
      argv.push(
        '-netdev',
        `tap,${opts([
          ['id', nic.id],
          ['ifname', nic.network.ifname],
          ['script', 'no'],
          ['downscript', 'no'],
          ['vhost', virtio ? nic.vhost : undefined],
          ['queues', nic.queues > 1 ? nic.queues : undefined],
          ['vnet_hdr', virtio ? nic.vnetHdr : false],
        ])}`,
      );
    } else {
      argv.push('-netdev', `user,${opts([['id', nic.id]])}`);
    }
    argv.push(
      '-device',
      `${nic.driver},${opts([
        ['id', nic.id],
        ...busOpts(runtime, nic.bus),
        ['netdev', nic.id],
        ['mac', nic.mac],
        ['mq', virtio && nic.queues > 1 ? true : undefined],
        ['vectors', virtio && nic.queues > 1 ? 2 * nic.queues + 2 : undefined],
        ['bootindex', nic.bootIndex],
      ])}`,
    );
  }
}
