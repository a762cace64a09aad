/**
 * The migration engine: sends a dialect's commands through a {@link Monitor}, waits for
 * the outcome (event-driven where QEMU has the `events` capability, polling otherwise),
 * applies the convergence policy, cancels, and finalizes both sides.
 *
 * Invariants it keeps:
 * - Nothing is changed on a VM before every check that can fail without I/O (target,
 *   downtime range, capability names, versions, combinations) has passed.
 * - A failure while setting up rolls back what was changed (capabilities cleared, a
 *   stopped VM resumed), so a failed migration leaves the source running.
 * - A migration that QEMU reports `completed` is never undone: the source is not resumed
 *   and the destination is not stopped, so the VM never runs twice and is never lost.
 */
import type { Logger } from 'pino';
import { HypervisorError, MigrationError, MonitorClosedError } from '../errors.js';
import type { Monitor, MonitorEvent } from '../monitor/types.js';
import { findCapability } from '../qemu/capabilities.js';
import { formatVersion, versionAtLeast } from '../qemu/version.js';
import {
  ConvergencePolicy,
  type ConvergencePolicyOptions,
  completionTimeoutMs,
  QEMU_MAX_DOWNTIME_MS,
} from './convergence.js';
import {
  capabilityCommands,
  describeCommand,
  dialectFor,
  downtimeCommand,
  type MigrationDialect,
  type MonitorCommand,
  migrateCommand,
  parameterCommands,
  resolveCapabilities,
  simpleCommand,
} from './dialect.js';
import {
  ACTIVE_STATUSES,
  parseInfoMigrate,
  parseInfoMigrateCapabilities,
  parseInfoStatus,
  parseQueryMigrate,
  TERMINAL_STATUSES,
} from './status.js';
import { migrationUri } from './target.js';
import type { MigrationProgress, MigrationResult, WaitForMigrationOptions } from './types.js';

/** What the source side needs to know to start a migration (from the filled hvparams). */
export interface MigrationPlan {
  /** `migration_bandwidth`, MiB/s. */
  bandwidthMiBps: number;
  /** `migration_downtime`, ms. */
  downtimeMs: number;
  /** `migration_port`. */
  port: number;
  /** `migration_caps`, split. */
  capabilities: string[];
  /** Live (true) or stop-and-copy (false). */
  live: boolean;
}

/** A migration started by {@link MigrationController.start}; pass it to `wait`/`cancel`. */
export interface MigrationSession {
  readonly instance: string;
  readonly monitor: Monitor;
  readonly dialect: MigrationDialect;
  /** Capabilities turned on, as this QEMU names them. */
  readonly capabilities: string[];
  /** True when MIGRATION events report the status. */
  readonly eventsEnabled: boolean;
  /** True when `postcopy-ram` is on. */
  readonly postcopy: boolean;
  readonly live: boolean;
  /** The VM ran before the migration started. */
  readonly wasRunning: boolean;
  readonly downtimeMs: number;
  readonly uri: string;
  readonly startedAt: number;
  /** Status from the last MIGRATION event. */
  lastEventStatus?: string;
  /** How many MIGRATION/MIGRATION_PASS events (and closes) arrived so far. */
  readonly eventCount: number;
  /**
   * Calls `wake` once as soon as {@link eventCount} differs from `seen` (at once if it
   * already does, so an event that came while the caller was busy is not missed).
   * Returns a function that cancels the call.
   */
  onEventAfter(seen: number, wake: () => void): () => void;
  /** Stops listening to the monitor. */
  detach(): void;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Waits `ms`, or less: until `signal` aborts or, with a session, its next event after `seen`. */
const pause = (
  ms: number,
  signal: AbortSignal | undefined,
  session: MigrationSession | undefined,
  seen: number,
) =>
  new Promise<void>((resolve) => {
    let cancelWake = () => {};
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      cancelWake();
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
    if (signal?.aborted) done();
    else if (session) cancelWake = session.onEventAfter(seen, done);
  });

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Runs migrations over monitors; one instance serves any number of VMs. */
export class MigrationController {
  private readonly log: Logger;
  private readonly policy: ConvergencePolicyOptions;

