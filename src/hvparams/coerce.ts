/**
 * Coercion of raw values to their hvparam types (Ganeti's `ForceDictType`): what `-H` and
 * config files deliver as strings becomes booleans and numbers.
 */
import { HvParamError, type HvParamProblem } from '../errors.js';
import { describeType, displayValue, hasOwn, isPlainObject } from './messages.js';
import { parseUnit, UnitParseError } from './parse-unit.js';
import { pythonFloat, pythonInt, pythonTruthy } from './python-values.js';
import { HV_PARAMETER_NAMES, HV_PARAMETERS, type HvParameterName, type KvmHvParams } from './registry.js';
import type { HvParamType } from './types.js';

/** Options of {@link forceDictType} and {@link coerceHvParams}. */
export interface CoerceOptions {
  /**
   * Values left as they are whatever the key's type (Ganeti passes `["default"]` when an
   * instance parameter is reset to the cluster value).
   */
  allowedValues?: readonly string[];
}

type Coerced = { value: unknown } | { error: string };

function notValid(key: string, value: unknown, what: string): Coerced {
  return { error: `'${key}' (value ${displayValue(value)}) is not a valid ${what}` };
}

function coerceValue(key: string, type: HvParamType, value: unknown): Coerced {
  switch (type) {
    case 'maybe-string':
      if (value === null) return { value };
      return coerceValue(key, 'string', value);
    case 'string':
      if (typeof value === 'string') return { value };
      // Python's ForceDictType turns False into "" (unset); True stays an error.
      if (value === false) return { value: '' };
      return notValid(key, value, 'string');
    case 'bool':
      if (typeof value === 'string' && value !== '') {
        const lower = value.toLowerCase();
        if (lower === 'true') return { value: true };
        if (lower === 'false') return { value: false };
        return notValid(key, value, 'boolean');
      }
      return { value: pythonTruthy(value) };
    case 'int': {
      const n = pythonInt(value);
      return n === undefined ? notValid(key, value, 'integer') : { value: n };
    }
    case 'float': {
      const n = pythonFloat(value);
      return n === undefined ? notValid(key, value, 'float') : { value: n };
    }
    case 'size':
      if (typeof value !== 'string' && typeof value !== 'number') return notValid(key, value, 'size');
      try {
        return { value: parseUnit(value) };
      } catch (error) {
        if (error instanceof UnitParseError)
          return { error: `'${key}' (value ${displayValue(value)}) is not a valid size: ${error.message}` };
        throw error;
      }
  }
}

/**
 * Ganeti's `ForceDictType` for any key → type table: returns a new object with every value
 * coerced, or throws {@link HvParamError} listing every key that could not be.
 *
 * - `string`: strings kept, `false` → `""`; `maybe-string` also keeps `null`.
 * - `bool`: a non-empty string must be `true`/`false` (any case); anything else → Python truthiness.
 * - `int`: Python `int()`: numbers truncated, booleans → 0/1, strings of decimal digits with optional sign and whitespace.
 * - `size`: {@link parseUnit} (MiB). `float`: finite decimal numbers.
 */
export function forceDictType(
  target: unknown,
  keyTypes: Readonly<Record<string, HvParamType>>,
  options: CoerceOptions = {},
): Record<string, unknown> {
  if (!isPlainObject(target)) {
    throw new HvParamError([{ param: '', message: `Expected dictionary, got ${describeType(target)}` }]);
  }
  const allowed = options.allowedValues ?? [];
  const result: Record<string, unknown> = {};
  const problems: HvParamProblem[] = [];
  for (const [key, value] of Object.entries(target)) {
    const type = hasOwn(keyTypes, key) ? keyTypes[key] : undefined;
    if (type === undefined) {
      problems.push({ param: key, message: `Unknown parameter '${key}'` });
      continue;
    }
    let coerced: Coerced;
    if (typeof value === 'string' && allowed.includes(value)) coerced = { value };
    else coerced = coerceValue(key, type, value);
    if ('error' in coerced) problems.push({ param: key, message: coerced.error });
    else
      Object.defineProperty(result, key, {
        value: coerced.value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  if (problems.length > 0) throw new HvParamError(problems);
  return result;
}

/** Each KVM hvparam's value type. */
const HV_PARAMETER_TYPES: Readonly<Record<HvParameterName, HvParamType>> = Object.fromEntries(
  HV_PARAMETER_NAMES.map((name) => [name, HV_PARAMETERS[name].type]),
) as Record<HvParameterName, HvParamType>;

/**
 * Coerces raw KVM hvparams (strings from `-H`, JSON values from a config) to their types,
 * with {@link forceDictType}'s rules. Returns a new object with only the given keys; throws
 * {@link HvParamError} listing every unknown key and every value that cannot be coerced.
 */
export function coerceHvParams(
  input: Record<string, unknown>,
  options: CoerceOptions = {},
): Partial<KvmHvParams> {
  return forceDictType(input, HV_PARAMETER_TYPES, options) as Partial<KvmHvParams>;
}
