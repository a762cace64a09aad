/**
 * The instance life cycle behind `KVMHypervisor`: start (checks, features, runtime, paused
 * launch, passwords, pinning, balloon, `cont`), reboot, balloon, list, info, cleanup and
 * the runtime handed to a migration target. Stop lives in stop.ts, the destination side
 * of a migration in accept.ts. Every monitor call is raced against a deadline.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { HypervisorError, UnrecognizedOutputError } from '../errors.js';
import type { LoggerLike } from '../logger.js';
import type { Monitor } from '../monitor/types.js';
import type { AcceleratorChoice } from '../qemu/accel.js';
import { formatVersion } from '../qemu/version.js';
import { checkInstanceSpec } from './check.js';
import { probeQemuFeatures } from './features.js';
import { acceleratorFor, explainExit, launchQemu, readPasswordFile } from './launch.js';
import { assertInstanceFileName, type InstancePaths, instancePaths, type RunLayout } from './layout.js';
import { applyPinning, pinningPlan } from './pinning.js';
import { processAlive, terminateProcess } from './process.js';
import * as qmp from './qmp-actions.js';
import {
  type InstanceRuntime,
  parseRuntime,
  postStartActions,
  resolveRuntime,
  serializeRuntime,
} from './runtime.js';
import { awaitShutdownRecord, downState, readShutdownRecord, type ShutdownRecord } from './shutdown.js';
import type { InstanceSpec } from './spec.js';
import {
  acquireStartLock,
  ensureRunLayout,
  type InstanceState,
  readInstanceState,
  removeInstanceFiles,
  writeFileAtomic,
} from './state.js';

/** Default limit of a start (probe, launch, post-start actions), ms. */
export const DEFAULT_START_TIMEOUT_MS = 60_000;
/** Default limit of one monitor step of reboot, info, balloon, ms. */
const DEFAULT_LIFECYCLE_STEP_MS = 10_000;

/** Opens (or hands out the cached) monitor of an instance within a deadline. */
type MonitorOpener = (name: string, deadline: Deadline) => Promise<Monitor>;

/** What the life cycle needs from its owner (`KVMHypervisor`). */
export interface LifecycleDeps {
  layout: RunLayout;
  log: LoggerLike;
  /** The owner's monitor: a QMP socket serves one client, so migration and life cycle share it. */
  monitor: MonitorOpener;
  /** Closes and drops the cached monitor of an instance (its QEMU is gone). */
  forgetMonitor: (name: string) => Promise<void>;
  /** Accelerator when `kvm_flag` is empty (default `$KVMHV_ACCEL`, else auto). */
  accel?: AcceleratorChoice;
}

/** Options of `startInstance`. */
export interface StartInstanceOptions {
  /** Limit of the whole start in ms (default 60 000). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Leave the VM paused after start (default false: `cont` is sent). */
  paused?: boolean;
}

/** Coarse state of an instance in `getInstanceInfo`. */
export type InstanceStateName =
  | 'running'
  | 'paused'
  /**
   * The guest powered itself off (Ganeti's `USER_down`): QEMU waits in run state
   * `shutdown` (`-no-shutdown`); `rebootInstance` starts it again.
   */
  | 'user-down'
  /**
   * Shut down on the host's request: the ACPI power button was pressed before the guest
   * powered off, or QEMU was ended (`quit`, SIGTERM) by someone else than this library.
   */
  | 'shutdown'
  /** The QEMU process is gone without a `SHUTDOWN` event (killed, crashed): `cleanupInstance`. */
  | 'crashed'
  /** A migration destination waiting for, or loading, the VM. */
  | 'incoming'
  /** The VM left for a migration target (`postmigrate`). */
  | 'migrated'
  /** The process runs but its monitor did not answer in time. */
  | 'unresponsive';

/** What `getInstanceInfo` reports. */
export interface InstanceInfo {
  name: string;
  uuid: string;
  state: InstanceStateName;
  /** QEMU's own run state, when the monitor answered. */
  runState?: string;
  pid: number;
  /** Guest memory now (`query-balloon`), MiB. */
  memoryMiB?: number;
  vcpus?: number;
  /** Seconds since the process started. */
  uptimeSeconds: number;
  accel: 'kvm' | 'tcg';
  qemuVersion: string;
  qmp: string;
  /** Why some fields are missing (monitor error), when they are. */
  error?: string;
  /** QEMU's `SHUTDOWN` event as the shutdown watcher recorded it, for a down instance. */
  shutdown?: ShutdownRecord;
}

/** Rules shared by every life-cycle method. */
export class InstanceLifecycle {
  readonly deps: LifecycleDeps;

  constructor(deps: LifecycleDeps) {
    this.deps = deps;
  }

  /** The files of instance `name`. */
  paths(name: string): InstancePaths {
    assertInstanceFileName(name);
    return instancePaths(this.deps.layout, name);
  }

  /** The state of a live instance, or a `HypervisorError` saying it does not run. */
  liveState(name: string): InstanceState {
    const state = readInstanceState(this.paths(name));
    if (!state || !processAlive(state)) throw new HypervisorError(`instance '${name}' is not running`);
    return state;
  }

