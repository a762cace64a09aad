/**
 * Starting, recording and ending the migration guard ({@link GUARD_PROCESS_SOURCE}): the
 * library-owned process that holds a migration's network end so that no stranger can
 * stall QEMU (issue 22, item 1; docs/security.md).
 *
 * A guard is detached (it outlives the step that started it: accept, migrate and finalize
 * may each run in a new process) and recorded in a small JSON file beside the migration
 * journal (`<dir>/<name>.<role>.guard`, mode 0600), so that a later step, from any
 * process, can end it. The record holds the pid with its start time, so a reused pid is
 * never signalled.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HypervisorError } from '../errors.js';
import { type ProcessIdentity, processAlive, readProcStat, terminateProcess } from '../instance/process.js';
import { GUARD_PROCESS_SOURCE } from './process-source.js';

/** `KVMHypervisorOptions.migrationGuard`: the guard's knobs (all optional). */
export interface MigrationGuardOptions {
  /**
   * Destination: the only source addresses admitted (IPv4/IPv6 text, as the kernel reports
   * the peer). Without it any address may try, and must then pass the TLS handshake (with
   * `tls`) or is relayed as is (without `tls`: give the source's address here, or the first
   * stranger to connect is taken as the migration stream).
   */
  allowedAddresses?: readonly string[];
  /** A connection's TCP connect (source side) must succeed within this (ms); default 5000. */
  connectTimeoutMs?: number;
  /** A connection's TLS handshake must complete within this (ms); default 5000. */
  handshakeTimeoutMs?: number;
  /** The guard exits after this long whatever happens (ms); default 12 h. */
  lifetimeMs?: number;
  /** The guard exits once no relay has been open for this long after one ended (ms); default 30 s. */
  idleExitMs?: number;
}

/** What the guard process is told (JSON in its environment). Paths only, never key material. */
export interface GuardConfig {
  role: 'source' | 'destination';
  /** Destination: where to listen (TCP). */
  listenHost?: string;
  listenPort?: number;
  allowedAddresses?: string[];
  /** Destination: QEMU's incoming UNIX socket. */
  qemuSocket?: string;
  /** Source: the UNIX socket QEMU migrates to. */
  socket?: string;
  targetHost?: string;
  targetPort?: number;
  /** TLS terminated by the guard: the x509 directory, allowed DNs (destination), expected host name (source). */
  tls?: { dir: string; allowedDns?: string[]; hostname?: string };
  connectMs: number;
  handshakeMs: number;
  /** After SIGTERM or one side's close, how long open relays may still flush (ms). */
  drainMs: number;
  lifetimeMs: number;
  idleExitMs: number;
  /** The guard exits when this process is gone. */
  qemuPid?: number;
}

/** A running guard, as recorded. */
export interface GuardRecord extends ProcessIdentity {
  formatVersion: 1;
  role: 'source' | 'destination';
  /** The port it listens on (destination) or 0. */
  port: number;
  /** The UNIX socket QEMU listens on (destination) or migrates to (source): removed at the end. */
  socket: string;
}

/**
 * How long a stopping guard lets its relays flush: QEMU calls a migration completed once
 * its socket took the bytes, so the guard may still hold the last of them.
 */
const GUARD_DRAIN_MS = 10_000;

/** The defaults of {@link MigrationGuardOptions}. */
const GUARD_DEFAULTS = {
  connectTimeoutMs: 5_000,
  handshakeTimeoutMs: 5_000,
  lifetimeMs: 12 * 3600_000,
  idleExitMs: 30_000,
} as const;

/** The timing part of a {@link GuardConfig} from the options. */
export function guardTimings(
  o: MigrationGuardOptions = {},
): Pick<GuardConfig, 'connectMs' | 'handshakeMs' | 'lifetimeMs' | 'idleExitMs' | 'drainMs'> {
  return {
    drainMs: GUARD_DRAIN_MS,
    connectMs: o.connectTimeoutMs ?? GUARD_DEFAULTS.connectTimeoutMs,
    handshakeMs: o.handshakeTimeoutMs ?? GUARD_DEFAULTS.handshakeTimeoutMs,
    lifetimeMs: o.lifetimeMs ?? GUARD_DEFAULTS.lifetimeMs,
    idleExitMs: o.idleExitMs ?? GUARD_DEFAULTS.idleExitMs,
  };
}

