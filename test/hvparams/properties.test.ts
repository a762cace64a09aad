import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  coerceHvParams,
  HV_PARAMETER_NAMES,
  HvParamError,
  HypervisorError,
  KVMHypervisor,
  parseHvParams,
  parseMigrationCaps,
  parseUnit,
} from '../../src/internal.js';

/** Runs `fn`; passes when it returns or throws a HypervisorError, fails on anything else. */
function onlyHypervisorErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof HypervisorError)) throw error;
  }
}

const key = fc.oneof(
  fc.constantFrom(...HV_PARAMETER_NAMES),
  fc.string(),
  fc.constantFrom('__proto__', 'toString'),
);
const value = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(
    '',
    'true',
    'False',
    ' 12 ',
    '0x10',
    '1.5',
    'all',
    'xbzrle:x-multifd',
    'xbzrle\nquit',
    '/a/../b',
  ),
  fc.integer(),
  fc.double(),
);
const record = fc.dictionary(key, value, { maxKeys: 20 });
const nonObject = fc.oneof(
  fc.jsonValue().filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)),
  fc.constant(undefined),
  fc.constant(new Map()),
  fc.constant(() => 1),
);

describe('properties', () => {
  it('coerceHvParams only ever throws HypervisorError, and its output has only known keys', () => {
    fc.assert(
      fc.property(record, (input) => {
        try {
          const out = coerceHvParams(input);
          for (const k of Object.keys(out)) expect(HV_PARAMETER_NAMES).toContain(k);
        } catch (error) {
          if (!(error instanceof HvParamError)) throw error;
          expect(error.problems.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('coerceHvParams refuses every non-object with HvParamError', () => {
    fc.assert(
      fc.property(nonObject, (input) => {
        expect(() => coerceHvParams(input as unknown as Record<string, unknown>)).toThrow(HvParamError);
      }),
    );
  });

  it('checkParameterSyntax(fillDefaults(arbitrary)) only ever throws HypervisorError', () => {
    fc.assert(
      fc.property(record, (input) => {
        onlyHypervisorErrors(() => KVMHypervisor.checkParameterSyntax(KVMHypervisor.fillDefaults(input)));
      }),
      { numRuns: 500 },
    );
  });

  it('checkParameterSyntax on non-objects only throws HypervisorError', () => {
    fc.assert(
      fc.property(nonObject, (input) => {
        expect(() => KVMHypervisor.checkParameterSyntax(input as unknown as Record<string, unknown>)).toThrow(
          HvParamError,
        );
      }),
    );
  });

  it('coerce then fill then check only ever throws HypervisorError; assess never throws', () => {
    fc.assert(
      fc.property(record, (input) => {
        onlyHypervisorErrors(() => {
          const filled = KVMHypervisor.fillDefaults(coerceHvParams(input));
          KVMHypervisor.assessParameters(filled);
          KVMHypervisor.checkParameterSyntax(filled);
        });
        expect(Array.isArray(KVMHypervisor.assessParameters(KVMHypervisor.fillDefaults(input)))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('every problem names a parameter the input has, or a registry key, or ""', () => {
    fc.assert(
      fc.property(record, (input) => {
        try {
          KVMHypervisor.checkParameterSyntax(KVMHypervisor.fillDefaults(input));
        } catch (error) {
          if (!(error instanceof HvParamError)) throw error;
          for (const p of error.problems) {
            expect(
              p.param === '' ||
                Object.hasOwn(input, p.param) ||
                HV_PARAMETER_NAMES.includes(p.param as never),
            ).toBe(true);
            expect(p.message.length).toBeGreaterThan(0);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('validateParameters(fillDefaults(arbitrary)) only ever rejects with HvParamError', async () => {
    await fc.assert(
      fc.asyncProperty(record, async (input) => {
        try {
          await KVMHypervisor.validateParameters(KVMHypervisor.fillDefaults(input), { interfaces: ['lo'] });
        } catch (error) {
          if (!(error instanceof HvParamError)) throw error;
        }
      }),
      { numRuns: 100 },
    );
  });

  it('parseUnit, parseHvParams and parseMigrationCaps only ever throw HypervisorError', () => {
    fc.assert(
      fc.property(fc.string(), fc.double(), (text, number) => {
        onlyHypervisorErrors(() => parseUnit(text));
        onlyHypervisorErrors(() => parseUnit(number));
        onlyHypervisorErrors(() => parseHvParams(text));
        onlyHypervisorErrors(() => parseMigrationCaps(text));
      }),
      { numRuns: 500 },
    );
  });

  it('parseUnit results are non-negative multiples of 4', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.constantFrom('', 'M', 'g', ' GiB', 't'), (n, unit) => {
        const mib = parseUnit(`${n}${unit}`);
        expect(mib % 4).toBe(0);
        expect(mib).toBeGreaterThanOrEqual(n);
      }),
    );
  });

  it('a valid migration_caps list round-trips through parseMigrationCaps', () => {
    const safe = [
      'xbzrle',
      'auto-converge',
      'events',
      'return-path',
      'release-ram',
      'validate-uuid',
      'late-block-activate',
    ];
    fc.assert(
      fc.property(fc.uniqueArray(fc.constantFrom(...safe)), (names) => {
        expect(parseMigrationCaps(names.join(':'))).toEqual(names);
      }),
    );
  });
});
