/**
 * CPU masks for `cpu_mask` (Ganeti's `ParseCpuMask` / `ParseMultiCpuMask`).
 *
 * A single mask is a comma-separated list of CPU numbers and ranges (`0-2,5`). A multiple mask
 * gives one mask per vCPU, separated by `:`, where each may also be `all` (`all:1,3-5:0`).
 */
import { HypervisorError } from '../errors.js';
import { pythonInt } from './python-values.js';
import { CPU_PINNING_ALL, CPU_PINNING_SEP } from './value-sets.js';

/** A CPU mask that cannot be parsed; the message names the mask and the faulty part. */
export class CpuMaskError extends HypervisorError {
  override name = 'CpuMaskError';
  /** True when the mask is well-formed but names more than Linux or this library accepts. */
  readonly overLimit: boolean;
  constructor(message: string, overLimit = false) {
    super(message);
    this.overLimit = overLimit;
  }
}

/**
 * Highest CPU number a mask may name: Linux's `NR_CPUS` is at most 8192 (x86-64 with
 * `MAXSMP`, powerpc), so `sched_setaffinity` cannot pin to a higher one.
 */
export const MAX_CPU_NUMBER = 8191;

/**
 * Most CPU numbers a multiple mask may name in total, summed over its per-vCPU masks
 * (`all` counts as none): 128 vCPUs each pinned to 8192 CPUs. Bounds the parsed size.
 */
export const MAX_CPU_MASK_TOTAL = 128 * (MAX_CPU_NUMBER + 1);

/** A mask as quoted in messages: long ones are cut, so an absurd input gives a short error. */
function shown(mask: string): string {
  return mask.length > 200 ? `${mask.slice(0, 200)}… (${mask.length} characters)` : mask;
}

// Python's int(): a '-' never reaches here, the caller has already split on it.
function cpuNumber(text: string, mask: string): number {
  const n = pythonInt(text);
  if (n === undefined)
    throw new CpuMaskError(`Invalid CPU number '${shown(text)}' in CPU mask '${shown(mask)}'`);
  if (n > MAX_CPU_NUMBER) {
    throw new CpuMaskError(
      `CPU number ${shown(text.trim())} in CPU mask '${shown(mask)}' is too large: Linux numbers CPUs 0 to ${MAX_CPU_NUMBER}`,
      true,
    );
  }
  return n;
}

/**
 * Parses a single CPU mask into the sorted list of CPU numbers it names, each once.
 * `""` gives `[]`. CPU numbers above {@link MAX_CPU_NUMBER} are refused, so the result has
 * at most 8192 entries; the work is linear in the mask's length (ranges are merged, not
 * expanded one by one). Throws {@link CpuMaskError}.
 */
export function parseCpuMask(mask: string): number[] {
  if (mask === '') return [];
  const ranges: [number, number][] = [];
  for (const range of mask.split(',')) {
    const dash = range.indexOf('-');
    if (dash !== -1 && range.indexOf('-', dash + 1) !== -1) {
      throw new CpuMaskError(
        `Invalid CPU range '${shown(range)}' in CPU mask '${shown(mask)}': only one '-' allowed`,
      );
    }
    const lower = cpuNumber(dash === -1 ? range : range.slice(0, dash), mask);
    const upper = dash === -1 ? lower : cpuNumber(range.slice(dash + 1), mask);
    if (lower > upper) {
      throw new CpuMaskError(
        `Invalid CPU range '${shown(range)}' in CPU mask '${shown(mask)}': ${lower} > ${upper}`,
      );
    }
    ranges.push([lower, upper]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const cpus: number[] = [];
  let next = 0; // lowest CPU number not yet in `cpus`
  for (const [lower, upper] of ranges) {
    for (let cpu = Math.max(lower, next); cpu <= upper; cpu++) cpus.push(cpu);
    next = Math.max(next, upper + 1);
  }
  return cpus;
}

/** One vCPU's share of a multiple CPU mask: a list of CPU numbers, or every CPU. */
export type CpuMaskEntry = number[] | typeof CPU_PINNING_ALL;

/**
 * Parses a multiple CPU mask: `all`, a single mask, or `:`-separated masks where each is a
 * mask or `all`. `""` gives `[]` (no mask, as in Ganeti: nothing is pinned). Unlike Ganeti,
 * an empty per-vCPU mask (`1::2`) is refused: it would pin a vCPU to nothing, and so is a
 * mask naming more than {@link MAX_CPU_MASK_TOTAL} CPUs over all its per-vCPU masks. Linear
 * in the mask's length. Throws {@link CpuMaskError}.
 */
export function parseMultiCpuMask(mask: string): CpuMaskEntry[] {
  if (mask === '') return [];
  if (!mask.includes(CPU_PINNING_SEP)) {
    return mask === CPU_PINNING_ALL ? [CPU_PINNING_ALL] : [parseCpuMask(mask)];
  }
  let total = 0;
  return mask.split(CPU_PINNING_SEP).map((part, index): CpuMaskEntry => {
    if (part === CPU_PINNING_ALL) return CPU_PINNING_ALL;
    const cpus = parseCpuMask(part);
    if (cpus.length === 0)
      throw new CpuMaskError(`Empty mask for vCPU ${index} in CPU mask '${shown(mask)}'`);
    total += cpus.length;
    if (total > MAX_CPU_MASK_TOTAL) {
      throw new CpuMaskError(
        `CPU mask '${shown(mask)}' names more than ${MAX_CPU_MASK_TOTAL} CPUs in total over its per-vCPU masks; use 'all' for a vCPU that may run anywhere`,
        true,
      );
    }
    return cpus;
  });
}
