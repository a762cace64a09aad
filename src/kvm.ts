/**
 * The KVM hypervisor: Ganeti's `KVMHypervisor` class, a facade. The static half describes
 * and checks hvparams (src/hvparams/); an instance wires three parts together and
 * documents each call for its users: the monitor pool (src/monitor-pool/: one open monitor
 * per instance), the instance life cycle (src/instance/: start, stop, reboot, info,
 * hotplug) and the migration controller (src/migration-controller/: the migrations this
 * object drives, their journals, every migration step). Each method is a line or two of
 * wiring under the TSDoc users read.
 */

import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
// HvParamError is named for TSDoc links.
import type { Deadline } from './core/deadline.js';
import type { FinalizeOutcome, HvParamError } from './errors.js';
import type { MigrationGuardOptions } from './guard/guard.js';
import { checkedHvParams } from './hvparams/checked.js';
import {
  assessHvParams,
  checkHvParamsNotGlobal,
  checkHvParamsSyntax,
  fillHvParamDefaults,
  HV_PARAMETERS,
  hvParamsJsonSchema,
  type KvmHvParams,
  type ValidationContext,
  validateHvParams,
} from './hvparams/index.js';
import type { AcceptInstanceStartOptions } from './instance/accept.js';
import { type InstanceConsole, instanceConsole } from './instance/console.js';
import {
  type HotDelOptions,
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
import { type InstanceInfo, InstanceLifecycle, type StartInstanceOptions } from './instance/lifecycle.js';
import type { RuntimeDisk, RuntimeNic } from './instance/runtime-schema.js';
import type { InstanceDisk, InstanceNic, InstanceSpec } from './instance/spec.js';
import { readInstanceState } from './instance/state.js';
import { type StopInstanceOptions, type StopOutcome, stopInstance } from './instance/stop.js';
import { type LoggerLike, silentLogger } from './logger.js';
import type { ConvergencePolicyOptions } from './migration/convergence.js';
import type {
  PostcopyPauseResult,
  PostcopyRecoveryResult,
  PostcopyResumeResult,
} from './migration/postcopy.js';
import type { MigrationRecoveryReport, RecoverMigrationOptions } from './migration/recover.js';
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
} from './migration/types.js';
import { MigrationController } from './migration-controller/controller.js';
import { QmpMonitor } from './monitor/qmp.js';
import type { Monitor } from './monitor/types.js';
import { closedError, type MonitorFactory, MonitorPool } from './monitor-pool/pool.js';
import { type NodeInfo, readNodeInfo } from './node/info.js';
import { type NodeVerification, verifyNode } from './node/verify.js';
import type { AcceleratorChoice } from './qemu/accel.js';
import { checkTlsOptions, type MigrationTlsOptions } from './tls/config.js';

export { DEFAULT_STEP_TIMEOUT_MS } from './migration-controller/controller.js';

/** Where Ganeti keeps the QMP sockets of its KVM instances (`<RUN_DIR>/kvm-hypervisor/ctrl`). */
export const DEFAULT_RUN_DIR = '/var/run/ganeti/kvm-hypervisor/ctrl';

