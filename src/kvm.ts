/**
 * The KVM hypervisor: Ganeti's `KVMHypervisor` class. The static half owns the hvparam
 * registry and its checks; an instance owns one monitor per VM and drives migrations.
 * Over ~400 lines because it is the public facade: each method is a few lines of wiring
 * under the TSDoc users read; the work is in src/migration/ (migration) and src/instance/
 * (the instance life cycle: start, stop, reboot, info, the destination started from a
 * runtime).
 */

import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { Deadline, DeadlineError } from './core/deadline.js';
import { errorText } from './core/error-text.js';
// HvParamError is named for TSDoc links.
import { type FinalizeOutcome, type HvParamError, MigrationError } from './errors.js';
import { checkedHvParams } from './hvparams/checked.js';
import {
  assessHvParams,
  checkHvParamsNotGlobal,
  checkHvParamsSyntax,
  fillHvParamDefaults,
  HV_PARAMETERS,
  hvParamsJsonSchema,
  type KvmHvParams,
  parseMigrationCaps,
  type ValidationContext,
  validateHvParams,
} from './hvparams/index.js';
import {
  type AcceptInstanceStartOptions,
  discardDestination,
  launchDestination,
  nodeHvParamsOf,
  settleDestination,
} from './instance/accept.js';
import { type InstanceConsole, instanceConsole } from './instance/console.js';
import {
  type HotDelOptions,
  type HotplugGuard,
  type HotplugOptions,
  hotAddDevice,
  hotDelDevice,
  hotModDevice,
  hotplugSupported,
  type NicChanges,
  verifyHotplugSupport,
} from './instance/hotplug.js';
import type { HotplugAction, HotplugTarget } from './instance/hotplug-model.js';
import { DEFAULT_INSTANCE_RUN_DIR, instancePaths, type RunLayout, runLayout } from './instance/layout.js';
import {
  DEFAULT_START_TIMEOUT_MS,
  type InstanceInfo,
  InstanceLifecycle,
  type StartInstanceOptions,
} from './instance/lifecycle.js';
import { processAlive } from './instance/process.js';
import type { RuntimeDisk, RuntimeNic } from './instance/runtime-schema.js';
import type { InstanceDisk, InstanceNic, InstanceSpec } from './instance/spec.js';
import { readInstanceState } from './instance/state.js';
import { type StopInstanceOptions, type StopOutcome, stopInstance } from './instance/stop.js';
import { type LoggerLike, silentLogger } from './logger.js';
import { isMonitorGone, VmChannel } from './migration/channel.js';
import { type ConvergencePolicyOptions, completionTimeoutMs } from './migration/convergence.js';
import {
  type AcceptedMigration,
  acceptMigration,
  finalizeDestination,
  startIncoming,
} from './migration/destination.js';
import { waitForIncoming } from './migration/incoming.js';
import {
  acceptedFromJournal,
  destinationJournalEntry,
  MigrationJournal,
  type MigrationRole,
  sessionFromJournal,
  sourceJournalEntry,
  startedFromJournal,
} from './migration/journal.js';
import {
  acceptPostcopyRecovery,
  type PostcopyPauseResult,
  type PostcopyRecoveryResult,
  type PostcopyResumeResult,
  pausePostcopy,
  resumePostcopy,
} from './migration/postcopy.js';
import {
  type MigrationRecoveryReport,
  type RecoverMigrationOptions,
  type RecoveryNode,
  recoverNode,
} from './migration/recover.js';
import { isPostcopy } from './migration/safety.js';
import type { MigrationPlan, MigrationSession } from './migration/session.js';
import { precheck, startMigration } from './migration/setup.js';
import { cancelMigration, finalizeSource } from './migration/source.js';
import { listenUri, tlsUsable } from './migration/tls.js';
import type {
  AcceptInstanceOptions,
  FinalizeMigrationDstOptions,
  FinalizeMigrationSourceOptions,
  IncomingMigrationResult,
  Instance,
  KVMHypervisorOptions,
  MigrationProgress,
  MigrationResult,
  MigrationStepOptions,
  MonitorFactory,
  WaitForIncomingOptions,
  WaitForMigrationOptions,
} from './migration/types.js';
import { waitForMigration } from './migration/wait.js';
import { QmpMonitor } from './monitor/qmp.js';
import type { Monitor } from './monitor/types.js';
import { type NodeInfo, readNodeInfo } from './node/info.js';
import { type NodeVerification, verifyNode } from './node/verify.js';
import { formatVersion } from './qemu/version.js';
import { checkTlsFiles, checkTlsOptions, type MigrationTlsOptions } from './tls/config.js';

/** Default limit of finalize, cancel, accept and status steps (ms). */
export const DEFAULT_STEP_TIMEOUT_MS = 30_000;

const stepDeadline = (o: MigrationStepOptions): Deadline =>
  Deadline.after(o.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS, o.signal);

/** Where Ganeti keeps the QMP sockets of its KVM instances (`<RUN_DIR>/kvm-hypervisor/ctrl`). */
export const DEFAULT_RUN_DIR = '/var/run/ganeti/kvm-hypervisor/ctrl';

/**
 * Ganeti's KVM hypervisor. The static members describe and check hvparams the way Ganeti's
 * `KVMHypervisor.PARAMETERS`, `CheckParameterSyntax`, `ValidateParameters` and
 * `AssessParameters` do, except that every problem is reported at once in one
 * {@link HvParamError}.
 *
 * Typical flow: `coerceHvParams(raw)` → `fillDefaults(coerced)` → `checkParameterSyntax(filled)`
 * (no I/O) → `await validateParameters(filled)` on the node that will run the instance.
 *
 * An instance migrates VMs through an injected monitor factory (one open monitor per
 * instance): `acceptInstance` on the destination, `migrateInstance` +
 * `waitForMigration` on the source, then `finalizeMigrationSource` /
 * `finalizeMigrationDst` on both. See docs/migration.md.
 */
