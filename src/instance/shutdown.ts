/**
 * User shutdown versus crash, as Ganeti's `kvmd` tells them apart, kept on disk so that a
 * fresh process (a new `KVMHypervisor` per call) still knows.
 *
 * Every QEMU the life cycle starts gets a second QMP socket, `<ctrl>/<n>.kvmd` (Ganeti's
 * name), and a small watcher process (`node -e` {@link SHUTDOWN_WATCHER_SOURCE}, detached,
 * one per instance) that holds it and reads QEMU's events until QEMU closes it:
 *
 * - `POWERDOWN` (the host pressed the ACPI power button) is remembered;
 * - `SHUTDOWN` writes the **shutdown record** `<conf>/<n>.shutdown` (atomically): QEMU's
 *   `guest` and `reason` (`guest-shutdown`, `host-qmp-quit`, `host-signal`, …), whether a
 *   power-button press came first, the time, and the pid and start time of that QEMU;
 * - `RESET` or `RESUME` (the VM runs again: `rebootInstance` from a powered-off guest)
 *   removes the record.
 *
 * - QEMU closing the socket without a `SHUTDOWN` since the VM last ran (SIGKILL, a crash,
 *   the OOM killer) writes a `GONE` record.
 *
 * A QEMU that is gone with no record yet is given {@link WATCHER_GRACE_MS} for its watcher
 * to write one (it does within milliseconds of QEMU's exit); without one it counts as
 * crashed (a watcher that could not run). {@link downState} turns this into Ganeti's states: a guest that powered itself
 * off is `user-down` (QEMU stays, `-no-shutdown`), a shutdown the host asked for (power
 * button, `quit`, SIGTERM by someone else than this library) is `shutdown`, a QEMU that
 * is gone without a record is `crashed`.
 */

import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { Static } from 'typebox';
import * as Type from 'typebox/type';
import { Value } from 'typebox/value';
import { HypervisorError, UnrecognizedOutputError } from '../errors.js';
import type { InstancePaths } from './layout.js';
import { type ProcessIdentity, processAlive } from './process.js';

/** The shutdown record `<conf>/<n>.shutdown` the watcher writes on QEMU's `SHUTDOWN` event. */
export const ShutdownRecordSchema = Type.Object(
  {
    formatVersion: Type.Literal(1),
    /**
     * `SHUTDOWN`: QEMU's event. `GONE`: QEMU closed the watcher's socket without one since
     * the VM last ran (killed, crashed).
     */
    event: Type.Union([Type.Literal('SHUTDOWN'), Type.Literal('GONE')]),
    /** QEMU's `guest`: true when the guest asked (ACPI poweroff, triple fault with `-no-reboot`). */
    guest: Type.Boolean(),
    /** QEMU's `reason` (QEMU ≥ 4.0): `guest-shutdown`, `host-qmp-quit`, `host-signal`, … */
    reason: Type.Optional(Type.String()),
    /** A `POWERDOWN` (the ACPI power button pressed by the host) came before it. */
    powerdownRequested: Type.Boolean(),
    /** When QEMU sent the event (for `GONE`: when the socket closed), epoch ms. */
    at: Type.Integer(),
    /** The QEMU process the record is about. */
    pid: Type.Integer({ minimum: 1 }),
    startTime: Type.String({ pattern: '^[0-9]+$' }),
  },
  { additionalProperties: false },
);
/** A shutdown record. */
export type ShutdownRecord = Static<typeof ShutdownRecordSchema>;

/**
 * Parses a shutdown record's text.
 * @throws UnrecognizedOutputError quoting the text when it is not a version-1 record.
 */
export function parseShutdownRecord(text: string, path = 'shutdown record'): ShutdownRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UnrecognizedOutputError(path, text, 'content');
  }
  if (!Value.Check(ShutdownRecordSchema, value)) throw new UnrecognizedOutputError(path, text, 'content');
  return value;
}

