/**
 * The migration controller behind `KVMHypervisor`: the migrations this object drives
 * (source sessions, accepted destinations), their journals on disk, and every migration
 * step (accept, migrate, wait, cancel, post-copy recovery, finalize, recover) wired from
 * src/migration/ onto an instance's monitor and, for instances this node's run directory
 * started, onto src/instance/ (start the destination QEMU, stop the migrated source).
 * `KVMHypervisor` (src/kvm.ts) holds one and documents each step for its users.
 */

import { Deadline, DeadlineError } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { type FinalizeOutcome, MigrationError } from '../errors.js';
import type { MigrationGuardOptions } from '../guard/guard.js';
import { GuardKeeper, type GuardPlace, guardEnabled } from '../guard/keeper.js';
import { checkedHvParams } from '../hvparams/checked.js';
import { parseMigrationCaps } from '../hvparams/index.js';
import {
  type AcceptInstanceStartOptions,
  discardDestination,
  launchDestination,
  nodeHvParamsOf,
  settleDestination,
} from '../instance/accept.js';
import type { HotplugGuard } from '../instance/hotplug.js';
import { instancePaths, type RunLayout } from '../instance/layout.js';
import { DEFAULT_START_TIMEOUT_MS, type InstanceLifecycle } from '../instance/lifecycle.js';
import { processAlive } from '../instance/process.js';
import { readInstanceState } from '../instance/state.js';
import { stopInstance } from '../instance/stop.js';
import type { LoggerLike } from '../logger.js';
import { isMonitorGone, VmChannel } from '../migration/channel.js';
import { type ConvergencePolicyOptions, completionTimeoutMs } from '../migration/convergence.js';
import {
  type AcceptedMigration,
  acceptMigration,
  finalizeDestination,
  startIncoming,
} from '../migration/destination.js';
import { waitForIncoming } from '../migration/incoming.js';
import {
  acceptedFromJournal,
  destinationJournalEntry,
  MigrationJournal,
  type MigrationRole,
  sessionFromJournal,
  sourceJournalEntry,
  startedFromJournal,
} from '../migration/journal.js';
import {
  acceptPostcopyRecovery,
  type PostcopyPauseResult,
  type PostcopyRecoveryResult,
  type PostcopyResumeResult,
  pausePostcopy,
  resumePostcopy,
} from '../migration/postcopy.js';
import {
  type MigrationRecoveryReport,
  type RecoverMigrationOptions,
  type RecoveryNode,
  recoverNode,
} from '../migration/recover.js';
import { isPostcopy } from '../migration/safety.js';
import type { MigrationPlan, MigrationSession } from '../migration/session.js';
import { precheck, startMigration } from '../migration/setup.js';
import { cancelMigration, finalizeSource } from '../migration/source.js';
import { listenUri, tlsUsable } from '../migration/tls.js';
import type {
  AcceptInstanceOptions,
  FinalizeMigrationDstOptions,
  FinalizeMigrationSourceOptions,
  IncomingMigrationResult,
  Instance,
  MigrationProgress,
  MigrationResult,
  MigrationStepOptions,
  WaitForIncomingOptions,
  WaitForMigrationOptions,
} from '../migration/types.js';
import { waitForMigration } from '../migration/wait.js';
import type { Monitor } from '../monitor/types.js';
import { checkTlsFiles, type MigrationTlsOptions } from '../tls/config.js';

/** Default limit of finalize, cancel, accept and status steps (ms). */
export const DEFAULT_STEP_TIMEOUT_MS = 30_000;

const stepDeadline = (o: MigrationStepOptions): Deadline =>
  Deadline.after(o.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS, o.signal);

/** What a {@link MigrationController} works with; `KVMHypervisor` builds it from its options. */
export interface MigrationControllerOptions {
  log: LoggerLike;
  /** The instance's open monitor (the hypervisor's monitor pool). */
  monitorFor: (name: string, deadline: Deadline) => Promise<Monitor>;
  /** The instances of this node's run directory. */
  lifecycle: InstanceLifecycle;
  layout: RunLayout;
  /** `KVMHypervisorOptions.stateDir`: where the migration journals go. */
  stateDir: string | undefined;
  convergence: ConvergencePolicyOptions;
  tls: MigrationTlsOptions | undefined;
  /** `KVMHypervisorOptions.migrationGuard`. */
  migrationGuard: MigrationGuardOptions | boolean | undefined;
}

/** The migrations of one `KVMHypervisor`. */
export class MigrationController {
  private readonly sessions = new Map<string, MigrationSession>();
  private readonly accepted = new Map<string, AcceptedMigration>();
  private readonly log: LoggerLike;
  private readonly lifecycle: InstanceLifecycle;
  private readonly layout: RunLayout;
  private readonly stateDir: string | undefined;
  private readonly convergence: ConvergencePolicyOptions;
  private readonly tls: MigrationTlsOptions | undefined;
  /** Starts (when {@link guardOn}) and ends (always: a guard recorded by another process) migration guards. */
  private readonly guard: GuardKeeper;
  /** Whether this object's migrations go through the migration guard (src/guard/). */
  private readonly guardOn: boolean;
  /** Settles every call still pending when {@link close} runs. */
  private readonly closing: Promise<never>;
  private rejectPending: (e: Error) => void = () => {};

