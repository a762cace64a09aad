import { describe, expect, it } from 'vitest';
import { compareVersions, formatVersion, parseVersion, versionAtLeast } from '../../src/qemu/version.js';

describe('QEMU versions', () => {
  it.each([
    ['QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)', '7.2.22'],
    ['7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3', '7.2.22'],
    ['QEMU emulator version 1.0 (qemu-kvm-1.0 Debian)', '1.0.0'],
    ['QEMU PC emulator version 0.12.5 (qemu-kvm-0.12.5)', '0.12.5'],
    ['1.7.0', '1.7.0'],
  ])('parses %j', (text, expected) => {
    expect(formatVersion(parseVersion(text)!)).toBe(expected);
  });

  it('returns undefined without a version', () => {
    expect(parseVersion('no version here')).toBeUndefined();
  });

  it('compares', () => {
    const v = (s: string) => parseVersion(s)!;
    expect(compareVersions(v('2.8.0'), v('2.10.0'))).toBeLessThan(0);
    expect(compareVersions(v('10.1.0'), v('9.2.3'))).toBeGreaterThan(0);
    expect(versionAtLeast(v('2.8.0'), 2, 8)).toBe(true);
    expect(versionAtLeast(v('2.7.99'), 2, 8)).toBe(false);
  });
});
