import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  canonicalCapabilityName,
  capabilitiesForVersion,
  checkCapabilityCombination,
  KNOWN_CAPABILITY_NAMES,
} from '../../src/qemu/capabilities.js';
import { parseVersion } from '../../src/qemu/version.js';

const v = (s: string) => parseVersion(s)!;
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-caps-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('capability catalogue', () => {
  it('follows renames and removals across versions', () => {
    expect(capabilitiesForVersion(v('1.7.0'))).toEqual([
      'xbzrle',
      'x-rdma-pin-all',
      'auto-converge',
      'zero-blocks',
    ]);
    expect(capabilitiesForVersion(v('2.5.0'))).toContain('x-postcopy-ram');
    expect(capabilitiesForVersion(v('2.6.0'))).toContain('postcopy-ram');
    expect(capabilitiesForVersion(v('3.1.0'))).toContain('x-multifd');
    expect(capabilitiesForVersion(v('9.1.0'))).not.toContain('compress');
    expect(capabilitiesForVersion(v('9.1.0'))).not.toContain('block');
    expect(capabilitiesForVersion(v('11.0.0'))).not.toContain('zero-blocks');
    expect(capabilitiesForVersion(v('9.0.0'))).toContain('mapped-ram');
  });

  it('knows old and new spellings', () => {
    for (const n of ['x-rdma-pin-all', 'x-postcopy-ram', 'x-multifd', 'switchover-ack', 'x-colo']) {
      expect(KNOWN_CAPABILITY_NAMES).toContain(n);
    }
    expect(canonicalCapabilityName('x-multifd')).toBe('multifd');
    expect(canonicalCapabilityName('x-colo')).toBe('x-colo');
  });

  it('applies version-free rules without a version and ranged rules with one', () => {
    expect(checkCapabilityCombination(['postcopy-preempt']).map((x) => x.message)).toEqual([
      "capability 'postcopy-preempt' requires 'postcopy-ram' (QEMU: Postcopy preempt requires postcopy-ram)",
    ]);
    expect(checkCapabilityCombination(['x-postcopy-ram', 'postcopy-preempt'])).toEqual([]);
    expect(checkCapabilityCombination(['multifd', 'xbzrle'])).toEqual([]);
    expect(checkCapabilityCombination(['multifd', 'xbzrle'], v('8.1.0'))).toHaveLength(1);
    expect(checkCapabilityCombination(['postcopy-ram', 'multifd'], v('8.2.0'))).toHaveLength(1);
    expect(checkCapabilityCombination(['postcopy-ram', 'multifd'], v('10.1.0'))).toEqual([]);
  });
});