  constructor(private readonly options: MigrationControllerOptions) {
    this.log = options.log;
    this.lifecycle = options.lifecycle;
    this.layout = options.layout;
    this.stateDir = options.stateDir;
    this.convergence = options.convergence;
    this.tls = options.tls;
    this.guardOn = guardEnabled(options.migrationGuard, options.tls);
    this.guard = new GuardKeeper(options.migrationGuard, options.tls, this.log);
    this.closing = new Promise<never>((_, reject) => {
      this.rejectPending = reject;
    });
    this.closing.catch(() => {});
  }

  /** Drops what this object knows of an instance's migration (its monitor was closed). */
  forget(name: string): void {
    this.sessions.get(name)?.detach();
    this.sessions.delete(name);
    this.accepted.delete(name);
  }

  /** Rejects every wait still pending with `error` and detaches the sessions. */
  close(error: Error): void {
    this.rejectPending(error);
    for (const s of this.sessions.values()) s.detach();
    this.sessions.clear();
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
  private guardPlace(name: string): GuardPlace {
    const here = this.lifecycle.startedHere(name);
    const paths = here ? instancePaths(this.layout, name) : undefined;
    let qemuPid: number | undefined;
    try {
      qemuPid = paths ? readInstanceState(paths)?.pid : undefined;
    } catch {
      qemuPid = undefined;
    }
    return { dir: this.stateDir ?? (here ? this.layout.conf : undefined), log: paths?.log, qemuPid };
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

  private async channel(instanceName: string, deadline: Deadline): Promise<VmChannel> {
    return new VmChannel(instanceName, await this.options.monitorFor(instanceName, deadline), this.log);
  }

  private plan(instance: Instance, live?: boolean): MigrationPlan {
    const p = checkedHvParams(instance.hvparams);
    return {
      bandwidthMiBps: p.migration_bandwidth,
      downtimeMs: p.migration_downtime,
      port: p.migration_port,
      capabilities: parseMigrationCaps(p.migration_caps),
      live: live ?? p.migration_mode !== 'non-live',
    };
  }

  /** The work of `KVMHypervisor.acceptInstance` (its TSDoc is the contract). */
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
      nodeHvParamsOf(checkedHvParams(instance.hvparams), instance.hvparams ?? {}),
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
    // With the guard, QEMU listens on a local socket and the guard on the network (and
    // does the TLS): QEMU's own TLS stays off.
    const guard = uri !== undefined && listen !== undefined && this.guardOn ? this.guard : undefined;
    const place = this.guardPlace(name);
    const socket = guard?.destinationSocket(name, place);
    if (socket !== undefined) uri = `unix:${socket}`;
    const tls = !guard && this.tls && tlsUsable(ch, this.tls, 'server') ? this.tls : undefined;
    const journal = this.journalFor(name);
    const hvparams = checkedHvParams(instance.hvparams);
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
      const qemuUri = uri;
      await this.controllerStep(ch, () =>
        startIncoming(
          ch,
          qemuUri,
          tls && { endpoint: 'server', dir: tls.dir, allowedPeers: tls.allowedPeers },
          deadline,
        ),
      );
    }
    if (guard && socket !== undefined && listen !== undefined) {
      await guard.startDestination(name, listen, plan.port, socket, place);
    }
    return accepted.capabilities;
  }

