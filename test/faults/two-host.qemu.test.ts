/**
 * Fault matrix, part 4: two "hosts" (network namespaces joined by a veth pair), the source
 * QEMU in one and the destination in the other. The link is cut mid-migration, or made
 * slow and lossy. Skipped, with the reason in the test name, where namespaces cannot be made.
 */
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { runMigration } from '../../src/internal.js';
import {
  expectRunsExactlyOnce,
  FaultLab,
  fullText,
  onceMigrating,
  PROTOCOLS,
  rejectsIn,
  runDeadline,
  runState,
  STEP_MS,
  settledMigrationState,
  settles,
} from './harness.js';
import { TwoHosts } from './netns.js';

const hosts = TwoHosts.create();
const skipReason = typeof hosts === 'string' ? ` (skipped: ${hosts})` : '';
// A hung runMigration may take its whole budget (wait + four steps + margin) to be reported.
vi.setConfig({ testTimeout: 120_000 });
const lab = new FaultLab('2host');
afterEach(async () => {
  await lab.cleanup();
  if (typeof hosts !== 'string') hosts.heal();
});
afterAll(() => {
  lab.dispose();
  if (typeof hosts !== 'string') hosts.destroy();
});

const RUN_MS = 8000;

describe.skipIf(typeof hosts === 'string')(`two hosts joined by a veth pair${skipReason}`, () => {
  const h = hosts as TwoHosts;
  const twoHostPair = (protocol: 'qmp' | 'hmp', guest: 'busy' | 'idle', bandwidth: number) =>
    lab.pair({
      protocol,
      guest,
      hvparams: { migration_bandwidth: bandwidth },
      listenHost: h.addrB,
      srcStart: h.starter(h.nsA),
      dstStart: h.starter(h.nsB),
    });

  it.each(PROTOCOLS)(
    'link cut mid-migration over %s: bounded by the deadline, source runs, destination never runs',
    async (protocol) => {
      const p = await twoHostPair(protocol, 'busy', 8);
      const err = await rejectsIn(
        'runMigration',
        runMigration({
          source: { hypervisor: p.srcHv, instance: p.inst },
          destination: { hypervisor: p.dstHv, instance: p.inst },
          target: p.target,
          live: true,
          timeoutMs: RUN_MS,
          stepTimeoutMs: STEP_MS,
          pollIntervalMs: 100,
          onProgress: onceMigrating(() => h.cut()),
        }),
        runDeadline(RUN_MS),
      );
      expect(err).toBeInstanceOf(MigrationError);
      // TCP never reports a pulled cable quickly: the library's own deadline must end it.
      expect(fullText(err)).toMatch(/within|timed out|timeout|deadline/i);
      expect(await settledMigrationState(p.src, p.srcObs)).toMatch(/^(cancelled|failed)$/);
      expect(await runState(p.dst, p.dstObs)).not.toBe('running');
      expect(await expectRunsExactlyOnce(p)).toBe('src');
    },
  );

  const noLossyLink = h.lossyLinkUnavailable?.();
  it.skipIf(noLossyLink !== undefined).each(PROTOCOLS)(
    `slow lossy link over %s: completes, runs once on the destination${noLossyLink ? ` (skipped: ${noLossyLink})` : ''}`,
    async (protocol) => {
      const kind = h.slowLossyLink();
      // Non-live, so the ~16 MiB the guest dirtied cross the bad link once and the copy ends.
      const p = await twoHostPair(protocol, 'busy', 32);
      const run = await settles(
        `runMigration over ${kind}`,
        runMigration({
          source: { hypervisor: p.srcHv, instance: p.inst },
          destination: { hypervisor: p.dstHv, instance: p.inst },
          target: p.target,
          live: false,
          timeoutMs: 60_000,
          stepTimeoutMs: STEP_MS,
          pollIntervalMs: 100,
        }),
        runDeadline(60_000),
      );
      expect(run.ok, run.ok ? '' : fullText(run.error)).toBe(true);
      expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
      expect(await expectRunsExactlyOnce(p)).toBe('dst');
    },
  );
});