  constructor(logger: Logger, policy: ConvergencePolicyOptions = {}) {
    this.log = logger;
    this.policy = policy;
  }

  /** Sends one command, logging it at debug level; QEMU's refusal comes back as the thrown error. */
  async send(instance: string, monitor: Monitor, cmd: MonitorCommand): Promise<unknown> {
    this.log.debug({ instance, command: describeCommand(cmd) }, 'monitor command');
    return cmd.kind === 'qmp' ? monitor.execute(cmd.execute, cmd.arguments) : monitor.humanCommand(cmd.line);
  }

  /** Like {@link send}, but wraps a failure in a `MigrationError` naming the command. */
  private async must(
    instance: string,
    monitor: Monitor,
    cmd: MonitorCommand,
    what: string,
  ): Promise<unknown> {
    try {
      return await this.send(instance, monitor, cmd);
    } catch (e) {
      throw new MigrationError(
        `instance '${instance}': ${what} failed: '${describeCommand(cmd)}': ${errorText(e)}`,
        {
          instance,
          cause: e,
        },
      );
    }
  }

  /** The VM run state (`running`, `paused`, `inmigrate`, `postmigrate`, …). */
  async vmStatus(instance: string, monitor: Monitor): Promise<{ running: boolean; status: string }> {
    if (monitor.protocol === 'qmp') {
      const r = (await this.must(
        instance,
        monitor,
        simpleCommand('qmp', 'query-status'),
        'reading the VM status',
      )) as {
        running?: boolean;
        status?: string;
      };
      return { running: r?.running === true, status: r?.status ?? 'unknown' };
    }
    return parseInfoStatus(
      String(
        await this.must(instance, monitor, { kind: 'hmp', line: 'info status' }, 'reading the VM status'),
      ),
    );
  }

  /** One progress snapshot (`query-migrate` / `info migrate`). */
  async migrationStatus(instance: string, monitor: Monitor): Promise<MigrationProgress> {
    if (monitor.protocol === 'qmp') {
      return parseQueryMigrate(await this.send(instance, monitor, simpleCommand('qmp', 'query-migrate')));
    }
    return parseInfoMigrate(
      String(await this.send(instance, monitor, { kind: 'hmp', line: 'info migrate' })),
    );
  }

  /** QEMU's capability list with current states, or undefined when this monitor cannot list it. */
  async listCapabilities(instance: string, monitor: Monitor): Promise<Map<string, boolean> | undefined> {
    try {
      if (monitor.protocol === 'qmp') {
        const list = (await this.send(
          instance,
          monitor,
          simpleCommand('qmp', 'query-migrate-capabilities'),
        )) as {
          capability: string;
          state: boolean;
        }[];
        return new Map(list.map((c) => [c.capability, c.state === true]));
      }
      const text = String(
        await this.send(instance, monitor, { kind: 'hmp', line: 'info migrate_capabilities' }),
      );
      const map = parseInfoMigrateCapabilities(text);
      return map.size > 0 ? map : undefined;
    } catch (e) {
      if (e instanceof MonitorClosedError) throw e;
      // Only "this QEMU cannot list them" falls back to the catalogue.
      this.log.warn(
        { instance, err: errorText(e) },
        'cannot list migration capabilities; using the version table',
      );
      return undefined;
    }
  }

  /**
   * Checks everything that needs no I/O. Throws `MigrationError` naming the bad value.
   * Returns the `tcp:` URI.
   */
  precheck(instance: string, plan: MigrationPlan, target: string): string {
    const uri = (() => {
      try {
        return migrationUri(target, plan.port);
      } catch (e) {
        throw new MigrationError(`instance '${instance}': ${errorText(e)}`, { instance });
      }
    })();
    if (!Number.isInteger(plan.downtimeMs) || plan.downtimeMs < 0 || plan.downtimeMs > QEMU_MAX_DOWNTIME_MS) {
      throw new MigrationError(
        `instance '${instance}': migration_downtime ${plan.downtimeMs} ms is outside QEMU's range 0 to ${QEMU_MAX_DOWNTIME_MS} ms`,
        { instance },
      );
    }
    if (!Number.isSafeInteger(plan.bandwidthMiBps * 1024 * 1024) || plan.bandwidthMiBps < 0) {
      throw new MigrationError(
        `instance '${instance}': migration_bandwidth ${plan.bandwidthMiBps} MiB/s is not a usable bandwidth`,
        { instance },
      );
    }
    return uri;
  }