export class KVMHypervisor {
  /** The hvparam registry: type, default, required, global, description, schema and checks per key. */
  static readonly PARAMETERS = HV_PARAMETERS;

  /**
   * Returns a new object holding `params` with every missing key set to its default. Unknown
   * keys are kept, so that {@link KVMHypervisor.checkParameterSyntax} reports them.
   */
  static fillDefaults(params: Partial<KvmHvParams>): KvmHvParams;
  static fillDefaults(params: Readonly<Record<string, unknown>>): Record<string, unknown>;
  static fillDefaults(params: Readonly<Record<string, unknown>>): Record<string, unknown> {
    return fillHvParamDefaults(params);
  }

  /**
   * Checks a filled set of hvparams without touching the world: unknown and missing keys,
   * types, required values (only `null` and `""` count as unspecified), per-key checks, then
   * the six cross-parameter rules. Throws {@link HvParamError} listing every problem.
   */
  static checkParameterSyntax(filled: Readonly<Record<string, unknown>>): void {
    checkHvParamsSyntax(filled);
  }

  /**
   * Node-side checks: files and directories exist, users and network interfaces exist, and,
   * when `context` supplies QEMU's `--help` text, machine list or version, what depends on
   * them. Rejects with {@link HvParamError} listing every problem.
   */
  static validateParameters(
    filled: Readonly<Record<string, unknown>>,
    context?: ValidationContext,
  ): Promise<void> {
    return validateHvParams(filled, context);
  }

  /** Warnings about valid but doubtful settings (generic CPU model, default bandwidth, …); `[]` when none. */
  static assessParameters(filled: Readonly<Record<string, unknown>>): string[] {
    return assessHvParams(filled);
  }

  /** JSON Schema of a filled set of hvparams, as a plain JSON-serializable object. */
  static jsonSchema(): Record<string, unknown> {
    return hvParamsJsonSchema();
  }

  /**
   * Throws {@link HvParamError} when instance-level hvparams contain a cluster-level-only key
   * (`migration_bandwidth`, `migration_mode`, `migration_port`), naming all of them.
   */
  static checkParamsNotGlobal(instanceParams: Readonly<Record<string, unknown>>): void {
    checkHvParamsNotGlobal(instanceParams);
  }

  private readonly factory: MonitorFactory;
  private readonly log: LoggerLike;
  private readonly monitors = new Map<string, Promise<Monitor>>();
  private readonly sessions = new Map<string, MigrationSession>();
  private readonly accepted = new Map<string, AcceptedMigration>();
  private readonly convergence: ConvergencePolicyOptions;
  private readonly tls: MigrationTlsOptions | undefined;
  private readonly lifecycle: InstanceLifecycle;
  private readonly layout: RunLayout;
  private readonly stateDir: string | undefined;
  private closed = false;
  /** Settles every call still pending when {@link close} runs. */
  private readonly closing: Promise<never>;
  private rejectPending: (e: Error) => void = () => {};

  /**
   * @param options `monitor`: opens an instance's monitor (default: QMP at
   * `<runDir>/<name>.qmp`); `logger`: pino or any {@link LoggerLike} (default silent); `convergence`: the
   * convergence policy's knobs.
   */
  constructor(options: KVMHypervisorOptions = {}) {
    this.log = options.logger ?? silentLogger;
    const layout = runLayout(options.instanceDir ?? DEFAULT_INSTANCE_RUN_DIR);
    this.layout = layout;
    this.stateDir = options.stateDir;
    this.closing = new Promise<never>((_, reject) => {
      this.rejectPending = reject;
    });
    this.closing.catch(() => {});
    const runDir = options.runDir ?? layout.ctrl;
    // An instance this library started: the socket its state file names.
    const socketOf = (name: string): string => {
      try {
        return readInstanceState(instancePaths(layout, name))?.qmp ?? join(runDir, `${name}.qmp`);
      } catch {
        return join(runDir, `${name}.qmp`);
      }
    };
    this.factory =
      options.monitor ?? ((name) => QmpMonitor.connect({ path: socketOf(name) }, { logger: this.log }));
    this.convergence = options.convergence ?? {};
    if (options.tls) checkTlsOptions(options.tls);
    this.tls = options.tls;
    this.lifecycle = new InstanceLifecycle({
      layout,
      log: this.log,
      monitor: (name, deadline) => this.monitorFor(name, deadline),
      forgetMonitor: (name) => this.forgetMonitor(name),
      ...(options.accel === undefined ? {} : { accel: options.accel }),
    });
  }

  /** Closes and drops the cached monitor of an instance. */
  private async forgetMonitor(name: string): Promise<void> {
    const cached = this.monitors.get(name);
    this.monitors.delete(name);
    this.sessions.get(name)?.detach();
    this.sessions.delete(name);
    this.accepted.delete(name);
    const m = await cached?.catch(() => undefined);
    await m?.close().catch(() => undefined);
  }

  /**
   * The folder of an instance's migration journals: `stateDir` when given, else the run
   * directory's `conf/` for an instance this object's run directory started. None for a
   * QEMU started elsewhere without `stateDir`: its migration lives in this object only.
   */
  private journalFor(name: string): MigrationJournal | undefined {
    if (this.stateDir !== undefined) return new MigrationJournal(this.stateDir);
    return this.lifecycle.startedHere(name) ? new MigrationJournal(this.layout.conf) : undefined;
  }

  /** Removes a journal; a failure is logged (the step itself succeeded). */
  private dropJournal(journal: MigrationJournal | undefined, name: string, role: MigrationRole): void {
    try {
      journal?.remove(name, role);
    } catch (e) {
      this.log.error({ instance: name, err: errorText(e) }, 'removing the migration journal failed');
    }
  }

