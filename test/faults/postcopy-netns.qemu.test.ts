/**
 * Fault matrix, part 5 (issue 19, item 6): post-copy on two "hosts" (network namespaces
 * joined by a veth pair), on every QEMU release of the suite. A 128 MiB guest rewrites
 * 32 MiB at 32 MiB/s, the link carries 16 MiB/s (pre-copy and post-copy alike), and
 * `runMigration` runs with `migration_caps: postcopy-ram`, so the convergence policy
 * switches to post-copy once the first pass is done. Faults: either QEMU SIGKILLed during
 * post-copy; the link cut, or cut and restored, during pre-copy; in post-copy, the link
 * down for 10 s or the connection reset (runMigration recovers the stream by itself), and
 * the link down past `postcopyRecoveryMs` (the split reported, then finished by hand with
 * the hypervisors' post-copy steps). What each end does afterwards is read from outside:
 * run and migration states through a second QMP socket, and the guest's own counters in
 * its RAM (`xp`), which show whether it still runs. Whatever a case's outcome, its QEMUs
 * are killed and the link restored after it, and the namespaces removed after the file.
 */
import { join } from 'node:path';
import { afterAll, afterEach, expect, it, vi } from 'vitest';
import { type FinalizeOutcome, MigrationError } from '../../src/errors.js';
import { runMigration } from '../../src/internal.js';
import type { KVMHypervisorOptions } from '../../src/kvm.js';
import type { PostcopyRecoveryEvent } from '../../src/migration/postcopy-recovery.js';
import type { ConvergenceAction, MigrationProgress } from '../../src/migration/types.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { versionAtLeast } from '../../src/qemu/version.js';
import {
  GUEST_STATUS_ADDRESS,
  type GuestStatus,
  parseGuestStatus,
  parseXpWords,
  writeGuestImage,
} from '../../src/testing/guest/index.js';
import { freePort } from '../../src/testing/qemu-vm.js';
import type { ReleaseCase } from '../support/real-qemu.js';
import { describeEachRelease, releaseCases, versionOf } from '../support/real-qemu.js';
import {
  FaultLab,
  fullText,
  migrationState,
  type Pair,
  rejectsIn,
  resolvesIn,
  runState,
  STEP_MS,
  signal,
  type VmProcess,
} from './harness.js';
import { TwoHosts } from './netns.js';

const hosts = TwoHosts.create();
const skipReason = typeof hosts === 'string' ? ` (skipped: ${hosts})` : '';
vi.setConfig({ testTimeout: 180_000 });
const lab = new FaultLab('pcnet');
const timers: NodeJS.Timeout[] = [];
afterEach(async () => {
  for (const t of timers.splice(0)) clearTimeout(t);
  await lab.cleanup();
  if (typeof hosts !== 'string') hosts.heal();
});
afterAll(() => {
  lab.dispose();
  if (typeof hosts !== 'string') hosts.destroy();
});

/** Guest RAM (MiB). */
const MEMORY_MIB = 128;
/** The guest rewrites this much of its RAM (MiB)… */
const DIRTY_MIB = 32;
/** …at this rate (MiB/s): twice what the link is allowed to carry. */
const DIRTY_MIBPS = 32;
/** `migration_bandwidth` (MiB/s): `max-bandwidth` and `max-postcopy-bandwidth`. */
const BANDWIDTH_MIBPS = 16;
/** A deadline no correct run reaches on a loaded machine: the runs end by themselves or are aborted. */
const RUN_MS = 120_000;
/** `postcopyStallMs`: how long a post-copy stream may move nothing before runMigration recovers it. */
const STALL_MS = 2000;
/** `postcopyRecoveryMs` of the cases that must recover: the link is back after 10 s. */
const RECOVERY_MS = 25_000;
/** Post-copy bandwidth (MiB/s) of the cases that break a post-copy stream, so pages are still on the way. */
const STREAMING_MIBPS = 4;
/** RAM the source must still have to send when a post-copy stream is broken (bytes): 1 MiB, a quarter second at 4 MiB/s; 4 MiB was sometimes gone before a loaded host saw post-copy (11.1 switches with ~4.6 MiB left). */
const STREAMING_BYTES = 1 << 20;
/** Deadline of the observers' reads. */
const READ_MS = 5000;

