/**
 * The destination side of a migration for instances this library runs: the destination
 * QEMU is started from the source's runtime (`getMigrationInfo`), rendered for this node
 * and this QEMU, with `-incoming defer`; after `finalizeMigrationDst` it either becomes the
 * instance (success: its runtime is this node's) or is stopped (failure, unless it already
 * holds the VM: then it is kept, because the VM must never end up nowhere).
 */

import type { Deadline } from '../core/deadline.js';
import type { FinalizeOutcome } from '../errors.js';
import { HypervisorError } from '../errors.js';
import type { AcceleratorChoice } from '../qemu/accel.js';
import { type LaunchContext, NODE_HV_PARAMS } from './argv.js';
import { probeQemuFeatures } from './features.js';
import { acceleratorFor, explainExit, type Launched, launchQemu } from './launch.js';
import type { InstanceLifecycle } from './lifecycle.js';
import { processAlive, terminateProcess } from './process.js';
import { type InstanceRuntime, parseRuntime } from './runtime.js';
import {
  acquireStartLock,
  ensureRunLayout,
  readInstanceState,
  removeInstanceFiles,
  writeFileAtomic,
  writeInstanceState,
} from './state.js';

/** Options of the destination-starting `acceptInstance`. */
export interface AcceptInstanceStartOptions {
  /** Limit of the whole step (probe, launch, accept, `migrate-incoming`), ms (default 60 000). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Accelerator when the runtime's `kvm_flag` is empty (default: the hypervisor's). */
  accel?: AcceleratorChoice;
}

/**
 * The `keymap`, `security_model`, `security_domain`, `use_chroot` and `kvm_path` that the
 * instance's own hvparams set explicitly: on a target they win over the source's runtime
 * (Ganeti takes them from the current config at every start; `kvm_path` is this node's
 * QEMU binary, the runtime's is the source node's).
 */
export function nodeHvParamsOf(
  filled: Readonly<Record<string, unknown>>,
  given: Readonly<Record<string, unknown>>,
): LaunchContext['nodeHvParams'] {
  const out: Record<string, unknown> = {};
  for (const key of NODE_HV_PARAMS) if (key in given) out[key] = filled[key];
  return out as LaunchContext['nodeHvParams'];
}

/**
 * Starts the destination QEMU of instance `name` from `migrationInfo` (a runtime) with
 * `-incoming defer`, and writes the runtime and a state file marked `incoming`. The QEMU is
 * `nodeHvParams.kvm_path` when given (this node's), else the runtime's `kvm_path`; it is
 * probed before anything starts, so a binary without the runtime's machine type is an
 * `HvParamError` naming `machine_version`.
 * @throws HypervisorError when the runtime belongs to another instance or the instance
 * already runs here.
 */
export async function launchDestination(
  lc: InstanceLifecycle,
  name: string,
  migrationInfo: string,
  deadline: Deadline,
  accel?: AcceleratorChoice,
  nodeHvParams?: LaunchContext['nodeHvParams'],
): Promise<Launched> {
  const runtime = parseRuntime(migrationInfo);
  if (runtime.instance.name !== name) {
    throw new HypervisorError(
      `the migration info is the runtime of instance '${runtime.instance.name}', not '${name}'`,
    );
  }
  const paths = lc.paths(name);
  ensureRunLayout(lc.deps.layout);
  const release = acquireStartLock(paths);
  try {
    return await launchLocked(lc, name, runtime, migrationInfo, deadline, accel, nodeHvParams);
  } finally {
    release();
  }
}

async function launchLocked(
  lc: InstanceLifecycle,
  name: string,
  runtime: InstanceRuntime,
  migrationInfo: string,
  deadline: Deadline,
  accel: AcceleratorChoice | undefined,
  nodeHvParams: LaunchContext['nodeHvParams'] | undefined,
): Promise<Launched> {
  const paths = lc.paths(name);
  const old = readInstanceState(paths);
  if (old && processAlive(old)) {
    throw new HypervisorError(
      `instance '${name}' already runs on this node (pid ${old.pid}): refusing to start a second copy as a migration destination`,
    );
  }
  if (old) removeInstanceFiles(paths);
  const chosen = acceleratorFor(runtime.hvparams, accel ?? lc.deps.accel);
  // This node's QEMU: the caller's kvm_path, else the source's path (the same cluster
  // setting, which must then name a binary here too).
  const binary = nodeHvParams?.kvm_path ?? runtime.hvparams.kvm_path;
  const features = await deadline.race(
    probeQemuFeatures(binary, { timeoutMs: deadline.remaining() }),
    `probing ${binary}`,
  );
  writeFileAtomic(paths.runtime, migrationInfo);
  try {
    const launched = await launchQemu({
      runtime,
      features,
      paths,
      accel: chosen,
      incoming: 'defer',
      deadline,
      ...(nodeHvParams === undefined ? {} : { nodeHvParams }),
    });
    lc.deps.log.info(
      { instance: name, pid: launched.state.pid, accel: chosen },
      'destination QEMU started (-incoming defer)',
    );
    return launched;
  } catch (e) {
    removeInstanceFiles(paths);
    throw e;
  }
}

/**
 * Kills a destination that holds nothing yet (accept failed before the source started)
 * and removes its files. Returns the error to report: `error`, or QEMU's own output when
 * it had exited.
 */
export async function discardDestination(
  lc: InstanceLifecycle,
  name: string,
  launched: Launched,
  error: unknown,
): Promise<unknown> {
  const paths = lc.paths(name);
  const reported = await explainExit(launched, paths, error);
  await lc.deps.forgetMonitor(name);
  await terminateProcess(launched.state, { termMs: 2000, killMs: 5000 });
  removeInstanceFiles(paths);
  return reported;
}

/**
 * After `finalizeMigrationDst` of a destination this library started: on an outcome that
 * left QEMU holding the VM, it becomes this node's instance (the `incoming` mark is
 * cleared); on `quit` or `already-gone`, the process is made sure to be gone and its
 * files removed; on `postcopy-paused` nothing changes (the VM is split: the mark stays
 * until a later finalize sees the migration completed).
 */
export async function settleDestination(
  lc: InstanceLifecycle,
  name: string,
  outcome: FinalizeOutcome,
): Promise<void> {
  const paths = lc.paths(name);
  const state = readInstanceState(paths);
  if (!state) return;
  // A post-copy (paused or not) holds part of the VM only: it is not this node's instance yet.
  if (outcome.action === 'postcopy-paused' || outcome.action === 'split') return;
  if (outcome.action === 'quit' || outcome.action === 'already-gone') {
    await lc.deps.forgetMonitor(name);
    await terminateProcess(state, { graceMs: 5000, termMs: 5000, killMs: 5000 });
    removeInstanceFiles(paths);
    lc.deps.log.info({ instance: name }, 'destination QEMU stopped after the failed migration');
    return;
  }
  if (state.incoming !== undefined) {
    const { incoming: _done, ...own } = state;
    writeInstanceState(paths, own);
    lc.deps.log.info(
      { instance: name, action: outcome.action },
      'the destination runs the instance here now',
    );
  }
}