  /** A QMP step on a live instance whose QEMU answers `query-uuid` with the recorded UUID. */
  async step(name: string, deadline: Deadline): Promise<qmp.QmpStep & { state: InstanceState }> {
    const state = this.liveState(name);
    const monitor = await this.deps.monitor(name, deadline);
    const s = { monitor, deadline, state };
    const uuid = await qmp.queryUuid(s);
    if (uuid !== state.uuid) {
      throw new HypervisorError(
        `instance '${name}': the QEMU on ${state.qmp} has UUID ${uuid}, not ${state.uuid}: another VM answers on this socket`,
      );
    }
    return s;
  }

  /** True when this node's run directory has a state file for `name` (the library started its QEMU). */
  startedHere(name: string): boolean {
    try {
      return readInstanceState(this.paths(name)) !== undefined;
    } catch {
      return false;
    }
  }

  /** Refuses to start an instance whose process runs; removes what a dead one left. */
  private claim(paths: InstancePaths): void {
    const old = readInstanceState(paths);
    if (old && processAlive(old)) {
      throw new HypervisorError(`instance '${paths.name}' is already running (pid ${old.pid})`);
    }
    if (old) {
      this.deps.log.warn({ instance: paths.name, pid: old.pid }, 'removing the files of an exited QEMU');
      removeInstanceFiles(paths);
    }
  }

  /** See `KVMHypervisor.startInstance`. */
  async start(input: InstanceSpec, options: StartInstanceOptions = {}): Promise<InstanceInfo> {
    const spec = checkInstanceSpec(input);
    const deadline = Deadline.after(options.timeoutMs ?? DEFAULT_START_TIMEOUT_MS, options.signal);
    const paths = this.paths(spec.name);
    ensureRunLayout(this.deps.layout);
    const release = acquireStartLock(paths);
    try {
      return await this.startLocked(spec, paths, deadline, options);
    } finally {
      release();
    }
  }

  private async startLocked(
    spec: ReturnType<typeof checkInstanceSpec>,
    paths: InstancePaths,
    deadline: Deadline,
    options: StartInstanceOptions,
  ): Promise<InstanceInfo> {
    const hvparams = spec.hvparams;
    this.claim(paths);
    const accel = acceleratorFor(hvparams, this.deps.accel);
    const features = await deadline.race(
      probeQemuFeatures(hvparams.kvm_path, { timeoutMs: deadline.remaining() }),
      `probing ${hvparams.kvm_path}`,
    );
    const runtime = resolveRuntime(spec, features);
    writeFileAtomic(paths.runtime, serializeRuntime(runtime));
    const log = this.deps.log;
    const launched = await launchQemu({ runtime, features, paths, accel, deadline }).catch((e: unknown) => {
      removeInstanceFiles(paths);
      throw e;
    });
    const { state } = launched;
    log.info({ instance: spec.name, pid: state.pid, accel }, 'QEMU started (paused)');
    try {
      const s = await this.step(spec.name, deadline);
      const status = await qmp.queryStatus(s);
      if (status.running) {
        throw new HypervisorError(
          `instance '${spec.name}': QEMU runs the vCPUs before 'cont' (${status.status})`,
        );
      }
      await this.postStart(s, runtime);
      if (!options.paused) await qmp.cont(s);
      log.info({ instance: spec.name, paused: options.paused === true }, 'instance started');
    } catch (e) {
      // Nothing of the VM exists yet: kill it, then report why.
      log.error({ instance: spec.name, err: errorText(e) }, 'start failed; killing the QEMU it started');
      await this.deps.forgetMonitor(spec.name);
      const reported = await explainExit(launched, paths, e);
      await terminateProcess(state, { termMs: 2000, killMs: 5000 }).catch(() => undefined);
      removeInstanceFiles(paths);
      throw reported;
    }
    return this.info(spec.name);
  }

  /** Passwords, pinning and the startup balloon target, while the vCPUs are paused. */
  private async postStart(
    s: qmp.QmpStep & { state: InstanceState },
    runtime: InstanceRuntime,
  ): Promise<void> {
    const todo = postStartActions(runtime);
    if (todo.vncPasswordFile) {
      await qmp.setPassword(s, 'vnc', readPasswordFile(todo.vncPasswordFile, 'vnc_password_file'));
    }
    if (todo.spicePasswordFile) {
      await qmp.setPassword(s, 'spice', readPasswordFile(todo.spicePasswordFile, 'spice_password_file'));
    }
    if (todo.cpuMask) {
      const plan = pinningPlan(todo.cpuMask, s.state.pid, await qmp.queryVcpus(s));
      await s.deadline.race(applyPinning(plan, s.deadline.remaining()), 'cpu_mask pinning');
    }
    if (todo.balloonMiB !== undefined) await qmp.setBalloon(s, todo.balloonMiB);
  }

