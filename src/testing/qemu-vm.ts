/**
 * Starting and stopping local `qemu-system-x86_64` processes: used by the demo and by
 * the integration tests. Every VM started here is killed when the Node process exits,
 * so a failing test or a Ctrl-C never leaks a QEMU.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { HypervisorError } from '../errors.js';
import { type Accelerator, type AcceleratorChoice, resolveAccelerator } from '../qemu/accel.js';
import { listeningUnixSockets } from '../qemu/unix-sockets.js';

/** Options for {@link QemuVm.start}. */
export interface QemuVmOptions {
  /** VM name (`-name`) and the stem of its socket file names. */
  name: string;
  /** Folder for the monitor sockets. */
  dir: string;
  /** QEMU binary; default `$QEMU` or `qemu-system-x86_64` on the PATH. */
  binary?: string;
  /**
   * Accelerator: `kvm`, `tcg`, or `auto` (KVM when `/dev/kvm` opens read-write, else
   * TCG). Default: `$KVMHV_ACCEL`, else `auto`. QEMU gets exactly one `-accel`, so a VM
   * never falls back silently: {@link QemuVm.accel} is what it runs with.
   */
  accel?: AcceleratorChoice;
  /**
   * Machine type (`-machine`), default `pc`. Pin a versioned type (`pc-i440fx-5.2`) on
   * both ends of a migration between QEMU releases.
   */
  machine?: string;
  /** Guest memory in MiB (default 64). */
  memoryMiB?: number;
  /** How many QMP sockets to open (default 1): a QMP socket serves one client at a time. */
  qmpSockets?: number;
  /** Open an HMP socket (`-monitor unix:`) too (default true). */
  hmp?: boolean;
  /** `-incoming` URI, e.g. `tcp:127.0.0.1:4444` or `defer`. */
  incoming?: string;
  /** A multiboot guest image to run (`-kernel`); without it the VM idles in the BIOS. */
  kernel?: string;
  /** Start with the vCPU paused (`-S`). */
  paused?: boolean;
  /** Extra command-line arguments. */
  args?: string[];
  /** How long to wait for the sockets to listen (default 10 s). */
  startTimeoutMs?: number;
}

/** How a QEMU process ended. */
export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/**
 * Where distributions install the x86-64 system emulator, in the order
 * {@link findQemuBinary} tries them: `qemu-system-x86_64` on the PATH (upstream, Debian,
 * Ubuntu, Fedora), `/usr/bin/kvm` (Debian's and Ubuntu's `kvm`, Ganeti's default
 * `kvm_path`), `/usr/libexec/qemu-kvm` (RHEL, CentOS Stream, Rocky, Alma: not on the PATH).
 */
export const QEMU_BINARY_CANDIDATES: readonly string[] = [
  'qemu-system-x86_64',
  '/usr/bin/kvm',
  '/usr/libexec/qemu-kvm',
];

/** Where {@link findQemuBinary} looks. */
export interface FindQemuOptions {
  /** Environment: `QEMU` and `PATH` (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Names or paths to try when `$QEMU` is unset (default {@link QEMU_BINARY_CANDIDATES}). */
  candidates?: readonly string[];
}

/**
 * Finds the QEMU binary: `$QEMU` when set (and nothing else: an explicit choice that does
 * not run is not replaced), else the first of {@link QEMU_BINARY_CANDIDATES} that runs
 * `--version`. Undefined when none does.
 */
export function findQemuBinary(options: FindQemuOptions = {}): string | undefined {
  const env = options.env ?? process.env;
  const candidates = env.QEMU ? [env.QEMU] : (options.candidates ?? QEMU_BINARY_CANDIDATES);
  for (const candidate of candidates) {
    try {
      execFileSync(candidate, ['--version'], { stdio: 'ignore', env });
      return candidate;
    } catch {
      // not there or not runnable: the next one
    }
  }
  return undefined;
}

/** Whether `port` can be bound on `host` now. */
function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/**
 * A TCP port free on 127.0.0.1 and on every address, for a QEMU to listen on. Drawn at
 * random below the kernel's ephemeral range (32768–60999 by default): a port the kernel
 * handed out as ephemeral can be given again to any outgoing connection (a migration
 * stream, a test client) before QEMU binds it ("Address already in use"), one outside the
 * range only to another caller that drew the same number and checked it at the same time.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if ((await bindable(port, '0.0.0.0')) && (await bindable(port, '127.0.0.1'))) return port;
  }
  throw new Error('freePort: no free port found in 20000-31999 after 50 tries');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A running local QEMU process with its monitor sockets. */