  /** The work of `KVMHypervisor.migrateInstance` (its TSDoc is the contract). */
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
    const hvparams = checkedHvParams(instance.hvparams);
    if (this.tls) this.warnAll(await checkTlsFiles(this.tls, 'client'));
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'starting the migration');
    if (this.tls && !this.guardOn && tlsUsable(ch, this.tls, 'client')) {
      plan.tls = {
        endpoint: 'client',
        dir: this.tls.dir,
        ...(this.tls.hostname ? { hostname: this.tls.hostname } : {}),
      };
    }
    // With the guard and TLS, QEMU migrates to its local socket; the guard connects and
    // does the TLS handshake under its deadlines, so a silent peer cannot freeze this QEMU.
    // In clear QEMU connects without blocking its main loop: no relay (it costs throughput).
    const place = this.guardPlace(instance.name);
    if (this.guardOn && this.tls)
      plan.uri = (await this.guard.startSource(instance.name, target, plan.port, place)).uri;
    try {
      await startMigration(ch, plan, target, deadline, {
        // One atomic write before the first change: what a later process needs to finish
        // or undo this migration.
        beforeChange: (session) =>
          journal?.write(sourceJournalEntry(session, hvparams, target, plan.tls !== undefined)),
        onMigrateSent: (session) => this.sessions.set(instance.name, session),
        afterRollback: () => this.dropJournal(journal, instance.name, 'source'),
      });
    } catch (e) {
      if (!this.sessions.has(instance.name)) await this.guard.end(instance.name, 'source', place);
      throw e;
    } finally {
      // fsync once the set-up is over, so that it does not compete with QEMU meanwhile.
      void journal?.flush(instance.name, 'source');
    }
  }

  /** The work of `KVMHypervisor.getMigrationStatus` (its TSDoc is the contract). */
  async getMigrationStatus(
    instance: Instance,
    options: MigrationStepOptions = {},
  ): Promise<MigrationProgress> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'reading the migration status');
    return ch.mustMigrationStatus(deadline);
  }

  /** The work of `KVMHypervisor.getIncomingMigrationStatus` (its TSDoc is the contract). */
  async getIncomingMigrationStatus(
    instance: Instance,
    options: MigrationStepOptions = {},
  ): Promise<MigrationProgress> {
    return this.getMigrationStatus(instance, options);
  }

  /** The work of `KVMHypervisor.waitForMigration` (its TSDoc is the contract). */
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

  /** The work of `KVMHypervisor.waitForIncomingMigration` (its TSDoc is the contract). */
  async waitForIncomingMigration(
    instance: Instance,
    options: WaitForIncomingOptions = {},
  ): Promise<IncomingMigrationResult> {
    const opening = Deadline.after(DEFAULT_STEP_TIMEOUT_MS, options.signal);
    const ch = await this.stepChannel(instance.name, opening, 'waiting for the incoming migration');
    return this.untilClosed(this.controllerStep(ch, () => waitForIncoming(ch, options)));
  }

  /** The work of `KVMHypervisor.cancelMigration` (its TSDoc is the contract). */
  async cancelMigration(instance: Instance, options: MigrationStepOptions = {}): Promise<void> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'cancelling the migration');
    await this.controllerStep(ch, () => cancelMigration(ch, deadline));
  }

  /** The work of `KVMHypervisor.pausePostcopy` (its TSDoc is the contract). */
  async pausePostcopy(instance: Instance, options: MigrationStepOptions = {}): Promise<PostcopyPauseResult> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'pausing the post-copy migration');
    return this.controllerStep(ch, () => pausePostcopy(ch, deadline));
  }

  /** The work of `KVMHypervisor.acceptPostcopyRecovery` (its TSDoc is the contract). */
  async acceptPostcopyRecovery(
    instance: Instance,
    uri: string,
    options: MigrationStepOptions = {},
  ): Promise<PostcopyRecoveryResult> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'accepting the post-copy recovery');
    return this.controllerStep(ch, () => acceptPostcopyRecovery(ch, uri, deadline));
  }

  /** The work of `KVMHypervisor.resumePostcopy` (its TSDoc is the contract). */
  async resumePostcopy(
    instance: Instance,
    uri: string,
    options: MigrationStepOptions = {},
  ): Promise<PostcopyResumeResult> {
    const deadline = stepDeadline(options);
    const ch = await this.stepChannel(instance.name, deadline, 'resuming the post-copy migration');
    return this.controllerStep(ch, () => resumePostcopy(ch, uri, deadline));
  }

  /** The work of `KVMHypervisor.finalizeMigrationSource` (its TSDoc is the contract). */
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
    const guardPlace = this.guardPlace(instance.name);
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
    // Only once the source is settled: a guard still carries a running (post-copy) stream.
    await this.guard.end(instance.name, 'source', guardPlace);
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

  /** The work of `KVMHypervisor.finalizeMigrationDst` (its TSDoc is the contract). */
  async finalizeMigrationDst(
    instance: Instance,
    success: boolean,
    options: FinalizeMigrationDstOptions = {},
  ): Promise<FinalizeOutcome> {
    const plan = this.plan(instance);
    const deadline = stepDeadline(options);
    const journal = this.journalFor(instance.name);
    const entry = this.accepted.has(instance.name) ? undefined : journal?.read(instance.name, 'destination');
    const guardPlace = this.guardPlace(instance.name);
    let ch: VmChannel;
    try {
      ch = await this.stepChannel(instance.name, deadline, 'finalizing the destination');
    } catch (e) {
      if (!success && isMonitorGone(e)) {
        this.log.info({ instance: instance.name, err: errorText(e) }, 'the incoming QEMU is already gone');
        this.accepted.delete(instance.name);
        this.dropJournal(journal, instance.name, 'destination');
        await this.guard.end(instance.name, 'destination', guardPlace);
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
    // In post-copy the stream (through the guard, when there is one) still carries pages.
    const split = outcome.action === 'split' || outcome.action === 'postcopy-paused';
    if (!split) await this.guard.end(instance.name, 'destination', guardPlace);
    if (this.lifecycle.startedHere(instance.name))
      await settleDestination(this.lifecycle, instance.name, outcome);
    // A destination kept after a failure report, or paused in post-copy, may hold the VM (or
    // part of it): its journal stays, so that a recovery can still finalize it and put its
    // capabilities back.
    if (outcome.action !== 'kept-running' && outcome.action !== 'kept-paused' && !split) {
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

  /** The work of `KVMHypervisor.recoverMigration` (its TSDoc is the contract). */
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

  /** A migration of `name` that this object drives or a journal records: no hotplug then. */
  hotplugGuard(): HotplugGuard {
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
}
