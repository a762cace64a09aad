import { describe, expect, it } from 'vitest';
import { coerceHvParams, HypervisorError, parseHvParams } from '../../src/internal.js';

describe('parseHvParams (-H)', () => {
  it.each([
    ['kvm', { hypervisor: 'kvm', params: {} }],
    ['kvm:', { hypervisor: 'kvm', params: {} }],
    ['kvm:acpi', { hypervisor: 'kvm', params: { acpi: true } }],
    ['kvm:no_acpi', { hypervisor: 'kvm', params: { acpi: false } }],
    ['kvm:-root_path', { hypervisor: 'kvm', params: { root_path: null } }],
    ['kvm:kernel_path=', { hypervisor: 'kvm', params: { kernel_path: '' } }],
    [
      'kvm:migration_caps=xbzrle:auto-converge,migration_downtime=100',
      { hypervisor: 'kvm', params: { migration_caps: 'xbzrle:auto-converge', migration_downtime: '100' } },
    ],
    ['kvm:kernel_args=console=ttyS0', { hypervisor: 'kvm', params: { kernel_args: 'console=ttyS0' } }],
    ['kvm:usb_devices=a\\,b,vga=std', { hypervisor: 'kvm', params: { usb_devices: 'a,b', vga: 'std' } }],
    ['kvm:kvm_extra=a\\\\b', { hypervisor: 'kvm', params: { kvm_extra: 'a\\b' } }],
    ['kvm:no_x=1', { hypervisor: 'kvm', params: { no_x: '1' } }],
    ['xen-pvm:kernel_path=/boot/x', { hypervisor: 'xen-pvm', params: { kernel_path: '/boot/x' } }],
  ])('%j', (spec, expected) => {
    expect(parseHvParams(spec)).toStrictEqual(expected);
  });

  it.each([
    ['', 'the hypervisor name is empty'],
    [':acpi', 'the hypervisor name is empty'],
    ['kvm:acpi,,vga=std', "Invalid item '' in hypervisor parameters 'kvm:acpi,,vga=std': the key is empty"],
    ['kvm:=x', "Invalid item '=x'"],
    ['kvm:no_', "Invalid item 'no_'"],
    ['kvm:-', "Invalid item '-'"],
    ['kvm:acpi,no_acpi', "Key 'acpi' is given twice"],
    ['no_kvm', "resetting a whole hypervisor ('no_kvm')"],
    ['-kvm', "resetting a whole hypervisor ('-kvm')"],
  ])('%j is refused: %s', (spec, message) => {
    expect(() => parseHvParams(spec)).toThrow(HypervisorError);
    expect(() => parseHvParams(spec)).toThrow(message);
  });

  it('keeps "__proto__" as an ordinary key', () => {
    const { params } = parseHvParams('kvm:__proto__=x');
    expect(Object.hasOwn(params, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(params)).toBe(Object.prototype);
  });

  it('feeds coerceHvParams', () => {
    const { params } = parseHvParams(
      'kvm:acpi,no_vnc_tls,migration_port=9000,-root_path,migration_caps=events',
    );
    expect(coerceHvParams(params)).toStrictEqual({
      acpi: true,
      vnc_tls: false,
      migration_port: 9000,
      root_path: null,
      migration_caps: 'events',
    });
  });
});
