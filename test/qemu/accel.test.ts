import { afterEach, describe, expect, it } from 'vitest';
import { HypervisorError, UnrecognizedOutputError } from '../../src/errors.js';
import {
  acceleratorFromInfoKvm,
  acceleratorFromQueryKvm,
  kvmUsable,
  resolveAccelerator,
} from '../../src/qemu/accel.js';

const _sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('kvmUsable / resolveAccelerator', () => {
  const saved = process.env.KVMHV_ACCEL;
  afterEach(() => {
    if (saved === undefined) delete process.env.KVMHV_ACCEL;
    else process.env.KVMHV_ACCEL = saved;
  });

  it('is true for a device that opens read-write, false for one that does not exist', () => {
    expect(kvmUsable('/dev/null')).toBe(true);
    expect(kvmUsable('/nonexistent/kvm')).toBe(false);
  });

  it('auto picks KVM only when the device opens', () => {
    expect(resolveAccelerator('auto', '/dev/null')).toBe('kvm');
    expect(resolveAccelerator('auto', '/nonexistent/kvm')).toBe('tcg');
    expect(resolveAccelerator('tcg', '/dev/null')).toBe('tcg');
    expect(resolveAccelerator('kvm', '/nonexistent/kvm')).toBe('kvm');
  });

  it('takes the default from $KVMHV_ACCEL and rejects anything else', () => {
    process.env.KVMHV_ACCEL = 'tcg';
    expect(resolveAccelerator(undefined, '/dev/null')).toBe('tcg');
    process.env.KVMHV_ACCEL = '';
    expect(resolveAccelerator(undefined, '/dev/null')).toBe('kvm');
    process.env.KVMHV_ACCEL = 'hvf';
    expect(() => resolveAccelerator(undefined)).toThrow(HypervisorError);
    expect(() => resolveAccelerator(undefined)).toThrow(/KVMHV_ACCEL.*'hvf'/);
  });
});

describe('reading the accelerator back', () => {
  it('query-kvm', () => {
    expect(acceleratorFromQueryKvm({ enabled: true, present: true })).toBe('kvm');
    expect(acceleratorFromQueryKvm({ enabled: false, present: true })).toBe('tcg');
    expect(acceleratorFromQueryKvm({ enabled: false, present: false })).toBe('tcg');
    for (const bad of [null, {}, { enabled: 'yes' }, 'kvm'])
      expect(() => acceleratorFromQueryKvm(bad)).toThrow(UnrecognizedOutputError);
  });

  it('info kvm', () => {
    expect(acceleratorFromInfoKvm('kvm support: enabled\r\n')).toBe('kvm');
    expect(acceleratorFromInfoKvm('kvm support: disabled\r\n')).toBe('tcg');
    expect(acceleratorFromInfoKvm('kvm support: not compiled\n')).toBe('tcg');
    expect(() => acceleratorFromInfoKvm("unknown command: 'info kvm'")).toThrow(UnrecognizedOutputError);
  });
});
