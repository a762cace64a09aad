/**
 * The fault matrix's laboratory: pairs of real QEMU processes (source and incoming
 * destination), a library `KVMHypervisor` per end over QMP or HMP, and an independent
 * observer on each VM's second QMP socket, so the verdict ("exactly one copy runs")
 * comes from QEMU itself and not from the library under test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, vi } from 'vitest';
import type { MigrationError } from '../../src/errors.js';
import type { KVMHypervisorOptions } from '../../src/kvm.js';
import { KVMHypervisor } from '../../src/kvm.js';
import type { Instance } from '../../src/migration/types.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import type { Monitor } from '../../src/monitor/types.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort, QemuVm, type QemuVmOptions } from '../../src/testing/qemu-vm.js';

/** What the matrix needs of a QEMU process: `QemuVm`, or a VM started inside a network namespace. */
export type VmProcess = Pick<
  QemuVm,
  'name' | 'pid' | 'alive' | 'exited' | 'kill' | 'qmpPath' | 'qmpPaths' | 'hmpPath' | 'stderr'
>;

/** Starts a QEMU process. */
export type VmStarter = (options: QemuVmOptions) => Promise<VmProcess>;

/** The monitor protocol the library uses in a case (observers always use QMP). */
export type Protocol = 'qmp' | 'hmp';

/** Both protocols, for `describe.each`. */
export const PROTOCOLS: Protocol[] = ['qmp', 'hmp'];

/**
 * Slack over a call's own deadline before it counts as hung. This is a hang check, not a
 * performance assertion: the machine is shared and noisy.
 */
export const HANG_MARGIN_MS = 5000;

/** Deadline of each accept / finalize / cancel step in the matrix (`timeoutMs`, `stepTimeoutMs`). */
export const STEP_MS = 10_000;

/**
 * The deadline `runMigration` promises: its own `timeoutMs` for the wait plus one step
 * deadline for each of accept, migrate and the two finalizes.
 */
export const runDeadline = (timeoutMs: number): number => timeoutMs + 4 * STEP_MS;

/** Migration bandwidth (MiB/s) of fault cases: far below the busy guest's dirty rate, so they never converge. */
const SLOW_MIBPS = 8;

/** Guest RAM of every VM unless a case changes it (MiB). */
export const GUEST_MIB = 64;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a call did: its value or its error, and how long it took. */
export type Settled<T> = { ok: true; value: T; ms: number } | { ok: false; error: unknown; ms: number };

/**
 * Awaits a library call and checks it settled within `deadlineMs` + {@link HANG_MARGIN_MS}.
 * A call that hangs fails the test with its label instead of the test timeout; its
 * promise is left to settle (or not) in the background.
 */
export async function settles<T>(label: string, call: Promise<T>, deadlineMs: number): Promise<Settled<T>> {
  const started = Date.now();
  const budget = deadlineMs + HANG_MARGIN_MS;
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), budget);
  });
  const outcome = await Promise.race([
    call.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    ),
    hung,
  ]);
  clearTimeout(timer);
  if (outcome === 'hung') {
    call.catch(() => {});
    throw new Error(`${label} did not settle within its deadline ${deadlineMs} ms + ${HANG_MARGIN_MS} ms`);
  }
  return { ...outcome, ms: Date.now() - started };
}

/**
 * Like {@link settles}, but the call must reject; returns the error, typed as the
 * `MigrationError` most calls throw (tests still check it with `instanceof`).
 */
export async function rejectsIn(
  label: string,
  call: Promise<unknown>,
  deadlineMs: number,
): Promise<MigrationError> {
  const r = await settles(label, call, deadlineMs);
  if (r.ok) throw new Error(`${label} resolved with ${JSON.stringify(r.value)}; a rejection was expected`);
  return r.error as MigrationError;
}

/** Like {@link settles}, but the call must resolve; returns the value (or rethrows its error). */
export async function resolvesIn<T>(label: string, call: Promise<T>, deadlineMs: number): Promise<T> {
  const r = await settles(label, call, deadlineMs);
  if (!r.ok) throw r.error;
  return r.value;
}

/** The run state of one end as QEMU reports it: a QMP status, `gone` (process exited) or `frozen`. */
export async function runState(vm: VmProcess, observer: QmpMonitor): Promise<string> {
  if (!vm.alive) return 'gone';
  try {
    const r = (await observer.execute('query-status', undefined, { timeoutMs: 5000 })) as { status: string };
    return r.status;
  } catch (e) {
    // The observer's connection ends when QEMU exits: give the exit a moment to be seen.
    await Promise.race([vm.exited, sleep(1000)]);
    if (!vm.alive) return 'gone';
    throw new Error(`observer cannot read the run state of ${vm.name}: ${(e as Error).message}`);
  }
}

/** The migration status QEMU's own `query-migrate` reports (`none` before any). */
export async function migrationState(vm: VmProcess, observer: QmpMonitor): Promise<string> {
  if (!vm.alive) return 'gone';
  const r = (await observer.execute('query-migrate', undefined, { timeoutMs: 5000 })) as { status?: string };
  return r.status ?? 'none';
}