  /**
   * Source side: checks the VM and the request, then sets bandwidth, downtime and
   * capabilities and starts the migration to `tcp:target:port`. Returns at once (QEMU
   * migrates in the background). On any failure it rolls back and throws `MigrationError`.
   */
  async start(
    instance: string,
    monitor: Monitor,
    plan: MigrationPlan,
    target: string,
  ): Promise<MigrationSession> {
    const uri = this.precheck(instance, plan, target);
    const { version, protocol } = monitor;
    const dialect = dialectFor(protocol, version);
    const log = this.log.child({ instance });

    const vm = await this.vmStatus(instance, monitor);
    if (vm.status === 'postmigrate' || vm.status === 'finish-migrate') {
      throw new MigrationError(
        `instance '${instance}' has already been migrated away (VM status '${vm.status}'); refusing to migrate it again`,
        { instance },
      );
    }
    if (vm.status === 'inmigrate') {
      throw new MigrationError(
        `instance '${instance}' is waiting for an incoming migration; it cannot be a source`,
        {
          instance,
        },
      );
    }
    const current = await this.migrationStatus(instance, monitor).catch((e: unknown) => {
      throw new MigrationError(
        `instance '${instance}': reading the migration status failed: ${errorText(e)}`,
        {
          instance,
          cause: e,
        },
      );
    });
    if (current.status !== 'none' && !TERMINAL_STATUSES.has(current.status)) {
      throw new MigrationError(
        `instance '${instance}': a migration is already in progress (status '${current.status}')`,
        {
          instance,
          status: current.status,
        },
      );
    }
    const listed = await this.listCapabilities(instance, monitor);
    const wire = resolveCapabilities(plan.capabilities, version, listed, instance);
    const eventsEnabled =
      protocol === 'qmp' && (listed ? listed.has('events') : versionAtLeast(version, 2, 4));
    const states: [string, boolean][] = wire.map((n) => [n, true]);
    if (eventsEnabled && !wire.includes('events')) states.push(['events', true]);
    // Clear what an earlier, failed migration left on (Ganeti PR #1525), but never 'events'.
    for (const [name, on] of listed ?? []) {
      if (on && name !== 'events' && !wire.includes(name)) states.push([name, false]);
    }

    // Subscribe before anything can cause an event: MIGRATION 'setup' arrives before
    // the reply to `migrate`.
    const wakers = new Set<() => void>();
    let eventCount = 0;
    const session: MigrationSession = {
      instance,
      monitor,
      dialect,
      capabilities: wire,
      eventsEnabled,
      postcopy: wire.some((n) => findCapability(n)?.name === 'postcopy-ram'),
      live: plan.live,
      wasRunning: vm.running,
      downtimeMs: plan.downtimeMs,
      uri,
      startedAt: Date.now(),
      get eventCount() {
        return eventCount;
      },
      onEventAfter: (seen, wake) => {
        if (eventCount !== seen) {
          wake();
          return () => {};
        }
        wakers.add(wake);
        return () => wakers.delete(wake);
      },
      detach: () => {
        monitor.off('event', onEvent);
        monitor.off('close', onClose);
        wakers.clear();
      },
    };
    const fire = () => {
      eventCount++;
      const all = [...wakers];
      wakers.clear();
      for (const w of all) w();
    };
    const onEvent = (ev: MonitorEvent) => {
      if (ev.event !== 'MIGRATION' && ev.event !== 'MIGRATION_PASS') return;
      if (ev.event === 'MIGRATION' && typeof ev.data.status === 'string') {
        session.lastEventStatus = ev.data.status;
        log.info({ status: ev.data.status }, 'migration status changed');
      }
      fire();
    };
    const onClose = () => fire();
    if (eventsEnabled) monitor.on('event', onEvent);
    monitor.on('close', onClose);

    log.info(
      {
        dialect,
        qemu: formatVersion(version),
        uri,
        live: plan.live,
        bandwidthMiBps: plan.bandwidthMiBps,
        downtimeMs: plan.downtimeMs,
        capabilities: wire,
      },
      'starting migration',
    );
    let stopped = false;
    let capsTouched = false;
    try {
      if (!plan.live && vm.running) {
        await this.must(
          instance,
          monitor,
          simpleCommand(protocol, 'stop'),
          'stopping the VM for a non-live migration',
        );
        stopped = true;
      }
      for (const cmd of parameterCommands(dialect, version, plan)) {
        await this.must(instance, monitor, cmd, 'setting bandwidth and downtime');
      }
      for (const cmd of capabilityCommands(protocol, states)) {
        capsTouched = true;
        await this.must(instance, monitor, cmd, 'setting migration capabilities');
      }
      await this.must(instance, monitor, migrateCommand(protocol, uri), 'starting the migration');
    } catch (e) {
      session.detach();
      await this.rollback(instance, monitor, capsTouched ? wire : [], stopped);
      throw e;
    }
    return session;
  }