/** The shutdown record of the QEMU `id` (a record about an earlier QEMU of that name does not count). */
export function readShutdownRecord(paths: InstancePaths, id: ProcessIdentity): ShutdownRecord | undefined {
  let text: string;
  try {
    text = readFileSync(paths.shutdown, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new HypervisorError(`cannot read the shutdown record of '${paths.name}': ${(e as Error).message}`);
  }
  const r = parseShutdownRecord(text, paths.shutdown);
  return r.pid === id.pid && r.startTime === id.startTime ? r : undefined;
}

/** How long a gone QEMU's watcher is given to write its record, ms. */
export const WATCHER_GRACE_MS = 2000;

/**
 * The record of a QEMU that is gone: read until the watcher has written it (it does when
 * QEMU closes its socket), at most `graceMs`.
 */
export async function awaitShutdownRecord(
  paths: InstancePaths,
  id: ProcessIdentity,
  graceMs = WATCHER_GRACE_MS,
): Promise<ShutdownRecord | undefined> {
  const end = Date.now() + graceMs;
  for (;;) {
    const r = readShutdownRecord(paths, id);
    if (r || Date.now() >= end) return r;
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** Ganeti's down states, as `getInstanceInfo` reports them. */
export type DownState = 'user-down' | 'shutdown' | 'crashed';

/**
 * The state of an instance that does not run: `alive` (its QEMU process exists) with the
 * run state QEMU reported, and its shutdown record. Undefined when it is not down (a live
 * QEMU in any run state but `shutdown`).
 */
export function downState(
  alive: boolean,
  runState: string | undefined,
  record: ShutdownRecord | undefined,
): DownState | undefined {
  if (alive && runState !== 'shutdown') return undefined;
  if (!record) return alive ? 'user-down' : 'crashed';
  if (record.event === 'GONE') return alive ? 'user-down' : 'crashed';
  return record.guest && !record.powerdownRequested ? 'user-down' : 'shutdown';
}

/** The `-qmp` option of the watcher's socket, appended to every life-cycle argv. */
export function shutdownWatchArgs(paths: InstancePaths): string[] {
  return ['-qmp', `unix:${paths.kvmd.replaceAll(',', ',,')},server=on,wait=off`];
}

/**
 * The watcher, run as `node -e <this>` with `KVMHV_SHUTDOWN_WATCH` = `{sock, rec, pid,
 * startTime, stateFile}` in its environment (not its command line: only QEMU's names the
 * instance's files). It writes nothing once the state file is gone (the instance was
 * stopped or cleaned up). It is
 * plain JavaScript with Node's own modules only, so it runs from the built package and
 * from the sources alike. It exits when QEMU closes the socket (or it cannot connect
 * within 10 s).
 */
export const SHUTDOWN_WATCHER_SOURCE = String.raw`
const net = require('node:net');
const fs = require('node:fs');
const { sock, rec, pid, startTime, stateFile } = JSON.parse(process.env.KVMHV_SHUTDOWN_WATCH);
let powerdown = false;
let connected = false;
let tries = 0;
function write(o) {
  // The instance's files are gone (stopped, cleaned up): leave nothing behind.
  if (!fs.existsSync(stateFile)) return;
  const tmp = rec + '.tmp-' + process.pid;
  fs.writeFileSync(tmp, JSON.stringify(o) + '\n', { mode: 0o640 });
  fs.renameSync(tmp, rec);
  // Removed meanwhile (the state file goes first): take the record back.
  if (!fs.existsSync(stateFile)) fs.rmSync(rec, { force: true });
}
let ready = false;
let shutdownSeen = false;
function handle(line) {
  let m;
  try { m = JSON.parse(line); } catch { return; }
  if (!ready && 'return' in m) {
    // qmp_capabilities answered: events flow from now on. Tell the launcher, once.
    ready = true;
    process.stdout.write('ready\n', () => process.stdout.destroy());
  } else if (m.event === 'POWERDOWN') powerdown = true;
  else if (m.event === 'SHUTDOWN') {
    shutdownSeen = true;
    const d = m.data || {};
    const t = m.timestamp || {};
    const o = { formatVersion: 1, event: 'SHUTDOWN', guest: d.guest === true, powerdownRequested: powerdown,
      at: Math.round((t.seconds || 0) * 1000 + (t.microseconds || 0) / 1000), pid: Number(pid), startTime };
    if (typeof d.reason === 'string') o.reason = d.reason;
    write(o);
  } else if (m.event === 'RESET' || m.event === 'RESUME') {
    powerdown = false;
    shutdownSeen = false;
    fs.rmSync(rec, { force: true });
  }
}
function connect() {
  const s = net.connect(sock);
  let buf = '';
  s.setEncoding('utf8');
  s.on('connect', () => { connected = true; s.write('{"execute":"qmp_capabilities"}\n'); });
  s.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) { handle(buf.slice(0, i)); buf = buf.slice(i + 1); }
  });
  s.on('error', () => {});
  s.on('close', () => {
    if (connected && !shutdownSeen) {
      write({ formatVersion: 1, event: 'GONE', guest: false, powerdownRequested: powerdown, at: Date.now(),
        pid: Number(pid), startTime });
    }
    if (connected || ++tries > 200) process.exit(0);
    setTimeout(connect, 50);
  });
}
connect();
`;

/**
 * Starts the watcher of a launched QEMU (detached: it outlives this process; its own
 * errors go to the instance log) and resolves with its pid once it receives QEMU's events
 * (it prints `ready` after `qmp_capabilities`), so that no event of a VM the caller then
 * resumes is missed.
 * @throws HypervisorError when it is not ready within `timeoutMs` (it is killed then).
 */
export function startShutdownWatcher(
  paths: InstancePaths,
  qemu: ProcessIdentity,
  timeoutMs = 10_000,
): Promise<number> {
  const log = openSync(paths.log, 'a', 0o640);
  try {
    const child = spawn(process.execPath, ['-e', SHUTDOWN_WATCHER_SOURCE], {
      detached: true,
      stdio: ['ignore', 'pipe', log],
      // In the environment, not the command line: no process but QEMU names the instance's files.
      env: {
        ...process.env,
        KVMHV_SHUTDOWN_WATCH: JSON.stringify({
          sock: paths.kvmd,
          rec: paths.shutdown,
          pid: qemu.pid,
          startTime: qemu.startTime,
          stateFile: paths.state,
        }),
      },
    });
    return new Promise<number>((resolve, reject) => {
      let out = '';
      const fail = (why: string) => {
        clearTimeout(timer);
        stop();
        child.kill('SIGKILL');
        reject(new HypervisorError(`instance '${paths.name}': the shutdown watcher on ${paths.kvmd} ${why}`));
      };
      const timer = setTimeout(() => fail(`was not ready within ${timeoutMs} ms`), timeoutMs);
      // A QEMU that exits meanwhile closes the socket for good: no need to wait.
      const watch = setInterval(() => {
        if (!processAlive(qemu)) fail('could not follow QEMU: QEMU exited');
      }, 50);
      const stop = () => clearInterval(watch);
      child.once('exit', stop);
      child.once('error', (e) => fail(`could not start: ${e.message}`));
      child.once('exit', (code, signal) => {
        if (!out.includes('ready')) fail(`exited (${signal ?? `exit code ${code}`}) before it was ready`);
      });
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (!out.includes('ready\n')) return;
        clearTimeout(timer);
        stop();
        child.stdout!.destroy();
        child.unref();
        resolve(child.pid ?? -1);
      });
    });
  } finally {
    closeSync(log);
  }
}
