/**
 * Stopping an instance: the ACPI power button (when `acpi` is on and not `force`) with a
 * timeout, then QMP `quit`, then SIGTERM, then SIGKILL, each bounded, then the files are
 * removed, also when QEMU was already gone. The waits watch the process itself
 * (pid + start time), so a frozen QEMU cannot hold a stop past its limits. Before any of
 * it, a QEMU that may hold the only copy of the VM is refused (see {@link refuseUnsafeStop}).
 */

import { readFileSync } from 'node:fs';
import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { HypervisorError } from '../errors.js';
import { ACTIVE_STATUSES, queryMigrateStatus } from '../qemu/migration-status.js';
import type { InstanceLifecycle } from './lifecycle.js';
import { processAlive, type TerminationStep, terminateProcess, waitForExit } from './process.js';
import * as qmp from './qmp-actions.js';
import { parseRuntime } from './runtime.js';
import { type InstanceState, readInstanceState, removeInstanceFiles } from './state.js';

/** Options of `stopInstance`. */
export interface StopInstanceOptions {
  /**
   * Skip the power button: `quit`, then SIGTERM, then SIGKILL; also stop a QEMU whose
   * migration status cannot be read (frozen), a migration destination not yet finalized
   * whose incoming migration completed, and a source in run state `postmigrate` (each may
   * hold the only copy of the VM: the operator checked the other end). A running
   * migration is refused even so.
   */
  force?: boolean;
  /** How long the guest gets to power off after the power button, ms (default 60 000). */
  timeoutMs?: number;
  /** How long each of SIGTERM and SIGKILL may take to end the process, ms (default 10 000). */
  killTimeoutMs?: number;
}

/** How an instance was stopped. */
export interface StopOutcome {
  name: string;
  /**
   * `powered-off` (the guest shut down after the power button), `quit` (QEMU exited on
   * QMP `quit`), `sigterm`, `sigkill`, `already-gone` (the state file was there but its
   * process was gone: only files removed), or `not-found` (this node has no state file
   * for the name: nothing was done; not an error, so that a cluster manager's stop stays
   * idempotent, but nothing was stopped here either).
   */
  how: 'powered-off' | 'quit' | TerminationStep | 'not-found';
}

/** Answers within this many ms or counts as frozen for `quit` and the power button. */
const MONITOR_STEP_MS = 3000;

/** Stops an instance; see `KVMHypervisor.stopInstance`. */
export async function stopInstance(
  lc: InstanceLifecycle,
  name: string,
  options: StopInstanceOptions = {},
): Promise<StopOutcome> {
  const paths = lc.paths(name);
  const log = lc.deps.log;
  const state = readInstanceState(paths);
  if (!state) {
    // Nothing of ours by that name: the files are left alone (a start may be writing them).
    await lc.deps.forgetMonitor(name);
    log.info({ instance: name, stateFile: paths.state }, 'stop: instance not known here');
    return { name, how: 'not-found' };
  }
  // A refused stop changes nothing, not even the cached monitor (forgetting it would also
  // drop this object's migration session of the instance).
  if (processAlive(state)) await refuseUnsafeStop(lc, name, state, options.force === true);
  let how: StopOutcome['how'] = 'already-gone';
  try {
    if (processAlive(state)) {
      const killMs = options.killTimeoutMs ?? 10_000;
      if (!options.force && acpiOn(paths.runtime)) {
        if (await powerButton(lc, name, options.timeoutMs ?? 60_000)) how = 'powered-off';
      }
      if (how !== 'powered-off' && processAlive(state)) {
        // A clean exit first: QEMU flushes its disks' caches on `quit`.
        const quitSent = await quitQuietly(lc, name);
        const step = await terminateProcess(state, { graceMs: quitSent ? 5000 : 0, termMs: killMs, killMs });
        // Gone before the first signal: `quit` ended it (or it exited on its own meanwhile).
        const noSignal = step === 'exited' || step === 'already-gone';
        how = noSignal ? (quitSent ? 'quit' : 'already-gone') : step;
      } else if (processAlive(state)) {
        // Powered off: QEMU waits in `shutdown` (`-no-shutdown`); end it.
        const quitSent = await quitQuietly(lc, name);
        await terminateProcess(state, { graceMs: quitSent ? 5000 : 0, termMs: killMs, killMs });
      }
    }
  } finally {
    // Whatever happened above, the files of a process that is gone are removed.
    await lc.deps.forgetMonitor(name);
    if (!processAlive(state)) removeInstanceFiles(paths);
  }
  log.info({ instance: name, how }, 'instance stopped');
  return { name, how };
}

