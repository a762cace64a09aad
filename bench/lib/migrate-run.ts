/**
 * One busy-guest live migration between two local QEMU processes, driven by the library
 * (`acceptInstance`, `migrateInstance`, `waitForMigration`, both finalizes), bounded in
 * time: a migration that has not completed by then is cancelled and reported as not
 * converged. Used by the migration, accelerator and evacuation benchmarks.
 */

import { KVMHypervisor } from '../../src/kvm.js';
import type { ConvergencePolicyOptions } from '../../src/migration/convergence.js';
import type { ConvergenceAction, MigrationProgress } from '../../src/migration/types.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import type { Accelerator } from '../../src/qemu/accel.js';
import {
  GUEST_STATUS_ADDRESS,
  guestMemoryMiBFor,
  parseGuestStatus,
  parseXpWords,
  writeGuestImage,
} from '../../src/testing/guest/index.js';
import { freePort, QemuVm } from '../../src/testing/qemu-vm.js';
import { type CommandCounter, countingQmp } from './qemu-pair.js';
import { nowMs, sleep } from './report.js';

/** A migration strategy: hvparams and convergence-policy knobs. */
export interface Strategy {
  name: string;
  /** What it is, for the table's legend. */
  about: string;
  caps: string;
  downtimeMs: number;
  /** The policy knobs; `POLICY_OFF` for "QEMU alone". */
  policy: ConvergencePolicyOptions;
}

/** The convergence policy never acts (no downtime raise, no post-copy switch). */
const POLICY_OFF: ConvergencePolicyOptions = {
  stallMs: Number.MAX_SAFE_INTEGER,
  postcopyAfterPasses: Number.MAX_SAFE_INTEGER,
};

/**
 * The strategies compared (issue 12): QEMU alone, Ganeti's, each capability, ours, and
 * ours with post-copy opted in (issue 19, item 7).
 */
export const STRATEGIES: Strategy[] = [
  {
    name: 'precopy',
    about: "plain pre-copy, QEMU's default downtime 300 ms",
    caps: '',
    downtimeMs: 300,
    policy: POLICY_OFF,
  },
  {
    name: 'ganeti',
    about: "Ganeti's settings: downtime 30 ms, migration_caps only, no policy",
    caps: '',
    downtimeMs: 30,
    policy: POLICY_OFF,
  },
  {
    name: 'auto-converge',
    about: 'auto-converge (vCPU throttling), downtime 30 ms',
    caps: 'auto-converge',
    downtimeMs: 30,
    policy: POLICY_OFF,
  },
  {
    name: 'xbzrle',
    about: 'xbzrle (delta compression of re-sent pages), downtime 30 ms',
    caps: 'xbzrle',
    downtimeMs: 30,
    policy: POLICY_OFF,
  },
  {
    name: 'multifd',
    about: 'multifd (parallel channels), downtime 30 ms',
    caps: 'multifd',
    downtimeMs: 30,
    policy: POLICY_OFF,
  },
  {
    name: 'postcopy',
    about:
      "plain post-copy: switch once the first pass is over (Ganeti's rule, 2 passes), no other step, downtime 30 ms",
    caps: 'postcopy-ram',
    downtimeMs: 30,
    policy: { stallMs: Number.MAX_SAFE_INTEGER, postcopyAfterPasses: 2 },
  },
  {
    name: 'ours',
    about: 'our policy: auto-converge + downtime doubled after a 2 s stall (max 2 s), downtime 30 ms',
    caps: 'auto-converge',
    downtimeMs: 30,
    policy: { stallMs: 2000 },
  },
  {
    name: 'ours+postcopy',
    about:
      'ours with postcopy-ram opted in (migration_caps auto-converge:postcopy-ram): post-copy is the convergence step',
    caps: 'auto-converge:postcopy-ram',
    downtimeMs: 30,
    policy: { stallMs: 2000 },
  },
  {
    name: 'postcopy-on-stall',
    about: 'ours+postcopy without the pass rule: post-copy only once pre-copy stalls for 2 s',
    caps: 'auto-converge:postcopy-ram',
    downtimeMs: 30,
    policy: { stallMs: 2000, postcopyAfterPasses: Number.MAX_SAFE_INTEGER },
  },
];