  /** Undoes a failed set-up: clears capabilities we turned on, resumes a VM we stopped. Best effort, logged. */
  private async rollback(
    instance: string,
    monitor: Monitor,
    caps: string[],
    stopped: boolean,
  ): Promise<void> {
    for (const cmd of capabilityCommands(
      monitor.protocol,
      caps.map((c) => [c, false] as const),
    )) {
      await this.send(instance, monitor, cmd).catch((e: unknown) =>
        this.log.error({ instance, err: errorText(e) }, 'rollback: clearing capabilities failed'),
      );
    }
    if (stopped) {
      await this.send(instance, monitor, simpleCommand(monitor.protocol, 'cont')).catch((e: unknown) =>
        this.log.error({ instance, err: errorText(e) }, 'rollback: resuming the VM failed'),
      );
    }
  }

  /**
   * Waits until the migration ends. Resolves on `completed`; rejects with
   * `MigrationError` (status and QEMU's reason) on `failed`, `cancelled`, a lost monitor
   * or the completion timeout (after `migrate_cancel`, leaving the source running).
   */
  async wait(session: MigrationSession, options: WaitForMigrationOptions = {}): Promise<MigrationResult> {
    const { instance, monitor } = session;
    const log = this.log.child({ instance });
    const pollMs = options.pollIntervalMs ?? 500;
    let policy: ConvergencePolicy | undefined;
    let deadline = options.timeoutMs === undefined ? undefined : session.startedAt + options.timeoutMs;
    let failures = 0;
    let lastStatus = '';
    const unknownLogged = new Set<string>();
    try {
      for (;;) {
        // Counted before the query: an event during the query or the work below ends
        // the next pause at once instead of being missed.
        const seen = session.eventCount;
        let p: MigrationProgress;
        try {
          p = await this.migrationStatus(instance, monitor);
          failures = 0;
        } catch (e) {
          if (e instanceof MonitorClosedError || monitor.closed) {
            throw new MigrationError(
              `instance '${instance}': lost the monitor during the migration (${errorText(e)}); QEMU may still be migrating`,
              { instance, status: lastStatus || undefined, cause: e },
            );
          }
          if (++failures >= 5) {
            throw new MigrationError(
              `instance '${instance}': 5 status queries in a row failed: ${errorText(e)}`,
              {
                instance,
                status: lastStatus || undefined,
                cause: e,
              },
            );
          }
          log.warn({ err: errorText(e) }, 'migration status query failed; retrying');
          await sleep(pollMs, options.signal);
          continue;
        }
        if (p.status !== lastStatus) {
          log.info({ status: p.status }, 'migration status');
          lastStatus = p.status;
        }
        if (
          !TERMINAL_STATUSES.has(p.status) &&
          !ACTIVE_STATUSES.has(p.status) &&
          !unknownLogged.has(p.status)
        ) {
          unknownLogged.add(p.status);
          if (p.status !== 'none') log.warn({ status: p.status }, 'unknown migration status; still waiting');
        }
        options.onProgress?.(p);
        if (p.status === 'completed') return this.result(await this.settle(instance, monitor, p), session);
        if (p.status === 'failed' || p.status === 'cancelled') {
          throw new MigrationError(
            `instance '${instance}': migration ${p.status}${p.errorDesc ? `: ${p.errorDesc}` : ''}`,
            { instance, status: p.status, reason: p.errorDesc },
          );
        }
        const inPostcopy = p.status.startsWith('postcopy');
        if (deadline === undefined && p.totalBytes !== undefined) {
          deadline = session.startedAt + completionTimeoutMs(p.totalBytes, this.policy);
        }
        const now = Date.now();
        const cancelWhy = options.signal?.aborted
          ? 'cancelled by the caller'
          : deadline !== undefined && now > deadline
            ? `did not complete within ${Math.round((deadline - session.startedAt) / 1000)} s`
            : undefined;
        if (cancelWhy) {
          if (inPostcopy) {
            // Post-copy cannot be undone: the destination already runs the VM.
            log.warn({ status: p.status }, `not cancelling: ${cancelWhy}, but the migration is in post-copy`);
            deadline = undefined;
          } else {
            const settled = await this.cancelAndSettle(instance, monitor, cancelWhy, options.onProgress);
            if (settled.status === 'completed') return this.result(settled, session);
            if (session.wasRunning) await this.ensureRunning(instance, monitor);
            throw new MigrationError(`instance '${instance}': migration cancelled: ${cancelWhy}`, {
              instance,
              status: settled.status,
              reason: cancelWhy,
            });
          }
        }
        if (p.status === 'active') {
          policy ??= new ConvergencePolicy(session.downtimeMs, session.postcopy, this.policy);
          const action = policy.observe(p, now);
          if (action) {
            log.info(action, 'convergence policy acts');
            options.onAction?.(action);
            const cmd =
              action.kind === 'downtime'
                ? downtimeCommand(session.dialect, action.downtimeMs)
                : action.kind === 'postcopy'
                  ? simpleCommand(monitor.protocol, 'migrate-start-postcopy', 'migrate_start_postcopy')
                  : undefined;
            if (cmd) {
              await this.send(instance, monitor, cmd).catch((e: unknown) =>
                log.error({ err: errorText(e), action: action.kind }, 'convergence command failed'),
              );
            }
          }
        }
        await pause(pollMs, options.signal, session.eventsEnabled ? session : undefined, seen);
      }
    } finally {
      session.detach();
    }
  }

