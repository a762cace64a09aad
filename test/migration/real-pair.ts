/**
 * A source and a destination QEMU for the real migration tests, of any release and
 * accelerator, with the library's hypervisor on each end over QMP or HMP (recorded, so
 * a test can assert the commands QEMU got) and independent QMP observers on the second
 * socket (what QEMU itself says). Everything started is registered for cleanup.
 */

import { KVMHypervisor } from '../../src/kvm.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import type { Monitor, MonitorProtocol } from '../../src/monitor/types.js';
import {
  GUEST_STATUS_ADDRESS,
  type GuestStatus,
  parseGuestStatus,
  parseXpWords,
} from '../../src/testing/guest/index.js';
import { freePort, QemuVm } from '../../src/testing/qemu-vm.js';
import { RecordingMonitor } from '../../src/testing/transcript.js';
import type { QemuRelease } from '../support/qemu-releases.js';
import { type Accel, vmOptions } from '../support/real-qemu.js';

/** What {@link Cleanup} ends after each test. */
export interface Cleanup {
  vms: QemuVm[];
  closers: (() => Promise<unknown>)[];
}

/** Ends everything in `c` (monitors first, then the VMs), also when some of it fails. */
export async function cleanUp(c: Cleanup): Promise<void> {
  for (const close of c.closers.splice(0)) await close().catch(() => {});
  await Promise.all(c.vms.splice(0).map((vm) => vm.kill()));
}

/** One end of a pair. */
interface EndSpec {
  release: QemuRelease;
  accel?: Accel;
  /** `-machine` type, e.g. `pc-i440fx-5.2`; default QemuVm's `pc`. */
  machine?: string;
  /** A guest image (`-kernel`). */
  kernel?: string;
}

/** Options of {@link startPair}. */
export interface PairOptions {
  dir: string;
  name: string;
  src: EndSpec;
  dst: EndSpec;
  /** Monitor the hypervisors use on both ends. */
  protocol: MonitorProtocol;
  memoryMiB?: number;
  /** Options of the source's hypervisor (e.g. `convergence`). */
  srcHv?: Omit<ConstructorParameters<typeof KVMHypervisor>[0] & object, 'monitor'>;
  /** Options of the destination's hypervisor (e.g. `tls`). */
  dstHv?: Omit<ConstructorParameters<typeof KVMHypervisor>[0] & object, 'monitor'>;
  /** Start the destination with `-incoming defer` (then `acceptInstance(…, { listen })`). */
  deferIncoming?: boolean;
}

/** A started pair. */
export interface Pair {
  src: QemuVm;
  dst: QemuVm;
  port: number;
  srcHv: KVMHypervisor;
  dstHv: KVMHypervisor;
  /** What the source's hypervisor sent, once it has opened its monitor. */
  srcRecorder(): RecordingMonitor;
  srcObs: QmpMonitor;
  dstObs: QmpMonitor;
}

function vmArgs(end: EndSpec) {
  return { ...vmOptions(end.release, end.accel ?? 'tcg'), machine: end.machine, kernel: end.kernel };
}

function opener(protocol: MonitorProtocol, vm: QemuVm): () => Promise<Monitor> {
  return protocol === 'qmp'
    ? () => QmpMonitor.connect({ path: vm.qmpPath })
    : () => HmpMonitor.connect({ path: vm.hmpPath! });
}

/** Starts the destination (`-incoming`) and the source, and connects everything. */
export async function startPair(o: PairOptions, c: Cleanup): Promise<Pair> {
  const port = await freePort();
  const memoryMiB = o.memoryMiB ?? 64;
  const dst = await QemuVm.start({
    name: `${o.name}-dst`,
    dir: o.dir,
    qmpSockets: 2,
    memoryMiB,
    incoming: o.deferIncoming ? 'defer' : `tcp:127.0.0.1:${port}`,
    ...vmArgs(o.dst),
  });
  c.vms.push(dst);
  const src = await QemuVm.start({ name: o.name, dir: o.dir, qmpSockets: 2, memoryMiB, ...vmArgs(o.src) });
  c.vms.push(src);
  let recorder: RecordingMonitor | undefined;
  const openSrc = opener(o.protocol, src);
  const srcHv = new KVMHypervisor({
    ...o.srcHv,
    monitor: async () => {
      recorder = new RecordingMonitor(await openSrc(), `${o.name} source`, 'real QEMU test');
      return recorder;
    },
  });
  const dstHv = new KVMHypervisor({ ...o.dstHv, monitor: opener(o.protocol, dst) });
  c.closers.push(
    () => srcHv.close(),
    () => dstHv.close(),
  );
  const srcObs = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
  c.closers.push(() => srcObs.close());
  const dstObs = await QmpMonitor.connect({ path: dst.qmpPaths[1]! });
  c.closers.push(() => dstObs.close());
  const srcRecorder = () => {
    if (!recorder) throw new Error('the source hypervisor has not opened its monitor yet');
    return recorder;
  };
  return { src, dst, port, srcHv, dstHv, srcRecorder, srcObs, dstObs };
}

/** The VM run state QEMU reports. */
export const runState = async (m: QmpMonitor) => (await m.execute<{ status: string }>('query-status')).status;

/** Capability states QEMU reports. */
export const capabilityStates = async (m: QmpMonitor): Promise<Record<string, boolean>> =>
  Object.fromEntries(
    (await m.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities')).map((c) => [
      c.capability,
      c.state,
    ]),
  );

/** The commands among `sent` that configure or start a migration, as text. */
export function migrationSettingCommands(rec: RecordingMonitor): string[] {
  return rec.transcript.exchanges
    .map((e) =>
      typeof e.send === 'string' ? e.send : `${e.send.execute} ${JSON.stringify(e.send.arguments ?? {})}`,
    )
    .filter((s) => /^(migrate_set_|migrate-set-|migrate[ -]|migrate$)/.test(s));
}

/** The dirtying guest's status block, read through `m` (QMP, `xp` over human-monitor-command). */
export async function guestStatus(m: QmpMonitor): Promise<GuestStatus> {
  return parseGuestStatus(
    parseXpWords(await m.humanCommand(`xp /4wx 0x${GUEST_STATUS_ADDRESS.toString(16)}`)),
  );
}

/**
 * Waits until the dirtying guest has swept its whole region at least `sweeps` times, so a
 * migration started now has dirty memory to chase (a just-booted guest has none yet).
 * Generous deadline: under nested KVM SeaBIOS alone takes 8–12 s.
 */
export async function guestSwept(m: QmpMonitor, sweeps = 1, timeoutMs = 45_000): Promise<GuestStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await guestStatus(m);
    if (s.running && s.sweeps >= sweeps) return s;
    if (Date.now() > deadline)
      throw new Error(`the guest did not sweep its region in time: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The migration status QEMU reports (`query-migrate`). */
export const migrationStatus = async (m: QmpMonitor): Promise<string | undefined> =>
  (await m.execute<{ status?: string }>('query-migrate')).status;

/** Polls `check` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
