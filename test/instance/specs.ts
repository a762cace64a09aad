/** Instance specs shared by the runtime and argv tests. */
import type { InstanceSpec } from '../../src/instance/spec.js';

/** The note's example: one disk, one NIC (`disk-932df160-7a22-4067` at 0xc, `nic-003fc157-66a8-4e6d` at 0xd). */
export function baseSpec(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    name: 'web1',
    uuid: '7d3e3ad4-1a5e-4d4c-9d1e-0d5f7f0b1c2a',
    memory: { maxMiB: 128 },
    vcpus: 2,
    disks: [{ uuid: '932df160-7a22-4067-8d2a-5c1f0b2f1e11', path: '/srv/web1.img', kind: 'file' }],
    nics: [
      { uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396', mac: 'aa:00:00:12:34:56', network: { type: 'user' } },
    ],
    hvparams: { kernel_path: '' },
    ...overrides,
  };
}