  /** See `KVMHypervisor.rebootInstance`. */
  async reboot(name: string, timeoutMs = DEFAULT_LIFECYCLE_STEP_MS): Promise<void> {
    const s = await this.step(name, Deadline.after(timeoutMs));
    const before = await qmp.queryStatus(s);
    if (before.status === 'inmigrate' || before.status === 'postmigrate') {
      throw new HypervisorError(`instance '${name}': cannot reboot a VM in run state '${before.status}'`);
    }
    await qmp.systemReset(s);
    // A guest that powered off (`shutdown`) or a VM that was paused is started again.
    if (!before.running) await qmp.cont(s);
  }

  /** See `KVMHypervisor.balloonInstanceMemory`. */
  async balloon(name: string, mib: number, timeoutMs = DEFAULT_LIFECYCLE_STEP_MS): Promise<void> {
    if (!Number.isInteger(mib) || mib < 1) {
      throw new HypervisorError(`balloon target must be a positive integer of MiB, got ${mib}`);
    }
    const runtime = this.runtime(name);
    if (mib > runtime.memory.maxMiB) {
      throw new HypervisorError(
        `instance '${name}': balloon target ${mib} MiB is above its maximum memory ${runtime.memory.maxMiB} MiB`,
      );
    }
    await qmp.setBalloon(await this.step(name, Deadline.after(timeoutMs)), mib);
  }

  /** The instance's runtime (parsed). */
  runtime(name: string): InstanceRuntime {
    return parseRuntime(this.migrationInfo(name));
  }

  /** See `KVMHypervisor.getMigrationInfo`: the runtime file's text, checked. */
  migrationInfo(name: string): string {
    const paths = this.paths(name);
    let text: string;
    try {
      text = readFileSync(paths.runtime, 'utf8');
    } catch (e) {
      throw new HypervisorError(`instance '${name}' has no runtime (${paths.runtime}): ${errorText(e)}`);
    }
    parseRuntime(text);
    return text;
  }

  /** Names with a state file, sorted. */
  known(): string[] {
    let entries: string[];
    try {
      entries = readdirSync(this.deps.layout.conf);
    } catch {
      return [];
    }
    return entries
      .filter((f) => f.endsWith('.state'))
      .map((f) => f.slice(0, -'.state'.length))
      .sort();
  }

  /** See `KVMHypervisor.listInstances`. */
  list(): string[] {
    return this.known().filter((name) => {
      try {
        const st = readInstanceState(this.paths(name));
        return st !== undefined && processAlive(st);
      } catch {
        return false;
      }
    });
  }

  /** See `KVMHypervisor.getInstanceInfo`. */
  async info(name: string, timeoutMs = DEFAULT_LIFECYCLE_STEP_MS): Promise<InstanceInfo> {
    const paths = this.paths(name);
    const state = readInstanceState(paths);
    if (!state) throw new HypervisorError(`instance '${name}' is not known here (no ${paths.state})`);
    const record = readShutdownRecord(paths, state);
    const base: InstanceInfo = {
      name,
      uuid: state.uuid,
      state: 'crashed',
      pid: state.pid,
      uptimeSeconds: Math.max(0, Math.round((Date.now() - state.startedAt) / 1000)),
      accel: state.accel,
      qemuVersion: state.qemuVersion,
      qmp: state.qmp,
      ...(record ? { shutdown: record } : {}),
    };
    if (!processAlive(state)) {
      const gone = record ?? (await awaitShutdownRecord(paths, state));
      return {
        ...base,
        ...(gone ? { shutdown: gone } : {}),
        state: downState(false, undefined, gone) ?? 'crashed',
        uptimeSeconds: 0,
      };
    }
    try {
      const s = await this.step(name, Deadline.after(timeoutMs));
      const status = await qmp.queryStatus(s);
      const vcpus = (await qmp.queryVcpus(s)).length;
      const memoryMiB = await qmp.queryBalloonMiB(s);
      // The watcher writes the record just after QEMU enters 'shutdown': give it its moment.
      const now = status.status === 'shutdown' ? await awaitShutdownRecord(paths, state) : undefined;
      return {
        ...base,
        ...(now ? { shutdown: now } : {}),
        state: downState(true, status.status, now) ?? stateName(status, state),
        runState: status.status,
        vcpus,
        memoryMiB,
        qemuVersion: formatVersion(s.monitor.version),
      };
    } catch (e) {
      // A wrong identity or an answer the parsers cannot read is an error, never a state.
      if (e instanceof UnrecognizedOutputError) throw e;
      if (e instanceof HypervisorError && /another VM answers/.test(e.message)) throw e;
      return { ...base, state: 'unresponsive', error: errorText(e) };
    }
  }

  /** See `KVMHypervisor.cleanupInstance`. */
  async cleanup(name: string): Promise<void> {
    const paths = this.paths(name);
    const state = readInstanceState(paths);
    if (state && processAlive(state)) {
      throw new HypervisorError(`cannot clean up instance '${name}': it is alive (pid ${state.pid})`);
    }
    await this.deps.forgetMonitor(name);
    removeInstanceFiles(paths);
  }
}

function stateName(status: qmp.RunStatus, state: InstanceState): InstanceStateName {
  if (status.running) return 'running';
  if (status.status === 'inmigrate' || state.incoming !== undefined) return 'incoming';
  if (status.status === 'postmigrate') return 'migrated';
  return 'paused';
}
