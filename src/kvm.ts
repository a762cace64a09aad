/**
 * The KVM hypervisor: Ganeti's `KVMHypervisor` class. The static half owns the hvparam
 * registry and its checks; an instance owns one monitor per VM and drives migrations.
 */

import { join } from 'node:path';
import { type Logger, pino } from 'pino';
// HvParamError is named for TSDoc links.
import { type HvParamError, MigrationError } from './errors.js';
import {
  assessHvParams,
  checkHvParamsNotGlobal,
  checkHvParamsSyntax,
  coerceHvParams,
  fillHvParamDefaults,
  HV_PARAMETERS,
  hvParamsJsonSchema,
  type KvmHvParams,
  parseMigrationCaps,
  type ValidationContext,
  validateHvParams,
} from './hvparams/index.js';
import { MigrationController, type MigrationPlan, type MigrationSession } from './migration/controller.js';
import { type ConvergencePolicyOptions, completionTimeoutMs } from './migration/convergence.js';
import type {
  Instance,
  KVMHypervisorOptions,
  MigrationProgress,
  MigrationResult,
  MonitorFactory,
  WaitForMigrationOptions,
} from './migration/types.js';
import { QmpMonitor } from './monitor/qmp.js';
import type { Monitor } from './monitor/types.js';
import { formatVersion } from './qemu/version.js';

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
  private readonly log: Logger;
  private readonly controller: MigrationController;
  private readonly monitors = new Map<string, Promise<Monitor>>();
  private readonly sessions = new Map<string, MigrationSession>();
  private readonly convergence: ConvergencePolicyOptions;

  /**
   * @param options `monitor`: opens an instance's monitor (default: QMP at
   * `<runDir>/<name>.qmp`); `logger`: a pino logger (default silent); `convergence`: the
   * convergence policy's knobs.
   */
  constructor(options: KVMHypervisorOptions = {}) {
    this.log = options.logger ?? pino({ level: 'silent' });
    const runDir = options.runDir ?? DEFAULT_RUN_DIR;
    this.factory =
      options.monitor ??
      ((name) => QmpMonitor.connect({ path: join(runDir, `${name}.qmp`) }, { logger: this.log }));
    this.convergence = options.convergence ?? {};
    this.controller = new MigrationController(this.log, this.convergence);
  }

  /**
   * The monitor of an instance: at most one is open per instance; a closed one is
   * replaced on the next call.
   */
  async monitorFor(instanceName: string): Promise<Monitor> {
    const cached = this.monitors.get(instanceName);
    if (cached) {
      const m = await cached.catch(() => undefined);
      if (m && !m.closed) return m;
    }
    const opening = Promise.resolve().then(() => this.factory(instanceName));
    this.monitors.set(instanceName, opening);
    try {
      const monitor = await opening;
      this.log.debug(
        { instance: instanceName, protocol: monitor.protocol, qemu: formatVersion(monitor.version) },
        'monitor open',
      );
      return monitor;
    } catch (e) {
      this.monitors.delete(instanceName);
      throw e;
    }
  }

  /** Coerces, fills and checks an instance's hvparams; throws `HvParamError` with every problem. */
  static instanceParameters(instance: Instance): KvmHvParams {
    const filled = KVMHypervisor.fillDefaults(coerceHvParams({ ...(instance.hvparams ?? {}) }));
    KVMHypervisor.checkParameterSyntax(filled);
    return filled;
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
   * `multifd`, …). Returns those capabilities as QEMU names them.
   */
  async acceptInstance(instance: Instance): Promise<string[]> {
    const plan = this.plan(instance);
    return this.controller.accept(instance.name, await this.monitorFor(instance.name), plan.capabilities);
  }

  /**
   * Source side: sets the bandwidth (`migration_bandwidth`, MiB/s) and the downtime
   * (`migration_downtime`, ms), applies every capability of `migration_caps`, and starts
   * the migration to `tcp:target:migration_port`, in the dialect of the monitor's
   * protocol and QEMU version. Returns as soon as QEMU migrates in the background; then
   * call {@link waitForMigration}. `live` defaults to `migration_mode`. Throws
   * `HvParamError` or `MigrationError` (after rolling back) and leaves the VM running.
   */
  async migrateInstance(instance: Instance, target: string, live?: boolean): Promise<void> {
    const plan = this.plan(instance, live);
    // Every check without I/O first: nothing is sent for a bad target.
    this.controller.precheck(instance.name, plan, target);
    const monitor = await this.monitorFor(instance.name);
    this.sessions.get(instance.name)?.detach();
    const session = await this.controller.start(instance.name, monitor, plan, target);
    this.sessions.set(instance.name, session);
  }

  /** One progress snapshot of the instance's migration (status `none` before any). */
  async getMigrationStatus(instance: Instance): Promise<MigrationProgress> {
    return this.controller.migrationStatus(instance.name, await this.monitorFor(instance.name));
  }

  /**
   * Waits for the migration started by {@link migrateInstance}: resolves on `completed`;
   * rejects with `MigrationError` carrying the status and QEMU's reason on `failed`,
   * `cancelled`, a lost monitor, an abort (`signal`) or the completion timeout (both
   * send `migrate_cancel` and leave the source running). The convergence policy raises
   * the downtime or switches to post-copy while it waits.
   */
  async waitForMigration(
    instance: Instance,
    options: WaitForMigrationOptions = {},
  ): Promise<MigrationResult> {
    const session = this.sessions.get(instance.name);
    if (!session) {
      throw new MigrationError(
        `instance '${instance.name}': no migration was started by this hypervisor object`,
        {
          instance: instance.name,
        },
      );
    }
    const timeoutMs =
      options.timeoutMs ??
      (instance.memoryMiB === undefined
        ? undefined
        : completionTimeoutMs(instance.memoryMiB * 2 ** 20, this.convergence));
    try {
      return await this.controller.wait(session, {
        ...options,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
      });
    } finally {
      if (this.sessions.get(instance.name) === session) this.sessions.delete(instance.name);
    }
  }

  /** Cancels the instance's running migration (`migrate_cancel`); refused during post-copy. */
  async cancelMigration(instance: Instance): Promise<void> {
    await this.controller.cancel(instance.name, await this.monitorFor(instance.name));
  }

  /**
   * Source side, after the migration. `success`: checks QEMU reports `completed` and
   * that the source is paused (`postmigrate`). Failure: cancels a migration still
   * running, resumes the VM (`cont`) and clears the capabilities; it refuses to resume a
   * source whose migration completed, so that the VM never runs twice.
   */
  async finalizeMigrationSource(instance: Instance, success: boolean, _live?: boolean): Promise<void> {
    const plan = this.plan(instance);
    this.sessions.get(instance.name)?.detach();
    this.sessions.delete(instance.name);
    await this.controller.finalizeSource(
      instance.name,
      await this.monitorFor(instance.name),
      success,
      plan.capabilities,
    );
  }

  /**
   * Destination side, after the migration. `success`: clears the capabilities and makes
   * sure the VM runs. Failure: quits the incoming QEMU, unless it already runs the VM.
   */
  async finalizeMigrationDst(instance: Instance, success: boolean): Promise<void> {
    const plan = this.plan(instance);
    await this.controller.finalizeDestination(
      instance.name,
      await this.monitorFor(instance.name),
      success,
      plan.capabilities,
    );
  }

  /** Closes every monitor this object opened. */
  async close(): Promise<void> {
    for (const s of this.sessions.values()) s.detach();
    this.sessions.clear();
    const all = [...this.monitors.values()];
    this.monitors.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
}
