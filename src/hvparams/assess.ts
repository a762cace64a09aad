/**
 * Warnings about valid but doubtful settings (Ganeti's `AssessParameters`). They never block
 * anything; callers show them to the operator.
 */
import type { HvParameterName } from './registry.js';
import { DEFAULT_MIGRATION_BANDWIDTH } from './value-sets.js';

/** One warning rule: `warning` returns the text, or `undefined` when the setting is fine. */
export interface AssessmentRule {
  /** Parameters the rule reads. */
  readonly params: readonly HvParameterName[];
  /** When it warns, for the generated docs. */
  readonly summary: string;
  warning(params: Readonly<Record<string, unknown>>): string | undefined;
}

const GENERIC_CPU_TYPES = ['qemu32', 'qemu64', 'kvm32', 'kvm64'];
// Ganeti's list ('', pc, q35*) and Ubuntu's aliases of its default types.
const UNVERSIONED_MACHINES = ['', 'pc', 'ubuntu', 'ubuntu-q35'];
const SPECIAL_MACHINES = ['none', 'microvm', 'isapc', 'x-remote'];
const LOCAL_ADDRESSES = ['127.0.0.1', '::1'];

function remoteWithoutTls(bind: unknown, tls: unknown): boolean {
  return typeof bind === 'string' && bind !== '' && !LOCAL_ADDRESSES.includes(bind) && tls !== true;
}

/** Every warning rule, in a stable order. */
export const ASSESSMENT_RULES: readonly AssessmentRule[] = [
  {
    params: ['cpu_type'],
    summary: 'cpu_type is empty or a generic model (qemu32, qemu64, kvm32, kvm64).',
    warning: ({ cpu_type }) =>
      cpu_type === '' || GENERIC_CPU_TYPES.includes(cpu_type as string)
        ? `cpu_type '${String(cpu_type)}' is a generic CPU model: the guest misses most host CPU features; ` +
          'name a model that all nodes support'
        : undefined,
  },
  {
    params: ['cpu_type'],
    summary: 'cpu_type is host.',
    warning: ({ cpu_type }) =>
      cpu_type === 'host'
        ? "cpu_type 'host' exposes this node's exact CPU: migration to a node with a different CPU may fail"
        : undefined,
  },
  {
    params: ['vhost_net'],
    summary: 'vhost_net is off.',
    warning: ({ vhost_net }) =>
      vhost_net === false
        ? 'vhost_net is off: paravirtual network traffic goes through QEMU and is slower'
        : undefined,
  },
  {
    params: ['migration_bandwidth'],
    summary: `migration_bandwidth is still the default ${DEFAULT_MIGRATION_BANDWIDTH} MiB/s.`,
    warning: ({ migration_bandwidth }) =>
      migration_bandwidth === DEFAULT_MIGRATION_BANDWIDTH
        ? `migration_bandwidth is the default ${DEFAULT_MIGRATION_BANDWIDTH} MiB/s, which is low for most networks: ` +
          'migrations of busy instances may never converge'
        : undefined,
  },
  {
    params: ['disk_type'],
    summary: 'disk_type is not paravirtual.',
    warning: ({ disk_type }) =>
      typeof disk_type === 'string' && disk_type !== 'paravirtual'
        ? `disk_type '${String(disk_type)}' is emulated and slower than paravirtual (virtio)`
        : undefined,
  },
  {
    params: ['nic_type'],
    summary: 'nic_type is not paravirtual.',
    warning: ({ nic_type }) =>
      typeof nic_type === 'string' && nic_type !== 'paravirtual'
        ? `nic_type '${String(nic_type)}' is emulated and slower than paravirtual (virtio)`
        : undefined,
  },
  {
    params: ['vnc_bind_address', 'vnc_tls'],
    summary: 'vnc_bind_address is set to something other than 127.0.0.1 or ::1 and vnc_tls is off.',
    warning: ({ vnc_bind_address, vnc_tls }) =>
      remoteWithoutTls(vnc_bind_address, vnc_tls)
        ? `VNC listens on '${String(vnc_bind_address)}' without TLS: console traffic is unencrypted`
        : undefined,
  },
  {
    params: ['spice_bind', 'spice_use_tls'],
    summary: 'spice_bind is set to something other than 127.0.0.1 or ::1 and spice_use_tls is off.',
    warning: ({ spice_bind, spice_use_tls }) =>
      remoteWithoutTls(spice_bind, spice_use_tls)
        ? `SPICE listens on '${String(spice_bind)}' without TLS: console traffic is unencrypted`
        : undefined,
  },
  {
    params: ['machine_version'],
    summary:
      "machine_version is empty, pc, starts with q35, or is Ubuntu's ubuntu or ubuntu-q35 (an alias, not a pinned version).",
    warning: ({ machine_version }) =>
      typeof machine_version === 'string' &&
      (UNVERSIONED_MACHINES.includes(machine_version) || machine_version.startsWith('q35'))
        ? `machine_version '${machine_version}' is an alias that changes with the QEMU version: ` +
          'pin a versioned machine type (for example pc-i440fx-9.2) so migration between QEMU versions works'
        : undefined,
  },
  {
    params: ['machine_version'],
    summary: `machine_version is one of: ${SPECIAL_MACHINES.join(', ')}.`,
    warning: ({ machine_version }) =>
      typeof machine_version === 'string' && SPECIAL_MACHINES.includes(machine_version)
        ? `machine_version '${machine_version}' is a special-purpose machine type, not meant for regular instances`
        : undefined,
  },
];

/** Runs every {@link ASSESSMENT_RULES} rule; returns the warnings, `[]` when there are none. */
export function assessHvParams(filled: Readonly<Record<string, unknown>>): string[] {
  const warnings: string[] = [];
  for (const rule of ASSESSMENT_RULES) {
    const text = rule.warning(filled);
    if (text !== undefined) warnings.push(text);
  }
  return warnings;
}