/** Options of the `KVMHypervisor` constructor. */
export interface KVMHypervisorOptions {
  /** Opens an instance's monitor; default: QMP at `<runDir>/<name>.qmp`. */
  monitor?: MonitorFactory;
  /**
   * Folder of the default factory's sockets for QEMUs started by someone else (default
   * `<instanceDir>/ctrl`). Instances this library started are reached at the socket their
   * state file names.
   */
  runDir?: string;
  /**
   * Run directory of the instances this object starts (Ganeti's layout: `pid/`, `ctrl/`,
   * `conf/`, `chroot/`, `log/`; default `/var/run/ganeti/kvm-hypervisor`). Two objects on one
   * host (tests, demos) act as two nodes when given different folders.
   */
  instanceDir?: string;
  /**
   * Accelerator for instances whose `kvm_flag` is empty: `kvm`, `tcg` or `auto` (default
   * `$KVMHV_ACCEL`, else `auto`: KVM when `/dev/kvm` opens read-write).
   */
  accel?: AcceleratorChoice;
  /**
   * Folder of the migration journals (`<name>.source.migration`,
   * `<name>.destination.migration`) for QEMUs started elsewhere, so that every migration
   * step, and `recoverMigration`, works from a new object or process. Instances this
   * object's run directory started journal in its `conf/` folder without it. Without
   * either, a migration lives in this object's memory only.
   */
  stateDir?: string;
  /** A pino logger, or any object with pino's level methods ({@link LoggerLike}); default: silent. */
  logger?: LoggerLike;
  /** Knobs of the convergence policy (stall detection, downtime ceiling, timeouts). */
  convergence?: ConvergencePolicyOptions;
  /**
   * Migrate over TLS with this node's certificates (see docs/security.md). The source
   * (`migrateInstance`) uses the client certificate; the destination (`acceptInstance`
   * with `listen`) the server certificate and, with `allowedPeers`, accepts only those
   * clients. Checked at construction (`TlsConfigError`); the files are checked before
   * each migration.
   */
  tls?: MigrationTlsOptions;
  /**
   * The migration guard (docs/security.md, "The stall attack, and the migration guard"): a
   * library-owned process holds the migration's network end, admits only
   * `allowedAddresses` (when given), terminates TLS itself under a handshake deadline, and
   * relays to QEMU over a local UNIX socket, so that no stranger can stall QEMU. Default:
   * on when `tls` is set, off otherwise; `true` or an object turns it on for migrations in
   * clear too; `false` uses QEMU's own TLS (which a silent peer can freeze).
   */
  migrationGuard?: MigrationGuardOptions | boolean;
}

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

  private readonly log: LoggerLike;
  private readonly layout: RunLayout;
  private readonly monitors: MonitorPool;
  private readonly lifecycle: InstanceLifecycle;
  private readonly migrations: MigrationController;

  /**
   * @param options `monitor`: opens an instance's monitor (default: QMP at
   * `<runDir>/<name>.qmp`); `logger`: pino or any {@link LoggerLike} (default silent); `convergence`: the
   * convergence policy's knobs.
   */
  constructor(options: KVMHypervisorOptions = {}) {
    this.log = options.logger ?? silentLogger;
    const layout = runLayout(options.instanceDir ?? DEFAULT_INSTANCE_RUN_DIR);
    this.layout = layout;
    const runDir = options.runDir ?? layout.ctrl;
    // An instance this library started: the socket its state file names.
    const socketOf = (name: string): string => {
      try {
        return readInstanceState(instancePaths(layout, name))?.qmp ?? join(runDir, `${name}.qmp`);
      } catch {
        return join(runDir, `${name}.qmp`);
      }
    };
    this.monitors = new MonitorPool(
      options.monitor ?? ((name) => QmpMonitor.connect({ path: socketOf(name) }, { logger: this.log })),
      this.log,
    );
    if (options.tls) checkTlsOptions(options.tls);
    this.lifecycle = new InstanceLifecycle({
      layout,
      log: this.log,
      monitor: (name, deadline) => this.monitorFor(name, deadline),
      forgetMonitor: (name) => {
        this.migrations.forget(name);
        return this.monitors.forget(name);
      },
      ...(options.accel === undefined ? {} : { accel: options.accel }),
    });
    this.migrations = new MigrationController({
      log: this.log,
      monitorFor: (name, deadline) => this.monitorFor(name, deadline),
      lifecycle: this.lifecycle,
      layout,
      stateDir: options.stateDir,
      convergence: options.convergence ?? {},
      tls: options.tls,
      migrationGuard: options.migrationGuard,
    });
  }

  /**
   * The monitor of an instance: at most one is open per instance; a closed one is
   * replaced on the next call.
   */
  monitorFor(instanceName: string, deadline?: Deadline): Promise<Monitor> {
    return this.monitors.monitorFor(instanceName, deadline);
  }

  /** Coerces, fills and checks an instance's hvparams; throws `HvParamError` with every problem. */
  static instanceParameters(instance: Instance): KvmHvParams {
    return checkedHvParams(instance.hvparams);
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
  acceptInstance(instance: Instance, options?: AcceptInstanceOptions): Promise<string[]>;
  acceptInstance(
    instance: Instance,
    migrationInfo: string,
    target: string,
    options?: AcceptInstanceStartOptions,
  ): Promise<string[]>;
  acceptInstance(
    instance: Instance,
    infoOrOptions?: string | AcceptInstanceOptions,
    target?: string,
    startOptions: AcceptInstanceStartOptions = {},
  ): Promise<string[]> {
    return this.migrations.acceptInstance(instance, infoOrOptions, target, startOptions);
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
  migrateInstance(
    instance: Instance,
    target: string,
    live?: boolean,
    options: MigrationStepOptions = {},
  ): Promise<void> {
    return this.migrations.migrateInstance(instance, target, live, options);
  }

  /** One progress snapshot of the instance's migration (status `none` before any). */
  getMigrationStatus(instance: Instance, options: MigrationStepOptions = {}): Promise<MigrationProgress> {
    return this.migrations.getMigrationStatus(instance, options);
  }

  /**
   * Destination side: the incoming migration as the destination QEMU sees it, with
   * QEMU's reason (`errorDesc`) where the version reports one.
   */
  getIncomingMigrationStatus(
    instance: Instance,
    options: MigrationStepOptions = {},
  ): Promise<MigrationProgress> {
    return this.migrations.getIncomingMigrationStatus(instance, options);
  }

  /**
   * Waits for the migration started by {@link migrateInstance}: resolves on `completed`;
   * rejects with `MigrationError` carrying the status and QEMU's reason on `failed`,
   * `cancelled`, a lost or unresponsive monitor, unreadable status, an abort (`signal`)
   * or the timeout. Abort and timeout send `migrate_cancel` and settle within about a
   * second even when QEMU is frozen; a source is resumed only where the fail-safe rule
   * allows. The convergence policy raises the downtime or switches to post-copy meanwhile.
   */
  waitForMigration(instance: Instance, options: WaitForMigrationOptions = {}): Promise<MigrationResult> {
    return this.migrations.waitForMigration(instance, options);
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
  waitForIncomingMigration(
    instance: Instance,
    options: WaitForIncomingOptions = {},
  ): Promise<IncomingMigrationResult> {
    return this.migrations.waitForIncomingMigration(instance, options);
  }

  /** Cancels the instance's running migration (`migrate_cancel`); refused during post-copy. */
  cancelMigration(instance: Instance, options: MigrationStepOptions = {}): Promise<void> {
    return this.migrations.cancelMigration(instance, options);
  }

  /**
   * Post-copy recovery on either end: pauses the post-copy migration (`migrate-pause`, out
   * of band over QMP where QEMU negotiated it, so it overtakes a stuck main loop). A no-op
   * on an end already `postcopy-paused`; refused (a `MigrationError` naming the status)
   * outside post-copy. Stops, resumes and cancels nothing.
   */
  pausePostcopy(instance: Instance, options: MigrationStepOptions = {}): Promise<PostcopyPauseResult> {
    return this.migrations.pausePostcopy(instance, options);
  }

  /**
   * Post-copy recovery on the destination: `migrate-recover` on `uri` (e.g.
   * `tcp:0.0.0.0:8103`, a port other than the one the migration used), after which it
   * listens for the source's {@link resumePostcopy}. Requires the incoming migration to be
   * `postcopy-paused`; a refusal names the status found.
   */
  acceptPostcopyRecovery(
    instance: Instance,
    uri: string,
    options: MigrationStepOptions = {},
  ): Promise<PostcopyRecoveryResult> {
    return this.migrations.acceptPostcopyRecovery(instance, uri, options);
  }

  /**
   * Post-copy recovery on the source: `migrate` with `resume` to `uri` (where the
   * destination accepted the recovery), then watches until the source reconnected. Requires
   * `postcopy-paused`; wait for the migration again afterwards ({@link waitForMigration}).
   */
  resumePostcopy(
    instance: Instance,
    uri: string,
    options: MigrationStepOptions = {},
  ): Promise<PostcopyResumeResult> {
    return this.migrations.resumePostcopy(instance, uri, options);
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
  finalizeMigrationSource(
    instance: Instance,
    success: boolean,
    options: FinalizeMigrationSourceOptions | boolean = {},
  ): Promise<FinalizeOutcome> {
    return this.migrations.finalizeMigrationSource(instance, success, options);
  }

  /**
   * Destination side, after the migration. `success`: waits until the VM is loaded, puts
   * the capabilities back and makes sure the VM runs. Failure: quits the incoming QEMU
   * unless it already holds the VM; a destination QEMU that is already gone counts as
   * done (`action: 'already-gone'`).
   */
  finalizeMigrationDst(
    instance: Instance,
    success: boolean,
    options: FinalizeMigrationDstOptions = {},
  ): Promise<FinalizeOutcome> {
    return this.migrations.finalizeMigrationDst(instance, success, options);
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
  recoverMigration(name: string, options: RecoverMigrationOptions = {}): Promise<MigrationRecoveryReport> {
    return this.migrations.recoverMigration(name, options);
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
    return hotAddDevice(this.lifecycle, name, target, device, options, this.migrations.hotplugGuard());
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
    return hotDelDevice(this.lifecycle, name, target, ref, options, this.migrations.hotplugGuard());
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
    return hotModDevice(this.lifecycle, name, target, ref, changes, options, this.migrations.hotplugGuard());
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
    this.migrations.close(closedError());
    await this.monitors.close();
  }
}