/**
 * Waits (up to `ms`) until the source's migration is no longer in progress, then returns
 * its status: after a fault, "no migration continues" must hold.
 */
export async function settledMigrationState(
  vm: VmProcess,
  observer: QmpMonitor,
  ms = 10_000,
): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const s = await migrationState(vm, observer);
    if (!['active', 'setup', 'device', 'pre-switchover', 'cancelling', 'wait-unplug'].includes(s)) return s;
    if (Date.now() > until) return s;
    await sleep(100);
  }
}

/** A source and an incoming destination, the library on each end and an observer on each. */
export interface Pair {
  src: VmProcess;
  dst: VmProcess;
  srcHv: KVMHypervisor;
  dstHv: KVMHypervisor;
  srcObs: QmpMonitor;
  dstObs: QmpMonitor;
  /** The destination's `-incoming` port. */
  port: number;
  /** The address the source migrates to. */
  target: string;
  /** The instance, with `migration_port` set to {@link port}. */
  inst: Instance;
}

/** Options of {@link FaultLab.pair}. */
export interface PairOptions {
  protocol: Protocol;
  /** `busy`: the dirtying guest (16 MiB at 32 MiB/s); `idle`: no kernel, the VM idles in the BIOS. */
  guest?: 'busy' | 'idle';
  /** hvparams besides `migration_port` (default: `migration_bandwidth` {@link SLOW_MIBPS}). */
  hvparams?: Instance['hvparams'];
  srcMemoryMiB?: number;
  dstMemoryMiB?: number;
  /** QEMU binaries (a matrix release). */
  srcBinary?: string;
  dstBinary?: string;
  /** How to start each end (default `QemuVm.start`; a network namespace's starter in the two-host cases). */
  srcStart?: VmStarter;
  dstStart?: VmStarter;
  /** Where the destination listens and the source migrates to (default 127.0.0.1). */
  listenHost?: string;
  /** Opens the source library's monitor; default: {@link protocol} on the VM's first socket. */
  srcMonitor?: (vm: VmProcess) => Promise<Monitor>;
  /** How long to wait before the pair is handed out, so the busy guest has dirtied its region (default 600 ms). */
  warmUpMs?: number;
  /** The busy guest's image (default {@link FaultLab.busyGuest}: 16 MiB at 32 MiB/s). */
  guestImage?: string;
  /** Options of the source's hypervisor besides `monitor` (e.g. `convergence`). */
  srcHvOptions?: Omit<KVMHypervisorOptions, 'monitor'>;
}

/** Opens the library's monitor of `vm` in `protocol` (QMP on the first socket, HMP on the HMP socket). */
function openMonitor(vm: VmProcess, protocol: Protocol, timeoutMs = 10_000): Promise<Monitor> {
  return protocol === 'qmp'
    ? QmpMonitor.connect({ path: vm.qmpPath }, { timeoutMs, greetingTimeoutMs: 5000 })
    : HmpMonitor.connect({ path: vm.hmpPath! }, { timeoutMs, greetingTimeoutMs: 5000 });
}

/** The completion deadline a fault case gives `runMigration` / `waitForMigration`. */
export const RUN_MS = 20_000;

/**
 * A {@link FaultLab} for one test file, cleaned up after each test and disposed after
 * the file. A hung runMigration may take its whole budget (wait + four steps + margin)
 * to be reported, hence the long test timeout.
 */
export function useFaultLab(name: string): FaultLab {
  vi.setConfig({ testTimeout: 120_000 });
  const lab = new FaultLab(name);
  afterEach(() => lab.cleanup());
  afterAll(() => lab.dispose());
  return lab;
}

/**
 * One test file's VMs, monitors and temporary folder. `cleanup()` (in `afterEach`) ends
 * everything the file started, even after a failure; frozen VMs are killed too.
 */