/** A started guard: its identity and the port it listens on (destination; 0 for a source). */
export interface StartedGuard extends ProcessIdentity {
  port: number;
}

/**
 * Starts a guard detached, its stderr appended to `logPath`, and resolves once it listens
 * (it prints `ready <port>`).
 * @throws HypervisorError when it exits or is not ready within `timeoutMs` (it is killed then),
 * e.g. because the port is taken.
 */
export function startGuard(config: GuardConfig, logPath: string, timeoutMs = 10_000): Promise<StartedGuard> {
  const log = openSync(logPath, 'a', 0o640);
  try {
    const child = spawn(process.execPath, ['-e', GUARD_PROCESS_SOURCE], {
      detached: true,
      stdio: ['ignore', 'pipe', log],
      env: { ...process.env, KVMHV_GUARD: JSON.stringify(config) },
    });
    const where =
      config.role === 'destination' ? `${config.listenHost}:${config.listenPort}` : `${config.socket}`;
    return new Promise<StartedGuard>((resolve, reject) => {
      let out = '';
      let settled = false;
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new HypervisorError(`the migration guard (${config.role}, ${where}) ${why} (see ${logPath})`));
      };
      const timer = setTimeout(() => fail(`was not ready within ${timeoutMs} ms`), timeoutMs);
      child.once('error', (e) => fail(`could not start: ${e.message}`));
      child.once('exit', (code, signal) =>
        fail(`exited (${signal ?? `exit code ${code}`}) before it was ready`),
      );
      child.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /ready (\d+)\n/.exec(out);
        if (!m || settled) return;
        settled = true;
        clearTimeout(timer);
        child.stdout?.destroy();
        child.unref();
        const pid = child.pid ?? -1;
        const startTime = readProcStat(pid)?.startTime;
        if (startTime === undefined) {
          reject(
            new HypervisorError(`the migration guard (${config.role}, ${where}) exited right after start`),
          );
          return;
        }
        resolve({ pid, startTime, port: Number(m[1]) });
      });
    });
  } finally {
    closeSync(log);
  }
}

/** Where a guard of `name` in `role` is recorded. */
function guardRecordPath(dir: string, name: string, role: 'source' | 'destination'): string {
  return join(dir, `${name}.${role}.guard`);
}

/** Records a guard (temporary file, then rename: a reader sees the old or the new record). */
export function writeGuardRecord(dir: string, name: string, record: GuardRecord): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = guardRecordPath(dir, name, record.role);
  const tmp = `${path}.tmp${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** The record of a guard, or undefined when there is none (or it is unreadable: logged by the caller). */
export function readGuardRecord(
  dir: string,
  name: string,
  role: 'source' | 'destination',
): GuardRecord | undefined {
  let text: string;
  try {
    text = readFileSync(guardRecordPath(dir, name, role), 'utf8');
  } catch {
    return undefined;
  }
  const r = JSON.parse(text) as Partial<GuardRecord>;
  if (
    r.formatVersion !== 1 ||
    typeof r.pid !== 'number' ||
    typeof r.startTime !== 'string' ||
    typeof r.socket !== 'string'
  ) {
    throw new HypervisorError(
      `damaged migration guard record ${guardRecordPath(dir, name, role)}: ${text.slice(0, 200)}`,
    );
  }
  return r as GuardRecord;
}

/**
 * Ends a guard (SIGTERM: it stops listening and lets open relays flush for up to
 * {@link GUARD_DRAIN_MS}; SIGKILL 2 s after that), removes its UNIX socket and, with `dir`
 * and `name`, its record. Idempotent: a guard already gone is fine.
 */
export async function endGuard(record: GuardRecord, where?: { dir: string; name: string }): Promise<void> {
  if (processAlive(record)) await terminateProcess(record, { termMs: GUARD_DRAIN_MS + 2_000, killMs: 2_000 });
  rmSync(record.socket, { force: true });
  if (where) rmSync(guardRecordPath(where.dir, where.name, record.role), { force: true });
}
