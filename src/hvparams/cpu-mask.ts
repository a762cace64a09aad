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
}

// Python's int(): a '-' never reaches here, the caller has already split on it.
function cpuNumber(text: string, mask: string): number {
  const n = pythonInt(text);
  if (n === undefined) throw new CpuMaskError(`Invalid CPU number '${text}' in CPU mask '${mask}'`);
  return n;
}

/**
 * Parses a single CPU mask into the sorted list of CPU numbers it names, each once.
 * `""` gives `[]`. Throws {@link CpuMaskError}.
 */
export function parseCpuMask(mask: string): number[] {
  if (mask === '') return [];
  const cpus = new Set<number>();
  for (const range of mask.split(',')) {
    const bounds = range.split('-');
    if (bounds.length > 2) {
      throw new CpuMaskError(`Invalid CPU range '${range}' in CPU mask '${mask}': only one '-' allowed`);
    }
    const lower = cpuNumber(bounds[0]!, mask);
    const upper = cpuNumber(bounds[bounds.length - 1]!, mask);
    if (lower > upper) {
      throw new CpuMaskError(`Invalid CPU range '${range}' in CPU mask '${mask}': ${lower} > ${upper}`);
    }
    // A huge range is a typo, not a host; refusing it also keeps memory bounded.
    if (upper - lower > 65535) {
      throw new CpuMaskError(`CPU range '${range}' in CPU mask '${mask}' is too large`);
    }
    for (let cpu = lower; cpu <= upper; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** One vCPU's share of a multiple CPU mask: a list of CPU numbers, or every CPU. */
export type CpuMaskEntry = number[] | typeof CPU_PINNING_ALL;

/**
 * Parses a multiple CPU mask: `all`, a single mask, or `:`-separated masks where each is a
 * mask or `all`. Unlike Ganeti, an empty per-vCPU mask (`1::2`) is refused: it would pin a
 * vCPU to nothing. Throws {@link CpuMaskError}.
 */
export function parseMultiCpuMask(mask: string): CpuMaskEntry[] {
  if (!mask.includes(CPU_PINNING_SEP)) {
    return mask === CPU_PINNING_ALL ? [CPU_PINNING_ALL] : [parseCpuMask(mask)];
  }
  return mask.split(CPU_PINNING_SEP).map((part, index): CpuMaskEntry => {
    if (part === CPU_PINNING_ALL) return CPU_PINNING_ALL;
    const cpus = parseCpuMask(part);
    if (cpus.length === 0) throw new CpuMaskError(`Empty mask for vCPU ${index} in CPU mask '${mask}'`);
    return cpus;
  });
}
