import { describe, expect, it } from 'vitest';
import { coerceHvParams, forceDictType, type HvParamType } from '../../src/hvparams/index.js';
import { problemsOf } from './helpers.js';

// Ganeti's TestForceDictType key types.
const KEY_TYPES: Record<string, HvParamType> = {
  a: 'int',
  b: 'bool',
  c: 'string',
  d: 'size',
  e: 'maybe-string',
};
const force = (target: unknown, allowedValues?: string[]) =>
  forceDictType(target, KEY_TYPES, allowedValues ? { allowedValues } : {});

describe('forceDictType (Ganeti TestForceDictType)', () => {
  it.each([
    [{ a: '1' }, { a: 1 }],
    [{ b: 1 }, { b: true }],
    [{ b: 'false' }, { b: false }],
    [{ b: 'False' }, { b: false }],
    [{ b: 'true' }, { b: true }],
    [{ b: 'True' }, { b: true }],
    [{ b: 'TRUE' }, { b: true }],
    [{ c: false }, { c: '' }],
    [{ d: '4' }, { d: 4 }],
    [{ d: '4M' }, { d: 4 }],
    [{ e: null }, { e: null }],
    [{ e: false }, { e: '' }],
    [{ e: 'x' }, { e: 'x' }],
    [
      { a: '1', b: 'true', c: 'x', d: '1G', e: null },
      { a: 1, b: true, c: 'x', d: 1024, e: null },
    ],
  ])('%j → %j', (input, expected) => {
    expect(force(input)).toStrictEqual(expected);
  });

  it('leaves allowed values alone', () => {
    expect(force({ b: 'hello' }, ['hello'])).toStrictEqual({ b: 'hello' });
    expect(force({ a: 'default' }, ['default'])).toStrictEqual({ a: 'default' });
  });

  it('returns a new object and leaves the input alone', () => {
    const input = { a: '1' };
    const output = force(input);
    expect(output).not.toBe(input);
    expect(input).toEqual({ a: '1' });
  });

  it.each([
    [{ a: 'astring' }, "'a' (value astring) is not a valid integer"],
    [{ b: 'hello' }, "'b' (value hello) is not a valid boolean"],
    [{ c: true }, "'c' (value true) is not a valid string"],
    [{ d: 'astring' }, "'d' (value astring) is not a valid size"],
    [{ d: '4 L' }, "'d' (value 4 L) is not a valid size"],
    [{ e: {} }, "'e' (value {}) is not a valid string"],
    [{ e: [] }, "'e' (value []) is not a valid string"],
    [{ unknown: 1 }, "Unknown parameter 'unknown'"],
  ])('%j is refused: %s', (input, message) => {
    const problems = problemsOf(() => force(input));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message.startsWith(message)).toBe(true);
    expect(problems[0]!.param).toBe(Object.keys(input)[0]);
  });

  it.each([
    [[], 'array'],
    [null, 'null'],
    ['a=1', 'string'],
    [42, 'number'],
    [new Map(), 'object of class Map'],
  ])('refuses a non-dictionary target %j', (target, what) => {
    expect(problemsOf(() => force(target))).toEqual([
      { param: '', message: `Expected dictionary, got ${what}` },
    ]);
  });

  it('reports every bad key at once', () => {
    const problems = problemsOf(() => force({ a: 'x', b: 'maybe', z: 1 }));
    expect(problems.map((p) => p.param)).toEqual(['a', 'b', 'z']);
  });

  describe('bool: only true/false strings; other values by Python truthiness', () => {
    it.each([
      ['', false],
      [0, false],
      [2, true],
      [null, false],
      [[], false],
      [[0], true],
      [{}, false],
      [{ x: 1 }, true],
      [true, true],
    ])('%j → %s', (value, expected) => {
      expect(force({ b: value })).toStrictEqual({ b: expected });
    });
    it.each(['yes', 'no', '1', '0', 'on', ' true'])('%j is refused', (value) => {
      expect(() => force({ b: value })).toThrow('is not a valid boolean');
    });
  });

  describe("int: Python's int()", () => {
    it.each([
      ['12', 12],
      [' 12 ', 12],
      ['+7', 7],
      ['-7', -7],
      ['1_000', 1000],
      [1.9, 1],
      [-1.9, -1],
      [true, 1],
      [false, 0],
      [0, 0],
    ])('%j → %d', (value, expected) => {
      expect(force({ a: value })).toStrictEqual({ a: expected });
    });
    it.each([
      '1.5',
      '0x10',
      '',
      ' ',
      '1e3',
      '1__0',
      '_1',
      'NaN',
      null,
      [],
      {},
      Number.NaN,
      Number.POSITIVE_INFINITY,
    ])('%j is refused', (value) => {
      expect(() => force({ a: value })).toThrow('is not a valid integer');
    });
  });

  describe('float', () => {
    const forceFloat = (value: unknown) => forceDictType({ f: value }, { f: 'float' });
    it.each([
      ['1.5', 1.5],
      [' -2 ', -2],
      ['.5', 0.5],
      ['1e3', 1000],
      [3, 3],
      [true, 1],
    ])('%j → %d', (value, expected) => {
      expect(forceFloat(value)).toStrictEqual({ f: expected });
    });
    it.each(['', 'abc', 'NaN', 'inf', '0x10', Number.NaN, null])('%j is refused', (value) => {
      expect(() => forceFloat(value)).toThrow('is not a valid float');
    });
  });

  it('size: numbers go through ParseUnit too, other types are refused', () => {
    expect(force({ d: 5 })).toStrictEqual({ d: 8 });
    expect(() => force({ d: true })).toThrow('is not a valid size');
  });
});

describe('coerceHvParams', () => {
  it('coerces -H strings to the KVM types', () => {
    expect(
      coerceHvParams({
        acpi: 'False',
        migration_port: '9000',
        migration_caps: 'xbzrle:auto-converge',
        root_path: null,
        kernel_path: false,
        vhost_net: true,
      }),
    ).toStrictEqual({
      acpi: false,
      migration_port: 9000,
      migration_caps: 'xbzrle:auto-converge',
      root_path: null,
      kernel_path: '',
      vhost_net: true,
    });
  });

  it('does not add defaults', () => {
    expect(coerceHvParams({})).toStrictEqual({});
  });

  it('passes allowedValues through', () => {
    expect(coerceHvParams({ migration_port: 'default' }, { allowedValues: ['default'] })).toStrictEqual({
      migration_port: 'default',
    });
  });

  it('reports unknown keys and bad values together', () => {
    expect(problemsOf(() => coerceHvParams({ foo: 1, serial_speed: 'fast', kernel_args: true }))).toEqual([
      { param: 'foo', message: "Unknown parameter 'foo'" },
      { param: 'serial_speed', message: "'serial_speed' (value fast) is not a valid integer" },
      { param: 'kernel_args', message: "'kernel_args' (value true) is not a valid string" },
    ]);
  });

  it('treats inherited names as unknown', () => {
    expect(problemsOf(() => coerceHvParams({ constructor: 'x' }))).toEqual([
      { param: 'constructor', message: "Unknown parameter 'constructor'" },
    ]);
  });

  it('refuses null for a plain string parameter and for an int', () => {
    expect(() => coerceHvParams({ kernel_args: null })).toThrow(
      "'kernel_args' (value null) is not a valid string",
    );
    expect(() => coerceHvParams({ migration_port: null })).toThrow(
      "'migration_port' (value null) is not a valid integer",
    );
  });
});