export class FaultLab {
  readonly dir: string;
  /** The dirtying guest: 16 MiB rewritten at 32 MiB/s, which cannot converge at {@link SLOW_MIBPS}. */
  readonly busyGuest: string;
  private readonly vms: VmProcess[] = [];
  private readonly closers: (() => Promise<unknown>)[] = [];
  private seq = 0;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), `kvmhv-${prefix}-`));
    this.busyGuest = join(this.dir, 'busy.img');
    writeGuestImage(this.busyGuest, { dirtyMiB: 16, rateMiBps: 32 });
  }

  /** Registers something to close or stop at clean-up (first registered, first run). */
  defer(closer: () => Promise<unknown>): void {
    this.closers.push(closer);
  }

  /** Starts a VM that clean-up kills. */
  async vm(options: QemuVmOptions, start: VmStarter = (o) => QemuVm.start(o)): Promise<VmProcess> {
    // TCG always: under nested KVM (this machine kind) SeaBIOS takes 8-12 s before the
    // dirtying guest starts, so a migration right after start-up would copy an idle VM
    // and end before any fault could be injected.
    const vm = await start({ accel: 'tcg', ...options });
    this.vms.push(vm);
    return vm;
  }

  /** A unique name stem for this file's next VM pair. */
  nextName(): string {
    return `p${++this.seq}`;
  }

  /** Starts a source and an incoming destination with observers and a library hypervisor on each. */
  async pair(o: PairOptions): Promise<Pair> {
    const name = this.nextName();
    const port = await freePort();
    const listenHost = o.listenHost ?? '127.0.0.1';
    const kernel = (o.guest ?? 'busy') === 'busy' ? { kernel: o.guestImage ?? this.busyGuest } : {};
    const src = await this.vm(
      {
        name: `${name}-src`,
        dir: this.dir,
        qmpSockets: 2,
        memoryMiB: o.srcMemoryMiB ?? GUEST_MIB,
        ...(o.srcBinary ? { binary: o.srcBinary } : {}),
        ...kernel,
      },
      o.srcStart,
    );
    const dst = await this.vm(
      {
        name: `${name}-dst`,
        dir: this.dir,
        qmpSockets: 2,
        memoryMiB: o.dstMemoryMiB ?? GUEST_MIB,
        incoming: `tcp:${listenHost}:${port}`,
        ...(o.dstBinary ? { binary: o.dstBinary } : {}),
        ...kernel,
      },
      o.dstStart,
    );
    const srcHv = new KVMHypervisor({
      ...o.srcHvOptions,
      monitor: () => (o.srcMonitor ?? ((vm) => openMonitor(vm, o.protocol)))(src),
    });
    const dstHv = new KVMHypervisor({ monitor: () => openMonitor(dst, o.protocol) });
    // Independent observers on the second QMP socket: what QEMU itself says.
    const srcObs = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
    const dstObs = await QmpMonitor.connect({ path: dst.qmpPaths[1]! });
    this.defer(() => srcHv.close());
    this.defer(() => dstHv.close());
    this.defer(() => srcObs.close());
    this.defer(() => dstObs.close());
    if (kernel.kernel) await sleep(o.warmUpMs ?? 600);
    const inst: Instance = {
      name,
      hvparams: { migration_bandwidth: SLOW_MIBPS, ...(o.hvparams ?? {}), migration_port: port },
    };
    return { src, dst, srcHv, dstHv, srcObs, dstObs, port, target: listenHost, inst };
  }

  /** Closes every monitor and kills every VM (SIGCONT first, so a frozen one can take SIGTERM). */
  async cleanup(): Promise<void> {
    for (const vm of this.vms) if (vm.alive) process.kill(vm.pid, 'SIGCONT');
    for (const c of this.closers.splice(0)) await c().catch(() => {});
    await Promise.all(this.vms.splice(0).map((vm) => vm.kill(500)));
  }

  /** Removes the temporary folder (in `afterAll`). */
  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The run states of both ends, from the observers. */
export async function bothStates(p: Pair): Promise<{ src: string; dst: string }> {
  return { src: await runState(p.src, p.srcObs), dst: await runState(p.dst, p.dstObs) };
}

/**
 * The central invariant: exactly one of the two QEMUs runs the VM. Reports both states
 * on failure. Returns which end runs.
 */
export async function expectRunsExactlyOnce(p: Pair): Promise<'src' | 'dst'> {
  const states = await bothStates(p);
  const running = (['src', 'dst'] as const).filter((k) => states[k] === 'running');
  expect(running.length, `exactly one copy must run; run states: ${JSON.stringify(states)}`).toBe(1);
  return running[0]!;
}

/** Fires `inject` once, on the first progress snapshot that shows RAM being sent. */
export function onceMigrating(
  inject: () => void,
): (p: { status: string; transferredBytes?: number }) => void {
  let fired = false;
  return (p) => {
    if (fired || p.status !== 'active' || (p.transferredBytes ?? 0) < 256 * 1024) return;
    fired = true;
    inject();
  };
}

/** Sends a signal to a VM's process. */
export function signal(vm: VmProcess, sig: NodeJS.Signals): void {
  process.kill(vm.pid, sig);
}

/** Error text including the causes, for matching QEMU's reasons wherever the library put them. */
export function fullText(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e, i = 0; c !== undefined && c !== null && i < 5; i++) {
    if (c instanceof Error) {
      parts.push(c.message);
      const extra = c as unknown as { reason?: string; destinationReason?: string };
      if (extra.reason) parts.push(extra.reason);
      if (extra.destinationReason) parts.push(extra.destinationReason);
      c = c.cause;
    } else {
      parts.push(String(c));
      break;
    }
  }
  return parts.join(' | ');
}

/** True when `e` or one of its causes is an instance of `type`. */
export function hasCause(e: unknown, type: abstract new (...args: never[]) => Error): boolean {
  let c: unknown = e;
  for (let i = 0; c instanceof Error && i < 6; i++) {
    if (c instanceof type) return true;
    c = (c as Error).cause;
  }
  return false;
}
