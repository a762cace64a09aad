/**
 * Where an instance's files live: Ganeti's layout under `<runDir>` (default
 * `/var/run/ganeti/kvm-hypervisor`), configurable so tests and non-Ganeti users can use
 * any folder. Pure: no file is touched here.
 */
import { join } from 'node:path';
import { HypervisorError } from '../errors.js';

/** Ganeti's `K` folder: `<localstatedir>/run/ganeti/kvm-hypervisor`. */
export const DEFAULT_INSTANCE_RUN_DIR = '/var/run/ganeti/kvm-hypervisor';

/** The folders of a run directory, each created with mode 0o775 (chroot: 0o700 per instance). */
export interface RunLayout {
  root: string;
  /** QEMU `-pidfile`s. */
  pid: string;
  /** Sockets: `<n>.qmp`, `<n>.monitor`, `<n>.serial`, `<n>.qga`, `<n>.vnc`. */
  ctrl: string;
  /** Runtime files `<n>.runtime` (JSON) and state files `<n>.state`. */
  conf: string;
  /** Per-instance chroots (`use_chroot`). */
  chroot: string;
  /** QEMU logs (`-D`). */
  log: string;
}

/** Every file of one instance. */
export interface InstancePaths {
  name: string;
  pidfile: string;
  /** The QMP socket the library talks to. */
  qmp: string;
  /** HMP socket (`-monitor`), kept for operators' consoles. */
  hmp: string;
  serial: string;
  qga: string;
  /** VNC UNIX socket, used when `vnc_bind_address` is a folder. */
  vnc: string;
  /** The second QMP socket, held by the shutdown watcher (Ganeti's `<n>.kvmd`). */
  kvmd: string;
  /** The shutdown record the watcher writes on QEMU's `SHUTDOWN` event (src/instance/shutdown.ts). */
  shutdown: string;
  /** The typed runtime (JSON). */
  runtime: string;
  /** pid + start time + socket paths of the running process (JSON). */
  state: string;
  /**
   * The migration journals of this instance on this node, one per role (see
   * src/migration/journal.ts, which names them the same way).
   */
  journals: { source: string; destination: string };
  chroot: string;
  log: string;
}

/**
 * Throws `HypervisorError` unless `name` can name an instance's files (no `/`, no leading
 * dot, at most 200 characters), so no name reaches outside the run directory.
 */
export function assertInstanceFileName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.length > 200) {
    throw new HypervisorError(`instance name '${name}' is not usable as a file name`);
  }
}

/** The layout of `root` (Ganeti's sub-folder names). */
export function runLayout(root: string = DEFAULT_INSTANCE_RUN_DIR): RunLayout {
  return {
    root,
    pid: join(root, 'pid'),
    ctrl: join(root, 'ctrl'),
    conf: join(root, 'conf'),
    chroot: join(root, 'chroot'),
    log: join(root, 'log'),
  };
}

/** The files of instance `name` in `layout`. */
export function instancePaths(layout: RunLayout, name: string): InstancePaths {
  return {
    name,
    pidfile: join(layout.pid, name),
    qmp: join(layout.ctrl, `${name}.qmp`),
    hmp: join(layout.ctrl, `${name}.monitor`),
    serial: join(layout.ctrl, `${name}.serial`),
    qga: join(layout.ctrl, `${name}.qga`),
    vnc: join(layout.ctrl, `${name}.vnc`),
    kvmd: join(layout.ctrl, `${name}.kvmd`),
    shutdown: join(layout.conf, `${name}.shutdown`),
    runtime: join(layout.conf, `${name}.runtime`),
    state: join(layout.conf, `${name}.state`),
    journals: {
      source: join(layout.conf, `${name}.source.migration`),
      destination: join(layout.conf, `${name}.destination.migration`),
    },
    chroot: join(layout.chroot, name),
    log: join(layout.log, `${name}.log`),
  };
}