  /**
   * QEMU 7.2 reports `completed` (and sends the MIGRATION event) a moment before it fills
   * in `total-time` and `downtime`; a query in that window reads 0 for both. Asks again
   * for up to about 1 s until the numbers settle.
   */
  private async settle(instance: string, monitor: Monitor, p: MigrationProgress): Promise<MigrationProgress> {
    for (let i = 0; i < 100 && !p.totalTimeMs; i++) {
      await sleep(10);
      const again = await this.migrationStatus(instance, monitor).catch(() => undefined);
      if (again?.status !== 'completed') break;
      p = again;
    }
    return p;
  }

  private result(p: MigrationProgress, session: MigrationSession): MigrationResult {
    const r: MigrationResult = { status: 'completed', final: p };
    if (p.totalTimeMs !== undefined) r.totalTimeMs = p.totalTimeMs;
    if (p.downtimeMs !== undefined) r.downtimeMs = p.downtimeMs;
    if (p.transferredBytes !== undefined) r.transferredBytes = p.transferredBytes;
    if (p.totalBytes !== undefined) r.totalBytes = p.totalBytes;
    const secs = (p.totalTimeMs ?? Date.now() - session.startedAt) / 1000;
    if (p.transferredBytes !== undefined && secs > 0) r.averageSpeedBytesPerSec = p.transferredBytes / secs;
    this.log.info(
      {
        instance: session.instance,
        totalTimeMs: r.totalTimeMs,
        downtimeMs: r.downtimeMs,
        bytes: r.transferredBytes,
      },
      'migration completed',
    );
    return r;
  }

