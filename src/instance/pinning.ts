/**
 * `cpu_mask` after start, while the VM is still paused: one mask pins every thread of the
 * QEMU process; `a:b:…` pins each vCPU thread (thread ids from `query-cpus-fast`) to its
 * own mask; `all` pins nothing. Applied with util-linux `taskset`, which calls
 * `sched_setaffinity` (Node has no binding for it) and fails loudly when the kernel refuses.
 */
import { execFile } from 'node:child_process';
import { HvParamError, HypervisorError } from '../errors.js';
import { type CpuMaskEntry, parseMultiCpuMask } from '../hvparams/cpu-mask.js';
import { CPU_PINNING_ALL } from '../hvparams/value-sets.js';
import type { VcpuThread } from './qmp-actions.js';

/** One `taskset` call: a thread (or the whole process) and the CPUs it may run on. */
export interface PinningStep {
  /** Thread id (a vCPU) or the QEMU pid (with `allThreads`). */
  id: number;
  /** CPU numbers. */
  cpus: number[];
  /** Every thread of process `id` (`taskset -a`). */
  allThreads: boolean;
}

/**
 * The `taskset` calls `cpu_mask` asks for.
 * @throws HvParamError naming `cpu_mask` when per-vCPU masks do not match the vCPU count.
 */
export function pinningPlan(
  cpuMask: string | readonly CpuMaskEntry[],
  pid: number,
  vcpus: readonly VcpuThread[],
): PinningStep[] {
  const masks: readonly CpuMaskEntry[] = typeof cpuMask === 'string' ? parseMultiCpuMask(cpuMask) : cpuMask;
  const text =
    typeof cpuMask === 'string'
      ? cpuMask
      : cpuMask.map((m) => (typeof m === 'string' ? m : m.join(','))).join(':');
  // No mask (`cpu_mask` empty): nothing to pin.
  if (masks.length === 0) return [];
  if (masks.length === 1) {
    const only = masks[0]!;
    return only === CPU_PINNING_ALL || only.length === 0 ? [] : [{ id: pid, cpus: only, allThreads: true }];
  }
  if (masks.length !== vcpus.length) {
    throw new HvParamError([
      {
        param: 'cpu_mask',
        message: `cpu_mask '${text}' has ${masks.length} per-vCPU masks but the instance has ${vcpus.length} vCPUs`,
      },
    ]);
  }
  const steps: PinningStep[] = [];
  masks.forEach((m, i) => {
    if (m !== CPU_PINNING_ALL) steps.push({ id: vcpus[i]!.threadId, cpus: m, allThreads: false });
  });
  return steps;
}

/** The `taskset` argv of one step. */
export function tasksetArgs(step: PinningStep): string[] {
  return [...(step.allThreads ? ['-a'] : []), '-p', '-c', step.cpus.join(','), String(step.id)];
}

/**
 * Runs each step with `taskset` (each bounded by `timeoutMs`).
 * @throws HypervisorError quoting taskset's output when it fails.
 */
export async function applyPinning(steps: readonly PinningStep[], timeoutMs = 10_000): Promise<void> {
  for (const step of steps) {
    const args = tasksetArgs(step);
    await new Promise<void>((resolve, reject) => {
      execFile('taskset', args, { timeout: timeoutMs }, (err, _stdout, stderr) => {
        if (err) {
          reject(
            new HypervisorError(
              `cpu_mask: 'taskset ${args.join(' ')}' failed: ${String(stderr).trim() || err.message}`,
            ),
          );
        } else resolve();
      });
    });
  }
}