/**
 * Refuses a stop that could lose the VM. Always (also with `force`): while QEMU reports a
 * running migration, since in post-copy each end holds part of the VM. Without `force`:
 * when the migration status or run state cannot be read; a destination not yet finalized
 * (`incoming` mark) that holds the VM; a source in `postmigrate`.
 */
async function refuseUnsafeStop(
  lc: InstanceLifecycle,
  name: string,
  state: InstanceState,
  force: boolean,
): Promise<void> {
  let status: string;
  let runState: string | undefined;
  try {
    const s = await lc.step(name, Deadline.after(MONITOR_STEP_MS));
    status = queryMigrateStatus(await s.deadline.race(s.monitor.execute('query-migrate'), "'query-migrate'"));
    if (!force) runState = (await qmp.queryStatus(s)).status;
  } catch (e) {
    if (force) {
      lc.deps.log.warn(
        { instance: name, err: errorText(e) },
        'migration status unreadable; stopping anyway (force)',
      );
      return;
    }
    throw new HypervisorError(
      `instance '${name}': cannot read its migration status or run state (${errorText(e)}); if no migration runs, stop it with force`,
      { cause: e },
    );
  }
  if (ACTIVE_STATUSES.has(status)) {
    throw new HypervisorError(
      `instance '${name}': a migration is in progress (status '${status}'): cancel or finalize it first; stopping either end now could lose the VM`,
    );
  }
  if (force || runState === undefined) return;
  if (state.incoming !== undefined && holdsIncomingVm(status, runState)) {
    throw new HypervisorError(
      `instance '${name}' is a migration destination that was not finalized and may hold the only copy of the VM ` +
        `(incoming migration '${status}', run state '${runState}'): its source is left in 'postmigrate' and is never resumed automatically. ` +
        `Finalize the destination (finalizeMigrationDst(instance, true)) or run \`kvm-hv recover ${name}\`; ` +
        'stop it with force only after checking that the source runs the VM',
    );
  }
  if (state.incoming === undefined && runState === 'postmigrate') {
    throw new HypervisorError(
      `instance '${name}' is in run state 'postmigrate': it handed its VM to a migration target and is the only fallback copy if the target failed; ` +
        'stop it with force once the destination runs the VM',
    );
  }
}

/**
 * True when a destination's QEMU holds the VM: its incoming migration completed or is in
 * post-copy, or its run state left `inmigrate` (old QEMUs report no incoming status, so the
 * run state is what tells there).
 */
function holdsIncomingVm(status: string, runState: string): boolean {
  if (status === 'completed' || status.startsWith('postcopy')) return true;
  return runState !== 'inmigrate' && runState !== 'prelaunch';
}

function acpiOn(runtimePath: string): boolean {
  try {
    return parseRuntime(readFileSync(runtimePath, 'utf8')).hvparams.acpi !== false;
  } catch {
    return false;
  }
}

/**
 * Presses the power button and waits up to `timeoutMs` for the guest to power off
 * (run state `shutdown`, or the process exits). False when the guest did not, or the
 * monitor did not answer.
 */
async function powerButton(lc: InstanceLifecycle, name: string, timeoutMs: number): Promise<boolean> {
  const deadline = Deadline.after(timeoutMs);
  const state = lc.liveState(name);
  try {
    const s = await lc.step(name, Deadline.after(Math.min(MONITOR_STEP_MS, timeoutMs)));
    await qmp.systemPowerdown(s);
    for (;;) {
      if (!processAlive(state)) return true;
      const status = await qmp
        .queryStatus({
          monitor: s.monitor,
          deadline: Deadline.after(Math.min(MONITOR_STEP_MS, deadline.remaining())),
        })
        .catch(() => undefined);
      if (status?.status === 'shutdown') return true;
      if (deadline.over()) return false;
      await deadline.sleep(250);
    }
  } catch (e) {
    if (!processAlive(state)) return true;
    lc.deps.log.warn({ instance: name, err: errorText(e) }, 'power button not pressed; going on with quit');
    return (await waitForExit(state, 0)) === true;
  }
}

/** Sends `quit` within a short limit; true when it was sent (QEMU may close before replying). */
async function quitQuietly(lc: InstanceLifecycle, name: string): Promise<boolean> {
  try {
    const s = await lc.step(name, Deadline.after(MONITOR_STEP_MS));
    await qmp.quit(s).catch((e: unknown) => {
      lc.deps.log.debug(
        { instance: name, err: errorText(e) },
        'quit: no reply (QEMU closes the socket as it exits)',
      );
    });
    return true;
  } catch (e) {
    lc.deps.log.warn({ instance: name, err: errorText(e) }, 'cannot send quit; going on with signals');
    return false;
  }
}