  /**
   * `migrate_cancel`, then waits (up to 10 s) for QEMU to reach a final status, which it
   * returns. It can be `completed` when the cancel came too late: the caller must then
   * treat the migration as done, so that the VM does not run twice.
   */
  private async cancelAndSettle(
    instance: string,
    monitor: Monitor,
    why: string,
    onProgress?: (p: MigrationProgress) => void,
  ): Promise<MigrationProgress> {
    this.log.warn({ instance, reason: why }, 'cancelling migration');
    await this.must(
      instance,
      monitor,
      simpleCommand(monitor.protocol, 'migrate_cancel'),
      'cancelling the migration',
    );
    const until = Date.now() + 10_000;
    let p: MigrationProgress = { status: 'cancelling' };
    while (Date.now() < until) {
      p = await this.migrationStatus(instance, monitor);
      onProgress?.(p);
      if (TERMINAL_STATUSES.has(p.status)) break;
      await sleep(50);
    }
    if (p.status === 'completed')
      this.log.warn({ instance }, 'the migration completed before the cancel took effect');
    return p;
  }

  /** Resumes the VM unless it runs already. */
  private async ensureRunning(instance: string, monitor: Monitor): Promise<void> {
    const vm = await this.vmStatus(instance, monitor);
    if (vm.running) return;
    this.log.info({ instance, status: vm.status }, 'resuming the source VM');
    await this.must(instance, monitor, simpleCommand(monitor.protocol, 'cont'), 'resuming the source VM');
  }

  /** Cancels a running migration (`migrate_cancel`); a no-op in QEMU when none runs. */
  async cancel(instance: string, monitor: Monitor): Promise<void> {
    const p = await this.migrationStatus(instance, monitor);
    if (p.status.startsWith('postcopy')) {
      throw new MigrationError(
        `instance '${instance}': cannot cancel a migration in post-copy (status '${p.status}'): the destination already runs the VM`,
        { instance, status: p.status },
      );
    }
    await this.must(
      instance,
      monitor,
      simpleCommand(monitor.protocol, 'migrate_cancel'),
      'cancelling the migration',
    );
  }

  /** Turns off the capabilities among `requested` that are on (any spelling). */
  async clearCapabilities(
    instance: string,
    monitor: Monitor,
    requested: readonly string[],
  ): Promise<string[]> {
    if (requested.length === 0) return [];
    const listed = await this.listCapabilities(instance, monitor);
    const names = new Set(requested.map((n) => findCapability(n)?.name ?? n));
    const off: string[] = [];
    if (listed) {
      for (const [name, on] of listed)
        if (on && names.has(findCapability(name)?.name ?? name)) off.push(name);
    } else {
      off.push(...resolveCapabilities(requested, monitor.version, undefined, instance));
    }
    for (const cmd of capabilityCommands(
      monitor.protocol,
      off.map((n) => [n, false] as const),
    )) {
      await this.must(instance, monitor, cmd, 'clearing migration capabilities');
    }
    return off;
  }

  /**
   * Source side, after the migration. Success: checks QEMU reports `completed` and that
   * the source does not run. Failure: cancels a migration still running, resumes the
   * VM, clears the capabilities; refuses to resume a source whose migration completed.
   */
  async finalizeSource(
    instance: string,
    monitor: Monitor,
    success: boolean,
    capabilities: string[],
  ): Promise<void> {
    const p = await this.migrationStatus(instance, monitor).catch((e: unknown) => {
      throw new MigrationError(
        `instance '${instance}': reading the migration status failed: ${errorText(e)}`,
        {
          instance,
          cause: e,
        },
      );
    });
    if (success) {
      if (p.status !== 'completed') {
        throw new MigrationError(
          `instance '${instance}': finalizing a successful migration, but QEMU reports status '${p.status}'`,
          { instance, status: p.status },
        );
      }
      const vm = await this.vmStatus(instance, monitor);
      if (vm.running) {
        // Someone resumed the source after switchover: two copies would run.
        this.log.error({ instance }, 'source runs after a completed migration; stopping it');
        await this.must(
          instance,
          monitor,
          simpleCommand(monitor.protocol, 'stop'),
          'stopping the migrated source',
        );
      }
      this.log.info({ instance, status: vm.status }, 'source finalized after a successful migration');
      return;
    }
    if (p.status === 'completed') {
      throw new MigrationError(
        `instance '${instance}': the migration completed, so the destination may run the VM; not resuming the source`,
        { instance, status: p.status },
      );
    }
    if (!TERMINAL_STATUSES.has(p.status) && p.status !== 'none') {
      const settled = await this.cancelAndSettle(instance, monitor, 'finalizing a failed migration');
      if (settled.status === 'completed') {
        throw new MigrationError(
          `instance '${instance}': the migration completed before it could be cancelled; not resuming the source`,
          { instance, status: settled.status },
        );
      }
    }
    await this.ensureRunning(instance, monitor);
    await this.clearCapabilities(instance, monitor, capabilities);
    this.log.info({ instance }, 'source finalized after a failed migration; the VM runs');
  }

