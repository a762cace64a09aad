/**
 * Turning the `-H kvm:key=value,…` options of the command line into hvparams.
 */
import { HypervisorError } from '../errors.js';
import { coerceHvParams, parseHvParams } from '../hvparams/index.js';
import { UsageError } from './errors.js';

/**
 * Parses every `-H` value (`kvm:k=v,…`; several are merged, a later one wins per key)
 * into raw values. Throws {@link UsageError} for a malformed value or another hypervisor.
 */
export function rawHvParams(specs: readonly string[]): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const spec of specs) {
    let parsed: ReturnType<typeof parseHvParams>;
    try {
      parsed = parseHvParams(spec);
    } catch (e) {
      if (e instanceof HypervisorError) throw new UsageError(e.message);
      throw e;
    }
    if (parsed.hypervisor !== 'kvm') {
      throw new UsageError(`-H ${spec}: only the 'kvm' hypervisor is supported, got '${parsed.hypervisor}'`);
    }
    Object.assign(merged, parsed.params);
  }
  return merged;
}

/**
 * The instance-level hvparams the `-H` options give, coerced to their types (strings
 * become numbers and booleans). Throws `HvParamError` listing every bad key and value.
 */
export function coercedHvParams(specs: readonly string[]): Record<string, unknown> {
  return coerceHvParams(rawHvParams(specs));
}