  /** `p`, or the rejection of {@link close} if the object is closed first. */
  private untilClosed<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.closing]);
  }

  /**
   * The monitor of an instance: at most one is open per instance; a closed one is
   * replaced on the next call.
   */
  async monitorFor(instanceName: string, deadline?: Deadline): Promise<Monitor> {
    if (this.closed) throw closedError(instanceName);
    const cached = this.monitors.get(instanceName);
    if (cached) {
      const m = await (deadline ? deadline.race(cached, 'opening the monitor') : cached).catch(
        (e: unknown) => {
          if (e instanceof DeadlineError) throw e;
          return undefined;
        },
      );
      if (m && !m.closed) return m;
    }
    const opening = Promise.resolve().then(() => this.factory(instanceName));
    this.monitors.set(instanceName, opening);
    opening.catch(() => {
      if (this.monitors.get(instanceName) === opening) this.monitors.delete(instanceName);
    });
    const monitor = await (deadline
      ? deadline.race(opening, `opening the monitor of '${instanceName}'`)
      : opening);
    this.log.debug(
      { instance: instanceName, protocol: monitor.protocol, qemu: formatVersion(monitor.version) },
      'monitor open',
    );
    return monitor;
  }

  private async channel(instanceName: string, deadline: Deadline): Promise<VmChannel> {
    return new VmChannel(instanceName, await this.monitorFor(instanceName, deadline), this.log);
  }

  /** Coerces, fills and checks an instance's hvparams; throws `HvParamError` with every problem. */
  static instanceParameters(instance: Instance): KvmHvParams {
    return checkedHvParams(instance.hvparams);
  }

  private plan(instance: Instance, live?: boolean): MigrationPlan {
    const p = KVMHypervisor.instanceParameters(instance);
    return {
      bandwidthMiBps: p.migration_bandwidth,
      downtimeMs: p.migration_downtime,
      port: p.migration_port,
      capabilities: parseMigrationCaps(p.migration_caps),
      live: live ?? p.migration_mode !== 'non-live',
    };
  }

  /**
   * Destination side, before `migrateInstance` runs on the source: checks that the
   * destination QEMU (started with `-incoming tcp:HOST:migration_port`) waits for the
   * VM, and turns on the capabilities that must be on at both ends (`postcopy-ram`,
   * `multifd`, …). Returns those capabilities as QEMU names them. Settles within
   * `timeoutMs` (default 30 s).
   *
   * With `listen` (a destination started with `-incoming defer`) it then puts the TLS
   * credentials in place when the hypervisor has `tls`, and starts listening on
   * `listen:migration_port` last (`migrate-incoming`). With `tls`, `listen` is required.
   *
   * With `migrationInfo` (the source's {@link getMigrationInfo}) and `target` (the address
   * to listen on), it first **starts the destination QEMU** from that runtime, rendered for
   * this node's QEMU, with `-incoming defer`; sets the capabilities; puts the TLS
   * credentials in place when the hypervisor has `tls`; then listens on
   * `tcp:<target>:<migration_port>` (`migrate-incoming`). A failure before the source
   * starts kills that QEMU again. `finalizeMigrationDst` makes it this node's instance, or
   * stops it after a failure (unless it already holds the VM).
   */
  async acceptInstance(instance: Instance, options?: AcceptInstanceOptions): Promise<string[]>;
  async acceptInstance(
    instance: Instance,
    migrationInfo: string,
    target: string,
    options?: AcceptInstanceStartOptions,
  ): Promise<string[]>;
  async acceptInstance(
    instance: Instance,
    infoOrOptions?: string | AcceptInstanceOptions,
    target?: string,
    startOptions: AcceptInstanceStartOptions = {},
  ): Promise<string[]> {
    const plan = this.plan(instance);
    if (typeof infoOrOptions !== 'string') return this.acceptStarted(instance, plan, infoOrOptions ?? {});
    if (target === undefined) {
      throw new MigrationError(
        `instance '${instance.name}': acceptInstance with migration info needs a target address`,
        { instance: instance.name, changedVm: false },
      );
    }
    const uri = listenUri(instance.name, target, plan.port);
    if (this.tls) this.warnAll(await checkTlsFiles(this.tls, 'server'));
    const deadline = Deadline.after(startOptions.timeoutMs ?? DEFAULT_START_TIMEOUT_MS, startOptions.signal);
    const launched = await launchDestination(
      this.lifecycle,
      instance.name,
      infoOrOptions,
      deadline,
      startOptions.accel,
      nodeHvParamsOf(KVMHypervisor.instanceParameters(instance), instance.hvparams ?? {}),
    );
    try {
      return await this.acceptOn(instance, plan, uri, deadline, target);
    } catch (e) {
      // The source has not been told to send anything: this QEMU holds nothing.
      this.dropJournal(new MigrationJournal(this.layout.conf), instance.name, 'destination');
      throw await discardDestination(this.lifecycle, instance.name, launched, e).catch((err: unknown) => {
        this.log.error(
          { instance: instance.name, err: errorText(err) },
          'killing the destination QEMU failed',
        );
        return e;
      });
    }
  }

  /** `acceptInstance` for a destination QEMU started by someone else. */
  private async acceptStarted(
    instance: Instance,
    plan: MigrationPlan,
    options: AcceptInstanceOptions,
  ): Promise<string[]> {
    const uri =
      options.listen === undefined ? undefined : listenUri(instance.name, options.listen, plan.port);
    if (this.tls && uri === undefined) {
      throw new MigrationError(
        `instance '${instance.name}': migration over TLS needs a destination started with -incoming defer and acceptInstance(instance, { listen }), so that it listens only once the credentials are in place`,
        { instance: instance.name, changedVm: false },
      );
    }
    if (this.tls) this.warnAll(await checkTlsFiles(this.tls, 'server'));
    return this.acceptOn(instance, plan, uri, stepDeadline(options), options.listen);
  }

  /**
   * The destination's accept on an open monitor: capabilities, then (with `uri`) the TLS
   * credentials and `migrate-incoming`. Returns the capabilities as QEMU names them.
   */
  private async acceptOn(
    instance: Instance,
    plan: MigrationPlan,
    uri: string | undefined,
    deadline: Deadline,
    listen: string | undefined,
  ): Promise<string[]> {
    const name = instance.name;
    const ch = await this.stepChannel(name, deadline, 'accepting the migration');
    const tls = this.tls && tlsUsable(ch, this.tls, 'server') ? this.tls : undefined;
    const journal = this.journalFor(name);
    const hvparams = KVMHypervisor.instanceParameters(instance);
    const accepted = await this.controllerStep(ch, () =>
      acceptMigration(ch, plan.capabilities, deadline, (a) => {
        journal?.write(
          destinationJournalEntry(name, a, hvparams, {
            tls: tls !== undefined,
            live: plan.live,
            listen,
            uri,
          }),
        );
        void journal?.flush(name, 'destination');
      }),
    );
    this.accepted.set(name, { ...accepted, tls: tls !== undefined });
    if (uri !== undefined) {
      await this.controllerStep(ch, () =>
        startIncoming(
          ch,
          uri,
          tls && { endpoint: 'server', dir: tls.dir, allowedPeers: tls.allowedPeers },
          deadline,
        ),
      );
    }
    return accepted.capabilities;
  }

  /**
   * Source side: sets the bandwidth (`migration_bandwidth`, MiB/s) and the downtime
   * (`migration_downtime`, ms), applies every capability of `migration_caps`, and starts
   * the migration to `tcp:target:migration_port`, in the dialect of the monitor's
   * protocol and QEMU version. The settings it changes are snapshotted first and put back
   * by `finalizeMigrationSource`. Returns as soon as QEMU migrates in the background;
   * then call {@link waitForMigration}. `live` defaults to `migration_mode`. Throws
   * `HvParamError` or `MigrationError` (`changedVm` says whether anything was changed;
   * a failed set-up is rolled back). A second call while this object's migration of the
   * instance has not been finalized is refused without touching it.
   */
  async migrateInstance(
    instance: Instance,
    target: string,
    live?: boolean,
    options: MigrationStepOptions = {},
  ): Promise<void> {
    const plan = this.plan(instance, live);
    // Every check without I/O first: nothing is sent for a bad target.
    precheck(instance.name, plan, target);
    if (this.sessions.has(instance.name)) {
      throw new MigrationError(
        `instance '${instance.name}': a migration started by this object has not been finalized; call finalizeMigrationSource first`,
        { instance: instance.name, changedVm: false },
      );
    }
    const journal = this.journalFor(instance.name);
    const earlier = journal?.read(instance.name, 'source');
    if (earlier) {
      throw new MigrationError(
        `instance '${instance.name}': a migration to ${earlier.peer ?? 'another node'} (phase '${earlier.phase}', started ${new Date(earlier.startedAt).toISOString()} by process ${earlier.writerPid}, journal ${journal?.path(instance.name, 'source')}) has not been finalized: finalize it (finalizeMigrationSource) or recover it (recoverMigration, kvm-hv recover) first`,
        { instance: instance.name, changedVm: false },
      );
    }
    const hvparams = KVMHypervisor.instanceParameters(instance);
    if (this.tls) this.warnAll(await checkTlsFiles(this.tls, 'client'));
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'starting the migration');
    if (this.tls && tlsUsable(ch, this.tls, 'client')) {
      plan.tls = {
        endpoint: 'client',
        dir: this.tls.dir,
        ...(this.tls.hostname ? { hostname: this.tls.hostname } : {}),
      };
    }
    try {
      await startMigration(ch, plan, target, deadline, {
        // One atomic write before the first change: what a later process needs to finish
        // or undo this migration.
        beforeChange: (session) =>
          journal?.write(sourceJournalEntry(session, hvparams, target, plan.tls !== undefined)),
        onMigrateSent: (session) => this.sessions.set(instance.name, session),
        afterRollback: () => this.dropJournal(journal, instance.name, 'source'),
      });
    } finally {
      // fsync once the set-up is over, so that it does not compete with QEMU meanwhile.
      void journal?.flush(instance.name, 'source');
    }
  }

  /** One progress snapshot of the instance's migration (status `none` before any). */
  async getMigrationStatus(
    instance: Instance,
    options: MigrationStepOptions = {},
  ): Promise<MigrationProgress> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'reading the migration status');
    return ch.mustMigrationStatus(deadline);
  }

  /**
   * Destination side: the incoming migration as the destination QEMU sees it, with
   * QEMU's reason (`errorDesc`) where the version reports one.
   */
  async getIncomingMigrationStatus(
    instance: Instance,
    options: MigrationStepOptions = {},
  ): Promise<MigrationProgress> {
    return this.getMigrationStatus(instance, options);
  }

  /**
   * Waits for the migration started by {@link migrateInstance}: resolves on `completed`;
   * rejects with `MigrationError` carrying the status and QEMU's reason on `failed`,
   * `cancelled`, a lost or unresponsive monitor, unreadable status, an abort (`signal`)
   * or the timeout. Abort and timeout send `migrate_cancel` and settle within about a
   * second even when QEMU is frozen; a source is resumed only where the fail-safe rule
   * allows. The convergence policy raises the downtime or switches to post-copy meanwhile.
   */
  async waitForMigration(
    instance: Instance,
    options: WaitForMigrationOptions = {},
  ): Promise<MigrationResult> {
    const journal = this.journalFor(instance.name);
    let session = this.sessions.get(instance.name);
    if (!session) {
      // Started by another object or process: its journal says what it changed.
      const entry = journal?.read(instance.name, 'source');
      if (!entry) {
        throw new MigrationError(
          `instance '${instance.name}': no migration was started by this hypervisor object, and none is journaled on this node`,
          { instance: instance.name },
        );
      }
      const opening = Deadline.after(DEFAULT_STEP_TIMEOUT_MS, options.signal);
      session = sessionFromJournal(
        entry,
        await this.stepChannel(instance.name, opening, 'waiting for the migration'),
      );
      this.sessions.set(instance.name, session);
    }
    const user = options.onProgress;
    const onProgress = (p: MigrationProgress) => {
      const phase = p.status === 'completed' ? 'completed' : isPostcopy(p.status) ? 'postcopy' : undefined;
      if (phase) {
        try {
          journal?.advance(instance.name, 'source', phase);
        } catch (e) {
          this.log.error(
            { instance: instance.name, err: errorText(e) },
            'updating the migration journal failed',
          );
        }
      }
      user?.(p);
    };
    const timeoutMs =
      options.timeoutMs ??
      (instance.memoryMiB === undefined
        ? undefined
        : completionTimeoutMs(instance.memoryMiB * 2 ** 20, this.convergence));
    try {
      return await this.untilClosed(
        waitForMigration(
          session,
          this.convergence,
          {
            ...options,
            onProgress,
            ...(timeoutMs === undefined ? {} : { timeoutMs }),
            timeoutDefaulted: options.timeoutMs === undefined,
          },
          (deadline) => this.channel(instance.name, deadline),
        ),
      );
    } finally {
      session.detach();
    }
  }

  /**
   * Destination side, after `acceptInstance`: waits until the incoming migration has
   * arrived and the VM is loaded, and resolves with its run state (`running`, or `paused`
   * after a non-live migration). Polls the incoming status (`query-migrate` /
   * `info migrate`; a `MIGRATION` event wakes it early where QEMU sends them). Rejects
   * with `MigrationError` carrying `status` and QEMU's `reason` on `failed` or
   * `cancelled`; when the destination QEMU exits (it does when loading fails) or stops
   * answering; on `timeoutMs` or an abort (`signal`). Changes nothing on the VM: call
   * `finalizeMigrationDst(instance, true)` (or `false` after a failure) next.
   */
  async waitForIncomingMigration(
    instance: Instance,
    options: WaitForIncomingOptions = {},
  ): Promise<IncomingMigrationResult> {
    const opening = Deadline.after(DEFAULT_STEP_TIMEOUT_MS, options.signal);
    const ch = await this.stepChannel(instance.name, opening, 'waiting for the incoming migration');
    return this.untilClosed(this.controllerStep(ch, () => waitForIncoming(ch, options)));
  }

  /** Cancels the instance's running migration (`migrate_cancel`); refused during post-copy. */
  async cancelMigration(instance: Instance, options: MigrationStepOptions = {}): Promise<void> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'cancelling the migration');
    await this.controllerStep(ch, () => cancelMigration(ch, deadline));
  }

  /**
   * Post-copy recovery on either end: pauses the post-copy migration (`migrate-pause`, out
   * of band over QMP where QEMU negotiated it, so it overtakes a stuck main loop). A no-op
   * on an end already `postcopy-paused`; refused (a `MigrationError` naming the status)
   * outside post-copy. Stops, resumes and cancels nothing.
   */
  async pausePostcopy(instance: Instance, options: MigrationStepOptions = {}): Promise<PostcopyPauseResult> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'pausing the post-copy migration');
    return this.controllerStep(ch, () => pausePostcopy(ch, deadline));
  }

  /**
   * Post-copy recovery on the destination: `migrate-recover` on `uri` (e.g.
   * `tcp:0.0.0.0:8103`, a port other than the one the migration used), after which it
   * listens for the source's {@link resumePostcopy}. Requires the incoming migration to be
   * `postcopy-paused`; a refusal names the status found.
   */
  async acceptPostcopyRecovery(
    instance: Instance,
    uri: string,
    options: MigrationStepOptions = {},
  ): Promise<PostcopyRecoveryResult> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'accepting the post-copy recovery');
    return this.controllerStep(ch, () => acceptPostcopyRecovery(ch, uri, deadline));
  }

  /**
   * Post-copy recovery on the source: `migrate` with `resume` to `uri` (where the
   * destination accepted the recovery), then watches until the source reconnected. Requires
   * `postcopy-paused`; wait for the migration again afterwards ({@link waitForMigration}).
   */
  async resumePostcopy(
    instance: Instance,
    uri: string,
    options: MigrationStepOptions = {},
  ): Promise<PostcopyResumeResult> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'resuming the post-copy migration');
    return this.controllerStep(ch, () => resumePostcopy(ch, uri, deadline));
  }

  /**
   * Source side, after the migration. `success`: checks QEMU reports `completed` and
   * that the source is paused (`postmigrate`); a running source is stopped. Failure:
   * cancels a migration still running and resumes the VM (`cont`) only when the
   * fail-safe rule allows it: never when its run state is `postmigrate`, its migration
   * completed or is in post-copy, or its state cannot be read; then it throws
   * `MigrationError` saying why, and only `forceResume: true` (an operator override)
   * resumes it. Settings changed by `migrateInstance` are put back. After a success, the
   * source QEMU of an instance this object's run directory started (`startInstance`) is
   * stopped and its files removed, as Ganeti does.
   */
  async finalizeMigrationSource(
    instance: Instance,
    success: boolean,
    options: FinalizeMigrationSourceOptions | boolean = {},
  ): Promise<FinalizeOutcome> {
    // A boolean third argument is Ganeti's `live` flag, accepted and ignored.
    const opts = typeof options === 'boolean' ? {} : options;
    const plan = this.plan(instance);
    const session = this.sessions.get(instance.name);
    session?.detach();
    // Before the stop below removes the state file that places the journal.
    const journal = this.journalFor(instance.name);
    const entry = session ? undefined : journal?.read(instance.name, 'source');
    const deadline = stepDeadline(opts);
    let ch: VmChannel;
    try {
      ch = await this.stepChannel(instance.name, deadline, 'finalizing the source');
    } catch (e) {
      if (session && !isMonitorGone(e)) throw e;
      this.sessions.delete(instance.name);
      throw e;
    }
    const outcome = await this.controllerStep(ch, () =>
      finalizeSource(ch, success, {
        capabilities: plan.capabilities,
        session: session ?? (entry ? startedFromJournal(entry) : undefined),
        ...(opts.forceResume === undefined ? {} : { forceResume: opts.forceResume }),
        deadline,
      }),
    );
    this.sessions.delete(instance.name);
    if (success && this.lifecycle.startedHere(instance.name)) {
      // Ganeti's rule: the migrated source of an instance started here is stopped and its
      // files removed; it was verified paused after a completed migration just above.
      await stopInstance(this.lifecycle, instance.name, { force: true }).catch((e: unknown) => {
        throw new MigrationError(
          `instance '${instance.name}': the migration completed and the VM runs on the destination, but stopping the source QEMU failed: ${errorText(e)}`,
          { instance: instance.name, status: 'completed', cause: e },
        );
      });
    }
    this.dropJournal(journal, instance.name, 'source');
    return outcome;
  }

  /**
   * Destination side, after the migration. `success`: waits until the VM is loaded, puts
   * the capabilities back and makes sure the VM runs. Failure: quits the incoming QEMU
   * unless it already holds the VM; a destination QEMU that is already gone counts as
   * done (`action: 'already-gone'`).
   */
  async finalizeMigrationDst(
    instance: Instance,
    success: boolean,
    options: FinalizeMigrationDstOptions = {},
  ): Promise<FinalizeOutcome> {
    const plan = this.plan(instance);
    const deadline = stepDeadline(options);
    const journal = this.journalFor(instance.name);
    const entry = this.accepted.has(instance.name) ? undefined : journal?.read(instance.name, 'destination');
    let ch: VmChannel;
    try {
      ch = await this.stepChannel(instance.name, deadline, 'finalizing the destination');
    } catch (e) {
      if (!success && isMonitorGone(e)) {
        this.log.info({ instance: instance.name, err: errorText(e) }, 'the incoming QEMU is already gone');
        this.accepted.delete(instance.name);
        this.dropJournal(journal, instance.name, 'destination');
        const outcome: FinalizeOutcome = { side: 'destination', action: 'already-gone' };
        if (this.lifecycle.startedHere(instance.name))
          await settleDestination(this.lifecycle, instance.name, outcome);
        return outcome;
      }
      throw e;
    }
    const outcome = await this.controllerStep(ch, () =>
      finalizeDestination(ch, success, {
        capabilities: plan.capabilities,
        // Accepted by another object or process (kvm-hv accept, then finalize): with `tls`
        // configured, the credentials it put in place are removed too.
        accepted: this.accepted.get(instance.name) ?? (entry ? acceptedFromJournal(entry) : undefined),
        tls: this.tls !== undefined,
        incomingGraceMs: options.incomingGraceMs ?? 30_000,
        deadline,
      }),
    );
    this.accepted.delete(instance.name);
    if (this.lifecycle.startedHere(instance.name))
      await settleDestination(this.lifecycle, instance.name, outcome);
    // A destination kept after a failure report, or paused in post-copy, may hold the VM (or
    // part of it): its journal stays, so that a recovery can still finalize it and put its
    // capabilities back.
    if (
      outcome.action !== 'kept-running' &&
      outcome.action !== 'kept-paused' &&
      outcome.action !== 'postcopy-paused'
    ) {
      this.dropJournal(journal, instance.name, 'destination');
    }
    return outcome;
  }

  /** Logs each warning of a check. */
  private warnAll(warnings: string[]): void {
    for (const w of warnings) this.log.warn({}, w);
  }

  /** Opens the channel within the deadline; a deadline or connect failure becomes a `MigrationError`. */
  private async stepChannel(name: string, deadline: Deadline, what: string): Promise<VmChannel> {
    try {
      return await this.channel(name, deadline);
    } catch (e) {
      const timedOut = e instanceof DeadlineError && e.deadlineCause === 'timeout';
      // A QMP socket serves one client at a time: a second client waits for a greeting.
      const hint = timedOut
        ? ' (QEMU frozen, or another client holds its only monitor socket: QEMU serves one client per socket)'
        : '';
      throw new MigrationError(
        `instance '${name}': ${what}: cannot open the monitor: ${errorText(e)}${hint}`,
        {
          instance: name,
          cause: e,
          unresponsive: timedOut,
        },
      );
    }
  }

  /** Runs a step; a bare deadline error becomes a `MigrationError` that says the monitor was unresponsive. */
  private async controllerStep<T>(ch: VmChannel, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (e) {
      if (e instanceof DeadlineError) throw ch.error(`the monitor did not answer in time: ${e.message}`, e);
      throw e;
    }
  }

  /**
   * Finishes or undoes this node's end of a migration whose control plane died (the
   * process that ran accept, migrate or a finalize was killed), from the migration
   * journal and QEMU's own state; idempotent. A destination whose incoming migration
   * completed is made this node's instance (resumed if paused); one that received nothing
   * or failed is quit; one still receiving is waited for. A source whose migration failed
   * or never started is resumed under the fail-safe rule; one still migrating is waited
   * for (or cancelled with `active: 'cancel'`); one whose migration completed gets its
   * settings back, and its paused QEMU is stopped only with `destinationRuns` (the
   * caller checked that the destination runs the VM): until then the report says
   * `awaiting-destination`. Settings, capabilities and TLS objects are put back from the
   * journal. Never throws for what it finds: `settled: false` means someone must act, and
   * `message` says what. Throws `MigrationJournalError` for a damaged journal.
   */
  async recoverMigration(
    name: string,
    options: RecoverMigrationOptions = {},
  ): Promise<MigrationRecoveryReport> {
    const paths = this.lifecycle.paths(name);
    const journal = this.journalFor(name);
    const entry = journal?.read(name, 'destination') ?? journal?.read(name, 'source');
    let hvparams: Instance['hvparams'] = entry ? { ...entry.hvparams } : {};
    if (!entry && this.lifecycle.startedHere(name)) {
      try {
        hvparams = this.lifecycle.runtime(name).hvparams;
      } catch {
        hvparams = {};
      }
    }
    const instance: Instance = { name, hvparams };
    const session = this.sessions.get(name);
    const node: RecoveryNode = {
      log: this.log,
      journal,
      instance,
      inMemory: session
        ? { role: 'source', startedAt: session.startedAt }
        : this.accepted.has(name)
          ? { role: 'destination' }
          : undefined,
      started: session ?? (entry?.role === 'source' ? startedFromJournal(entry) : undefined),
      channel: (deadline) => this.stepChannel(name, deadline, 'recovering the migration'),
      processGone: () => {
        const state = readInstanceState(paths);
        return state === undefined ? undefined : !processAlive(state);
      },
      cleanupGone: () => this.lifecycle.cleanup(name),
      finalizeSource: (success, o) => this.finalizeMigrationSource(instance, success, o),
      finalizeDestination: (success, o) => this.finalizeMigrationDst(instance, success, o),
      waitForMigration: (o) => this.waitForMigration(instance, o),
    };
    return recoverNode(node, options);
  }

  /**
   * Starts an instance from its spec: checks the spec and its hvparams (every problem at
   * once, nothing started on error), probes the QEMU of `kvm_path`, resolves and writes the
   * runtime (`<conf>/<name>.runtime`), starts QEMU detached and paused, sets VNC/SPICE
   * passwords, pins vCPUs (`cpu_mask`), balloons to `memory.startupMiB`, then resumes it
   * (`cont`). Fails with QEMU's own error lines when it exits during start-up; a failed
   * start kills what it started. Resolves with the instance's info.
   */
  startInstance(spec: InstanceSpec, options: StartInstanceOptions = {}): Promise<InstanceInfo> {
    return this.lifecycle.start(spec, options);
  }

  /**
   * Stops an instance: the ACPI power button (when `acpi` is on and not `force`), waiting
   * up to `timeoutMs` for the guest to power off; then `quit`, SIGTERM and SIGKILL, each
   * bounded; then removes its runtime, state and socket files, also when QEMU was already
   * gone.
   */
  stopInstance(name: string, options: StopInstanceOptions = {}): Promise<StopOutcome> {
    return stopInstance(this.lifecycle, name, options);
  }

  /** Resets the machine (`system_reset`, a real reset, not kill-and-respawn); a powered-off or paused VM is resumed. */
  rebootInstance(name: string, options: { timeoutMs?: number } = {}): Promise<void> {
    return this.lifecycle.reboot(name, options.timeoutMs);
  }

  /** Names of the instances whose QEMU process runs (pid and start time match the state file). */
  listInstances(): string[] {
    return this.lifecycle.list();
  }

  /**
   * State (`running`, `paused`, `user-down` after the guest powered itself off, `shutdown`
   * after a shutdown the host asked for, `crashed` for a QEMU gone without a `SHUTDOWN`
   * event, `incoming`, `migrated`, `unresponsive`), pid, memory (`query-balloon`), vCPUs
   * (`query-cpus-fast`), uptime, and the recorded `SHUTDOWN` event. The record is on disk
   * (src/instance/shutdown.ts), so a new object or process tells the same. The QEMU must
   * answer `query-uuid` with the instance's UUID.
   */
  getInstanceInfo(name: string, options: { timeoutMs?: number } = {}): Promise<InstanceInfo> {
    return this.lifecycle.info(name, options.timeoutMs);
  }

  /** Removes the files of an instance whose QEMU is gone; refuses a live one. */
  cleanupInstance(name: string): Promise<void> {
    return this.lifecycle.cleanup(name);
  }

  /** Sets the guest's memory through the balloon (`balloon`), in MiB, at most `memory.maxMiB`. */
  balloonInstanceMemory(name: string, mib: number, options: { timeoutMs?: number } = {}): Promise<void> {
    return this.lifecycle.balloon(name, mib, options.timeoutMs);
  }

  /**
   * How a user reaches the console of instance `name` (Ganeti's `GetInstanceConsole`):
   * the serial console (socat on its socket) when `serial_console` is on, else VNC, else
   * SPICE, else a message. From the instance's runtime on this node; see
   * src/instance/console.ts for the differences.
   */
  getInstanceConsole(name: string, options: { socat?: string } = {}): InstanceConsole {
    return instanceConsole(this.lifecycle.runtime(name), this.lifecycle.paths(name), {
      ...options,
      interfaces: networkInterfaces(),
    });
  }

  /**
   * This node's memory (total, free, used by this run directory's instances), CPUs,
   * sockets, NUMA nodes and the version of the QEMU of `kvm_path` (Ganeti's `GetNodeInfo`;
   * `hvparams` default: the registry's, `kvm_path` `/usr/bin/kvm`).
   */
  getNodeInfo(hvparams: Readonly<Record<string, unknown>> = {}): Promise<NodeInfo> {
    return readNodeInfo({ kvmPath: checkedHvParams(hvparams).kvm_path, layout: this.layout });
  }

  /**
   * What this node needs to run instances (Ganeti's `Verify`): the QEMU of `kvm_path`,
   * socat, the run directory, and `/dev/kvm` with `requireKvm` or `kvm_flag=enabled`.
   * Every check is reported; `problems.join('; ')` is Ganeti's answer.
   */
  verify(
    hvparams: Readonly<Record<string, unknown>> = {},
    options: { requireKvm?: boolean; socat?: string } = {},
  ): Promise<NodeVerification> {
    const p = checkedHvParams(hvparams);
    return verifyNode({
      kvmPath: p.kvm_path,
      layout: this.layout,
      requireKvm: options.requireKvm === true || p.kvm_flag === 'enabled',
      ...(options.socat === undefined ? {} : { socat: options.socat }),
    });
  }

  /** The runtime of a running instance (JSON text) for `acceptInstance` on the target. */
  getMigrationInfo(name: string): string {
    return this.lifecycle.migrationInfo(name);
  }

  /** A migration of `name` that this object drives or a journal records: no hotplug then. */
  private hotplugGuard(): HotplugGuard {
    return {
      busy: (name) => {
        if (this.sessions.has(name)) return 'this object is migrating it (finalizeMigrationSource first)';
        if (this.accepted.has(name))
          return 'this object accepted a migration of it (finalizeMigrationDst first)';
        const journal = this.journalFor(name);
        for (const role of ['source', 'destination'] as const) {
          if (journal?.read(name, role)) {
            return `a ${role} migration journal of it is not finalized (finalize or recover it first)`;
          }
        }
        return undefined;
      },
    };
  }

  /**
   * Hot-adds a disk or a NIC to a running instance (Ganeti's `HotAddDevice`): checks it
   * against the instance (unique UUID, path, MAC) and the rules of
   * {@link verifyHotplugSupport}, takes the first free PCI slot from
   * `kvm_pci_reservations` (or SCSI target) left by the devices in the runtime, sends
   * `blockdev-add` + `device_add` (disk, model from `disk_type`) or `netdev_add` +
   * `device_add` (NIC, model from its `model` or `nic_type`), checks that QEMU has the
   * device, then saves the runtime with it, so that a migration carries it. QEMU opens the
   * disk image or tap by name. Refused during a migration. Returns the device's runtime
   * entry (`id`, `bus`).
   * @throws HotplugError naming the instance, the device and every reason (QEMU's own
   *   refusal quoted); nothing is left plugged in then.
   */
  hotAddDevice(
    name: string,
    target: 'disk',
    device: InstanceDisk,
    options?: HotplugOptions,
  ): Promise<RuntimeDisk>;
  hotAddDevice(
    name: string,
    target: 'nic',
    device: InstanceNic,
    options?: HotplugOptions,
  ): Promise<RuntimeNic>;
  hotAddDevice(
    name: string,
    target: HotplugTarget,
    device: InstanceDisk | InstanceNic,
    options: HotplugOptions = {},
  ): Promise<RuntimeDisk | RuntimeNic> {
    return hotAddDevice(this.lifecycle, name, target, device, options, this.hotplugGuard());
  }

  /**
   * Hot-removes a disk or NIC (Ganeti's `HotDelDevice`), named by UUID, QEMU id or (disk)
   * path: `device_del`, then waits up to `unplugTimeoutMs` (default 10 s) for the guest
   * to release it (`DEVICE_DELETED`: PCI devices need the guest's ACPI hotplug, SCSI disks
   * go at once), then `blockdev-del` / `netdev_del`, and saves the runtime without it (its
   * slot is free again). A guest that does not release it in time fails the call with the
   * device still in QEMU and in the runtime; calling again after the guest let it go
   * finishes the removal. Returns the removed entry.
   * @throws HotplugError naming the instance, the device and the reason.
   */
  hotDelDevice(
    name: string,
    target: HotplugTarget,
    ref: string,
    options: HotDelOptions = {},
  ): Promise<RuntimeDisk | RuntimeNic> {
    return hotDelDevice(this.lifecycle, name, target, ref, options, this.hotplugGuard());
  }

  /**
   * Hot-modifies a NIC (Ganeti's `HotModDevice`: NICs only): unplugs it and plugs it in
   * again at the same PCI slot with the new MAC and/or network; UUID, id and model stay.
   * If the new NIC cannot be plugged in, the old one is plugged in again. Disks are refused
   * (remove and add instead).
   * @throws HotplugError naming the instance, the device and the reason.
   */
  hotModDevice(
    name: string,
    target: HotplugTarget,
    ref: string,
    changes: NicChanges,
    options: HotDelOptions = {},
  ): Promise<RuntimeNic> {
    return hotModDevice(this.lifecycle, name, target, ref, changes, options, this.hotplugGuard());
  }

  /**
   * Resolves when `action` of `target` can be done on the running instance (Ganeti's
   * `VerifyHotplugSupport`): the model is hot-pluggable (`disk_type` paravirtual or SCSI;
   * every `nic_type` but `ne2k_isa`), the device would sit on a hot-pluggable bus (i440FX
   * `pci.0` with `acpi` on, or the instance's SCSI bus; not Q35's `pcie.0`), QEMU is not
   * chrooted (for adds), disks are not modified, and QEMU has the QMP commands. `model`:
   * the NIC model to check (default `nic_type`).
   * @throws HotplugError listing every reason.
   */
  verifyHotplugSupport(
    name: string,
    action: HotplugAction,
    target: HotplugTarget,
    options: HotplugOptions & { model?: string } = {},
  ): Promise<void> {
    return verifyHotplugSupport(this.lifecycle, name, action, target, options);
  }

  /**
   * Resolves when the instance runs and its QEMU (checked by UUID) has `device_add` and
   * `device_del` (Ganeti's `HotplugSupported`).
   * @throws HypervisorError when it does not run; HotplugError when QEMU lacks the commands.
   */
  hotplugSupported(name: string, options: HotplugOptions = {}): Promise<void> {
    return hotplugSupported(this.lifecycle, name, options);
  }

  /**
   * Closes every monitor this object opened. A wait still pending on this object rejects
   * at once with a `MigrationError`, and nothing reconnects through it afterwards; QEMU
   * carries on (a migration keeps running): wait for, finalize or recover it from another
   * object.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.rejectPending(closedError());
    for (const s of this.sessions.values()) s.detach();
    this.sessions.clear();
    const all = [...this.monitors.values()];
    this.monitors.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
}

/** The error of a call on (or pending on) a closed `KVMHypervisor`. */
function closedError(instance?: string): MigrationError {
  return new MigrationError(
    `${instance === undefined ? '' : `instance '${instance}': `}the hypervisor object was closed; QEMU goes on with what it was doing (a migration keeps running): wait for, finalize or recover it from another object`,
    instance === undefined ? {} : { instance },
  );
}
