/**
 * Sizes with units (Ganeti's `ParseUnit`): `"1.5G"` → 1536 MiB, always rounded up to a
 * multiple of 4 MiB.
 */
import { HypervisorError } from '../errors.js';
import { displayValue } from './messages.js';

/** A size that cannot be parsed; the message names the input. */
export class UnitParseError extends HypervisorError {
  override name = 'UnitParseError';
  /** The rejected input. */
  readonly input: unknown;
  constructor(message: string, input: unknown) {
    super(message);
    this.input = input;
  }
}

const SIZE = /^([.\d]+)\s*([a-zA-Z]+)?$/;
const DECIMAL = /^(?:\d+\.?\d*|\.\d+)$/;
// A Map, not an object literal: `0constructor` must be an unknown unit, not Object's.
const MULTIPLIERS: ReadonlyMap<string, number> = new Map([
  ['m', 1],
  ['mb', 1],
  ['mib', 1],
  ['g', 1024],
  ['gb', 1024],
  ['gib', 1024],
  ['t', 1024 * 1024],
  ['tb', 1024 * 1024],
  ['tib', 1024 * 1024],
]);

/**
 * Parses a size into MiB. Accepts a number, or a string such as `"4"`, `"1.5G"`, `"1024 GiB"`
 * (units m/mb/mib, g/gb/gib, t/tb/tib in any case; no unit means MiB). The result is rounded up
 * to an integer, then up to a multiple of 4. Throws {@link UnitParseError}.
 */
export function parseUnit(input: string | number): number {
  // Ganeti formats the input with str() first, so a number goes through the same regex.
  const text = typeof input === 'number' || typeof input === 'string' ? String(input) : undefined;
  const match = text === undefined ? null : SIZE.exec(text);
  if (!match || !DECIMAL.test(match[1]!)) {
    throw new UnitParseError(
      `Invalid size '${displayValue(input)}': expected a number with an optional unit such as 512M, 1.5G or 2T`,
      input,
    );
  }
  const unit = match[2];
  const multiplier = MULTIPLIERS.get((unit ?? 'm').toLowerCase());
  if (multiplier === undefined) {
    throw new UnitParseError(
      `Unknown unit '${unit}' in size '${displayValue(input)}' (use M, G or T)`,
      input,
    );
  }
  const mebibytes = Math.ceil(Number(match[1]) * multiplier);
  if (!Number.isSafeInteger(mebibytes)) {
    throw new UnitParseError(`Size '${displayValue(input)}' is too large`, input);
  }
  return mebibytes % 4 === 0 ? mebibytes : mebibytes + 4 - (mebibytes % 4);
}
