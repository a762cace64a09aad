import { describe, expect, it } from 'vitest';
import { CpuMaskError, HypervisorError, parseCpuMask, parseMultiCpuMask } from '../../src/index.js';

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
