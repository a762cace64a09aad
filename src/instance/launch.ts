/**
 * Launching an instance's QEMU from its runtime, for a start or for the destination of a
 * migration: argv rendered for this node and this QEMU, a detached process, the state
 * file written as soon as the pid is known (a caller that dies mid-start still leaves a
 * process it can find), and a wait for the QMP socket that fails with QEMU's own error
 * lines when the process exits. A launch that fails kills what it started.
 */
import { readFileSync, rmSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { Deadline } from '../core/deadline.js';
import { HvParamError, HypervisorError } from '../errors.js';
import type { KvmHvParams } from '../hvparams/index.js';
import { type Accelerator, type AcceleratorChoice, kvmUsable, resolveAccelerator } from '../qemu/accel.js';
import { listeningUnixSockets } from '../qemu/unix-sockets.js';
import { formatVersion } from '../qemu/version.js';
import { chooseAccelerator, type LaunchContext, renderArgv } from './argv.js';
import type { QemuFeatures } from './features.js';
import type { InstancePaths } from './layout.js';
import {
  processAlive,
  type SpawnedProcess,
  spawnDetached,
  tailOf,
  terminateProcess,
  waitForExit,
} from './process.js';
import type { InstanceRuntime } from './runtime.js';
import { shutdownWatchArgs, startShutdownWatcher } from './shutdown.js';
import { ensureChroot, type InstanceState, removeInstanceFiles, writeInstanceState } from './state.js';
import { checkTapFeatures } from './tap.js';

/**
 * The accelerator for an instance: `kvm_flag` `enabled` demands KVM (an `HvParamError` when
 * `/dev/kvm` cannot be opened read-write), `disabled` means TCG; empty leaves the choice to
 * `choice` (default `$KVMHV_ACCEL`, else KVM when usable, else TCG).
 */
export function acceleratorFor(
  hvparams: Pick<KvmHvParams, 'kvm_flag'>,
  choice?: AcceleratorChoice,
  kvmDevice = '/dev/kvm',
): Accelerator {
  if (hvparams.kvm_flag === 'enabled' || hvparams.kvm_flag === 'disabled') {
    return chooseAccelerator(hvparams, kvmUsable(kvmDevice));
  }
  return resolveAccelerator(choice, kvmDevice);
}

/**
 * The argv the life cycle starts: always `-no-shutdown`, so a guest that powers off leaves
 * QEMU in run state `shutdown` (visible to `getInstanceInfo`, restartable by
 * `rebootInstance`) instead of an exited process that cannot tell a poweroff from a crash.
 * A migration destination gets no `-S`: QEMU then resumes the VM the moment it has loaded
 * it (as the source ran it: a non-live migration stays paused), instead of adding the time
 * until `finalizeMigrationDst` sends `cont` to the downtime.
 */
function launchArgv(runtime: InstanceRuntime, features: QemuFeatures, ctx: LaunchContext): string[] {
  return renderArgv(runtime, features, { ...ctx, paused: ctx.incoming === undefined, noShutdown: true });
}

/** What {@link launchQemu} needs. */
export interface LaunchRequest {
  runtime: InstanceRuntime;
  features: QemuFeatures;
  paths: InstancePaths;
  accel: Accelerator;
  /** `-incoming` value (`defer`) for a migration destination. */
  incoming?: string;
  /** This node's `keymap`, `security_model`, `security_domain`, `use_chroot` (a destination's own). */
  nodeHvParams?: LaunchContext['nodeHvParams'];
  /** Bounds the wait for the QMP socket. */
  deadline: Deadline;
}

/** A launched QEMU and its state file. */
export interface Launched {
  state: InstanceState;
  process: SpawnedProcess;
  /** Size of the log before this launch: QEMU's own lines start there. */
  logOffset: number;
}

/** How long a failed step waits for a QEMU that may be exiting, ms. */
const EXITING_GRACE_MS = 1000;

/**
 * The error to report for a step after launch that failed: when the QEMU process has
 * exited meanwhile (QEMU opens its sockets before it loads the kernel or the disks, so
 * it can die after they listen), a `HypervisorError` quoting QEMU's own output, with the
 * step's error as its cause; otherwise the step's error unchanged.
 */
export async function explainExit(
  launched: Launched,
  paths: InstancePaths,
  error: unknown,
): Promise<unknown> {
  // A QEMU that is exiting closes its sockets first: give it a moment to be gone.
  if (!(await waitForExit(launched.state, EXITING_GRACE_MS))) return error;
  const output = tailOf(paths.log, launched.logOffset).trim();
  return new HypervisorError(
    `instance '${launched.state.name}': QEMU exited during start-up: ${output || '(no output)'}`,
    { cause: error },
  );
}

/**
 * Starts QEMU (paused: the argv always has `-S` or `-incoming`) and waits until its QMP
 * and HMP sockets listen. Removes stale sockets first. On failure the process is killed and its
 * files removed (the runtime file too unless `keepRuntime`).
 * @throws HypervisorError with the tail of QEMU's output when it exits during start-up,
 * or when the socket does not listen before the deadline.
 */
export async function launchQemu(req: LaunchRequest): Promise<Launched> {
  const { paths, runtime } = req;
  const ctx: LaunchContext = {
    paths,
    accel: req.accel,
    interfaces: networkInterfaces(),
    // A vhost NIC on a node without /dev/vhost-net: an HvParamError, not a QEMU that dies.
    vhostNet: kvmUsable('/dev/vhost-net'),
    ...(req.nodeHvParams === undefined ? {} : { nodeHvParams: req.nodeHvParams }),
    ...(req.incoming === undefined ? {} : { incoming: req.incoming }),
  };
  // A tap without the features vnet_hdr / virtio_net_queues ask for: refused before QEMU.
  checkTapFeatures(runtime.nics);
  // The shutdown watcher's QMP socket (src/instance/shutdown.ts) comes last.
  const argv = [...launchArgv(runtime, req.features, ctx), ...shutdownWatchArgs(paths)];
  for (const f of [paths.qmp, paths.hmp, paths.kvmd, paths.shutdown, paths.pidfile])
    rmSync(f, { force: true });
  if (req.nodeHvParams?.use_chroot ?? runtime.hvparams.use_chroot) ensureChroot(paths);
  let logOffset = 0;
  try {
    logOffset = statSync(paths.log).size;
  } catch {
    // no log yet
  }
  const proc = await spawnDetached(argv, paths.log);
  const state: InstanceState = {
    formatVersion: 1,
    name: runtime.instance.name,
    uuid: runtime.instance.uuid.toLowerCase(),
    pid: proc.pid,
    startTime: proc.startTime,
    startedAt: Date.now(),
    qmp: paths.qmp,
    hmp: paths.hmp,
    accel: req.accel,
    // The launched binary's, not the runtime's (a migration target may run another release).
    qemuVersion: formatVersion(req.features.version),
    binary: argv[0]!,
    ...(req.incoming === undefined ? {} : { incoming: req.incoming }),
  };
  try {
    if (proc.startTime !== '0') writeInstanceState(paths, state);
    // The shutdown watcher starts beside the wait for the sockets (Node's start-up takes
    // about as long as QEMU's); it retries until QEMU's kvmd socket listens.
    const watcher = startShutdownWatcher(paths, proc, Math.max(1000, req.deadline.remaining()));
    watcher.catch(() => undefined); // awaited below; a failed launch must not leave it unhandled
    await waitForSocket(req, proc, logOffset);
    await watcher.catch(async (e: unknown) => {
      // A QEMU that exits during start-up takes the watcher's socket with it: say why it exited.
      if (!processAlive(proc)) await waitForSocket(req, proc, logOffset);
      throw e;
    });
    return { state, process: proc, logOffset };
  } catch (e) {
    await terminateProcess(proc, { termMs: 2000, killMs: 5000 }).catch(() => undefined);
    removeInstanceFiles(paths, { keepRuntime: true });
    throw e;
  }
}

async function waitForSocket(req: LaunchRequest, proc: SpawnedProcess, logOffset: number): Promise<void> {
  const { paths } = req;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void proc.exited.then((x) => {
    exit = x;
  });
  const name = req.runtime.instance.name;
  for (;;) {
    if (exit !== undefined || !processAlive(proc)) {
      // Let the exit event land so the status is known; the log has QEMU's reason.
      await req.deadline.sleep(50);
      const how = exit ? (exit.signal ?? `exit code ${exit.code}`) : 'exited';
      const output = tailOf(paths.log, logOffset).trim();
      throw new HypervisorError(
        `instance '${name}': QEMU exited during start-up (${how}): ${output || '(no output)'}`,
      );
    }
    // Both monitors: QEMU opens the HMP socket (`-monitor`) after the QMP one, and a
    // caller whose monitor factory speaks HMP connects to it right after this returns.
    const listening = listeningUnixSockets(proc.pid);
    if (listening?.has(paths.qmp) && listening.has(paths.hmp)) return;
    const over = req.deadline.over();
    if (over) {
      throw new HypervisorError(
        `instance '${name}': QEMU did not open its monitor sockets ${paths.qmp} and ${paths.hmp} ${over === 'aborted' ? 'before the caller aborted' : `within ${req.deadline.limitMs} ms`}`,
      );
    }
    await req.deadline.sleep(20);
  }
}

/** The first line of a password file (Ganeti's rule), without its line end. */
export function readPasswordFile(path: string, param: string): string {
  try {
    return readFileSync(path, 'utf8').split(/\r?\n/)[0] ?? '';
  } catch (e) {
    throw new HvParamError([{ param, message: `${param}: cannot read '${path}': ${(e as Error).message}` }]);
  }
}
