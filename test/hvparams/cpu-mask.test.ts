import { describe, expect, it } from 'vitest';
import {
  CpuMaskError,
  HvParamError,
  HypervisorError,
  KVMHypervisor,
  MAX_CPU_MASK_TOTAL,
  MAX_CPU_NUMBER,
  parseCpuMask,
  parseMultiCpuMask,
} from '../../src/internal.js';
import { problemsOf } from './helpers.js';

describe('parseCpuMask', () => {
  it.each([
    ['', []],
    ['1', [1]],
    ['0-2,5', [0, 1, 2, 5]],
    ['5,0-2', [0, 1, 2, 5]],
    ['1,1,0-1', [0, 1]],
    ['3-3', [3]],
    [' 1 - 2 ', [1, 2]],
    ['+1', [1]],
  ])('%j → %j', (mask, cpus) => {
    expect(parseCpuMask(mask)).toEqual(cpus);
  });

  it.each([
    ['1-2-3', 'only one'],
    ['2-1', '2 > 1'],
    ['a', "Invalid CPU number 'a'"],
    ['1,', "Invalid CPU number ''"],
    ['-1', "Invalid CPU number ''"],
    ['all', "Invalid CPU number 'all'"],
    ['1.5', "Invalid CPU number '1.5'"],
    ['0-1000000', 'too large'],
  ])('%j is refused (%s)', (mask, message) => {
    expect(() => parseCpuMask(mask)).toThrow(CpuMaskError);
    expect(() => parseCpuMask(mask)).toThrow(message);
  });
});

describe('parseMultiCpuMask', () => {
  it.each([
    // Ganeti's TestParseMultiCpuMask: ParseMultiCpuMask("") == [] (no mask, not one empty mask).
    ['', []],
    ['all', ['all']],
    ['0-2,5', [[0, 1, 2, 5]]],
    ['1:3', [[1], [3]]],
    ['all:1,3-5:0', ['all', [1, 3, 4, 5], [0]]],
    ['all:all', ['all', 'all']],
  ])('%j → %j', (mask, expected) => {
    expect(parseMultiCpuMask(mask)).toEqual(expected);
  });

  it.each(['1::2', ':1', '1:', 'all:x', '1:all,2', 'ALL'])('%j is refused', (mask) => {
    expect(() => parseMultiCpuMask(mask)).toThrow(HypervisorError);
  });
});

describe('CPU mask bounds', () => {
  const fullWidth = (n: number) => Array.from({ length: n }, () => `0-${MAX_CPU_NUMBER}`).join(',');

  it('accepts the highest CPU number Linux has and refuses the next one', () => {
    expect(parseCpuMask(`${MAX_CPU_NUMBER}`)).toEqual([8191]);
    expect(parseCpuMask(`0-${MAX_CPU_NUMBER}`)).toHaveLength(8192);
    const error = (() => {
      try {
        parseCpuMask('1,8192');
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(CpuMaskError);
    expect((error as CpuMaskError).overLimit).toBe(true);
    expect((error as Error).message).toBe(
      "CPU number 8192 in CPU mask '1,8192' is too large: Linux numbers CPUs 0 to 8191",
    );
  });

  it('merges overlapping ranges instead of collecting every CPU of each', () => {
    expect(parseCpuMask('5-9,0-6,8,2-3')).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(parseCpuMask(fullWidth(20_000))).toHaveLength(8192);
  });

  it('refuses a multiple mask naming more than MAX_CPU_MASK_TOTAL CPUs, counting each vCPU', () => {
    const perVcpu = MAX_CPU_MASK_TOTAL / (MAX_CPU_NUMBER + 1);
    expect(
      parseMultiCpuMask(Array.from({ length: perVcpu }, () => `0-${MAX_CPU_NUMBER}`).join(':')),
    ).toHaveLength(perVcpu);
    const over = Array.from({ length: perVcpu + 1 }, () => `0-${MAX_CPU_NUMBER}`).join(':');
    expect(() => parseMultiCpuMask(over)).toThrow(/names more than 1048576 CPUs in total/);
    // `all` names no list: any number of vCPUs may use it.
    expect(parseMultiCpuMask(Array.from({ length: 100_000 }, () => 'all').join(':'))).toHaveLength(100_000);
  });

  it('quotes at most 200 characters of a long mask', () => {
    const long = `${'1,'.repeat(1000)}x`;
    expect(() => parseCpuMask(long)).toThrow(/… \(2001 characters\)'$/);
  });

  it.each([
    // Each as wide as the old per-range limit allowed: this used to throw a RangeError.
    [
      '257 ranges 65536 CPUs wide',
      Array.from({ length: 257 }, (_, i) => `${i * 65536}-${i * 65536 + 65535}`).join(','),
    ],
    ['a range past the last CPU', '0-1000000'],
    ['a huge CPU number', '9'.repeat(400)],
  ])('cpu_mask with %s is an HvParamError, not a RangeError', (_what, mask) => {
    const problems = problemsOf(() =>
      KVMHypervisor.checkParameterSyntax({ ...KVMHypervisor.fillDefaults({}), cpu_mask: mask }),
    );
    expect(problems.map((p) => p.param)).toEqual(['cpu_mask']);
    expect(problems[0]?.message).toMatch(
      /^Parameter 'cpu_mask' fails syntax check: Multiple CPU mask definition is not well-formed/,
    );
  });

  it('says which limit a well-formed mask passed', () => {
    const [problem] = problemsOf(() =>
      KVMHypervisor.checkParameterSyntax({ ...KVMHypervisor.fillDefaults({}), cpu_mask: '0-9000' }),
    );
    expect(problem?.message).toBe(
      "Parameter 'cpu_mask' fails syntax check: Multiple CPU mask definition is not well-formed: " +
        "CPU number 9000 in CPU mask '0-9000' is too large: Linux numbers CPUs 0 to 8191 (current value: '0-9000')",
    );
    expect(HvParamError).toBeDefined();
  });
});
