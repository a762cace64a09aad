/**
 * Which machine types the device model can use: the PC families, i440FX (`pci.0`) and Q35
 * (`pcie.0`), recognised from what the QEMU build reports rather than from an upstream
 * version pattern, so that distribution builds work as well as upstream's:
 *
 * | build             | i440FX                                      | Q35                                  |
 * | ----------------- | ------------------------------------------- | ------------------------------------ |
 * | upstream, Debian  | `pc-i440fx-9.2` (alias `pc`)                | `pc-q35-9.2` (alias `q35`)           |
 * | Ubuntu            | `pc-i440fx-impish` (alias `ubuntu`), `-hpb` | `pc-q35-impish` (alias `ubuntu-q35`) |
 * | RHEL and rebuilds | `pc-i440fx-rhel7.6.0` (alias `pc`)          | `pc-q35-rhel9.4.0` (alias `q35`)     |
 *
 * The chipset comes from the description `-machine help` prints (`Standard PC (i440FX +
 * PIIX, 1996)`, `RHEL-9.4.0 PC (Q35 + ICH9, 2009)`); without one (`query-machines` has no
 * descriptions), from the family prefix every build keeps in its versioned names,
 * `pc-i440fx-` or `pc-q35-`.
 */
import type { QemuMachineType } from './features-parse.js';

/** A PC machine family the device model supports. */
export type MachineFamily = 'i440fx' | 'q35';

/** The PCI root bus of each family's machines. */
export const FAMILY_PCI_BUS: Readonly<Record<MachineFamily, 'pci.0' | 'pcie.0'>> = {
  i440fx: 'pci.0',
  q35: 'pcie.0',
};

/**
 * The family of machine type `m`, or undefined when it is neither an i440FX nor a Q35 PC
 * (`isapc`, `microvm`, `xenfv`, …) or nothing QEMU reported says which chipset it has.
 */
export function machineFamily(m: Pick<QemuMachineType, 'name' | 'description'>): MachineFamily | undefined {
  if (m.description !== undefined) {
    if (/\(i440FX\b/.test(m.description)) return 'i440fx';
    if (/\(Q35\b/.test(m.description)) return 'q35';
  }
  if (m.name.startsWith('pc-i440fx-')) return 'i440fx';
  if (m.name.startsWith('pc-q35-')) return 'q35';
  return undefined;
}

/**
 * What to suggest instead of a machine type the device model cannot use: the PC machines
 * QEMU reaches by an alias (`pc`, `q35`, `ubuntu`, …) and its default, versioned names.
 */
export function pcMachineSuggestions(machines: readonly QemuMachineType[]): string[] {
  return machines
    .filter((m) => machineFamily(m) !== undefined && (m.alias !== undefined || m.isDefault))
    .map((m) => m.name);
}
