/**
 * Fuzzing of what a user types: `-H` values, CPU masks and sizes. Whatever the input, the
 * only error is the documented one (HvParamError, CpuMaskError, UnitParseError), never a
 * TypeError or RangeError, and results stay within their bounds.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CpuMaskError,
  coerceHvParams,
  HV_PARAMETER_NAMES,
  HvParamError,
  KVMHypervisor,
  MAX_CPU_MASK_TOTAL,
  MAX_CPU_NUMBER,
  parseHvParams,
  parseMultiCpuMask,
  parseUnit,
  UnitParseError,
} from '../../src/internal.js';

/** Runs `fn`; any error must be an instance of `type`. */
function onlyThrows(type: new (...args: never[]) => Error, fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof type)) throw error;
  }
}

const OBJECT_KEYS = Object.getOwnPropertyNames(Object.prototype);

const cpuNumber = fc.oneof(
  fc.nat({ max: MAX_CPU_NUMBER + 10 }),
  fc.nat(),
  fc.constantFrom('9'.repeat(40), ' 3 ', '+1', '1_0', '', 'x', '1.5', '0x1'),
);
const cpuRange = fc.oneof(
  cpuNumber.map(String),
  fc.tuple(cpuNumber, cpuNumber).map(([a, b]) => `${a}-${b}`),
  fc.constantFrom(`0-${MAX_CPU_NUMBER}`, '1-2-3', '-', 'all'),
);
const singleMask = fc.array(cpuRange, { maxLength: 300 }).map((r) => r.join(','));
const cpuMask = fc.oneof(
  singleMask,
  fc.array(fc.oneof(singleMask, fc.constant('all')), { maxLength: 200 }).map((m) => m.join(':')),
  fc.string(),
);

const sizeText = fc.oneof(
  fc
    .tuple(
      fc.oneof(fc.nat().map(String), fc.constantFrom('1.5', '.5', '0', '9'.repeat(30), '1.2.3', '')),
      fc.constantFrom('', ' ', '\t'),
      fc.oneof(fc.constantFrom('M', 'gib', 'T', 'tb', ...OBJECT_KEYS), fc.string({ maxLength: 12 })),
    )
    .map(([n, sep, unit]) => `${n}${sep}${unit}`),
  fc.string(),
);

const hvKey = fc.oneof(
  fc.constantFrom(...HV_PARAMETER_NAMES),
  fc.constantFrom(...OBJECT_KEYS, '__proto__'),
  fc.string({ maxLength: 20 }),
);
const hvValue = fc.oneof(
  cpuMask,
  sizeText,
  fc.constantFrom(
    'true',
    'False',
    '',
    '0',
    '-1',
    '65535',
    'xbzrle:auto-converge',
    'x\\,y',
    'a\\\\',
    '/a/../b',
  ),
  fc.string({ maxLength: 40 }),
);
const hvItem = fc.oneof(
  fc.tuple(hvKey, hvValue).map(([k, v]) => `${k}=${v.replaceAll(',', '\\,')}`),
  hvKey,
  hvKey.map((k) => `no_${k}`),
  hvKey.map((k) => `-${k}`),
);
const hvSpec = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('kvm', 'kvm', 'kvm', '', 'no_kvm', '-kvm', 'xen'),
      fc.array(hvItem, { maxLength: 12 }),
    )
    .map(([hv, items]) => (items.length === 0 ? hv : `${hv}:${items.join(',')}`)),
  fc.string(),
);

describe('fuzzing -H and the hvparams checks', () => {
  it('parseHvParams → coerceHvParams → fillDefaults → checkParameterSyntax only throws HvParamError', () => {
    fc.assert(
      fc.property(hvSpec, (spec) => {
        onlyThrows(HvParamError, () => {
          const { params } = parseHvParams(spec);
          const filled = KVMHypervisor.fillDefaults(coerceHvParams(params));
          expect(Array.isArray(KVMHypervisor.assessParameters(filled))).toBe(true);
          KVMHypervisor.checkParameterSyntax(filled);
        });
      }),
      { numRuns: 1000 },
    );
  });

  it('every -H problem names a parameter (or "") and has a message', () => {
    fc.assert(
      fc.property(hvSpec, (spec) => {
        try {
          const { params } = parseHvParams(spec);
          KVMHypervisor.checkParameterSyntax(KVMHypervisor.fillDefaults(coerceHvParams(params)));
        } catch (error) {
          if (!(error instanceof HvParamError)) throw error;
          expect(error.problems.length).toBeGreaterThan(0);
          for (const p of error.problems) {
            expect(typeof p.param).toBe('string');
            expect(p.message.length).toBeGreaterThan(0);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('cpu_mask: parseMultiCpuMask throws only CpuMaskError and stays within its bounds', () => {
    fc.assert(
      fc.property(cpuMask, (mask) => {
        onlyThrows(CpuMaskError, () => {
          const entries = parseMultiCpuMask(mask);
          let total = 0;
          for (const entry of entries) {
            if (entry === 'all') continue;
            total += entry.length;
            expect(entry.length).toBeLessThanOrEqual(MAX_CPU_NUMBER + 1);
            for (let i = 1; i < entry.length; i++) expect(entry[i]!).toBeGreaterThan(entry[i - 1]!);
            if (entry.length > 0) expect(entry[entry.length - 1]).toBeLessThanOrEqual(MAX_CPU_NUMBER);
          }
          expect(total).toBeLessThanOrEqual(MAX_CPU_MASK_TOTAL);
        });
      }),
      { numRuns: 500 },
    );
  });

  it('cpu_mask: checkParameterSyntax only throws HvParamError naming cpu_mask', () => {
    fc.assert(
      fc.property(cpuMask, (mask) => {
        try {
          KVMHypervisor.checkParameterSyntax({ ...KVMHypervisor.fillDefaults({}), cpu_mask: mask });
        } catch (error) {
          if (!(error instanceof HvParamError)) throw error;
          expect(error.problems.map((p) => p.param)).toEqual(['cpu_mask']);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('parseUnit throws only UnitParseError; a unit named after an Object property is unknown', () => {
    fc.assert(
      fc.property(sizeText, (text) => {
        onlyThrows(UnitParseError, () => {
          const mib = parseUnit(text);
          expect(Number.isSafeInteger(mib) && mib >= 0 && mib % 4 === 0).toBe(true);
        });
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(
        fc.nat(),
        fc.constantFrom(...OBJECT_KEYS.filter((k) => /^[a-zA-Z]+$/.test(k))),
        (n, unit) => {
          expect(() => parseUnit(`${n}${unit}`)).toThrow(`Unknown unit '${unit}'`);
        },
      ),
    );
  });
});
