/**
 * Ganeti's message formats for hvparam problems, and the value helpers they need.
 */
import type { HvParamProblem } from '../errors.js';

/**
 * A value as it appears inside an error message. Strings are shown as they are, except that
 * control characters are escaped so that a value such as `"xbzrle\nquit"` stays on one line.
 */
export function displayValue(value: unknown): string {
  if (typeof value === 'string') {
    return /[\u0000-\u001f\u007f]/.test(value) ? JSON.stringify(value).slice(1, -1) : value;
  }
  if (value === undefined || typeof value === 'number' || typeof value === 'boolean' || value === null) {
    return String(value);
  }
  if (typeof value === 'bigint') return `${value}n`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // Cyclic structures and the like: the type name still tells the reader what went wrong.
    return Object.prototype.toString.call(value);
  }
}

/** Ganeti's "unspecified" rule: only `null` (and `undefined`) and `""` count; `0` and `false` do not. */
export function isUnspecified(value: unknown): boolean {
  return value === null || value === undefined || value === '';
}

/** True for `{}`-like objects: not arrays, not class instances, not `null`. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Short description of a value's type, for "Expected dictionary, got …". */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'object') {
    const name = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)?.constructor
      ?.name;
    return name ? `object of class ${name}` : 'object';
  }
  return typeof value;
}

/** `Parameter '<k>' is not supported`. */
export function unsupportedProblem(param: string): HvParamProblem {
  return { param, message: `Parameter '${param}' is not supported` };
}

/** `Parameter '<k>' is missing`. */
export function missingProblem(param: string): HvParamProblem {
  return { param, message: `Parameter '${param}' is missing` };
}

/** `Parameter '<k>' is required but is currently not defined`. */
export function requiredProblem(param: string): HvParamProblem {
  return { param, message: `Parameter '${param}' is required but is currently not defined` };
}

/** `Parameter '<k>' fails syntax check: <detail> (current value: '<v>')`. */
export function syntaxProblem(param: string, detail: string, value: unknown): HvParamProblem {
  return {
    param,
    message: `Parameter '${param}' fails syntax check: ${detail} (current value: '${displayValue(value)}')`,
  };
}

/** `Parameter '<k>' fails validation: <detail> (current value: '<v>')`. */
export function validationProblem(param: string, detail: string, value: unknown): HvParamProblem {
  return {
    param,
    message: `Parameter '${param}' fails validation: ${detail} (current value: '${displayValue(value)}')`,
  };
}

/** Objects may carry keys such as `toString` through their prototype; only own keys count. */
export function hasOwn(object: object, key: string): boolean {
  return Object.hasOwn(object, key);
}
