import { describe, expect, it } from 'vitest';
import { HvParamError } from '../../src/errors.js';
import { checkedHvParams } from '../../src/hvparams/checked.js';

describe('checkedHvParams: checked once per unchanged hvparams object', () => {
  it('returns the same values as a fresh check, as a copy callers may change', () => {
    const hv = { migration_bandwidth: '64', migration_caps: 'xbzrle' };
    const a = checkedHvParams(hv);
    expect(a.migration_bandwidth).toBe(64);
    a.migration_bandwidth = 1;
    const b = checkedHvParams(hv);
    expect(b.migration_bandwidth).toBe(64);
    expect(b).not.toBe(a);
  });

  it('checks again when a key is changed, added or removed', () => {
    const hv: Record<string, unknown> = { migration_bandwidth: 64 };
    expect(checkedHvParams(hv).migration_bandwidth).toBe(64);
    hv.migration_bandwidth = 128;
    expect(checkedHvParams(hv).migration_bandwidth).toBe(128);
    hv.migration_downtime = 'soon';
    expect(() => checkedHvParams(hv)).toThrow(HvParamError);
    delete hv.migration_downtime;
    expect(checkedHvParams(hv).migration_downtime).toBe(30);
    // NaN is not equal to anything under ===, but Object.is keeps it a hit; it still fails the check.
    hv.migration_port = Number.NaN;
    expect(() => checkedHvParams(hv)).toThrow(HvParamError);
    expect(() => checkedHvParams(hv)).toThrow(HvParamError);
  });

  it('never remembers a failed check', () => {
    const hv = { migration_port: -1 };
    expect(() => checkedHvParams(hv)).toThrow(/migration_port/);
    expect(() => checkedHvParams(hv)).toThrow(/migration_port/);
  });

  it('accepts no hvparams at all (every default)', () => {
    expect(checkedHvParams(undefined).migration_bandwidth).toBe(32);
  });
});
