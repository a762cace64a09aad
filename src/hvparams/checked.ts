/**
 * An instance's hvparams coerced, filled and checked, remembered per hvparams object.
 * A cluster manager passes the same object to every step of a migration; the check (65
 * keys and their rules, about 0.1 ms cold) then runs once, not on each step's hot path.
 */
import { checkHvParamsSyntax, fillHvParamDefaults } from './check.js';
import { coerceHvParams } from './coerce.js';
import type { KvmHvParams } from './registry.js';

interface Checked {
  /** The object's own entries when it was checked: any change is a new check. */
  entries: [string, unknown][];
  params: KvmHvParams;
}

const checkedByObject = new WeakMap<object, Checked>();

function unchanged(now: [string, unknown][], then: [string, unknown][]): boolean {
  if (now.length !== then.length) return false;
  for (let i = 0; i < now.length; i++) {
    const [k, v] = now[i]!;
    const [k0, v0] = then[i]!;
    if (k !== k0 || !Object.is(v, v0)) return false;
  }
  return true;
}

/**
 * Coerces, fills and checks `hvparams` (throws `HvParamError` with every problem) and
 * returns a fresh copy of the result. Reuses the last result for the same object when its
 * own entries (keys, order, values by identity) are unchanged; a value that is itself an
 * object is compared by identity, and hvparams values are strings, numbers, booleans or null.
 */
export function checkedHvParams(hvparams: Readonly<Record<string, unknown>> | undefined): KvmHvParams {
  const source = hvparams ?? {};
  const entries = Object.entries(source);
  const hit = checkedByObject.get(source);
  if (hit && unchanged(entries, hit.entries)) return { ...hit.params };
  const filled = fillHvParamDefaults(coerceHvParams({ ...source }));
  checkHvParamsSyntax(filled);
  if (hvparams) checkedByObject.set(hvparams, { entries, params: { ...filled } });
  return filled;
}