  /**
   * Destination side, before the source starts: the VM must wait for an incoming
   * migration; capabilities that must be on at both ends are set. Returns them.
   */
  async accept(instance: string, monitor: Monitor, capabilities: string[]): Promise<string[]> {
    const vm = await this.vmStatus(instance, monitor);
    if (vm.status !== 'inmigrate') {
      throw new MigrationError(
        `instance '${instance}': the destination is not waiting for an incoming migration (VM status '${vm.status}')`,
        { instance },
      );
    }
    const listed = await this.listCapabilities(instance, monitor);
    const wire = resolveCapabilities(capabilities, monitor.version, listed, instance).filter(
      (n) => findCapability(n)?.scope !== 'source',
    );
    for (const cmd of capabilityCommands(
      monitor.protocol,
      wire.map((n) => [n, true] as const),
    )) {
      await this.must(instance, monitor, cmd, 'setting destination capabilities');
    }
    this.log.info({ instance, capabilities: wire }, 'destination ready for the incoming migration');
    return wire;
  }

  /**
   * Destination side, after the migration. Success: clears the capabilities and makes
   * sure the VM runs. Failure: quits the incoming QEMU, unless it already runs the VM
   * (then the migration completed and stopping it would lose the VM).
   */
  async finalizeDestination(
    instance: string,
    monitor: Monitor,
    success: boolean,
    capabilities: string[],
    incomingGraceMs = 30_000,
  ): Promise<void> {
    if (success) {
      // The source reports `completed` once it has sent everything; the destination may
      // still be loading the device state for a moment.
      let vm = await this.vmStatus(instance, monitor);
      for (const until = Date.now() + incomingGraceMs; vm.status === 'inmigrate' && Date.now() < until; ) {
        await sleep(50);
        vm = await this.vmStatus(instance, monitor);
      }
      if (vm.status === 'inmigrate') {
        throw new MigrationError(
          `instance '${instance}': the destination has not finished receiving the VM after ${incomingGraceMs} ms`,
          { instance, status: vm.status },
        );
      }
      await this.clearCapabilities(instance, monitor, capabilities);
      if (!vm.running) {
        // After a non-live migration the destination inherits the paused state.
        this.log.info({ instance, status: vm.status }, 'resuming the destination VM');
        await this.must(
          instance,
          monitor,
          simpleCommand(monitor.protocol, 'cont'),
          'resuming the destination VM',
        );
      }
      this.log.info({ instance }, 'destination finalized; the VM runs here');
      return;
    }
    let vm: { running: boolean; status: string };
    try {
      vm = await this.vmStatus(instance, monitor);
    } catch (e) {
      if (monitor.closed || (e instanceof MigrationError && e.cause instanceof MonitorClosedError)) {
        this.log.info({ instance }, 'the incoming QEMU is already gone');
        return;
      }
      throw e;
    }
    if (vm.running || vm.status === 'postmigrate') {
      throw new MigrationError(
        `instance '${instance}': the destination runs the VM (status '${vm.status}'); not stopping it after a failure report`,
        { instance, status: vm.status },
      );
    }
    this.log.info({ instance }, 'quitting the incoming QEMU after a failed migration');
    try {
      await this.send(instance, monitor, simpleCommand(monitor.protocol, 'quit', 'quit'));
    } catch (e) {
      // `quit` closes the socket; a closed connection is the expected outcome.
      if (!(e instanceof MonitorClosedError) && !(e instanceof HypervisorError && monitor.closed)) throw e;
    }
  }
}
