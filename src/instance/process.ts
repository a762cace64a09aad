/**
 * Supervision of an instance's QEMU process without being its parent for life: spawn
 * detached (own process group, output to the instance log, `unref`), identify it later by
 * pid plus the kernel's start time (`/proc/<pid>/stat` field 22, so a reused pid is never
 * mistaken for the VM), and end it with SIGTERM then SIGKILL under deadlines that hold
 * even when QEMU is frozen. Never reads `/proc/<pid>/cmdline` (Ganeti #1820).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { HypervisorError, UnrecognizedOutputError } from '../errors.js';

/** The fields of `/proc/<pid>/stat` the supervisor needs. */
export interface ProcStat {
  /** Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), … */
  state: string;
  /** Field 22: start time in clock ticks since boot, as text (exact, no float rounding). */
  startTime: string;
}

/**
 * Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and
 * may itself contain spaces and parentheses, so fields are counted after the last `)`.
 * @throws UnrecognizedOutputError when the text has not that shape.
 */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(')');
  const rest =
    close < 0
      ? []
      : text
          .slice(close + 1)
          .trim()
          .split(/\s+/);
  // rest[0] is field 3 (state), so field 22 is rest[19].
  const state = rest[0];
  const startTime = rest[19];
  if (!state || !/^[A-Za-z]$/.test(state) || !startTime || !/^\d+$/.test(startTime)) {
    throw new UnrecognizedOutputError('/proc/<pid>/stat', text, 'content');
  }
  return { state, startTime };
}

/** `/proc/<pid>/stat` of a process, or undefined when there is no such process. */
export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcStat(text);
}

/** The identity of a process: its pid and the start time that makes the pid unique. */
export interface ProcessIdentity {
  pid: number;
  startTime: string;
}

/**
 * True while the process `id` names runs: the pid exists, is not a zombie, and started at
 * the recorded time (a pid reused by another process has another start time).
 */
export function processAlive(id: ProcessIdentity): boolean {
  const st = readProcStat(id.pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X' && st.startTime === id.startTime;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Waits until the process is gone, polling every `pollMs`; resolves true when it is gone,
 * false when `timeoutMs` passed first. Needs no monitor, so a frozen QEMU cannot hold it.
 */
export async function waitForExit(id: ProcessIdentity, timeoutMs: number, pollMs = 50): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (!processAlive(id)) return true;
    if (Date.now() >= until) return false;
    await sleep(Math.min(pollMs, Math.max(1, until - Date.now())));
  }
}

/** Sends `signal` to the process when it is still the one `id` names; false when it was already gone. */
function signalProcess(id: ProcessIdentity, signal: NodeJS.Signals): boolean {
  if (!processAlive(id)) return false;
  try {
    process.kill(id.pid, signal);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

/** How {@link terminateProcess} ended the process. */
export type TerminationStep = 'already-gone' | 'exited' | 'sigterm' | 'sigkill';

/**
 * Ends a process: waits `graceMs` for an exit already under way (after a `quit` or the
 * power button), then SIGTERM and `termMs`, then SIGKILL and `killMs`. Returns the step
 * that ended it.
 * @throws HypervisorError when it still runs after SIGKILL (uninterruptible sleep in the kernel).
 */
export async function terminateProcess(
  id: ProcessIdentity,
  {
    graceMs = 0,
    termMs = 10_000,
    killMs = 10_000,
  }: { graceMs?: number; termMs?: number; killMs?: number } = {},
): Promise<TerminationStep> {
  if (!processAlive(id)) return 'already-gone';
  if (graceMs > 0 && (await waitForExit(id, graceMs))) return 'exited';
  if (!signalProcess(id, 'SIGTERM')) return 'exited';
  if (await waitForExit(id, termMs)) return 'sigterm';
  if (!signalProcess(id, 'SIGKILL')) return 'sigterm';
  if (await waitForExit(id, killMs)) return 'sigkill';
  throw new HypervisorError(
    `process ${id.pid} still exists ${killMs} ms after SIGKILL (state ${readProcStat(id.pid)?.state ?? '?'}): it is stuck in the kernel`,
  );
}

/** A process started by {@link spawnDetached}. */
export interface SpawnedProcess extends ProcessIdentity {
  /** Resolves with how the process ended, while this Node process still watches it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `argv` in its own process group (it survives this Node process and a Ctrl-C in
 * its terminal), stdout and stderr appended to `logPath` (so a QEMU that dies at start-up
 * can be explained from it), and lets Node exit without waiting for it.
 * @throws HypervisorError when the binary cannot be executed.
 */
export async function spawnDetached(argv: readonly string[], logPath: string): Promise<SpawnedProcess> {
  const [binary, ...args] = argv;
  if (!binary) throw new HypervisorError('cannot start a process from an empty command line');
  const fd = openSync(logPath, 'a', 0o640);
  try {
    const child = spawn(binary, args, { detached: true, stdio: ['ignore', fd, fd] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new HypervisorError(`cannot start '${binary}': ${e.message}`)));
      child.once('spawn', () => resolve(child.pid ?? -1));
    });
    child.unref();
    const st = readProcStat(pid);
    if (!st) {
      // Exited between spawn and this read: the exit status explains it.
      const how = await exited;
      return { pid, startTime: '0', exited: Promise.resolve(how) };
    }
    return { pid, startTime: st.startTime, exited };
  } finally {
    closeSync(fd);
  }
}

/** The last `maxBytes` of a file (QEMU's error lines at the end of the log), or `''`. */
export function tailOf(path: string, fromByte = 0, maxBytes = 4096): string {
  try {
    const size = statSync(path).size;
    const start = Math.max(fromByte, size - maxBytes);
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(Math.max(0, size - start));
      readSync(fd, buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}
