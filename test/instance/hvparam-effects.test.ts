import { describe, expect, it } from 'vitest';
import { HV_PARAMETER_NAMES, type HvParameterName } from '../../src/hvparams/registry.js';
import { HV_PARAM_EFFECTS } from '../../src/instance/hvparam-effects.js';
import { exampleArgv, HV_PARAM_EXAMPLES } from './hvparam-examples.js';

describe('hvparam effects', () => {
  it('every hvparam is in the effect table', () => {
    expect(Object.keys(HV_PARAM_EFFECTS).sort()).toEqual([...HV_PARAMETER_NAMES].sort());
  });

  const withArgv = HV_PARAMETER_NAMES.filter((n) => HV_PARAM_EFFECTS[n].kind === 'argv');

  it('every hvparam with an argv effect has an example, and node-only ones none', () => {
    expect(withArgv.filter((n) => !HV_PARAM_EXAMPLES[n])).toEqual([]);
    const nodeOnly = HV_PARAMETER_NAMES.filter((n) => HV_PARAM_EFFECTS[n].kind === 'node-only');
    expect(nodeOnly.filter((n) => HV_PARAM_EXAMPLES[n])).toEqual([]);
  });

  it.each(withArgv.map((n) => [n] as [HvParameterName]))('%s changes the argv as documented', (name) => {
    const example = HV_PARAM_EXAMPLES[name]!;
    const before = exampleArgv(name, example, false).join(' ');
    const after = exampleArgv(name, example, true).join(' ');
    expect(after).not.toBe(before);
    for (const fragment of example.expect) {
      expect(after).toContain(fragment);
      // The fragment is the parameter's doing, not the base's.
      expect(before).not.toContain(fragment);
    }
  });

  it('node-only hvparams leave the argv alone', () => {
    const values: Record<string, unknown> = {
      migration_port: 9000,
      migration_bandwidth: 100,
      migration_downtime: 500,
      migration_mode: 'non-live',
      user_shutdown: true,
      cpu_mask: '0-1',
      migration_caps: 'xbzrle',
    };
    const base = exampleArgv('base', { set: {}, expect: [] }, true);
    for (const name of HV_PARAMETER_NAMES.filter((n) => HV_PARAM_EFFECTS[n].kind === 'node-only')) {
      expect(values, name).toHaveProperty(name);
      const argv = exampleArgv(name, { set: { [name]: values[name] }, expect: [] }, true);
      expect(argv, name).toEqual(base);
    }
  });
});
