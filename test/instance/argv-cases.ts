/**
 * The argv golden cases: the base instance, then one case per hvparam value worth showing
 * (and a few spec variants). Each case renders on every recorded QEMU release.
 */
import type { LaunchContext } from '../../src/instance/argv.js';
import type { InstanceSpec } from '../../src/instance/spec.js';
import { HV_PARAM_EXAMPLES } from './hvparam-examples.js';
import { baseSpec } from './specs.js';

export interface ArgvCase {
  /** Title in the golden file. */
  name: string;
  spec: InstanceSpec;
  ctx?: Partial<LaunchContext>;
}

const hv = (params: Record<string, unknown>): InstanceSpec =>
  baseSpec({ hvparams: { kernel_path: '', ...params } });

export const ARGV_CASES: ArgvCase[] = [
  { name: 'base', spec: baseSpec() },
  { name: 'tcg accelerator', spec: baseSpec(), ctx: { accel: 'tcg' } },
  { name: 'incoming defer', spec: baseSpec(), ctx: { incoming: 'defer' } },
  {
    name: 'qcow2 block disk, read-only second disk',
    spec: baseSpec({
      disks: [
        {
          uuid: '932df160-7a22-4067-8d2a-5c1f0b2f1e11',
          path: '/dev/vg/web1',
          kind: 'block',
          format: 'qcow2',
        },
        {
          uuid: 'a32df160-7a22-4067-8d2a-5c1f0b2f1e12',
          path: '/srv/ro,comma.img',
          kind: 'file',
          access: 'ro',
        },
      ],
    }),
  },
  {
    name: 'userspace disks: rbd (namespace, snapshot, monitors) and gluster',
    spec: baseSpec({
      disks: [
        { uuid: '932df160-7a22-4067-8d2a-5c1f0b2f1e11', kind: 'userspace', uri: 'rbd:ganeti/web1.disk0' },
        {
          uuid: 'a32df160-7a22-4067-8d2a-5c1f0b2f1e12',
          kind: 'userspace',
          uri: 'rbd:ganeti/tenant/web1.disk1@base:id=ganeti:conf=/etc/ceph/ceph.conf:mon_host=10.0.0.1;[fd00\\:\\:2]\\:3300',
          access: 'ro',
        },
        {
          uuid: 'b32df160-7a22-4067-8d2a-5c1f0b2f1e13',
          kind: 'userspace',
          uri: 'gluster://gluster1.example:24007/gv0/ganeti/web1.disk2',
          format: 'qcow2',
        },
      ],
    }),
  },
  {
    name: 'tap NIC',
    spec: baseSpec({
      nics: [
        {
          uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
          mac: 'aa:00:00:12:34:56',
          network: { type: 'tap', ifname: 'tap-web1' },
        },
      ],
    }),
  },
  { name: 'no disks, no NICs', spec: baseSpec({ disks: [], nics: [] }) },
  {
    name: 'kernel_path, initrd_path, root_path, kernel_args',
    spec: baseSpec({
      hvparams: {
        kernel_path: '/boot/vmlinuz',
        initrd_path: '/boot/initrd.img',
        root_path: '/dev/vda2',
        kernel_args: 'ro quiet',
      },
    }),
  },
  {
    name: 'kernel without root_path (refused by the hvparam checks)',
    spec: baseSpec({ hvparams: { kernel_path: '/boot/vmlinuz', root_path: null } }),
  },
  { name: 'serial_console off', spec: hv({ serial_console: false }) },
  {
    name: 'serial_speed 115200 (kernel boot)',
    spec: baseSpec({ hvparams: { kernel_path: '/boot/vmlinuz', serial_speed: 115200 } }),
  },
  { name: 'acpi off', spec: hv({ acpi: false }) },
  { name: 'vnc on 0.0.0.0', spec: { ...hv({ vnc_bind_address: '0.0.0.0' }), networkPort: 5905 } },
];

/** One golden case per hvparam example (kvm_path only changes argv[0], which the fixtures fix). */
export const HVPARAM_ARGV_CASES: ArgvCase[] = Object.entries(HV_PARAM_EXAMPLES)
  .filter(([name]) => name !== 'kvm_path')
  .map(([name, example]) => ({
    name: `hvparam ${name}: ${JSON.stringify({ ...example!.base, ...example!.set })}`,
    spec: baseSpec({ ...example!.spec, hvparams: { kernel_path: '', ...example!.base, ...example!.set } }),
    ...(example!.ctx ? { ctx: example!.ctx } : {}),
  }));
