import { describe, expect, it } from 'vitest';
import { KVMHypervisor } from '../../src/internal.js';

// Settings that trigger no warning, to test one rule at a time.
const quiet = (): Record<string, unknown> => ({
  ...KVMHypervisor.fillDefaults({}),
  cpu_type: 'Skylake-Server',
  migration_bandwidth: 1000,
  machine_version: 'pc-i440fx-9.2',
});

const warnings = (values: Record<string, unknown>) =>
  KVMHypervisor.assessParameters({ ...quiet(), ...values });

describe('assessParameters', () => {
  it('is quiet for a well-tuned instance', () => {
    expect(warnings({})).toEqual([]);
  });

  it('warns three times for the plain defaults', () => {
    const found = KVMHypervisor.assessParameters(KVMHypervisor.fillDefaults({}));
    expect(found).toHaveLength(3);
    expect(found[0]).toContain('cpu_type');
    expect(found[1]).toContain('migration_bandwidth');
    expect(found[2]).toContain('machine_version');
  });

  it.each([
    [{ cpu_type: '' }, "cpu_type ''"],
    [{ cpu_type: 'qemu32' }, "cpu_type 'qemu32'"],
    [{ cpu_type: 'qemu64' }, 'generic CPU model'],
    [{ cpu_type: 'kvm32' }, 'generic CPU model'],
    [{ cpu_type: 'kvm64' }, 'generic CPU model'],
    [{ cpu_type: 'host' }, "cpu_type 'host'"],
    [{ vhost_net: false }, 'vhost_net is off'],
    [{ migration_bandwidth: 32 }, 'migration_bandwidth is the default 32 MiB/s'],
    [{ disk_type: 'ide' }, "disk_type 'ide'"],
    [{ nic_type: 'e1000' }, "nic_type 'e1000'"],
    [{ vnc_bind_address: '0.0.0.0' }, "VNC listens on '0.0.0.0' without TLS"],
    [{ spice_bind: 'eth0' }, "SPICE listens on 'eth0' without TLS"],
    [{ machine_version: '' }, "machine_version ''"],
    [{ machine_version: 'pc' }, "machine_version 'pc' is an alias"],
    [{ machine_version: 'q35' }, 'is an alias'],
    [{ machine_version: 'q35-foo' }, 'is an alias'],
    [{ machine_version: 'ubuntu' }, "machine_version 'ubuntu' is an alias"],
    [{ machine_version: 'ubuntu-q35' }, "machine_version 'ubuntu-q35' is an alias"],
    [{ machine_version: 'none' }, 'special-purpose'],
    [{ machine_version: 'microvm' }, 'special-purpose'],
    [{ machine_version: 'isapc' }, 'special-purpose'],
    [{ machine_version: 'x-remote' }, 'special-purpose'],
  ])('%j warns: %s', (values, text) => {
    const found = warnings(values);
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(text);
  });

  it.each([
    [{ vnc_bind_address: '127.0.0.1' }],
    [{ vnc_bind_address: '0.0.0.0', vnc_tls: true }],
    [{ spice_bind: '::1' }],
    [{ spice_bind: '0.0.0.0', spice_use_tls: true }],
    [{ migration_bandwidth: 33 }],
    [{ machine_version: 'pc-q35-9.2' }],
    [{ machine_version: 'pc-i440fx-noble' }],
    [{ machine_version: 'pc-q35-rhel9.4.0' }],
    [{ cpu_type: 'EPYC' }],
  ])('%j does not warn', (values) => {
    expect(warnings(values)).toEqual([]);
  });

  it('collects several warnings', () => {
    expect(warnings({ vhost_net: false, nic_type: 'rtl8139', disk_type: 'scsi' })).toHaveLength(3);
  });
});
