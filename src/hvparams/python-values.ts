/**
 * The few Python conversions Ganeti's coercion relies on (`int()`, `float()`, `bool()`),
 * reproduced for JavaScript values.
 */

// Python's int() on a string: optional whitespace around, one sign, decimal digits with
// single underscores between them. No "1.5", no "0x10", no "".
const PYTHON_INT = /^\s*[+-]?\d+(?:_\d+)*\s*$/;
// Python's float() on a decimal string (Infinity and NaN are left out on purpose).
const PYTHON_FLOAT =
  /^\s*[+-]?(?:\d+(?:_\d+)*(?:\.(?:\d+(?:_\d+)*)?)?|\.\d+(?:_\d+)*)(?:[eE][+-]?\d+(?:_\d+)*)?\s*$/;

/** Python's `int(value)` for strings, numbers and booleans; `undefined` where Python raises. */
export function pythonInt(value: unknown): number | undefined {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number') return Number.isFinite(value) ? Math.trunc(value) || 0 : undefined;
  if (typeof value === 'string' && PYTHON_INT.test(value)) {
    const parsed = Number(value.trim().replaceAll('_', ''));
    return Number.isFinite(parsed) ? parsed : undefined;
  }
  return undefined;
}

/** Python's `float(value)`, restricted to finite results; `undefined` otherwise. */
export function pythonFloat(value: unknown): number | undefined {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && PYTHON_FLOAT.test(value)) {
    const parsed = Number(value.trim().replaceAll('_', ''));
    return Number.isFinite(parsed) ? parsed : undefined;
  }
  return undefined;
}

/** Python's `bool(value)`: empty strings, arrays and objects, 0, NaN and null are false. */
export function pythonTruthy(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (value instanceof Map || value instanceof Set) return value.size > 0;
  if (typeof value === 'object' && value !== null) {
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) return Object.keys(value).length > 0;
    return true;
  }
  return Boolean(value);
}