export class QemuVm {
  /** The VM name. */
  readonly name: string;
  /** Paths of the QMP sockets (at least one unless `qmpSockets: 0`). */
  readonly qmpPaths: string[];
  /** Path of the HMP socket, when opened. */
  readonly hmpPath: string | undefined;
  /** Resolves when the process has exited. */
  readonly exited: Promise<QemuExit>;
  /** The full command line, for logs and error messages. */
  readonly argv: string[];
  /** The accelerator QEMU was started with (`-accel`). */
  readonly accel: Accelerator;
  private readonly child: ChildProcess;
  private stderrText = '';
  private exitInfo: QemuExit | undefined;

  private constructor(
    name: string,
    child: ChildProcess,
    argv: string[],
    accel: Accelerator,
    qmpPaths: string[],
    hmpPath?: string,
  ) {
    this.name = name;
    this.accel = accel;
    this.child = child;
    this.argv = argv;
    this.qmpPaths = qmpPaths;
    this.hmpPath = hmpPath;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      this.stderrText = (this.stderrText + d).slice(-8192);
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        running.delete(child);
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  /** The first QMP socket path. */
  get qmpPath(): string {
    const p = this.qmpPaths[0];
    if (p === undefined) throw new HypervisorError(`VM '${this.name}' has no QMP socket`);
    return p;
  }

  /** The process id. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** True while the process runs. */
  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  /** The last 8 KiB QEMU wrote to stderr. */
  get stderr(): string {
    return this.stderrText;
  }

  /**
   * Starts QEMU with KVM or TCG (see {@link QemuVmOptions.accel}), no default devices and
   * no display, and waits until its monitor sockets listen. Throws a `HypervisorError`
   * with QEMU's stderr when it exits early.
   */
  static async start(options: QemuVmOptions): Promise<QemuVm> {
    const binary = options.binary ?? process.env.QEMU ?? 'qemu-system-x86_64';
    const accel = resolveAccelerator(options.accel);
    const qmpCount = options.qmpSockets ?? 1;
    const qmpPaths = Array.from({ length: qmpCount }, (_, i) =>
      join(options.dir, i === 0 ? `${options.name}.qmp` : `${options.name}.qmp${i + 1}`),
    );
    const hmpPath = options.hmp === false ? undefined : join(options.dir, `${options.name}.monitor`);
    const argv = [
      '-name',
      options.name,
      '-accel',
      accel,
      '-machine',
      options.machine ?? 'pc',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-m',
      String(options.memoryMiB ?? 64),
    ];
    for (const p of qmpPaths) argv.push('-qmp', `unix:${p},server=on,wait=off`);
    if (hmpPath) argv.push('-monitor', `unix:${hmpPath},server=on,wait=off`);
    if (options.kernel) argv.push('-kernel', options.kernel);
    if (options.incoming) argv.push('-incoming', options.incoming);
    if (options.paused) argv.push('-S');
    if (options.args) argv.push(...options.args);

    for (const p of [...qmpPaths, ...(hmpPath ? [hmpPath] : [])]) rmSync(p, { force: true });
    installExitHook();
    const child = spawn(binary, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    const vm = new QemuVm(options.name, child, [binary, ...argv], accel, qmpPaths, hmpPath);
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

    const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
    const sockets = [...qmpPaths, ...(hmpPath ? [hmpPath] : [])];
    for (;;) {
      if (sockets.every((p) => existsSync(p))) {
        const listening = listeningUnixSockets(child.pid);
        if (!listening || sockets.every((p) => listening.has(p))) return vm;
      }
      const early = await Promise.race([spawnError, vm.exited, sleep(20).then(() => undefined)]);
      if (early instanceof Error) {
        running.delete(child);
        throw new HypervisorError(`cannot start QEMU '${binary}': ${early.message}`);
      }
      if (early !== undefined || !vm.alive) {
        throw new HypervisorError(
          `QEMU '${options.name}' exited during start-up (${vm.exitInfo?.code ?? vm.exitInfo?.signal}): ${vm.stderr.trim()}`,
        );
      }
      if (Date.now() > deadline) {
        await vm.kill();
        throw new HypervisorError(`QEMU '${options.name}' did not open its monitor sockets in time`);
      }
    }
  }

  /**
   * Ends the process: SIGTERM, then SIGKILL after `graceMs`, and removes its sockets.
   * Safe to call more than once.
   */
  async kill(graceMs = 2000): Promise<QemuExit> {
    if (this.alive) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    for (const p of [...this.qmpPaths, ...(this.hmpPath ? [this.hmpPath] : [])]) rmSync(p, { force: true });
    return this.exited;
  }
}