const GUEST = join(lab.dir, 'postcopy-guest.img');
writeGuestImage(GUEST, { dirtyMiB: DIRTY_MIB, rateMiBps: DIRTY_MIBPS });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isPostcopy = (status: string | undefined) => status?.startsWith('postcopy') === true;
/** A source that has handed the VM over (post-copy or completed) is in one of these run states. */
const SWITCHED_OVER = ['finish-migrate', 'postmigrate'];

async function until<T>(
  what: string,
  read: () => Promise<T>,
  done: (v: T) => boolean,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(v)})`);
    await sleep(100);
  }
}

/** The dirtying guest's counters, read from its RAM through an observer. */
async function guestStatus(obs: QmpMonitor): Promise<GuestStatus> {
  const text = await obs.humanCommand(`xp /4wx 0x${GUEST_STATUS_ADDRESS.toString(16)}`, {
    timeoutMs: READ_MS,
  });
  return parseGuestStatus(parseXpWords(text));
}

/** Waits until the guest's pages-written counter moves: its vCPU runs and its memory is there. */
async function guestProgresses(obs: QmpMonitor, where: string): Promise<void> {
  const first = await guestStatus(obs);
  expect(first.running, `the guest on the ${where} has written its status block`).toBe(true);
  await until(
    `the guest on the ${where} to write`,
    () => guestStatus(obs),
    (s) => (s.pagesWritten - first.pagesWritten) >>> 0 > 0,
    30_000,
  );
}

/** Checks that the guest's pages-written counter does not move for a while: its vCPU does not run. */
async function guestStill(obs: QmpMonitor, where: string): Promise<void> {
  const first = await guestStatus(obs);
  await sleep(700);
  expect((await guestStatus(obs)).pagesWritten, `the guest on the ${where} does not run`).toBe(
    first.pagesWritten,
  );
}

/**
 * An `onProgress` that, once the source reports post-copy, watches the destination until
 * its incoming migration is `postcopy-active` (it has the device state and runs the VM)
 * and then calls `inject` once. Killing either end earlier, at the switch-over itself, is
 * another fault: the destination has not started the VM, fails its load and exits.
 *
 * With `streaming`, it also waits for the source to report `postcopy-active` (QEMU 11.1's
 * source stays `postcopy-device` until the destination's acknowledgement comes back over
 * the return path) with at least {@link STREAMING_BYTES} of RAM still to send, and slows
 * the post-copy phase to {@link STREAMING_MIBPS} while pre-copy runs, so that the fault
 * hits a stream that still carries pages. (Seen on QEMU 11.1, and not what these cases
 * test: a source paused after it sent its last page, or whose stream breaks while it is
 * still `postcopy-device`, goes to `failed` and QEMU runs the source VM again, while the
 * destination still holds the VM in post-copy.)
 */
function whenPostcopyRuns(p: Pair, inject: () => void, o: { streaming?: boolean } = {}) {
  const state = {
    statuses: new Set<string>(),
    seen: [] as string[],
    injected: false,
    slowed: undefined as Promise<unknown> | undefined,
    watcher: undefined as Promise<void> | undefined,
  };
  const onProgress = (s: MigrationProgress) => {
    state.statuses.add(s.status);
    if (o.streaming && !state.slowed && s.status === 'active') {
      state.slowed = p.srcObs
        .execute('migrate-set-parameters', { 'max-postcopy-bandwidth': STREAMING_MIBPS << 20 })
        .catch(() => undefined);
    }
    if (state.watcher || !isPostcopy(s.status)) return;
    state.watcher = (async () => {
      const giveUpAt = Date.now() + 30_000;
      while (Date.now() < giveUpAt) {
        const d = await migrationState(p.dst, p.dstObs).catch(() => 'unreadable');
        // The source too: on 11.1 it stays in `postcopy-device` until the destination's ack,
        // and a destination lost before that is a failed migration the source resumes
        // from (QEMU's own rule), not a post-copy fault.
        const src: { status?: string; ram?: { remaining?: number } } | undefined = await p.srcObs
          .execute<{ status?: string; ram?: { remaining?: number } }>('query-migrate', undefined, {
            timeoutMs: READ_MS,
          })
          .catch(() => ({ status: 'unreadable', ram: undefined }));
        const left = src?.ram?.remaining;
        const both = `source ${src.status} (${left} bytes left), destination ${d}`;
        if (state.seen.at(-1) !== both) state.seen.push(both);
        if (
          d === 'postcopy-active' &&
          src.status === 'postcopy-active' &&
          (!o.streaming || (left ?? 0) >= STREAMING_BYTES)
        ) {
          inject();
          state.injected = true;
          return;
        }
        if ([d, src?.status].some((x) => x === 'completed' || x === 'failed' || x === 'gone')) return;
        if (o.streaming && src.status === 'postcopy-active' && (left ?? 0) < STREAMING_BYTES) return;
        await sleep(20);
      }
    })();
  };
  const expectInjected = async () => {
    await state.watcher;
    expect(
      state.injected,
      `the fault was not injected: post-copy was never seen running${o.streaming ? ` with ${STREAMING_BYTES} bytes still to send` : ''}; statuses seen: ${state.seen.join('; ')} (source's snapshots: ${[...state.statuses].join(', ')})`,
    ).toBe(true);
  };
  return { onProgress, expectInjected };
}

