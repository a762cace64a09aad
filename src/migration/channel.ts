/**
 * One VM's monitor as the migration engine uses it: the instance name, the monitor and a
 * logger bound once, every command raced against a {@link Deadline}, and the read-only
 * queries of each protocol (run state, migration status, capability list) with their
 * parsers.
 */
import { HypervisorError, MigrationError, MonitorClosedError, UnrecognizedOutputError } from '../errors.js';
import { childLogger, type LoggerLike } from '../logger.js';
import type { Monitor } from '../monitor/types.js';
import { Deadline, DeadlineError } from './deadline.js';
import { describeCommand, type MonitorCommand, simpleCommand } from './dialect.js';
import {
  parseInfoMigrate,
  parseInfoMigrateCapabilities,
  parseInfoStatus,
  parseQueryMigrate,
} from './status.js';
import type { MigrationProgress } from './types.js';

/** The VM run state as QMP names it (`running`, `paused`, `inmigrate`, `postmigrate`, …). */
export interface VmRunState {
  running: boolean;
  status: string;
}

/** The message of any thrown value. */
export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

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
export function deadlineIn(e: unknown): DeadlineError | undefined {
  for (let c: unknown = e; c instanceof Error; c = c.cause) if (c instanceof DeadlineError) return c;
  return undefined;
}

/** True when `e` (or its cause) is a deadline that cut a call short. */
export function isDeadline(e: unknown): boolean {
  return deadlineIn(e) !== undefined;
}

/**
 * The capability list per monitor connection: which capabilities the QEMU process has
 * (fixed for its lifetime) with their states as last read, updated by every capability
 * command this library sends and got acknowledged. A new monitor (QEMU restarted, a
 * reconnect) starts without one; a capability command that failed or got no reply drops
 * it, so the next migration reads QEMU's list again.
 */
const capabilityCache = new WeakMap<Monitor, Map<string, boolean>>();

/** The capability states a command sets, or undefined when it is not a capability command. */
function capabilityStates(cmd: MonitorCommand): [string, boolean][] | undefined {
  if (cmd.kind === 'qmp') {
    if (cmd.execute !== 'migrate-set-capabilities') return undefined;
    const list = cmd.arguments?.capabilities;
    if (!Array.isArray(list)) return [];
    return list.map((c: { capability?: unknown; state?: unknown }) => [
      String(c.capability),
      c.state === true,
    ]);
  }
  const m = /^migrate_set_capability\s+(\S+)\s+(on|off)\s*$/.exec(cmd.line);
  return m ? [[m[1]!, m[2] === 'on']] : undefined;
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
    const raced = deadline.race(p, `'${describeCommand(cmd)}'`);
    const states = capabilityStates(cmd);
    if (states === undefined) return raced;
    return raced.then(
      (r) => {
        const cached = capabilityCache.get(this.monitor);
        if (cached) for (const [name, on] of states) if (cached.has(name)) cached.set(name, on);
        return r;
      },
      (e: unknown) => {
        // Refused, or no reply in time (maybe applied): the cached states may be wrong.
        capabilityCache.delete(this.monitor);
        throw e;
      },
    );
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

  /** The VM run state; an answer the parser cannot read is an `UnrecognizedOutputError`. */
  async vmStatus(deadline?: Deadline): Promise<VmRunState> {
    if (this.monitor.protocol === 'qmp') {
      const cmd = simpleCommand('qmp', 'query-status');
      const r = await this.must(cmd, 'reading the VM status', deadline);
      const o = r as { running?: unknown; status?: unknown } | null;
      if (!o || typeof o !== 'object' || typeof o.status !== 'string' || typeof o.running !== 'boolean') {
        throw this.error(
          'reading the VM status failed',
          new UnrecognizedOutputError('query-status', JSON.stringify(r), 'reply'),
        );
      }
      return { running: o.running, status: o.status };
    }
    const text = String(
      await this.must({ kind: 'hmp', line: 'info status' }, 'reading the VM status', deadline),
    );
    try {
      return parseInfoStatus(text);
    } catch (e) {
      throw this.error(`reading the VM status failed: ${errorText(e)}`, e);
    }
  }

  /** One migration snapshot (`query-migrate` / `info migrate`); unreadable output throws. */
  async migrationStatus(deadline?: Deadline): Promise<MigrationProgress> {
    if (this.monitor.protocol === 'qmp') {
      return parseQueryMigrate(await this.send(simpleCommand('qmp', 'query-migrate'), deadline));
    }
    return parseInfoMigrate(String(await this.send({ kind: 'hmp', line: 'info migrate' }, deadline)));
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
   * The list is read once per monitor connection and then kept up to date by the
   * capability commands sent through any channel of that monitor; the caller gets its
   * own copy.
   */
  async listCapabilities(deadline?: Deadline): Promise<Map<string, boolean> | undefined> {
    const cached = capabilityCache.get(this.monitor);
    if (cached) return new Map(cached);
    const listed = await this.readCapabilities(deadline);
    if (listed && !this.monitor.closed) capabilityCache.set(this.monitor, new Map(listed));
    return listed;
  }

  private async readCapabilities(deadline?: Deadline): Promise<Map<string, boolean> | undefined> {
    try {
      if (this.monitor.protocol === 'qmp') {
        const list = await this.send(simpleCommand('qmp', 'query-migrate-capabilities'), deadline);
        if (!Array.isArray(list)) {
          throw new UnrecognizedOutputError('query-migrate-capabilities', JSON.stringify(list), 'reply');
        }
        return new Map(
          list.map((c: { capability?: unknown; state?: unknown }) => {
            if (typeof c?.capability !== 'string') {
              throw new UnrecognizedOutputError('query-migrate-capabilities', JSON.stringify(list), 'reply');
            }
            return [c.capability, c.state === true];
          }),
        );
      }
      const text = String(await this.send({ kind: 'hmp', line: 'info migrate_capabilities' }, deadline));
      const map = parseInfoMigrateCapabilities(text);
      return map.size > 0 ? map : undefined;
    } catch (e) {
      if (isMonitorGone(e, this.monitor) || isDeadline(e) || e instanceof UnrecognizedOutputError) throw e;
      if (!(e instanceof HypervisorError)) throw e;
      // Only "this QEMU cannot list them" (command unknown) falls back to the catalogue.
      this.log.warn({ err: errorText(e) }, 'cannot list migration capabilities; using the version table');
      return undefined;
    }
  }
}
