/**
 * One VM's monitor as the migration engine uses it: the instance name, the monitor and a
 * logger bound once, every command raced against a {@link Deadline}, and the read-only
 * queries of each protocol (run state, migration status, capability list) with their
 * parsers.
 */

import { Deadline, DeadlineError } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { HypervisorError, MigrationError, MonitorClosedError, UnrecognizedOutputError } from '../errors.js';
import { childLogger, type LoggerLike } from '../logger.js';
import type { Monitor } from '../monitor/types.js';
import { describeCommand, type MonitorCommand } from './dialect.js';
import {
  CAPABILITIES_QUERY,
  MIGRATION_STATUS_QUERY,
  type Query,
  RUN_STATE_QUERY,
  type VmRunState,
} from './queries.js';
import type { MigrationProgress } from './types.js';

export type { VmRunState } from './queries.js';

/** True when `e` says the monitor connection is gone (closed, refused, missing socket). */
export function isMonitorGone(e: unknown, monitor?: Monitor): boolean {
  if (monitor?.closed) return true;
  for (let c: unknown = e; c instanceof Error; c = c.cause) {
    if (c instanceof MonitorClosedError) return true;
    const code = (c as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'ECONNRESET' || code === 'EPIPE')
      return true;
  }
  return false;
}

/** The deadline error in `e`'s cause chain, if a deadline cut a call short. */
function deadlineIn(e: unknown): DeadlineError | undefined {
  for (let c: unknown = e; c instanceof Error; c = c.cause) if (c instanceof DeadlineError) return c;
  return undefined;
}

/** True when `e` (or its cause) is a deadline that cut a call short. */
export function isDeadline(e: unknown): boolean {
  return deadlineIn(e) !== undefined;
}

/** A monitor bound to an instance, with deadline-bounded commands and parsed queries. */
export class VmChannel {
  readonly instance: string;
  readonly monitor: Monitor;
  readonly log: LoggerLike;

  constructor(instance: string, monitor: Monitor, log: LoggerLike) {
    this.instance = instance;
    this.monitor = monitor;
    this.log = childLogger(log, { instance });
  }

  /** Sends one command within `deadline`; QEMU's refusal or a `DeadlineError` is what it throws. */
  send(cmd: MonitorCommand, deadline: Deadline = Deadline.after(undefined)): Promise<unknown> {
    this.log.debug({ command: describeCommand(cmd) }, 'monitor command');
    const p =
      cmd.kind === 'qmp'
        ? this.monitor.execute(cmd.execute, cmd.arguments)
        : this.monitor.humanCommand(cmd.line);
    return deadline.race(p, `'${describeCommand(cmd)}'`);
  }

  /** Like {@link send}, but a failure becomes a `MigrationError` naming the step and the command. */
  async must(cmd: MonitorCommand, what: string, deadline?: Deadline): Promise<unknown> {
    try {
      return await this.send(cmd, deadline);
    } catch (e) {
      throw this.error(`${what} failed: '${describeCommand(cmd)}': ${errorText(e)}`, e);
    }
  }

  /** A `MigrationError` about this instance; `unresponsive` is set when a deadline cut the call. */
  error(message: string, cause?: unknown, extra: { status?: string; reason?: string } = {}): MigrationError {
    return new MigrationError(`instance '${this.instance}': ${message}`, {
      instance: this.instance,
      ...extra,
      ...(cause === undefined ? {} : { cause }),
      unresponsive: deadlineIn(cause)?.deadlineCause === 'timeout',
    });
  }

  /** Runs a read-only query of {@link queries.ts} in this monitor's protocol and parses the answer. */
  async query<T>(query: Query<T>, deadline?: Deadline): Promise<T> {
    const form = query[this.monitor.protocol];
    return form.parse(await this.send(form.command, deadline));
  }

  /** The VM run state; an answer the parser cannot read is an `UnrecognizedOutputError`. */
  async vmStatus(deadline?: Deadline): Promise<VmRunState> {
    const form = RUN_STATE_QUERY[this.monitor.protocol];
    const answer = await this.must(form.command, 'reading the VM status', deadline);
    try {
      return form.parse(answer);
    } catch (e) {
      throw this.error(`reading the VM status failed: ${errorText(e)}`, e);
    }
  }

  /** One migration snapshot (`query-migrate` / `info migrate`); unreadable output throws. */
  async migrationStatus(deadline?: Deadline): Promise<MigrationProgress> {
    return this.query(MIGRATION_STATUS_QUERY, deadline);
  }

  /** Like {@link migrationStatus}, with failures wrapped in a `MigrationError`. */
  async mustMigrationStatus(deadline?: Deadline): Promise<MigrationProgress> {
    try {
      return await this.migrationStatus(deadline);
    } catch (e) {
      throw this.error(`reading the migration status failed: ${errorText(e)}`, e);
    }
  }

  /**
   * QEMU's capability list with current states, or undefined when this QEMU cannot list
   * them (then the version catalogue decides). A lost monitor or a deadline is rethrown.
   * Read on every migration, never cached: the names a QEMU process has are fixed, but
   * the states are what any client of any monitor socket last set, and a capability
   * left on would silently change the migration. It costs no round trip: the set-up
   * sends it together with the other read-only checks.
   */
  async listCapabilities(deadline?: Deadline): Promise<Map<string, boolean> | undefined> {
    try {
      const map = await this.query(CAPABILITIES_QUERY, deadline);
      return this.monitor.protocol === 'hmp' && map.size === 0 ? undefined : map;
    } catch (e) {
      if (isMonitorGone(e, this.monitor) || isDeadline(e) || e instanceof UnrecognizedOutputError) throw e;
      if (!(e instanceof HypervisorError)) throw e;
      // Only "this QEMU cannot list them" (command unknown) falls back to the catalogue.
      this.log.warn({ err: errorText(e) }, 'cannot list migration capabilities; using the version table');
      return undefined;
    }
  }
}
