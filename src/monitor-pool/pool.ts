/**
 * The monitors of a `KVMHypervisor`: at most one open monitor per instance, opened on
 * first use through the factory, shared by every step, replaced on the next call once it
 * closed, and all closed by {@link MonitorPool.close}.
 */
import { type Deadline, DeadlineError } from '../core/deadline.js';
import { MigrationError } from '../errors.js';
import type { LoggerLike } from '../logger.js';
import type { Monitor } from '../monitor/types.js';
import { formatVersion } from '../qemu/version.js';

/** Opens (or hands out) the monitor of an instance (`KVMHypervisorOptions.monitor`). */
export type MonitorFactory = (instanceName: string) => Monitor | Promise<Monitor>;

/** One open monitor per instance. */
export class MonitorPool {
  private readonly monitors = new Map<string, Promise<Monitor>>();
  private closed = false;

  constructor(
    private readonly factory: MonitorFactory,
    private readonly log: LoggerLike,
  ) {}

  /**
   * The monitor of an instance: at most one is open per instance; a closed one is
   * replaced on the next call. Refused once the pool is closed.
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

  /** Closes and drops the monitor of an instance. */
  async forget(name: string): Promise<void> {
    const cached = this.monitors.get(name);
    this.monitors.delete(name);
    const m = await cached?.catch(() => undefined);
    await m?.close().catch(() => undefined);
  }

  /** Closes every monitor; nothing opens through this pool afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.monitors.values()];
    this.monitors.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
}

/** The error of a call on (or pending on) a closed `KVMHypervisor`. */
export function closedError(instance?: string): MigrationError {
  return new MigrationError(
    `${instance === undefined ? '' : `instance '${instance}': `}the hypervisor object was closed; QEMU goes on with what it was doing (a migration keeps running): wait for, finalize or recover it from another object`,
    instance === undefined ? {} : { instance },
  );
}
