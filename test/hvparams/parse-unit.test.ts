import { describe, expect, it } from 'vitest';
import { HypervisorError, parseUnit, UnitParseError } from '../../src/internal.js';

describe('parseUnit (Ganeti TestParseUnit)', () => {
  it.each([
    ['0', 0],
    ['1', 4],
    ['2', 4],
    ['3', 4],
    ['4', 4],
    ['125', 128],
    ['4.01', 8],
    ['1.5G', 1536],
    ['1.8G', 1844],
    ['8.28T', 8682212],
    ['1024 GiB', 1048576],
    [4, 4],
    [5, 8],
    [0.1, 4],
    // The regex lets whitespace end the input, as in Ganeti.
    ['4 ', 4],
    ['4\n', 4],
  ])('%j → %d MiB', (input, expected) => {
    expect(parseUnit(input)).toBe(expected);
  });

  const units: [string, number][] = [
    ['m', 1],
    ['mb', 1],
    ['mib', 1],
    ['g', 1024],
    ['gb', 1024],
    ['gib', 1024],
    ['t', 1024 * 1024],
    ['tb', 1024 * 1024],
    ['tib', 1024 * 1024],
  ];
  for (const separator of ['', ' ', '\t']) {
    for (const [unit, factor] of units) {
      for (const cased of [unit, unit.toUpperCase()]) {
        it(`"32${JSON.stringify(separator).slice(1, -1)}${cased}" → ${32 * factor}`, () => {
          expect(parseUnit(`32${separator}${cased}`)).toBe(32 * factor);
        });
      }
    }
  }

  it.each(['4 L', '1-M', '1_M', '1,M', '1aM', '1,3M', '', ' 4', '-1', '.', '1.2.3', 'M', '1e3', '4M '])(
    '%j is refused with a message naming it',
    (input) => {
      let caught: unknown;
      try {
        parseUnit(input);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(UnitParseError);
      expect(caught).toBeInstanceOf(HypervisorError);
      expect((caught as Error).message).toContain(`'${JSON.stringify(input).slice(1, -1)}'`);
      expect((caught as UnitParseError).input).toBe(input);
    },
  );

  it('names an unknown unit', () => {
    expect(() => parseUnit('4 L')).toThrow("Unknown unit 'L' in size '4 L'");
    expect(() => parseUnit('1aM')).toThrow("Unknown unit 'aM'");
  });

  it('refuses numbers that do not print as plain decimals', () => {
    expect(() => parseUnit(-4)).toThrow(UnitParseError);
    expect(() => parseUnit(1e21)).toThrow(UnitParseError);
    expect(() => parseUnit(Number.NaN)).toThrow(UnitParseError);
  });

  it.each(['0constructor', '4Constructor', '1.5CONSTRUCTOR', '2toString'])(
    '%j names an unknown unit (Object.prototype is no unit table)',
    (input) => {
      const unit = input.replace(/^[\d.]+/, '');
      expect(() => parseUnit(input)).toThrow(new RegExp(`^Unknown unit '${unit}' in size '${input}'`));
    },
  );

  it('refuses absurdly large sizes', () => {
    expect(() => parseUnit(`${'9'.repeat(30)}T`)).toThrow('too large');
  });
});
