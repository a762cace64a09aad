/**
 * The run directory on disk: its folders created with explicit modes, and the state file
 * `<conf>/<n>.state` that says which process runs an instance (pid + kernel start time),
 * where its monitor is, and what it was started with. Written atomically (temporary file
 * then rename) so a crash never leaves half a state file.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import type { Static } from 'typebox';
import * as Type from 'typebox/type';
import { Value } from 'typebox/value';
import { HypervisorError, UnrecognizedOutputError } from '../errors.js';
import type { InstancePaths, RunLayout } from './layout.js';
import { readProcStat } from './process.js';

/** Mode of the run directory's folders (Ganeti's 0o775). */
const RUN_DIR_MODE = 0o775;
/** Mode of state and runtime files: they name sockets and may name password files. */
export const STATE_FILE_MODE = 0o640;

/**
 * Creates every folder of `layout` that is missing and sets its mode explicitly (mkdir's
 * mode is filtered by the umask; chmod is not).
 */
export function ensureRunLayout(layout: RunLayout): void {
  for (const dir of [layout.root, layout.pid, layout.ctrl, layout.conf, layout.chroot, layout.log]) {
    mkdirSync(dir, { recursive: true, mode: RUN_DIR_MODE });
    chmodSync(dir, RUN_DIR_MODE);
  }
}

/** The state file of a running instance (JSON, format version 1). */
const InstanceStateSchema = Type.Object(
  {
    formatVersion: Type.Literal(1),
    name: Type.String(),
    uuid: Type.String(),
    /** The QEMU process. */
    pid: Type.Integer({ minimum: 1 }),
    /** `/proc/<pid>/stat` field 22 of that process: tells it from a later process with the same pid. */
    startTime: Type.String({ pattern: '^[0-9]+$' }),
    /** Wall-clock start, epoch ms (for uptime). */
    startedAt: Type.Integer(),
    qmp: Type.String(),
    hmp: Type.String(),
    accel: Type.Union([Type.Literal('kvm'), Type.Literal('tcg')]),
    /** QEMU version the process reported (`major.minor.micro`). */
    qemuVersion: Type.String(),
    /** The executable that was started. */
    binary: Type.String(),
    /** Set while the process waits for an incoming migration (destination not yet finalized). */
    incoming: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
/** The state file of a running instance. */
export type InstanceState = Static<typeof InstanceStateSchema>;

/** Writes `text` to `path` atomically with mode {@link STATE_FILE_MODE}. */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: STATE_FILE_MODE });
  chmodSync(tmp, STATE_FILE_MODE);
  renameSync(tmp, path);
}

/** Writes the state file of an instance. */
export function writeInstanceState(paths: InstancePaths, state: InstanceState): void {
  writeFileAtomic(paths.state, `${JSON.stringify(state, null, 2)}\n`);
}

/**
 * Parses a state file's text.
 * @throws UnrecognizedOutputError quoting the text when it is not a version-1 state.
 */
export function parseInstanceState(text: string, path = 'state file'): InstanceState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UnrecognizedOutputError(path, text, 'content');
  }
  if (!Value.Check(InstanceStateSchema, value)) throw new UnrecognizedOutputError(path, text, 'content');
  return value;
}

/** The state of an instance, or undefined when it has no state file. */
export function readInstanceState(paths: InstancePaths): InstanceState | undefined {
  let text: string;
  try {
    text = readFileSync(paths.state, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new HypervisorError(`cannot read the state of instance '${paths.name}': ${(e as Error).message}`);
  }
  return parseInstanceState(text, paths.state);
}

/**
 * Removes every file the instance's process and this library left in the run directory
 * (sockets, pidfile, state, migration journals, runtime unless `keepRuntime`, an empty
 * chroot folder).
 * Missing files are fine.
 */
export function removeInstanceFiles(paths: InstancePaths, { keepRuntime = false } = {}): void {
  // A migration journal is only of use while its QEMU lives: once the process is gone
  // nothing is left to put back, and a stale one would refuse the next migration.
  const files = [
    paths.pidfile,
    paths.qmp,
    paths.hmp,
    paths.serial,
    paths.qga,
    paths.vnc,
    paths.kvmd,
    paths.state,
    // After the state file: the shutdown watcher writes no record once that is gone.
    paths.shutdown,
    paths.journals.source,
    paths.journals.destination,
  ];
  if (!keepRuntime) files.push(paths.runtime);
  for (const f of files) rmSync(f, { force: true });
  try {
    rmdirSync(paths.chroot);
  } catch (e) {
    // Absent (no use_chroot), or not empty: what QEMU left there is kept for inspection.
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTEMPTY') {
      throw e;
    }
  }
}

/** Mode of an instance's chroot folder (`use_chroot`), as Ganeti creates it. */
const CHROOT_MODE = 0o700;

/** Creates the instance's empty chroot folder (`use_chroot`) with mode 0700. */
export function ensureChroot(paths: InstancePaths): void {
  mkdirSync(paths.chroot, { recursive: true, mode: CHROOT_MODE });
  chmodSync(paths.chroot, CHROOT_MODE);
}

/**
 * Takes the start lock of an instance (`<conf>/<n>.lock`, holding this process's pid), so
 * that two starts or accepts of one name on one node cannot both launch a QEMU. A lock left
 * by a process that is gone is taken over. Returns the release function.
 * @throws HypervisorError when another live process holds it.
 */
export function acquireStartLock(paths: InstancePaths): () => void {
  const lock = `${paths.state.slice(0, -'.state'.length)}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx', mode: STATE_FILE_MODE });
      return () => rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
    }
    const holder = Number.parseInt(readFileSync(lock, 'utf8'), 10);
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && pidExists(holder)) {
      throw new HypervisorError(
        `instance '${paths.name}': another start or accept of it is in progress (process ${holder}, ${lock})`,
      );
    }
    if (holder === process.pid) {
      throw new HypervisorError(
        `instance '${paths.name}': a start or accept of it is already in progress here`,
      );
    }
    rmSync(lock, { force: true }); // left by a process that is gone
  }
}

/** A process that exists and is not a zombie (an exited child not yet reaped holds no lock). */
function pidExists(pid: number): boolean {
  const st = readProcStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}
