/**
 * Opening the monitor named by `--qmp SOCKET` or `--hmp SOCKET`.
 */
import { basename, extname } from 'node:path';
import type { Logger } from 'pino';
import { MonitorError, MonitorTimeoutError } from '../errors.js';
import { HmpMonitor } from '../monitor/hmp.js';
import { QmpMonitor } from '../monitor/qmp.js';
import type { Monitor } from '../monitor/types.js';
import { UsageError } from './errors.js';

/** The monitor options every VM-facing command takes. */
export interface MonitorCliOptions {
  /** Path of a QMP UNIX socket. */
  qmp?: string;
  /** Path of an HMP UNIX socket (`-monitor unix:…`). */
  hmp?: string;
  /** Instance name; default: the socket's file name without extension. */
  name?: string;
}

/** Which socket to use. Throws {@link UsageError} unless exactly one of `--qmp`/`--hmp` is given. */
export function monitorTarget(opts: MonitorCliOptions): { protocol: 'qmp' | 'hmp'; path: string } {
  if (opts.qmp && opts.hmp) throw new UsageError('give either --qmp or --hmp, not both');
  if (opts.qmp) return { protocol: 'qmp', path: opts.qmp };
  if (opts.hmp) return { protocol: 'hmp', path: opts.hmp };
  throw new UsageError('a monitor socket is required: --qmp SOCKET or --hmp SOCKET');
}

/** The instance name: `--name`, else the socket file name without its extension. */
export function instanceName(opts: MonitorCliOptions): string {
  if (opts.name) return opts.name;
  const { path } = monitorTarget(opts);
  const base = basename(path);
  return base.slice(0, base.length - extname(base).length) || base;
}

/** How long to wait for the monitor's greeting. */
const GREETING_TIMEOUT_MS = 5000;

/**
 * Connects to the monitor; rejects with a `MonitorError` naming the socket. A missing
 * greeting gets a hint: QEMU serves one client per monitor socket at a time.
 */
export async function openMonitor(opts: MonitorCliOptions, logger?: Logger): Promise<Monitor> {
  const { protocol, path } = monitorTarget(opts);
  const options = { greetingTimeoutMs: GREETING_TIMEOUT_MS, ...(logger ? { logger } : {}) };
  try {
    return protocol === 'qmp'
      ? await QmpMonitor.connect({ path }, options)
      : await HmpMonitor.connect({ path }, options);
  } catch (error) {
    if (error instanceof MonitorTimeoutError) {
      throw new MonitorError(
        `${error.message}; QEMU serves one client per monitor socket at a time, so another client ` +
          `(a running 'kvm-hv migrate'?) may hold it: use another socket (a second -qmp, or --hmp)`,
        { cause: error },
      );
    }
    throw error;
  }
}