/** A busy guest: the region it dirties and how fast. */
export interface Workload {
  dirtyMiB: number;
  rateMiBps: number;
}

/** What one bounded migration gave. */
export interface RunResult {
  strategy: string;
  accel: Accelerator;
  dirtyMiB: number;
  rateMiBps: number;
  bandwidthMiBps: number;
  guestMiB: number;
  converged: boolean;
  /** QEMU's total-time (ms), or the wall time until cancelled. */
  totalMs: number;
  /** Wall time from `migrateInstance` to the end of the wait. */
  wallMs: number;
  downtimeMs?: number;
  sentMiB?: number;
  passes?: number;
  /** Dirty rate QEMU measured (MiB/s), the highest seen. */
  measuredDirtyMiBps?: number;
  /** Write rate the guest achieved just before the migration (its own page counter, MiB/s). */
  guestRateMiBps?: number;
  throttlePercent?: number;
  /** Policy actions, each with the time it was taken (s after `migrateInstance`). */
  actions: string[];
  /** The downtime limit the migration started with (`migration_downtime`, ms). */
  downtimeLimitMs: number;
  /** The downtime limit at the end, after the policy's raises (ms). */
  finalDowntimeLimitMs: number;
  /** When the source was first seen in a post-copy status (ms after `migrateInstance`). */
  postcopyAtMs?: number;
  error?: string;
  /** Monitor commands the library sent, both ends, all steps. */
  commands: number;
}

/** Options of {@link runMigration}. */
export interface RunOptions {
  dir: string;
  tag: string;
  workload: Workload;
  bandwidthMiBps: number;
  strategy: Strategy;
  accel: Accelerator;
  /** Give up (cancel) after this long (ms). */
  boundMs: number;
  /** Longest wait for the guest to have written its whole region once (ms). */
  warmMs: number;
  /** Called once both QEMUs run, before the migration starts. */
  onReady?: () => void;
}

const MiB = 1024 * 1024;