const action = (o: FinalizeOutcome | { error: Error } | undefined) =>
  o === undefined ? undefined : 'error' in o ? `error: ${o.error.message}` : o.action;

describeEachRelease(`post-copy faults on two hosts${skipReason}`, releaseCases(), (rel: ReleaseCase) => {
  const h = hosts as TwoHosts;
  const run = it.skipIf(typeof hosts === 'string');
  /** QEMU 9.1+ shows a resume's failed connect (`postcopy-recover-setup`, then an error-desc). */
  const resumeShowsFailure = versionAtLeast(versionOf(rel), 7, 0);
  /** QEMU 5.2 aborts on a post-copy resume that follows one whose connect failed. */
  const secondResumeCrashes = !versionAtLeast(versionOf(rel), 7, 0);

  /** Commands the source's library monitor sent, with when. */
  interface Sent {
    command: string;
    at: number;
  }

  /**
   * A pair of this release in the two namespaces, the guest already dirtying its region,
   * the source's library monitor recording what it sends.
   */
  async function pair(
    srcHvOptions?: Omit<KVMHypervisorOptions, 'monitor'>,
  ): Promise<{ p: Pair; sent: Sent[] }> {
    const sent: Sent[] = [];
    const p = await lab.pair({
      protocol: 'qmp',
      guestImage: GUEST,
      srcMemoryMiB: MEMORY_MIB,
      dstMemoryMiB: MEMORY_MIB,
      srcBinary: rel.binary,
      dstBinary: rel.binary,
      listenHost: h.addrB,
      srcStart: h.starter(h.nsA),
      dstStart: h.starter(h.nsB),
      hvparams: { migration_bandwidth: BANDWIDTH_MIBPS, migration_caps: 'postcopy-ram' },
      warmUpMs: 0,
      ...(srcHvOptions ? { srcHvOptions } : {}),
      srcMonitor: async (vm: VmProcess) => {
        const m = await QmpMonitor.connect(
          { path: vm.qmpPath },
          { timeoutMs: 10_000, greetingTimeoutMs: 5000 },
        );
        const execute = m.execute.bind(m);
        m.execute = ((command: string, args?: Record<string, unknown>, options?: { timeoutMs?: number }) => {
          sent.push({ command, at: Date.now() });
          return execute(command, args, options);
        }) as typeof m.execute;
        return m;
      },
    });
    // A just-booted guest has dirtied nothing yet: wait for one sweep of its region.
    await until(
      'the guest to sweep its region',
      () => guestStatus(p.srcObs),
      (s) => s.running && s.sweeps >= 1,
      45_000,
    );
    return { p, sent };
  }

  const ends = (p: Pair) => ({
    source: { hypervisor: p.srcHv, instance: p.inst, diagnostics: () => p.src.stderr },
    destination: { hypervisor: p.dstHv, instance: p.inst, diagnostics: () => p.dst.stderr },
  });

  /**
   * Finishes, by hand, a post-copy migration that `runMigration` left split between the
   * two hosts, with each node's step methods: pause both ends (a no-op on an end already
   * paused), accept a recovery on the destination on a fresh port, resume the source
   * there, wait for the migration to complete and finalize both ends. On QEMU 5.2 the
   * destination keeps the URI of runMigration's own `migrate-recover` (`libraryUri`):
   * the source resumes there. Call with the link up.
   */
  async function finishByHand(p: Pair, libraryUri: string | undefined): Promise<void> {
    const step = { timeoutMs: STEP_MS };
    expect((await p.srcHv.pausePostcopy(p.inst, step)).status).toBe('postcopy-paused');
    expect((await p.dstHv.pausePostcopy(p.inst, step)).status).toBe('postcopy-paused');
    let port = await freePort();
    while (port === p.port || libraryUri?.endsWith(`:${port}`)) port = await freePort();
    const accepted = await p.dstHv.acceptPostcopyRecovery(p.inst, `tcp:${h.addrB}:${port}`, step);
    const uri = accepted.action === 'already-listening' && libraryUri ? libraryUri : accepted.uri;
    const resumed = await p.srcHv.resumePostcopy(p.inst, uri, { timeoutMs: 2 * STEP_MS });
    expect(resumed.action).toBe('resumed');
    const done = await resolvesIn(
      'waitForMigration',
      p.srcHv.waitForMigration(p.inst, { timeoutMs: 60_000, pollIntervalMs: 100 }),
      60_000,
    );
    expect(done.status).toBe('completed');
    const dst = await resolvesIn(
      'finalizeMigrationDst',
      p.dstHv.finalizeMigrationDst(p.inst, true, step),
      STEP_MS,
    );
    expect(dst.action).toMatch(/^(running|resumed)$/);
    await resolvesIn('finalizeMigrationSource', p.srcHv.finalizeMigrationSource(p.inst, true, step), STEP_MS);
  }

  /** The VM arrived: it runs on the destination with its guest writing; the source is stopped. */
  async function expectOnDestination(p: Pair): Promise<void> {
    expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
    expect(await runState(p.dst, p.dstObs)).toBe('running');
    expect(await migrationState(p.dst, p.dstObs)).toBe('completed');
    await guestProgresses(p.dstObs, 'destination');
    await guestStill(p.srcObs, 'source');
  }

  run(
    'destination SIGKILLed in post-copy: the VM is reported lost, the source is neither resumed nor stopped',
    async () => {
      const { p, sent } = await pair();
      const kill = whenPostcopyRuns(p, () => signal(p.dst, 'SIGKILL'));
      const call = runMigration({
        ...ends(p),
        target: p.target,
        live: true,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
        postcopyStallMs: STALL_MS,
        onProgress: kill.onProgress,
      });
      const err = await rejectsIn('runMigration', call, RUN_MS + 4 * STEP_MS);
      await kill.expectInjected();
      expect(err).toBeInstanceOf(MigrationError);
      expect(isPostcopy(err.status), `status ${err.status}`).toBe(true);
      expect(err.recovery?.destination).toMatchObject({ action: 'already-gone' });
      expect(err.recovery?.source, action(err.recovery?.source)).toMatchObject({ action: 'lost' });
      // runMigration sees it by itself (the recovery finds the destination gone), at once.
      expect(err.message).toMatch(/the destination QEMU is gone/);
      expect(err.message).toMatch(/the VM is lost/);
      expect(err.message).toMatch(/restart the VM from its disks/);
      expect(err.message).not.toMatch(/stop neither QEMU|split between/);
      expect(err.message).not.toMatch(
        /the VM is on the destination|completed nevertheless|destination runs the VM/,
      );
      // Not resumed (QEMU would refuse `cont` anyway) and not stopped: the source QEMU still
      // holds what memory there is, for the operator.
      expect(p.src.alive).toBe(true);
      expect(SWITCHED_OVER).toContain(await runState(p.src, p.srcObs));
      expect(await migrationState(p.src, p.srcObs)).toBe('postcopy-paused');
      await guestStill(p.srcObs, 'source');
      expect(SWITCHED_OVER).toContain(await runState(p.src, p.srcObs));
      expect(sent.map((s) => s.command)).not.toContain('cont');
      expect(sent.map((s) => s.command)).not.toContain('quit');
      expect(await runState(p.dst, p.dstObs)).toBe('gone');
    },
  );

  run('source SIGKILLed in post-copy: the VM is reported lost, the destination is not stopped', async () => {
    const { p } = await pair();
    const kill = whenPostcopyRuns(p, () => signal(p.src, 'SIGKILL'));
    const err = await rejectsIn(
      'runMigration',
      runMigration({
        ...ends(p),
        target: p.target,
        live: true,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
        onProgress: kill.onProgress,
      }),
      RUN_MS + 4 * STEP_MS,
    );
    await kill.expectInjected();
    expect(err).toBeInstanceOf(MigrationError);
    expect(fullText(err)).toMatch(/the VM is lost/);
    expect(err.message).toMatch(/the source QEMU is gone/);
    expect(err.message).toMatch(/restart the VM from its disks/);
    expect(err.message).not.toMatch(/stop neither QEMU|split between/);
    expect(err.message).not.toMatch(
      /the VM is on the destination|completed nevertheless|destination runs the VM/,
    );
    // postcopy-paused once the destination has seen the stream end; on a loaded host it may
    // still say postcopy-active when it is finalized: split, either way nothing is done.
    const dst = err.recovery?.destination;
    expect(
      dst !== undefined && !('error' in dst) && ['postcopy-paused', 'split'].includes(dst.action),
      action(dst),
    ).toBe(true);
    const src = err.recovery?.source;
    expect(src === undefined || 'error' in src || src.action === 'lost', action(src)).toBe(true);
    // The destination QEMU is left as it is: running (its guest waits for pages that will never come).
    expect(await runState(p.src, p.srcObs)).toBe('gone');
    expect(p.dst.alive).toBe(true);
    expect(await runState(p.dst, p.dstObs)).toBe('running');
    await until(
      "the destination's incoming postcopy-paused",
      () => migrationState(p.dst, p.dstObs),
      (s) => s === 'postcopy-paused',
      30_000,
    );
  });

  /**
   * Runs a migration whose link goes down `downMs` after the first snapshot that shows
   * the first pass under way, and comes back `downMs` later. Returns the run's result,
   * the policy's actions and the source's snapshots, each with when it happened, and the
   * cut's window.
   */
  async function precopyOutage(downMs: number, srcHvOptions?: Omit<KVMHypervisorOptions, 'monitor'>) {
    const { p, sent } = await pair(srcHvOptions);
    const actions: { action: ConvergenceAction; at: number; last: MigrationProgress | undefined }[] = [];
    const snapshots: { progress: MigrationProgress; at: number }[] = [];
    const cut: { at: number; healedAt: number; firstPassDone?: boolean | undefined } = { at: 0, healedAt: 0 };
    const watched: string[] = [];
    let watching = true;
    // The source's status as QEMU reports it, every 200 ms, while the link is down.
    const watcher = (async () => {
      while (watching) {
        if (cut.at && !cut.healedAt)
          watched.push(await migrationState(p.src, p.srcObs).catch((e) => String(e)));
        await sleep(200);
      }
    })();
    try {
      const result = await resolvesIn(
        'runMigration',
        runMigration({
          ...ends(p),
          target: p.target,
          live: true,
          timeoutMs: RUN_MS,
          stepTimeoutMs: STEP_MS,
          pollIntervalMs: 100,
          onAction: (a) => actions.push({ action: a, at: Date.now(), last: snapshots.at(-1)?.progress }),
          onProgress: (s) => {
            snapshots.push({ progress: s, at: Date.now() });
            if (cut.at || s.status !== 'active' || (s.transferredBytes ?? 0) < 1 << 20) return;
            cut.firstPassDone = s.firstPassDone;
            h.cut();
            cut.at = Date.now();
            timers.push(
              setTimeout(() => {
                h.heal();
                cut.healedAt = Date.now();
              }, downMs),
            );
          },
        }),
        RUN_MS + 4 * STEP_MS,
      );
      return { p, sent, result, actions, snapshots, cut, watched };
    } finally {
      watching = false;
      await watcher;
    }
  }

  /** What every pre-copy outage must show: nothing post-copy while the link was down, and a VM that arrived. */
  async function expectArrivedWithoutPostcopyOnDeadLink(o: Awaited<ReturnType<typeof precopyOutage>>) {
    const { p, sent, result, actions, cut, watched } = o;
    expect(cut.at, 'the link was cut').toBeGreaterThan(0);
    expect(cut.healedAt, 'the link came back before the migration ended').toBeGreaterThan(0);
    expect(cut.firstPassDone, 'the link went down during the first pass').not.toBe(true);
    const during = (at: number) => at >= cut.at && at <= cut.healedAt;
    const summary = JSON.stringify(actions.map((a) => ({ ...a.action, at: a.at - cut.at })));
    expect(
      actions.filter((a) => a.action.kind === 'postcopy' && during(a.at)),
      `post-copy requested on the dead link; actions (ms from the cut): ${summary}`,
    ).toEqual([]);
    expect(sent.filter((s) => s.command === 'migrate-start-postcopy' && during(s.at))).toEqual([]);
    expect(watched.filter(isPostcopy), `source statuses during the cut: ${watched.join(', ')}`).toEqual([]);
    // Where post-copy was requested after all, it was after the link came back, with the
    // first pass done and bytes moving (not at once, with the RAM still on the source).
    for (const a of actions.filter((x) => x.action.kind === 'postcopy')) {
      expect(a.at, summary).toBeGreaterThan(cut.healedAt);
      expect(a.last?.firstPassDone, summary).not.toBe(false);
    }
    // The VM arrived: it runs on the destination, its guest writing; the source is stopped.
    expect(['running', 'resumed']).toContain(result.destination.action);
    expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
    expect(await runState(p.dst, p.dstObs)).toBe('running');
    expect(await migrationState(p.dst, p.dstObs)).toBe('completed');
    await guestProgresses(p.dstObs, 'destination');
    await guestStill(p.srcObs, 'source');
  }

  run(
    'link cut in pre-copy (policy at its quickest): no migrate-start-postcopy while the link is down; completes once it is back',
    async () => {
      // Before issue 19's fix, the stall rule raised the downtime to its maximum and then
      // asked for post-copy on the dead link: with these knobs within ~3 s of the cut.
      const o = await precopyOutage(6000, { convergence: { stallMs: 1000, maxDowntimeMs: 120 } });
      await expectArrivedWithoutPostcopyOnDeadLink(o);
    },
  );

  run(
    'link flap in pre-copy (down 3 s): the migration completes, the VM runs on the destination',
    async () => {
      const o = await precopyOutage(3000);
      await expectArrivedWithoutPostcopyOnDeadLink(o);
    },
  );

  /** A `runMigration` that recovers a broken post-copy stream by itself, on `recoveryPort`. */
  const recovering = (
    p: Pair,
    o: {
      recoveryMs: number;
      recoveryPort: number;
      events: PostcopyRecoveryEvent[];
      onProgress: (s: MigrationProgress) => void;
    },
  ) =>
    runMigration({
      ...ends(p),
      target: p.target,
      live: true,
      timeoutMs: RUN_MS,
      stepTimeoutMs: STEP_MS,
      pollIntervalMs: 100,
      postcopyStallMs: STALL_MS,
      postcopyRecoveryMs: o.recoveryMs,
      postcopyRecoveryPort: o.recoveryPort,
      onPostcopyRecovery: (e) => o.events.push(e),
      onProgress: o.onProgress,
    });

  /** What a recovery that got through reported: stalled, both ends paused, listening on the port, resumed. */
  function expectRecoveredVia(events: PostcopyRecoveryEvent[], recoveryPort: number): void {
    const summary = JSON.stringify(events);
    const kinds = events.map((e) => e.kind);
    expect(kinds[0], summary).toBe('stalled');
    expect(
      events.filter((e) => e.kind === 'paused' && e.action === 'failed'),
      summary,
    ).toEqual([]);
    expect(
      events.find((e) => e.kind === 'listening'),
      summary,
    ).toMatchObject({ uri: `tcp:${h.addrB}:${recoveryPort}` });
    expect(kinds.at(-1), summary).toBe('resumed');
  }

  // KNOWN FAILURE on QEMU 5.2: runMigration's first resume goes out while the link is
  // down; the source's connect fails within about a second ("No route to host": the veth's
  // carrier is down). Before 9.1 QEMU shows nothing of it but a line on its stderr, which
  // runMigration reads through the `diagnostics` hook and resumes again at once (7.2); 5.2
  // aborts on a second resume after a failed one ("Assertion `s->cleanup_bh' failed"), so
  // it is resumed once only and the recovery gives up, the VM reported split.
  (resumeShowsFailure ? run : run.fails)(
    'link down 10 s in post-copy: runMigration pauses both ends, recovers once the link is back, the VM runs on the destination',
    async () => {
      const { p, sent } = await pair();
      const events: PostcopyRecoveryEvent[] = [];
      const recoveryPort = await freePort();
      const cut = { at: 0, healedAt: 0 };
      const down = whenPostcopyRuns(
        p,
        () => {
          h.cut();
          cut.at = Date.now();
          timers.push(
            setTimeout(() => {
              h.heal();
              cut.healedAt = Date.now();
            }, 10_000),
          );
        },
        { streaming: true },
      );
      const result = await resolvesIn(
        'runMigration',
        recovering(p, { recoveryMs: RECOVERY_MS, recoveryPort, events, onProgress: down.onProgress }),
        RUN_MS + 4 * STEP_MS,
      );
      await down.expectInjected();
      expect(cut.healedAt, 'the link came back before runMigration ended').toBeGreaterThan(0);
      expect(result.status).toBe('completed');
      expect(result.postcopyRecoveries).toBeGreaterThanOrEqual(1);
      expect(['running', 'resumed']).toContain(result.destination.action);
      expectRecoveredVia(events, recoveryPort);
      // The stream was seen stalled while the link was down (no byte moved), not paused by QEMU.
      const stalled = events[0] as Extract<PostcopyRecoveryEvent, { kind: 'stalled' }>;
      expect(stalled.stalledMs).toBeGreaterThan(0);
      expect(sent.map((s) => s.command)).not.toContain('cont');
      await expectOnDestination(p);
    },
  );

  run(
    'connection reset in post-copy: both ends pause at once, runMigration recovers, the VM runs on the destination',
    async () => {
      const { p, sent } = await pair();
      const events: PostcopyRecoveryEvent[] = [];
      const recoveryPort = await freePort();
      let reset = -1;
      const rst = whenPostcopyRuns(
        p,
        () => {
          reset = h.resetConnections();
        },
        { streaming: true },
      );
      const result = await resolvesIn(
        'runMigration',
        recovering(p, { recoveryMs: RECOVERY_MS, recoveryPort, events, onProgress: rst.onProgress }),
        RUN_MS + 4 * STEP_MS,
      );
      await rst.expectInjected();
      expect(reset, 'ss -K found the migration connection').toBeGreaterThan(0);
      expect(result.status).toBe('completed');
      expect(result.postcopyRecoveries).toBeGreaterThanOrEqual(1);
      expect(['running', 'resumed']).toContain(result.destination.action);
      expectRecoveredVia(events, recoveryPort);
      expect(sent.map((s) => s.command)).not.toContain('cont');
      await expectOnDestination(p);
    },
  );

  // KNOWN FAILURE on QEMU 5.2: runMigration's resume, sent while the link is down, fails to
  // connect ("No route to host"); once the link is back the second resume (by hand here,
  // or runMigration's own 130 s later) connects, and the 5.2 source QEMU aborts:
  // "migration/migration.c:3614: migrate_fd_connect: Assertion `s->cleanup_bh' failed."
  // The source QEMU is gone with the pages the destination lacks: the VM is lost.
  (secondResumeCrashes ? run.fails : run)(
    'link down past postcopyRecoveryMs: the split is reported, neither QEMU is stopped or resumed; finished by hand once the link is back',
    async () => {
      const { p, sent } = await pair();
      const events: PostcopyRecoveryEvent[] = [];
      const recoveryPort = await freePort();
      const down = whenPostcopyRuns(p, () => h.cut(), { streaming: true });
      const err = await rejectsIn(
        'runMigration',
        recovering(p, { recoveryMs: 8000, recoveryPort, events, onProgress: down.onProgress }),
        RUN_MS + 4 * STEP_MS,
      );
      await down.expectInjected();
      const summary = JSON.stringify(events);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.status).toBe('postcopy-paused');
      expect(err.recovery?.destination, action(err.recovery?.destination)).toMatchObject({
        action: 'postcopy-paused',
      });
      expect(err.recovery?.source, action(err.recovery?.source)).toMatchObject({ action: 'split' });
      expect(err.message).toMatch(/gave up/);
      expect(err.message).toMatch(/the VM is split between the two hosts/);
      expect(err.message).toMatch(/stop neither QEMU/);
      expect(err.message).not.toMatch(/the VM is lost|the VM is on the destination|completed nevertheless/);
      expect(events[0]?.kind, summary).toBe('stalled');
      expect(
        events.map((e) => e.kind),
        summary,
      ).not.toContain('resumed');
      // Both QEMUs alive, neither stopped nor resumed: the source switched over, the destination runs the VM.
      expect(p.src.alive && p.dst.alive).toBe(true);
      expect(SWITCHED_OVER).toContain(await runState(p.src, p.srcObs));
      expect(await migrationState(p.src, p.srcObs)).toBe('postcopy-paused');
      expect(await runState(p.dst, p.dstObs)).toBe('running');
      expect(await migrationState(p.dst, p.dstObs)).toBe('postcopy-paused');
      expect(sent.map((s) => s.command).filter((c) => /^(cont|stop|quit|migrate_cancel)$/.test(c))).toEqual(
        [],
      );
      await guestStill(p.srcObs, 'source');

      // The link comes back. runMigration's last resume may still be retransmitting its SYN;
      // it is aborted so that the steps below, not that connect, bring the stream back.
      h.abortPendingConnects();
      h.heal();
      await h.untilReachable();
      const listening = events.find((e) => e.kind === 'listening');
      await finishByHand(p, listening?.kind === 'listening' ? listening.uri : undefined);
      await expectOnDestination(p);
    },
  );
});