/** Starts the pair, migrates within the bound, finalizes both ends, kills both QEMUs. */
export async function runMigration(o: RunOptions): Promise<RunResult> {
  const image = `${o.dir}/${o.tag}.img`;
  writeGuestImage(image, o.workload);
  const guestMiB = Math.max(64, guestMemoryMiBFor(o.workload.dirtyMiB));
  const port = await freePort();
  const base = {
    dir: o.dir,
    memoryMiB: guestMiB,
    qmpSockets: 1,
    hmp: false,
    kernel: image,
    accel: o.accel,
  } as const;
  const [src, dst] = await Promise.all([
    QemuVm.start({ ...base, name: `${o.tag}-src`, qmpSockets: 2, startTimeoutMs: 60_000 }),
    QemuVm.start({
      ...base,
      name: `${o.tag}-dst`,
      incoming: `tcp:127.0.0.1:${port}`,
      startTimeoutMs: 60_000,
    }),
  ]);
  const counter: CommandCounter = { count: 0 };
  const hv = new KVMHypervisor({
    monitor: (name) => countingQmp(name.endsWith('-dst') ? dst.qmpPath : src.qmpPath, counter),
    convergence: { ...o.strategy.policy, minCompletionTimeoutMs: o.boundMs },
  });
  const hvparams = {
    migration_port: port,
    migration_bandwidth: o.bandwidthMiBps,
    migration_downtime: o.strategy.downtimeMs,
    migration_caps: o.strategy.caps,
  };
  const source = { name: `${o.tag}-src`, hvparams };
  const dest = { name: `${o.tag}-dst`, hvparams };
  const actions: string[] = [];
  let last: MigrationProgress | undefined;
  let maxDirty = 0;
  const result: RunResult = {
    strategy: o.strategy.name,
    accel: src.accel,
    dirtyMiB: o.workload.dirtyMiB,
    rateMiBps: o.workload.rateMiBps,
    bandwidthMiBps: o.bandwidthMiBps,
    guestMiB,
    converged: false,
    totalMs: 0,
    wallMs: 0,
    actions,
    downtimeLimitMs: o.strategy.downtimeMs,
    finalDowntimeLimitMs: o.strategy.downtimeMs,
    commands: 0,
  };
  try {
    o.onReady?.();
    result.guestRateMiBps = await warmUp(src.qmpPaths[1]!, o.warmMs);
    await hv.acceptInstance(dest);
    const t0 = nowMs();
    await hv.migrateInstance(source, '127.0.0.1', true);
    let ok = false;
    try {
      const r = await hv.waitForMigration(source, {
        timeoutMs: o.boundMs,
        pollIntervalMs: 250,
        onProgress: (p) => {
          // The final `cancelled` snapshot carries no RAM statistics: keep the last that did.
          if (p.transferredBytes !== undefined) last = p;
          maxDirty = Math.max(maxDirty, p.dirtyRateBytesPerSec ?? 0);
          if (p.status.startsWith('postcopy') && result.postcopyAtMs === undefined) {
            result.postcopyAtMs = nowMs() - t0;
          }
        },
        onAction: (a: ConvergenceAction) => {
          if (a.kind === 'downtime') result.finalDowntimeLimitMs = a.downtimeMs;
          actions.push(
            `${a.kind === 'downtime' ? `downtime→${a.downtimeMs}` : 'postcopy'}@${((nowMs() - t0) / 1000).toFixed(1)}s`,
          );
        },
      });
      ok = true;
      result.converged = true;
      result.totalMs = r.totalTimeMs ?? nowMs() - t0;
      result.downtimeMs = r.downtimeMs;
      result.sentMiB = (r.transferredBytes ?? 0) / MiB;
      result.passes = r.final.pass;
      result.throttlePercent = last?.throttlePercent;
    } catch (e) {
      result.error = e instanceof Error ? e.message.slice(0, 160) : String(e);
      result.totalMs = nowMs() - t0;
      result.sentMiB = last?.transferredBytes === undefined ? undefined : last.transferredBytes / MiB;
      result.passes = last?.pass;
      result.throttlePercent = last?.throttlePercent;
    }
    result.wallMs = nowMs() - t0;
    result.measuredDirtyMiBps = maxDirty / MiB;
    await hv.finalizeMigrationSource(source, ok);
    await hv.finalizeMigrationDst(dest, ok);
  } finally {
    result.commands = counter.count;
    await hv.close();
    await Promise.all([src.kill(), dst.kill()]);
  }
  return result;
}

/** RAM ÷ bandwidth: the data the guest holds (its dirtied region) sent once (ms). */
export function floorMs(w: Workload, bandwidthMiBps: number): number {
  return (w.dirtyMiB / bandwidthMiBps) * 1000;
}

/**
 * The pre-copy bound with the dirty rate: passes shrink by r/B each, so the total is
 * D / (B − r); infinite when the guest dirties as fast as the link sends (ms).
 */
export function dirtyFloorMs(w: Workload, bandwidthMiBps: number): number {
  return w.rateMiBps >= bandwidthMiBps || w.rateMiBps <= 0
    ? Number.POSITIVE_INFINITY
    : (w.dirtyMiB / (bandwidthMiBps - w.rateMiBps)) * 1000;
}

async function guestStatus(mon: QmpMonitor) {
  const text = await mon.humanCommand(`xp /4wx 0x${GUEST_STATUS_ADDRESS.toString(16)}`);
  return parseGuestStatus(parseXpWords(text));
}

/**
 * Waits (at most `limitMs`) until the guest has swept its region once, so the region is
 * real data and not zero pages, then measures its write rate over half a second (MiB/s).
 */
export async function warmUp(observerPath: string, limitMs: number): Promise<number | undefined> {
  const mon = await QmpMonitor.connect({ path: observerPath });
  try {
    const end = nowMs() + limitMs;
    for (;;) {
      const st = await guestStatus(mon);
      if ((st.running && st.sweeps >= 1) || nowMs() > end) break;
      await sleep(100);
    }
    const a = await guestStatus(mon);
    const t = nowMs();
    await sleep(500);
    const b = await guestStatus(mon);
    const pages = (b.pagesWritten - a.pagesWritten) >>> 0;
    return (pages * 4096) / MiB / ((nowMs() - t) / 1000);
  } finally {
    await mon.close();
  }
}
